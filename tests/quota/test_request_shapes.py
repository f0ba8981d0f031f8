"""Spend beyond the budget through request shapes (issue 13 §3): the bounds read what the model
will read — every spelling of max tokens, media keys however they are escaped — and request JSON
is parsed strictly (duplicate keys and absurd nesting are refused), through boto3 or a raw HTTP
client -> gateway over HTTP (configured from TOML) -> FakeBedrock."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError

from bedrock_gateway.call import Call, parse_request_json
from bedrock_gateway.errors import ValidationError
from bedrock_gateway.operations import route
from bedrock_gateway.quota.bounds import InputBound, media_blocks, output_bound
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock

from ..conftest import ServeConfig, gateway_client, records

NOVA = "us.amazon.nova-pro-v1:0"
Start = Callable[..., tuple[BackgroundServer, Path]]


@pytest.fixture
def start(configured: ServeConfig) -> Start:
    return configured


def post(server: BackgroundServer, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    http = urllib3.PoolManager()
    try:
        answer = http.request("POST", server.url + path, body=body,
                              headers={"Content-Type": "application/json"})
        return answer.status, json.loads(answer.data or b"{}")
    finally:
        http.clear()


def call_of(operation: str, model: str, body: bytes) -> Call:
    r = route("POST", f"/model/{model}/{operation}")
    return Call("POST", r.operation.path(r.params), "", {"content-type": "application/json"},
                body, r.operation, dict(r.params))


def test_the_output_bound_is_the_largest_spelling_the_model_accepts(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    """Nova reads ``inferenceConfig.maxTokens`` before ``max_new_tokens``: a bound read from
    the first spelling reserved for 1 token and Bedrock generated up to 100,000."""
    body = {"messages": [{"role": "user", "content": [{"text": "count " * 400}]}],
            "inferenceConfig": {"max_new_tokens": 1, "maxTokens": 100_000}}
    call = call_of("invoke", NOVA, json.dumps(body).encode())
    assert output_bound(call, 4096) == 100_000
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 0.002\n')
    client = gateway_client(server.url)
    with pytest.raises(ClientError) as refused:
        client.invoke_model(modelId=NOVA, body=json.dumps(body))
    assert refused.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert fake_bedrock.requests == []  # nothing was generated, nothing billed
    (record,) = records(log, 1)
    assert record["status"] == 400


def test_converse_additional_fields_count_too() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": 10},
            "additionalModelRequestFields": {"max_tokens": 50_000}}
    assert output_bound(call_of("converse", NOVA, json.dumps(body).encode()), 4096) == 50_000
    del body["inferenceConfig"]
    call = call_of("converse", NOVA, json.dumps(body).encode())
    assert output_bound(call, 4096) == 50_000
    assert call.json()["inferenceConfig"]["maxTokens"] == 4096  # still injected


def test_media_keys_are_counted_on_the_parsed_body_however_escaped(start: Start) -> None:
    image = {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
    body = {"messages": [{"role": "user", "content": [{"text": "what is this?"}, image]}],
            "inferenceConfig": {"maxTokens": 10}}
    plain = json.dumps(body).encode()
    escaped = plain.replace(b'"image"', b'"\\u0069mage"')
    assert escaped != plain and json.loads(escaped) == json.loads(plain)
    bound = InputBound()
    for raw in (plain, escaped):
        call = call_of("converse", NOVA, raw)
        assert media_blocks(call) == 1
        assert bound(call) == len(raw) + 1_000 + 5_000
    anthropic = {"messages": [{"role": "user", "content": [
        {"type": "\\u0069mage", "source": {"type": "base64", "data": "x"}}]}]}
    raw = json.dumps(anthropic).encode().replace(b"\\\\u0069", b"\\u0069")
    assert media_blocks(call_of("invoke", "anthropic.claude-3-haiku-20240307-v1:0", raw)) == 1
    # End to end: a token rate below one media block's allowance refuses the escaped call.
    server, _ = start('[[quota.limits]]\nscope = "global"\ntokens_per_minute = 4000\n')
    status, answer = post(server, f"/model/{NOVA}/converse", escaped)
    assert status == 400 and "exceeds" in answer["message"]


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}],'
    b' "inferenceConfig": {"maxTokens": 200000, "maxTokens": 1}}',
    b'{"messages": [], "messages": [{"role": "user", "content": [{"text": "hi"}]}]}',
])
def test_duplicate_keys_are_refused(start: Start, fake_bedrock: FakeBedrock,
                                    body: bytes) -> None:
    server, _ = start()
    status, answer = post(server, f"/model/{NOVA}/converse", body)
    assert status == 400 and "repeats the key" in answer["message"]
    assert fake_bedrock.requests == []


def test_absurd_nesting_is_a_400_not_a_500(start: Start, caplog: pytest.LogCaptureFixture,
                                           fake_bedrock: FakeBedrock) -> None:
    server, _ = start()
    for depth in (200, 5_000):
        deep = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"
        status, answer = post(server, f"/model/{NOVA}/converse", deep)
        assert status == 400 and "nested" in answer["message"]
    assert "Traceback" not in caplog.text
    assert fake_bedrock.requests == []


def test_strict_parse_keeps_ordinary_bodies() -> None:
    body = {"a": [{"b": {"c": [1, 2, {"d": "x"}]}}], "e": "\\u00e9"}
    assert parse_request_json(json.dumps(body).encode()) == body
    nested: Any = "leaf"
    for _ in range(100):
        nested = {"k": nested}
    assert parse_request_json(json.dumps(nested).encode()) == nested
    with pytest.raises(ValidationError):
        parse_request_json(b"[1, 2]")


def test_budget_holds_with_two_spellings_under_load(start: Start) -> None:
    """Settled spend stays within the budget when every call spells max tokens twice."""
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 0.05\n')
    client = gateway_client(server.url)
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "one two " * 50}]}],
                       "inferenceConfig": {"max_new_tokens": 1, "maxTokens": 2_000}})
    admitted = 0
    for _ in range(30):
        try:
            client.invoke_model(modelId=NOVA, body=body)
            admitted += 1
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ServiceQuotaExceededException"
    spent = sum(Decimal(r["cost_usd"]) for r in records(log, 30) if r["cost_usd"])
    assert admitted >= 1 and spent <= Decimal("0.05")
