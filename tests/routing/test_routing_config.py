"""[[routes]] and [cache] from TOML, end to end: boto3 -> gateway over HTTP -> FakeBedrock.
Aliases resolve before access rules, so a rule on the concrete model governs the alias."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway.testing import FakeBedrock

from ..conftest import ServeConfig, gateway_client, records

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"


@pytest.fixture
def served(configured: ServeConfig) -> Iterator[tuple[Any, Path]]:
    server, log = configured(f"""
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
""", upstream="max_attempts = 1")
    client = gateway_client(server.url)
    yield client, log
    client.close()


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


@pytest.fixture
def west() -> Iterator[FakeBedrock]:
    with FakeBedrock(region="us-west-2") as fake:  # checks the signature is for us-west-2
        yield fake


def test_a_target_region_and_a_regional_failover_reach_that_region_signed_for_it(
        configured: ServeConfig, fake_bedrock: FakeBedrock, west: FakeBedrock) -> None:
    server, log = configured(f"""
[[routes]]
alias = "chat-west"
targets = [{{ model = "{HAIKU}", region = "us-west-2" }}]
[[routes]]
alias = "chat-failover"
targets = [{{ model = "{HAIKU}" }}]
fallback = [{{ model = "{HAIKU}", region = "us-west-2" }}]
""", upstream=f'max_attempts = 1\nendpoints = {{ "bedrock-runtime/us-west-2" = "{west.endpoint_url}" }}')
    client = gateway_client(server.url)
    client.converse(modelId="chat-west", messages=say("one"))
    assert len(west.requests) == 1 and fake_bedrock.requests == []
    fake_bedrock.fail_next(1, status=503, code="ServiceUnavailableException")
    answer = client.converse(modelId="chat-failover", messages=say("two"))  # no client retries
    assert answer["output"]["message"]["content"][0]["text"] == "Echo: two"
    assert len(fake_bedrock.requests) == 1 and len(west.requests) == 2  # same model, other region
    assert all(r.headers["authorization"].split("/")[2] == "us-west-2" for r in west.requests)
    assert sorted(r["model"] for r in records(log, 2)) == [HAIKU, HAIKU]
    client.close()


def test_a_bad_target_region_is_a_config_error(tmp_path: Path) -> None:
    from bedrock_gateway.config import ConfigError, load_config

    config = tmp_path / "g.toml"
    config.write_text(f'[auth]\nanonymous = true\n[[routes]]\nalias = "a"\n'
                      f'targets = [{{ model = "{HAIKU}", region = "mars" }}]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "routes.0.targets.0.region" in str(caught.value)
