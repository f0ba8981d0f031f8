"""FakeBedrock against a real boto3 bedrock-runtime client (no gateway in between)."""

from __future__ import annotations

import base64
import http.client as httplib
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError

from bedrock_gateway.eventstream import iter_frames
from bedrock_gateway.testing import (
    FAKE_ACCESS_KEY,
    FAKE_SECRET_KEY,
    FakeBedrock,
    RecordedRequest,
    bedrock_client,
)
from bedrock_gateway.testing.fake_converse import converse
from bedrock_gateway.testing.fake_models import invoke_model
from bedrock_gateway.testing.fake_text import model_family

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE_ARN = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{PROFILE}"
MESSAGES = [{"role": "user", "content": [{"text": "tell me a short story"}]}]
STREAM_CT = "application/vnd.amazon.eventstream"


@pytest.fixture
def client(fake_bedrock: FakeBedrock, bedrock_client_factory: Callable[..., Any]) -> Any:
    return bedrock_client_factory(fake_bedrock.endpoint_url)


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager()
    yield pool
    pool.clear()


def signed(fake: FakeBedrock, method: str, path: str, body: bytes = b"", **headers: str
           ) -> dict[str, str]:
    """Headers of a request to ``path`` signed the way boto3 signs (for raw HTTP tests)."""
    request = AWSRequest(method=method, url=fake.endpoint_url + path, data=body, headers=headers)
    SigV4Auth(Credentials(FAKE_ACCESS_KEY, FAKE_SECRET_KEY), "bedrock", "us-east-1").add_auth(
        request)
    return dict(request.headers.items())


def anthropic_body(text: str = "tell me a short story", max_tokens: int = 100) -> str:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": text}]})


def error_of(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


# -- Converse ---------------------------------------------------------------------------------
def test_converse_answers_deterministically_and_records(client: Any, fake_bedrock: FakeBedrock
                                                        ) -> None:
    reply = client.converse(modelId=CLAUDE, messages=MESSAGES,
                            system=[{"text": "be brief"}])
    assert reply["output"]["message"] == {
        "role": "assistant", "content": [{"text": "Echo: tell me a short story"}]}
    assert reply["stopReason"] == "end_turn"
    chars = len("be brief") + len("tell me a short story")
    assert reply["usage"] == {"inputTokens": math.ceil(chars / 4), "outputTokens": 6,
                              "totalTokens": math.ceil(chars / 4) + 6}
    assert reply["metrics"]["latencyMs"] > 0
    assert len(reply["ResponseMetadata"]["RequestId"]) == 36
    [record] = fake_bedrock.requests
    assert isinstance(record, RecordedRequest)
    assert record.operation == "Converse"
    assert record.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert record.params == {"modelId": CLAUDE}
    assert record.access_key == FAKE_ACCESS_KEY
    assert record.host == fake_bedrock.endpoint_url.removeprefix("http://")
    assert json.loads(record.body)["messages"] == MESSAGES


@pytest.mark.parametrize("model_id", [CLAUDE, PROFILE, PROFILE_ARN, "amazon.nova-lite-v1:0",
                                      "meta.llama3-1-8b-instruct-v1:0"])
def test_converse_accepts_ids_profiles_and_arns(client: Any, fake_bedrock: FakeBedrock,
                                                model_id: str) -> None:
    reply = client.converse(modelId=model_id, messages=MESSAGES,
                            inferenceConfig={"maxTokens": 3})
    assert reply["output"]["message"]["content"][0]["text"] == "Echo: tell me"
    assert reply["stopReason"] == "max_tokens"
    assert fake_bedrock.requests[-1].params["modelId"] == model_id


def test_converse_invalid_model_and_conversation(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.converse(modelId="anthropic.nonexistent-v1:0", messages=MESSAGES)
    assert error_of(info.value) == ("ValidationException", 400)
    assert "model identifier is invalid" in str(info.value)
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId=CLAUDE,
                        messages=[{"role": "assistant", "content": [{"text": "x"}]}])


def test_converse_cache_points_write_then_read(client: Any) -> None:
    system = [{"text": "x" * 400}, {"cachePoint": {"type": "default"}}]
    first = client.converse(modelId=CLAUDE, messages=MESSAGES, system=system)["usage"]
    second = client.converse(modelId=CLAUDE, messages=MESSAGES, system=system)["usage"]
    assert first["cacheWriteInputTokens"] == 100
    assert first["cacheReadInputTokens"] == 0
    assert second["cacheReadInputTokens"] == 100
    assert second["cacheWriteInputTokens"] == 0
    assert first["inputTokens"] == second["inputTokens"] == math.ceil(421 / 4) - 100
    assert first["totalTokens"] == first["inputTokens"] + first["outputTokens"] + 100


def test_converse_guardrail_config_intervenes_on_blockme(client: Any) -> None:
    reply = client.converse(
        modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": "please BLOCKME"}]}],
        guardrailConfig={"guardrailIdentifier": "abc123", "guardrailVersion": "1"})
    assert reply["stopReason"] == "guardrail_intervened"
    assert reply["output"]["message"]["content"][0]["text"] == "Blocked by guardrail."


def test_converse_stream_matches_converse(client: Any, fake_bedrock: FakeBedrock) -> None:
    whole = client.converse(modelId=PROFILE_ARN, messages=MESSAGES)
    response = client.converse_stream(modelId=PROFILE_ARN, messages=MESSAGES)
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == STREAM_CT
    assert response["ResponseMetadata"]["HTTPHeaders"]["transfer-encoding"] == "chunked"
    events = list(response["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds == ["messageStart"] + ["contentBlockDelta"] * 6 + [
        "contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:7])
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    assert events[-2]["messageStop"] == {"stopReason": "end_turn"}
    frames = list(iter_frames([fake_bedrock.last_stream_body or b""]))
    assert [f.event_type for f in frames] == kinds
    for frame in frames:
        assert frame.headers[":content-type"] == "application/json"
        assert frame.message_type == "event"
        payload = frame.json()
        assert isinstance(payload, dict)
        assert payload["p"]


# -- InvokeModel ------------------------------------------------------------------------------
FAMILY_CASES: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], str | None]]] = [
    (CLAUDE, json.loads(anthropic_body()), lambda r: r["content"][0]["text"]),
    ("amazon.nova-pro-v1:0",
     {"messages": [{"role": "user", "content": [{"text": "tell me a short story"}]}],
      "inferenceConfig": {"maxTokens": 50}},
     lambda r: r["output"]["message"]["content"][0]["text"]),
    ("amazon.titan-text-express-v1",
     {"inputText": "tell me a short story", "textGenerationConfig": {"maxTokenCount": 50}},
     lambda r: r["results"][0]["outputText"]),
    ("meta.llama3-70b-instruct-v1:0",
     {"prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ntell me a short"
                " story<|eot_id|><|start_header_id|>assistant<|end_header_id|>",
      "max_gen_len": 50},
     lambda r: r["generation"]),
    ("mistral.mistral-7b-instruct-v0:2",
     {"prompt": "<s>[INST] tell me a short story [/INST]", "max_tokens": 50},
     lambda r: r["outputs"][0]["text"]),
    ("amazon.titan-embed-text-v2:0", {"inputText": "tell me a short story"}, lambda r: None),
    ("cohere.embed-english-v3", {"texts": ["tell me", "a short story"],
                                 "input_type": "search_document"}, lambda r: None),
]


@pytest.mark.parametrize(("model_id", "request_body", "text_of"), FAMILY_CASES,
                         ids=[case[0].split(".")[1][:12] for case in FAMILY_CASES])
def test_invoke_model_each_family(client: Any, model_id: str, request_body: dict[str, Any],
                                  text_of: Callable[[dict[str, Any]], str | None]) -> None:
    response = client.invoke_model(modelId=model_id, body=json.dumps(request_body))
    assert response["contentType"] == "application/json"
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    body = json.loads(response["body"].read())
    inputs = int(headers["x-amzn-bedrock-input-token-count"])
    outputs = int(headers["x-amzn-bedrock-output-token-count"])
    assert int(headers["x-amzn-bedrock-invocation-latency"]) > 0
    assert inputs > 0
    text = text_of(body)
    family = model_family(model_id)
    if text is not None:
        assert text == "Echo: tell me a short story"
        assert outputs == 6
    else:
        assert outputs == 0
    if family == "anthropic":
        assert body["usage"] == {"input_tokens": inputs, "output_tokens": 6}
        assert body["type"] == "message" and body["role"] == "assistant"
        assert body["stop_reason"] == "end_turn" and body["id"].startswith("msg_bdrk_")
        assert body["model"] == "claude-3-5-sonnet-20240620"
    elif family == "nova":
        assert body["usage"]["inputTokens"] == inputs and body["stopReason"] == "end_turn"
    elif family == "titan-text":
        assert body["inputTextTokenCount"] == inputs
        assert body["results"][0]["tokenCount"] == 6
        assert body["results"][0]["completionReason"] == "FINISH"
    elif family == "llama":
        assert body["prompt_token_count"] == inputs and body["generation_token_count"] == 6
        assert body["stop_reason"] == "stop"
    elif family == "mistral":
        assert set(body) == {"outputs"} and body["outputs"][0]["stop_reason"] == "stop"
    elif family == "titan-embed":
        assert len(body["embedding"]) == 1024 and body["inputTextTokenCount"] == inputs
        assert abs(sum(x * x for x in body["embedding"]) - 1) < 1e-3
    else:
        assert len(body["embeddings"]) == 2 and len(body["embeddings"][0]) == 1024
        assert body["response_type"] == "embeddings_floats" and "usage" not in body


@pytest.mark.parametrize("model_id", [
    PROFILE, PROFILE_ARN, "eu.anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
])
def test_invoke_model_profiles_and_arns_are_anthropic(client: Any, model_id: str) -> None:
    response = client.invoke_model(modelId=model_id, body=anthropic_body(max_tokens=2))
    body = json.loads(response["body"].read())
    assert body["content"] == [{"type": "text", "text": "Echo: tell"}]
    assert body["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(("model_id", "body"), [
    (CLAUDE, json.dumps({"anthropic_version": "bedrock-2023-05-31", "messages": MESSAGES})),
    (CLAUDE, "{not json"),
    ("acme.unknown-model-v1", anthropic_body()),
    ("anthropic.nonexistent-v1:0", anthropic_body()),
    ("meta.llama3-8b-instruct-v1:0", json.dumps({"max_gen_len": 5})),
])
def test_invoke_model_validation_errors(client: Any, model_id: str, body: str) -> None:
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.invoke_model(modelId=model_id, body=body)
    assert error_of(info.value) == ("ValidationException", 400)


def test_invoke_missing_max_tokens_message(client: Any) -> None:
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "messages": MESSAGES})
    with pytest.raises(client.exceptions.ValidationException, match=r"\[max_tokens\]"):
        client.invoke_model(modelId=CLAUDE, body=body)


def _chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(event["chunk"]["bytes"]) for event in response["body"]]


def test_invoke_stream_anthropic(client: Any, fake_bedrock: FakeBedrock) -> None:
    response = client.invoke_model_with_response_stream(modelId=PROFILE, body=anthropic_body())
    assert response["contentType"] == "application/json"
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == STREAM_CT
    inner = _chunks(response)
    assert [c["type"] for c in inner] == (
        ["message_start", "content_block_start"] + ["content_block_delta"] * 6
        + ["content_block_stop", "message_delta", "message_stop"])
    text = "".join(c["delta"]["text"] for c in inner if c["type"] == "content_block_delta")
    assert text == "Echo: tell me a short story"
    assert inner[-2]["usage"] == {"output_tokens": 6}
    assert inner[-2]["delta"]["stop_reason"] == "end_turn"
    metrics = inner[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["inputTokenCount"] == inner[0]["message"]["usage"]["input_tokens"]
    assert metrics["outputTokenCount"] == 6
    assert {"invocationLatency", "firstByteLatency"} <= set(metrics)
    assert all("amazon-bedrock-invocationMetrics" not in c for c in inner[:-1])
    for frame in iter_frames([fake_bedrock.last_stream_body or b""]):
        payload = frame.json()
        assert isinstance(payload, dict)
        assert frame.event_type == "chunk" and set(payload) == {"bytes", "p"}


@pytest.mark.parametrize(("model_id", "request_body", "text_key"), [
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "[INST] tell me a short story [/INST]"},
     "generation"),
    ("amazon.titan-text-lite-v1", {"inputText": "tell me a short story"}, "outputText"),
])
def test_invoke_stream_other_families(client: Any, model_id: str, request_body: dict[str, Any],
                                      text_key: str) -> None:
    inner = _chunks(client.invoke_model_with_response_stream(
        modelId=model_id, body=json.dumps(request_body)))
    assert "".join(c[text_key] for c in inner) == "Echo: tell me a short story"
    assert inner[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 6


def test_invoke_stream_nova(client: Any) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi there"}]}]}
    inner = _chunks(client.invoke_model_with_response_stream(
        modelId="us.amazon.nova-micro-v1:0", body=json.dumps(body)))
    assert next(iter(inner[0])) == "messageStart"
    deltas = [c["contentBlockDelta"]["delta"]["text"] for c in inner if "contentBlockDelta" in c]
    assert "".join(deltas) == "Echo: hi there"
    assert inner[-1]["metadata"]["usage"] == {"inputTokens": 2, "outputTokens": 3}


def test_invoke_stream_rejects_embedding_models(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model_with_response_stream(
            modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "x"}))


# -- CountTokens, ApplyGuardrail, async invocations --------------------------------------------
def test_count_tokens_agrees_with_converse_and_invoke(client: Any) -> None:
    system = [{"text": "be brief"}]
    counted = client.count_tokens(modelId=CLAUDE,
                                  input={"converse": {"messages": MESSAGES, "system": system}})
    usage = client.converse(modelId=CLAUDE, messages=MESSAGES, system=system)["usage"]
    assert counted["inputTokens"] == usage["inputTokens"]
    body = anthropic_body()
    counted = client.count_tokens(modelId=PROFILE, input={"invokeModel": {"body": body}})
    headers = client.invoke_model(modelId=PROFILE, body=body)["ResponseMetadata"]["HTTPHeaders"]
    assert counted["inputTokens"] == int(headers["x-amzn-bedrock-input-token-count"])


def test_apply_guardrail_none_and_intervened(client: Any) -> None:
    calm = client.apply_guardrail(guardrailIdentifier="abc123", guardrailVersion="1",
                                  source="INPUT", content=[{"text": {"text": "hello"}}])
    assert calm["action"] == "NONE" and calm["outputs"] == [] and calm["assessments"] == [{}]
    assert calm["usage"]["topicPolicyUnits"] == 1
    blocked = client.apply_guardrail(
        guardrailIdentifier="arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123",
        guardrailVersion="DRAFT", source="OUTPUT",
        content=[{"text": {"text": "fine"}}, {"text": {"text": "now BLOCKME please"}}])
    assert blocked["action"] == "GUARDRAIL_INTERVENED"
    assert blocked["outputs"] == [{"text": "Blocked by guardrail."}]


def reel_input(text: str = "a lighthouse at dusk", seconds: int = 6,
               task: str = "TEXT_VIDEO") -> dict[str, Any]:
    """A Nova Reel ``modelInput`` as Bedrock documents it."""
    params = ({"textToVideoParams": {"text": text}} if task == "TEXT_VIDEO"
              else {"multiShotAutomatedParams": {"text": text}})
    return {"taskType": task, **params, "videoGenerationConfig": {
        "durationSeconds": seconds, "fps": 24, "dimension": "1280x720", "seed": 0}}


def test_async_invoke_start_get_list(client: Any) -> None:
    output = {"s3OutputDataConfig": {"s3Uri": "s3://bucket/out/"}}
    arns = [client.start_async_invoke(modelId="amazon.nova-reel-v1:0",
                                      modelInput=reel_input(f"shot {i}"),
                                      outputDataConfig=output)["invocationArn"]
            for i in range(3)]
    for arn in arns:
        assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:async-invoke/")
        suffix = arn.rsplit("/", 1)[1]
        assert len(suffix) == 12 and suffix.isalnum() and suffix.lower() == suffix
    got = client.get_async_invoke(invocationArn=arns[0])
    assert got["invocationArn"] == arns[0] and got["status"] == "Completed"
    assert got["modelArn"].endswith("foundation-model/amazon.nova-reel-v1:0")
    assert got["outputDataConfig"] == output
    assert got["submitTime"].year >= 2024
    page = client.list_async_invokes(maxResults=2)
    assert [s["invocationArn"] for s in page["asyncInvokeSummaries"]] == arns[:0:-1]
    rest = client.list_async_invokes(maxResults=2, nextToken=page["nextToken"])
    assert [s["invocationArn"] for s in rest["asyncInvokeSummaries"]] == arns[:1]
    assert "nextToken" not in rest
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.get_async_invoke(
            invocationArn="arn:aws:bedrock:us-east-1:123456789012:async-invoke/zzzzzzzzzzzz")
    assert error_of(info.value) == ("ResourceNotFoundException", 404)


def test_async_invoke_is_idempotent_per_client_token(client: Any) -> None:
    kwargs: dict[str, Any] = {
        "modelId": "amazon.nova-reel-v1:0", "modelInput": reel_input(),
        "clientRequestToken": "token-1",
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bucket/out/"}}}
    assert (client.start_async_invoke(**kwargs)["invocationArn"]
            == client.start_async_invoke(**kwargs)["invocationArn"])


# -- authentication ---------------------------------------------------------------------------
def test_wrong_secret_is_invalid_signature(fake_bedrock: FakeBedrock,
                                           bedrock_client_factory: Callable[..., Any]) -> None:
    client = bedrock_client_factory(fake_bedrock.endpoint_url, secret_key="not-the-secret")
    with pytest.raises(ClientError) as info:
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert error_of(info.value) == ("InvalidSignatureException", 403)
    assert "signature we calculated does not match" in str(info.value)
    assert fake_bedrock.requests[-1].operation == "Converse"


def test_unknown_key_and_wrong_region(fake_bedrock: FakeBedrock,
                                      bedrock_client_factory: Callable[..., Any]) -> None:
    stranger = bedrock_client_factory(fake_bedrock.endpoint_url, access_key="AKIASTRANGER")
    with pytest.raises(ClientError) as info:
        stranger.converse(modelId=CLAUDE, messages=MESSAGES)
    assert error_of(info.value) == ("UnrecognizedClientException", 403)
    elsewhere = bedrock_client_factory(fake_bedrock.endpoint_url, region="eu-west-1")
    with pytest.raises(ClientError) as info:
        elsewhere.converse(modelId=CLAUDE, messages=MESSAGES)
    assert error_of(info.value) == ("InvalidSignatureException", 403)


def test_unsigned_and_unrouted_raw_requests(fake_bedrock: FakeBedrock,
                                            http: urllib3.PoolManager) -> None:
    bare = http.request("POST", f"{fake_bedrock.endpoint_url}/model/x/converse", body=b"{}")
    assert bare.status == 403
    assert bare.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")
    headers = signed(fake_bedrock, "GET", "/nowhere")
    lost = http.request("GET", f"{fake_bedrock.endpoint_url}/nowhere", headers=headers)
    assert lost.status == 404
    assert lost.headers["x-amzn-ErrorType"].startswith("UnknownOperationException")
    assert json.loads(lost.data)["message"]
    assert lost.headers["x-amzn-RequestId"]
    assert [r.operation for r in fake_bedrock.requests] == ["Converse", None]


def test_chunked_request_body(fake_bedrock: FakeBedrock) -> None:
    body = json.dumps({"messages": MESSAGES}).encode()
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    headers = signed(fake_bedrock, "POST", path, body, **{"Content-Type": "application/json"})
    headers.pop("Content-Length", None)
    host, port = fake_bedrock.endpoint_url.removeprefix("http://").split(":")
    conn = httplib.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=iter([body[:10], body[10:]]), headers=headers,
                     encode_chunked=True)
        response = conn.getresponse()
        data = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, data
    assert data["output"]["message"]["content"][0]["text"] == "Echo: tell me a short story"
    assert fake_bedrock.requests[-1].headers["transfer-encoding"] == "chunked"


# -- faults -----------------------------------------------------------------------------------
def test_fail_next_then_recover(client: Any, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.fail_next(2)
    for _ in range(2):
        with pytest.raises(client.exceptions.ThrottlingException) as info:
            client.converse(modelId=CLAUDE, messages=MESSAGES)
        assert error_of(info.value) == ("ThrottlingException", 429)
        assert info.value.response["Error"]["Message"] == "Too many requests"
    fake_bedrock.fail_next(1, status=503, code="ServiceUnavailableException", message="down")
    with pytest.raises(client.exceptions.ServiceUnavailableException):
        client.invoke_model(modelId=CLAUDE, body=anthropic_body())
    assert client.converse(modelId=CLAUDE, messages=MESSAGES)["stopReason"] == "end_turn"
    assert len(fake_bedrock.requests) == 4


def test_fail_next_still_checks_signatures(fake_bedrock: FakeBedrock,
                                           bedrock_client_factory: Callable[..., Any]) -> None:
    fake_bedrock.fail_next(1)
    bad = bedrock_client_factory(fake_bedrock.endpoint_url, secret_key="wrong")
    with pytest.raises(ClientError, match="InvalidSignatureException"):
        bad.converse(modelId=CLAUDE, messages=MESSAGES)
    good = bedrock_client_factory(fake_bedrock.endpoint_url)
    with pytest.raises(good.exceptions.ThrottlingException):
        good.converse(modelId=CLAUDE, messages=MESSAGES)


def test_set_delay_trips_the_client_read_timeout(
        fake_bedrock: FakeBedrock, bedrock_client_factory: Callable[..., Any]) -> None:
    client = bedrock_client_factory(fake_bedrock.endpoint_url, read_timeout=0.2)
    fake_bedrock.set_delay(5)
    with pytest.raises(ReadTimeoutError):
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    fake_bedrock.set_delay(0)
    assert client.converse(modelId=CLAUDE, messages=MESSAGES)["stopReason"] == "end_turn"


def test_stream_exception_after(client: Any, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.stream_exception_after(3, "throttlingException", "slow down")
    events: list[Any] = []
    stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
    with pytest.raises(EventStreamError) as info:
        events.extend(stream)
    # botocore stops reading at the exception frame and leaves the connection open: close it,
    # or the socket is garbage-collected unclosed (a ResourceWarning).
    stream.close()
    assert info.value.response["Error"] == {"Code": "throttlingException", "Message": "slow down"}
    assert len(events) == 3
    frames = list(iter_frames([fake_bedrock.last_stream_body or b""]))
    assert frames[-1].message_type == "exception"
    fake_bedrock.stream_exception_after(1)
    response = client.invoke_model_with_response_stream(modelId=CLAUDE, body=anthropic_body())
    with pytest.raises(EventStreamError) as info:
        list(response["body"])
    response["body"].close()
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert len(list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])) == 10


def test_cut_stream_raises_urllib3_protocol_error(client: Any, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.cut_stream_after(3, partial_bytes=7)
    events: list[Any] = []
    # botocore does not wrap this: iterating the EventStream raises urllib3's own error.
    with pytest.raises(urllib3.exceptions.ProtocolError, match="ended prematurely"):
        events.extend(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    assert len(events) == 3
    body = fake_bedrock.last_stream_body or b""
    whole = list(iter_frames([body[:-7]]))
    assert len(whole) == 3
    assert len(list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])) == 10


def test_hold_stream_release(client: Any, fake_bedrock: FakeBedrock) -> None:
    release = fake_bedrock.hold_stream_after(2)
    stream = iter(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    assert next(iter(next(stream))) == "messageStart"
    assert next(iter(next(stream))) == "contentBlockDelta"
    release.set()
    assert len(list(stream)) == 8
    assert fake_bedrock.stream_disconnects == 0


def test_hold_stream_notices_client_disconnect(client: Any, fake_bedrock: FakeBedrock) -> None:
    release = fake_bedrock.hold_stream_after(2)
    try:
        response = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
        stream = iter(response["stream"])
        next(stream)
        next(stream)
        response["stream"].close()
        assert fake_bedrock.wait_for_stream_disconnects(1, timeout=5)
        assert fake_bedrock.stream_disconnects == 1
        assert len(list(iter_frames([fake_bedrock.last_stream_body or b""]))) == 2
    finally:
        release.set()


def test_stream_frames_synthetic(client: Any, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.stream_frames(500, 300)
    events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert len(deltas) == 500 and all(len(d) == 300 for d in deltas)
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 500
    assert fake_bedrock.last_stream_size == len(fake_bedrock.last_stream_body or b"")
    fake_bedrock.stream_frames(40, 100)
    inner = _chunks(client.invoke_model_with_response_stream(modelId=CLAUDE,
                                                             body=anthropic_body()))
    assert sum(c["type"] == "content_block_delta" for c in inner) == 40
    assert inner[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 40


def test_stream_frames_large_raw(fake_bedrock: FakeBedrock, http: urllib3.PoolManager) -> None:
    count, size = 12_000, 1000  # ~12.5 MB: over the 10 MB last_stream_body limit
    fake_bedrock.stream_frames(count, size)
    body = json.dumps({"messages": MESSAGES}).encode()
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    response = http.request("POST", fake_bedrock.endpoint_url + path, body=body,
                            headers=signed(fake_bedrock, "POST", path, body),
                            preload_content=False)
    received = 0
    for piece in response.stream(1 << 20):
        received += len(piece)
    response.release_conn()
    assert received == fake_bedrock.last_stream_size > count * size
    assert fake_bedrock.last_stream_body is None


def test_last_stream_body_is_what_a_raw_client_receives(fake_bedrock: FakeBedrock,
                                                        http: urllib3.PoolManager) -> None:
    body = anthropic_body().encode()
    path = f"/model/{PROFILE.replace(':', '%3A')}/invoke-with-response-stream"
    headers = signed(fake_bedrock, "POST", path, body,
                     **{"Content-Type": "application/json", "X-Amzn-Bedrock-Accept": "*/*"})
    response = http.request("POST", fake_bedrock.endpoint_url + path, body=body,
                            headers=headers, preload_content=False)
    data = b"".join(response.stream(64))
    response.release_conn()
    assert response.headers["X-Amzn-Bedrock-Content-Type"] == "application/json"
    assert data == fake_bedrock.last_stream_body
    inner = [json.loads(base64.b64decode(f.json()["bytes"]))  # type: ignore[index]
             for f in iter_frames([data])]
    assert inner[-1]["type"] == "message_stop"


def test_reset_clears_records_faults_and_stats(fake_bedrock: FakeBedrock, client: Any) -> None:
    client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"].close()
    fake_bedrock.fail_next(3)
    fake_bedrock.stream_exception_after(0)
    fake_bedrock.set_delay(3)
    fake_bedrock.reset()
    assert fake_bedrock.requests == [] and fake_bedrock.last_stream_body is None
    assert len(list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])) == 10
    assert fake_bedrock.server_errors == []


# -- standalone use and pure builders -----------------------------------------------------------
def test_own_instance_with_context_manager_and_helper() -> None:
    with FakeBedrock(credentials={"AKIAOTHER": "other-secret"}, region="eu-west-1") as fake:
        client = bedrock_client(fake.endpoint_url, access_key="AKIAOTHER",
                                secret_key="other-secret", region="eu-west-1")
        try:
            reply = client.converse(modelId="eu." + CLAUDE, messages=MESSAGES)
            arn = client.start_async_invoke(
                modelId=CLAUDE, modelInput={},
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://b/"}})["invocationArn"]
        finally:
            client.close()
    assert reply["stopReason"] == "end_turn"
    assert arn.startswith("arn:aws:bedrock:eu-west-1:")
    with pytest.raises(RuntimeError):
        _ = fake.endpoint_url


def test_builders_are_pure_functions() -> None:
    answer = invoke_model(PROFILE, anthropic_body("one two three").encode())
    assert json.loads(answer.body)["content"][0]["text"] == "Echo: one two three"
    assert (answer.input_tokens, answer.output_tokens) == (4, 4)
    again = converse(CLAUDE, json.dumps({"messages": MESSAGES}).encode())
    assert again.body == converse(CLAUDE, json.dumps({"messages": MESSAGES}).encode()).body
    assert model_family("global.anthropic.claude-sonnet-4-5-20250929-v1:0") == "anthropic"
    assert model_family("apac.amazon.nova-pro-v1:0") == "nova"
    assert model_family("cohere.command-r-v1:0") is None


# -- billing conventions: cache TTLs, service tiers, latency ----------------------------------
def test_converse_one_hour_cache_point_reports_cache_details(client: Any) -> None:
    system = [{"text": "x" * 400}, {"cachePoint": {"type": "default", "ttl": "1h"}},
              {"text": "y" * 400}, {"cachePoint": {"type": "default"}}]
    first = client.converse(modelId=CLAUDE, messages=MESSAGES, system=system)["usage"]
    assert first["cacheWriteInputTokens"] == 200 and first["cacheReadInputTokens"] == 0
    assert first["cacheDetails"] == [{"ttl": "1h", "inputTokens": 100},
                                     {"ttl": "5m", "inputTokens": 100}]
    assert first["totalTokens"] == first["inputTokens"] + first["outputTokens"] + 200
    second = client.converse(modelId=CLAUDE, messages=MESSAGES, system=system)["usage"]
    assert second["cacheReadInputTokens"] == 200 and "cacheDetails" not in second
    with pytest.raises(client.exceptions.ValidationException, match="5m, 1h"):
        client.converse(modelId=CLAUDE, messages=MESSAGES, system=[
            {"text": "x"}, {"cachePoint": {"type": "default", "ttl": "2h"}}])


def test_converse_service_tier_and_performance_config(client: Any) -> None:
    reply = client.converse(modelId=CLAUDE, messages=MESSAGES, serviceTier={"type": "flex"},
                            performanceConfig={"latency": "optimized"})
    assert reply["serviceTier"] == {"type": "flex"}
    assert reply["performanceConfig"] == {"latency": "optimized"}
    plain = client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert "serviceTier" not in plain and "performanceConfig" not in plain
    events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES,
                                         serviceTier={"type": "priority"})["stream"])
    assert events[-1]["metadata"]["serviceTier"] == {"type": "priority"}
    with pytest.raises(client.exceptions.ValidationException, match="serviceTier"):
        client.converse(modelId=CLAUDE, messages=MESSAGES, serviceTier={"type": "gold"})


def test_invoke_model_tier_latency_and_cache_headers(client: Any) -> None:
    body = json.dumps({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
        "system": [{"type": "text", "text": "s" * 800,
                    "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": "tell me a short story"}]})
    response = client.invoke_model(modelId=CLAUDE, body=body, serviceTier="priority",
                                   performanceConfigLatency="optimized")
    assert response["serviceTier"] == "priority"
    assert response["performanceConfigLatency"] == "optimized"
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    usage = json.loads(response["body"].read())["usage"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(usage["input_tokens"]) == "6"
    assert headers["x-amzn-bedrock-cache-write-input-token-count"] == "200"
    assert headers["x-amzn-bedrock-cache-read-input-token-count"] == "0"
    assert usage["cache_creation_input_tokens"] == 200 and usage["cache_read_input_tokens"] == 0
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0,
                                       "ephemeral_1h_input_tokens": 200}
    stream = client.invoke_model_with_response_stream(modelId=CLAUDE, body=body,
                                                      serviceTier="flex")
    assert stream["serviceTier"] == "flex"
    metrics = _chunks(stream)[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["cacheReadInputTokenCount"],
            metrics["cacheWriteInputTokenCount"]) == (6, 200, 0)
    plain = client.invoke_model(modelId=CLAUDE, body=anthropic_body())
    assert "serviceTier" not in plain and "performanceConfigLatency" not in plain
    assert "x-amzn-bedrock-cache-read-input-token-count" not in plain["ResponseMetadata"][
        "HTTPHeaders"]
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId=CLAUDE, body=anthropic_body(), serviceTier="gold")


# -- image, rerank and video models -----------------------------------------------------------
@pytest.mark.parametrize(("model_id", "request_body", "count"), [
    ("amazon.nova-canvas-v1:0", {"taskType": "TEXT_IMAGE", "textToImageParams": {
        "text": "a red fox"}, "imageGenerationConfig": {
            "numberOfImages": 2, "width": 1024, "height": 1024, "quality": "premium"}}, 2),
    ("amazon.titan-image-generator-v1", {"taskType": "TEXT_IMAGE",
                                         "textToImageParams": {"text": "a red fox"}}, 1),
    ("us.amazon.titan-image-generator-v2:0", {"taskType": "TEXT_IMAGE", "textToImageParams": {
        "text": "a red fox"}, "imageGenerationConfig": {"numberOfImages": 5}}, 5),
])
def test_amazon_image_models(client: Any, model_id: str, request_body: dict[str, Any],
                             count: int) -> None:
    response = client.invoke_model(modelId=model_id, body=json.dumps(request_body))
    body = json.loads(response["body"].read())
    assert body["error"] is None and len(body["images"]) == count
    pngs = [base64.b64decode(image) for image in body["images"]]
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    assert len(set(pngs)) == count  # one distinct image per index
    again = client.invoke_model(modelId=model_id, body=json.dumps(request_body))
    assert json.loads(again["body"].read()) == body  # deterministic
    assert "x-amzn-bedrock-input-token-count" not in response["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize("request_body", [
    {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "fox"},
     "imageGenerationConfig": {"numberOfImages": 6}},
    {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "fox"},
     "imageGenerationConfig": {"quality": "ultra"}},
    {"taskType": "TEXT_IMAGE", "textToImageParams": {}},
    {"taskType": "PAINT", "textToImageParams": {"text": "fox"}},
    {"textToImageParams": {"text": "fox"}},
])
def test_image_request_validation(client: Any, request_body: dict[str, Any]) -> None:
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId="amazon.nova-canvas-v1:0", body=json.dumps(request_body))


def test_stability_and_images_do_not_stream(client: Any) -> None:
    body = json.loads(client.invoke_model(modelId="stability.sd3-5-large-v1:0",
                                          body=json.dumps({"prompt": "a fox"}))["body"].read())
    assert set(body) == {"images", "finish_reasons", "seeds"}
    assert len(body["images"]) == 1 and body["finish_reasons"] == [None]
    assert isinstance(body["seeds"][0], int)
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId="stability.sd3-5-large-v1:0", body=json.dumps({}))
    with pytest.raises(client.exceptions.ValidationException, match="streaming"):
        client.invoke_model_with_response_stream(modelId="stability.sd3-5-large-v1:0",
                                                 body=json.dumps({"prompt": "a fox"}))


@pytest.mark.parametrize("model_id", ["cohere.rerank-v3-5:0", "amazon.rerank-v1:0"])
def test_rerank(client: Any, model_id: str) -> None:
    request = {"query": "red fox habitat", "api_version": 2, "top_n": 2, "documents": [
        "The stock market rose today.", "Red foxes live in forests and fields.",
        "A fox habitat survey.", "Nothing here."]}
    body = json.loads(client.invoke_model(modelId=model_id,
                                          body=json.dumps(request))["body"].read())
    assert [r["index"] for r in body["results"]] == [2, 1]  # 2 of 3 query words, then 1
    assert all(0 <= r["relevance_score"] <= 1 for r in body["results"])
    assert body["results"][0]["relevance_score"] >= body["results"][1]["relevance_score"]
    assert isinstance(body["id"], str)
    everything = json.loads(client.invoke_model(modelId=model_id, body=json.dumps(
        request | {"top_n": 10}))["body"].read())
    assert sorted(r["index"] for r in everything["results"]) == [0, 1, 2, 3]
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId=model_id, body=json.dumps({"query": "q", "api_version": 2}))


def test_cohere_rerank_requires_api_version(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="api_version"):
        client.invoke_model(modelId="cohere.rerank-v3-5:0",
                            body=json.dumps({"query": "q", "documents": ["a"]}))


@pytest.mark.parametrize(("model_id", "model_input"), [
    ("amazon.nova-reel-v1:0", reel_input(seconds=12)),  # v1:0 TEXT_VIDEO is 6 s
    ("amazon.nova-reel-v1:0", reel_input(task="MULTI_SHOT_AUTOMATED", seconds=12)),
    ("amazon.nova-reel-v1:1", reel_input(task="MULTI_SHOT_AUTOMATED", seconds=13)),
    ("amazon.nova-reel-v1:1", reel_input(task="MULTI_SHOT_AUTOMATED", seconds=126)),
    ("amazon.nova-reel-v1:1", reel_input(task="MULTI_SHOT_AUTOMATED", seconds=6)),
    ("amazon.nova-reel-v1:0", {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "x"}}),
    ("amazon.nova-reel-v1:0", reel_input() | {"taskType": "IMAGE_VIDEO"}),
])
def test_nova_reel_input_is_validated(client: Any, model_id: str,
                                      model_input: dict[str, Any]) -> None:
    with pytest.raises(client.exceptions.ValidationException):
        client.start_async_invoke(modelId=model_id, modelInput=model_input,
                                  outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://b/p"}})


@pytest.mark.parametrize("seconds", [12, 66, 120])
def test_nova_reel_multi_shot_is_accepted_and_reported(client: Any, seconds: int) -> None:
    output = {"s3OutputDataConfig": {"s3Uri": "s3://b/p"}}
    arn = client.start_async_invoke(
        modelId="amazon.nova-reel-v1:1", outputDataConfig=output,
        modelInput=reel_input(task="MULTI_SHOT_AUTOMATED", seconds=seconds))["invocationArn"]
    got = client.get_async_invoke(invocationArn=arn)
    assert got["status"] == "Completed" and got["outputDataConfig"] == output
    assert got["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-reel-v1:1"
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId="amazon.nova-reel-v1:1",
                            body=json.dumps(reel_input(task="MULTI_SHOT_AUTOMATED")))


def test_apply_guardrail_bills_every_policy_per_text_unit(client: Any) -> None:
    import botocore.loaders

    shapes = botocore.loaders.create_loader().load_service_model(
        "bedrock-runtime", "service-2")["shapes"]
    members = set(shapes["GuardrailUsage"]["members"])
    reply = client.apply_guardrail(guardrailIdentifier="abc123", guardrailVersion="1",
                                   source="INPUT", content=[{"text": {"text": "z" * 1500}},
                                                            {"text": {"text": "z" * 600}}])
    usage = reply["usage"]
    assert set(usage) == members
    assert {k: usage[k] for k in ("topicPolicyUnits", "contentPolicyUnits", "wordPolicyUnits",
                                  "sensitiveInformationPolicyUnits")} == dict.fromkeys(
        ("topicPolicyUnits", "contentPolicyUnits", "wordPolicyUnits",
         "sensitiveInformationPolicyUnits"), 3)  # ceil(2100 / 1000) per policy
    assert usage["sensitiveInformationPolicyFreeUnits"] == 0
    assert usage["contextualGroundingPolicyUnits"] == usage["contentPolicyImageUnits"] == 0
