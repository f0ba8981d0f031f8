"""[[routes]] and [cache] from TOML, end to end: boto3 -> gateway over HTTP -> FakeBedrock.
Aliases resolve before access rules, so a rule on the concrete model governs the alias."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway import Gateway
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from ..conftest import gateway_client
from ..test_usage_records import records

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"


@pytest.fixture
def served(tmp_path: Path, fake_bedrock: FakeBedrock,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    log = tmp_path / "usage.jsonl"
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[upstream]
endpoint_url = "{fake_bedrock.endpoint_url}"
backoff_base_s = 0
max_attempts = 1
[auth]
anonymous = true
[usage]
log = "{log}"
[[access]]
name = "haiku-and-llama-only"
allow_models = ["{HAIKU}", "{LLAMA}"]
[[routes]]
alias = "chat-default"
targets = [{{ model = "{HAIKU}" }}]
fallback = ["{LLAMA}"]
[[routes]]
alias = "chat-forbidden"
targets = [{{ model = "amazon.nova-micro-v1:0" }}]
[cache]
ttl_s = 60
cache_nondeterministic = true
""")
    gateway = Gateway.from_config(config)
    with BackgroundServer(gateway) as server:
        client = gateway_client(server.url)
        yield client, log
        client.close()
    gateway.close()


def say(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def test_an_alias_resolves_falls_back_and_obeys_access_rules(
        served: tuple[Any, Path], fake_bedrock: FakeBedrock) -> None:
    client, log = served
    client.converse(modelId="chat-default", messages=say("one"))
    assert fake_bedrock.requests[0].params["modelId"] == HAIKU
    fake_bedrock.fail_next(1, status=429, code="ThrottlingException")
    client.converse(modelId="chat-default", messages=say("two"))  # client retries are off
    assert [r.params["modelId"] for r in fake_bedrock.requests[1:]] == [HAIKU, LLAMA]
    with pytest.raises(ClientError) as caught:  # the rule judges the resolved model
        client.converse(modelId="chat-forbidden", messages=say("three"))
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    # refused by access rules before the recorder; the others name the alias and the model used
    written = sorted((r["alias"], r["model"]) for r in records(log, 2))
    assert written == [("chat-default", HAIKU), ("chat-default", LLAMA)]


def test_a_cached_answer_is_served_without_a_second_upstream_call(
        served: tuple[Any, Path], fake_bedrock: FakeBedrock) -> None:
    client, log = served
    first = client.converse(modelId="chat-default", messages=say("same question"))
    second = client.converse(modelId="chat-default", messages=say("same question"))
    assert len(fake_bedrock.requests) == 1
    assert second["ResponseMetadata"]["HTTPHeaders"]["x-bedrock-gateway-cache"] == "hit"
    assert second["output"] == first["output"]
    hit = [r for r in records(log, 2) if r["cached"]]
    assert len(hit) == 1 and hit[0]["cost_usd"] == "0"
