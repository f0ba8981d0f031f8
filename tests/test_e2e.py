"""boto3 -> gateway (uvicorn, real HTTP) -> FakeBedrock, for every operation.

The same call is made directly against FakeBedrock and through the gateway: results, errors
(code and status) and streamed bytes must match.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError, EventStreamError

from bedrock_gateway.eventstream import iter_frames
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FakeBedrock

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
ARN = ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
       "us.anthropic.claude-3-5-haiku-20241022-v1:0")
MESSAGES = [{"role": "user", "content": [{"text": "Hello there, gateway"}]}]
VOLATILE = {"ResponseMetadata", "metrics", "latencyMs", "invocationLatency", "firstByteLatency",
            "invocationArn", "submitTime", "lastModifiedTime", "endTime", "id"}


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def invoke_body(family: str) -> dict[str, Any]:
    return {
        "anthropic": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "Tell me a story"}]},
        "nova": {"messages": [{"role": "user", "content": [{"text": "Hi Nova"}]}],
                 "inferenceConfig": {"maxTokens": 40}},
        "titan": {"inputText": "Hi Titan", "textGenerationConfig": {"maxTokenCount": 40}},
        "titan-embed": {"inputText": "embed me"},
        "llama": {"prompt": "Hi Llama", "max_gen_len": 40},
        "mistral": {"prompt": "<s>[INST] Hi Mistral [/INST]", "max_tokens": 40},
        "cohere-embed": {"texts": ["embed", "these"], "input_type": "search_document"},
    }[family]


FAMILY_MODELS = {
    "anthropic": CLAUDE,
    "nova": "us.amazon.nova-lite-v1:0",
    "titan": "amazon.titan-text-express-v1",
    "titan-embed": "amazon.titan-embed-text-v2:0",
    "llama": "meta.llama3-1-8b-instruct-v1:0",
    "mistral": "mistral.mistral-7b-instruct-v0:2",
    "cohere-embed": "cohere.embed-english-v3",
}


def call_operation(client: Any, name: str, model: str) -> dict[str, Any]:
    if name == "Converse":
        return dict(client.converse(modelId=model, messages=MESSAGES))
    if name == "ConverseStream":
        out = client.converse_stream(modelId=model, messages=MESSAGES)
        return {"stream": list(out["stream"])}
    if name == "CountTokens":
        return dict(client.count_tokens(modelId=model, input={"converse": {"messages": MESSAGES}}))
    if name == "ApplyGuardrail":
        return dict(client.apply_guardrail(
            guardrailIdentifier="gr0abc", guardrailVersion="1", source="INPUT",
            content=[{"text": {"text": "please BLOCKME"}}]))
    if name == "InvokeModelWithResponseStream":
        out = client.invoke_model_with_response_stream(
            modelId=model, body=json.dumps(invoke_body("anthropic")),
            contentType="application/json", accept="application/json")
        return {"events": [json.loads(e["chunk"]["bytes"]) for e in out["body"]]}
    raise AssertionError(name)


@pytest.mark.parametrize("model", [CLAUDE, PROFILE, ARN], ids=["plain", "profile", "arn"])
@pytest.mark.parametrize("operation", ["Converse", "ConverseStream", "CountTokens",
                                       "InvokeModelWithResponseStream", "ApplyGuardrail"])
def test_operation_matches_direct_call(client: Any, direct: Any, fake_bedrock: FakeBedrock,
                                       operation: str, model: str) -> None:
    via_gateway = scrub(call_operation(client, operation, model))
    forwarded = fake_bedrock.requests[-1]
    direct_result = scrub(call_operation(direct, operation, model))
    assert via_gateway == direct_result
    assert forwarded.operation == operation
    assert forwarded.access_key == FAKE_ACCESS_KEY  # re-signed with the gateway's identity
    if operation != "ApplyGuardrail":
        assert forwarded.params["modelId"] == model
        assert forwarded.raw_path == fake_bedrock.requests[-1].raw_path


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_invoke_model_each_family(client: Any, direct: Any, fake_bedrock: FakeBedrock,
                                  family: str) -> None:
    model = FAMILY_MODELS[family]
    kwargs = {"modelId": model, "body": json.dumps(invoke_body(family)),
              "contentType": "application/json", "accept": "application/json"}
    via = client.invoke_model(**kwargs)
    headers = via["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) > 0  # usage headers pass through
    direct_result = direct.invoke_model(**kwargs)
    assert json.loads(via["body"].read()) == json.loads(direct_result["body"].read())
    assert via["contentType"] == direct_result["contentType"]


def test_async_invoke_round_trip(client: Any, fake_bedrock: FakeBedrock) -> None:
    started = client.start_async_invoke(
        modelId="amazon.nova-reel-v1:0",
        modelInput={"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "waves"},
                    "videoGenerationConfig": {"durationSeconds": 6, "fps": 24,
                                              "dimension": "1280x720"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket/out"}})
    arn = started["invocationArn"]
    got = client.get_async_invoke(invocationArn=arn)
    assert got["invocationArn"] == arn
    listed = client.list_async_invokes(maxResults=5)
    assert arn in [s["invocationArn"] for s in listed["asyncInvokeSummaries"]]
    assert fake_bedrock.requests[-1].query == "maxResults=5"


def test_invoke_guardrail_checks(client: Any, direct: Any, fake_bedrock: FakeBedrock) -> None:
    kwargs = {"messages": [{"role": "user", "content": [{"text": "please BLOCKME"}]}],
              "checks": {"promptAttack": {"categories": [{"category": "JAILBREAK"}]}}}
    via = scrub(client.invoke_guardrail_checks(**kwargs))
    assert fake_bedrock.requests[-1].operation == "InvokeGuardrailChecks"
    assert via == scrub(direct.invoke_guardrail_checks(**kwargs))
    assert via["results"]["promptAttack"]["results"][0]["severityScore"] > 0.5


def test_streamed_bytes_are_identical(gateway_server: Any, fake_bedrock: FakeBedrock) -> None:
    http = urllib3.PoolManager()
    try:
        resp = http.request(
            "POST", f"{gateway_server.url}/model/{PROFILE.replace(':', '%3A')}/converse-stream",
            body=json.dumps({"messages": MESSAGES}), headers={"Content-Type": "application/json"})
    finally:
        http.clear()
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert resp.data == fake_bedrock.last_stream_body
    assert [f.event_type for f in iter_frames([resp.data])][-1] == "metadata"


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "ValidationException"), (403, "AccessDeniedException"),
     (404, "ResourceNotFoundException"), (424, "ModelErrorException"),
     (429, "ThrottlingException"), (429, "ModelNotReadyException"),
     (500, "InternalServerException"), (503, "ServiceUnavailableException")],
)
def test_errors_raise_the_same_exception(client: Any, direct: Any, fake_bedrock: FakeBedrock,
                                         status: int, code: str) -> None:
    outcomes = []
    for c in (client, direct):
        fake_bedrock.fail_next(3, status=status, code=code, message=f"upstream says {code}")
        with pytest.raises(ClientError) as info:
            c.converse(modelId=CLAUDE, messages=MESSAGES)
        err = info.value.response
        outcomes.append((err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"],
                         err["Error"]["Message"]))
        fake_bedrock.reset()
    assert outcomes[0] == outcomes[1] == (code, status, f"upstream says {code}")


def test_retryable_errors_are_retried_before_the_first_byte(client: Any,
                                                            fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.fail_next(2, status=503, code="ServiceUnavailableException")
    out = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    assert list(out["stream"])[-1].keys() == {"metadata"}
    assert len(fake_bedrock.requests) == 3
    fake_bedrock.reset()
    fake_bedrock.fail_next(1, status=400, code="ValidationException")  # never retried
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert len(fake_bedrock.requests) == 1


def test_upstream_exception_frame_passes_through(client: Any, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.stream_exception_after(2, "throttlingException", "slow down")
    out = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    events = []
    with pytest.raises(EventStreamError) as info:
        events.extend(out["stream"])
    out["stream"].close()
    assert info.value.response["Error"]["Code"] == "throttlingException"
    assert len(events) == 2


def test_connection_cut_mid_frame_becomes_an_exception_frame(
        client: Any, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.cut_stream_after(3, partial_bytes=9)
    out = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    events = []
    with pytest.raises(EventStreamError) as info:
        events.extend(out["stream"])
    out["stream"].close()
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert len(events) == 3  # every whole frame arrived; the partial one was not forwarded


def test_inbound_credentials_and_foreign_headers_are_not_forwarded(
        gateway_server: Any, fake_bedrock: FakeBedrock) -> None:
    http = urllib3.PoolManager()
    try:
        resp = http.request(
            "POST", f"{gateway_server.url}/model/{CLAUDE.replace(':', '%3A')}/converse",
            body=json.dumps({"messages": MESSAGES}),
            headers={"Content-Type": "application/json",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20261126/"
                                      "us-east-1/bedrock/aws4_request, SignedHeaders=host,"
                                      " Signature=client-secret-token",
                     "X-Amz-Security-Token": "client-session-token",
                     "Cookie": "session=abc", "Host": "evil.example.com",
                     "aws-endpoint-prefix": "bedrock-runtime", "X-Forwarded-Host": "evil.example.com",
                     "X-Amzn-Bedrock-Trace": "ENABLED"})
    finally:
        http.clear()
    assert resp.status == 200
    seen = fake_bedrock.requests[-1]
    assert seen.access_key == FAKE_ACCESS_KEY
    assert seen.host == fake_bedrock.endpoint_url.removeprefix("http://")
    assert seen.headers["x-amzn-bedrock-trace"] == "ENABLED"
    for leaked in ("cookie", "x-amz-security-token", "aws-endpoint-prefix", "x-forwarded-host"):
        assert leaked not in seen.headers
    assert "client-secret-token" not in json.dumps(seen.headers)


@pytest.mark.parametrize("prefix", ["evil", "bedrock-agent-runtime", "bedrock", ""])
def test_an_endpoint_prefix_the_gateway_does_not_serve_is_refused(
        gateway_server: Any, fake_bedrock: FakeBedrock, prefix: str) -> None:
    http = urllib3.PoolManager()
    try:
        resp = http.request(
            "POST", f"{gateway_server.url}/model/{CLAUDE.replace(':', '%3A')}/converse",
            body=json.dumps({"messages": MESSAGES}),
            headers={"Content-Type": "application/json", "aws-endpoint-prefix": prefix})
    finally:
        http.clear()
    assert resp.status == 400
    assert resp.headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert b"aws-endpoint-prefix" in resp.data and b"evil" not in resp.data  # never echoed
    assert fake_bedrock.requests == []
