"""Every event type, every answer shape: events as AWS sends them go through LambdaHandler to
FakeBedrock, and botocore's own parser accepts what comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
from bedrock_gateway.testing import FakeBedrock

from .support import CONVERSE, HAIKU, KINDS, PROFILE_ARN, botocore_path, parse, present

CLAUDE_NATIVE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                 "messages": [{"role": "user", "content": "Hello there, gateway"}]}


def _call(handler: LambdaHandler, kind: str, model: str, operation: str, *,
          b64: bool = False) -> dict[str, Any]:
    native = operation.startswith("Invoke")
    body = json.dumps(CLAUDE_NATIVE if native else CONVERSE).encode()
    event = present(kind, botocore_path(model, operation), body=body, b64=b64)
    result = handler(event, None)
    assert result["isBase64Encoded"] is True
    if kind.startswith("alb"):
        assert result["statusDescription"] == f"{result['statusCode']} OK"
        assert ("multiValueHeaders" in result) == (kind == "alb_multivalue")
    return result


@pytest.mark.parametrize("model", [HAIKU, PROFILE_ARN], ids=["profile-id", "arn"])
@pytest.mark.parametrize("kind", KINDS)
def test_converse(handler: LambdaHandler, fake_bedrock: FakeBedrock, kind: str, model: str
                  ) -> None:
    result = _call(handler, kind, model, "Converse")
    parsed = parse(result, "Converse")
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert parsed["ResponseMetadata"]["RequestId"]
    assert parsed["output"]["message"]["role"] == "assistant"
    assert parsed["usage"]["inputTokens"] > 0
    # what reached Bedrock is byte for byte what boto3 would have sent it directly
    assert fake_bedrock.requests[-1].raw_path == botocore_path(model, "Converse")
    assert fake_bedrock.requests[-1].params["modelId"] == model


@pytest.mark.parametrize("model", [HAIKU, PROFILE_ARN], ids=["profile-id", "arn"])
@pytest.mark.parametrize("kind", KINDS)
def test_converse_stream(handler: LambdaHandler, fake_bedrock: FakeBedrock, kind: str,
                         model: str) -> None:
    result = _call(handler, kind, model, "ConverseStream")
    assert result["headers" if kind != "alb_multivalue" else "multiValueHeaders"][
        "content-type"] in ("application/vnd.amazon.eventstream",
                            ["application/vnd.amazon.eventstream"])
    parsed = parse(result, "ConverseStream")
    events = parsed["stream"]
    assert next(iter(events[0])) == "messageStart"
    assert "metadata" in events[-1]
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events
                   if "contentBlockDelta" in e)
    assert text
    assert fake_bedrock.requests[-1].raw_path == botocore_path(model, "ConverseStream")


@pytest.mark.parametrize("model", [HAIKU, PROFILE_ARN], ids=["profile-id", "arn"])
@pytest.mark.parametrize("kind", KINDS)
def test_invoke_model(handler: LambdaHandler, fake_bedrock: FakeBedrock, kind: str,
                      model: str) -> None:
    result = _call(handler, kind, model, "InvokeModel")
    parsed = parse(result, "InvokeModel")
    assert parsed["contentType"] == "application/json"
    native = json.loads(parsed["body"])
    assert native["content"][0]["type"] == "text"
    assert native["usage"]["input_tokens"] > 0
    headers = parsed["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) > 0  # Bedrock's headers kept
    assert fake_bedrock.requests[-1].raw_path == botocore_path(model, "InvokeModel")


@pytest.mark.parametrize("kind", KINDS)
def test_base64_request_bodies(handler: LambdaHandler, fake_bedrock: FakeBedrock, kind: str
                               ) -> None:
    result = _call(handler, kind, PROFILE_ARN, "Converse", b64=True)
    assert parse(result, "Converse")["usage"]["inputTokens"] > 0
    assert json.loads(fake_bedrock.requests[-1].body) == CONVERSE


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_base64_body_is_a_validation_exception(
        handler: LambdaHandler, fake_bedrock: FakeBedrock, kind: str) -> None:
    event = present(kind, botocore_path(HAIKU, "Converse"))
    event.update(body="not base64!!", isBase64Encoded=True)
    parsed = parse(handler(event, None), "Converse")
    assert parsed["Error"]["Code"] == "ValidationException"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fake_bedrock.requests == []


@pytest.mark.parametrize("kind", KINDS)
def test_list_async_invokes_query_string(handler: LambdaHandler, fake_bedrock: FakeBedrock,
                                         kind: str) -> None:
    query = {"maxResults": "5", "statusEquals": "Completed",
             "submitTimeAfter": "2024-06-11T09:30:00Z"}
    event = present(kind, "/async-invoke", method="GET", query=query, content_type=None)
    parsed = parse(handler(event, None), "ListAsyncInvokes")
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert parsed["asyncInvokeSummaries"] == []
    sent = fake_bedrock.requests[-1]
    assert sent.operation == "ListAsyncInvokes"
    assert dict(p.split("=", 1) for p in sent.query.split("&")) == {
        "maxResults": "5", "statusEquals": "Completed",
        "submitTimeAfter": "2024-06-11T09%3A30%3A00Z"}
