"""Usage extraction (bedrock_gateway.quota.usage) against the fake's builders and wire bytes."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bedrock_gateway.eventstream import (
    Frame,
    encode_frame,
    event_frame,
    exception_frame,
    iter_frames,
)
from bedrock_gateway.quota.usage import StreamUsage, Usage, usage_from_response
from bedrock_gateway.testing.fake_converse import (
    apply_guardrail,
    converse,
    converse_stream,
    count_tokens,
    invoke_guardrail_checks,
)
from bedrock_gateway.testing.fake_models import Answer, invoke_model, invoke_model_stream
from bedrock_gateway.testing.fake_text import PromptCache

LONG = "You are a careful assistant. " * 40  # a cacheable prefix of a few hundred tokens

ANTHROPIC = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "anthropic": (
        ANTHROPIC,
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "system": [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hello there, how are you"}],
        },
    ),
    "nova": (
        NOVA,
        {
            "system": [{"text": LONG}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "hi nova friend"}]}],
            "inferenceConfig": {"maxTokens": 20},
        },
    ),
    "titan-text": (
        "amazon.titan-text-express-v1",
        {"inputText": "hello titan world", "textGenerationConfig": {"maxTokenCount": 10}},
    ),
    "titan-embed": ("amazon.titan-embed-text-v2:0", {"inputText": "embed me please"}),
    "llama": ("meta.llama3-8b-instruct-v1:0", {"prompt": "hello llama there", "max_gen_len": 9}),
    "mistral": (
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] hi mistral [/INST]", "max_tokens": 10},
    ),
    "cohere-embed": (
        "cohere.embed-english-v3",
        {"texts": ["a first text", "another"], "input_type": "search_document"},
    ),
}
GENERATING = ["anthropic", "nova", "titan-text", "llama", "mistral"]
CONVERSE_BODY = {
    "system": [{"text": LONG}, {"cachePoint": {"type": "default"}}],
    "messages": [{"role": "user", "content": [{"text": "what is the weather like"}]}],
}


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _headers(answer: Answer) -> dict[str, str]:
    """The token headers FakeBedrock's dispatcher sets on InvokeModel (lower-cased)."""
    return {
        "content-type": "application/json",
        "x-amzn-bedrock-input-token-count": str(answer.input_tokens),
        "x-amzn-bedrock-output-token-count": str(answer.output_tokens),
        "x-amzn-bedrock-invocation-latency": str(answer.latency_ms),
    }


def _stream_bytes(answer: Answer) -> bytes:
    return b"".join(frame * repeat for frame, repeat in answer.segments)


def _observe(operation: str, frames: list[Frame]) -> Usage | None:
    su = StreamUsage(operation, None)
    for frame in frames:
        su.observe(frame)
    return su.usage


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- Converse / ConverseStream ----------------------------------------------------------------


@pytest.mark.parametrize("model", [ANTHROPIC, NOVA, "mistral.mistral-large-2407-v1:0"])
def test_converse_cache_write_then_read(model: str) -> None:
    cache = PromptCache()
    for expect_write in (True, False):
        body = converse(model, _dumps(CONVERSE_BODY), cache).body
        reported = json.loads(body)["usage"]
        usage = usage_from_response("Converse", model, {}, body)
        assert usage == Usage(
            reported["inputTokens"],
            reported["outputTokens"],
            reported["cacheReadInputTokens"],
            reported["cacheWriteInputTokens"],
        )
        assert usage.total_tokens == reported["totalTokens"]
        assert (usage.cache_write_tokens > 0) is expect_write
        assert (usage.cache_read_tokens > 0) is not expect_write


def test_converse_without_cache_fields() -> None:
    body = _dumps({"messages": [{"role": "user", "content": [{"text": "plain question"}]}]})
    answer = converse(ANTHROPIC, body)
    usage = usage_from_response("Converse", ANTHROPIC, {}, answer.body)
    assert usage == Usage(answer.input_tokens, answer.output_tokens)


def _converse_stream_frames(cache: PromptCache | None = None) -> tuple[bytes, dict[str, int]]:
    answer = converse_stream(ANTHROPIC, _dumps(CONVERSE_BODY), cache or PromptCache())
    data = _stream_bytes(answer)
    metadata = [f.json() for f in iter_frames([data]) if f.event_type == "metadata"]
    assert isinstance(metadata[0], dict)
    return data, metadata[0]["usage"]


CONVERSE_STREAM, CONVERSE_STREAM_USAGE = _converse_stream_frames()


@settings(max_examples=60)
@given(cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_converse_stream_any_chunking(cuts: list[int]) -> None:
    frames = list(iter_frames(_split(CONVERSE_STREAM, cuts)))
    u = CONVERSE_STREAM_USAGE
    expected = Usage(
        u["inputTokens"],
        u["outputTokens"],
        u["cacheReadInputTokens"],
        u["cacheWriteInputTokens"],
    )
    assert _observe("ConverseStream", frames) == expected
    assert expected.total_tokens == u["totalTokens"] and expected.cache_write_tokens > 0


def test_converse_stream_cut_before_metadata() -> None:
    frames = list(iter_frames([CONVERSE_STREAM]))
    assert frames[-1].event_type == "metadata"
    assert _observe("ConverseStream", frames[:-1]) is None
    assert _observe("ConverseStream", [*frames[:-1], Frame(exception_frame("x", "y"))]) is None


# -- InvokeModel ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(REQUESTS))
def test_invoke_model_every_family(family: str) -> None:
    model, request = REQUESTS[family]
    cache = PromptCache()
    for _ in range(2):  # first call writes the cache point, the second reads it
        answer = invoke_model(model, _dumps(request), cache)
        usage = usage_from_response("InvokeModel", model, _headers(answer), answer.body)
        assert usage is not None
        billed_in = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        assert (billed_in, usage.output_tokens) == (answer.input_tokens, answer.output_tokens)
        assert usage.total_tokens == answer.input_tokens + answer.output_tokens
        native = usage_from_response("InvokeModel", model, {}, answer.body)
        if family in ("mistral", "cohere-embed"):
            assert native is None  # usage only in the headers
        else:
            assert native == usage  # the body alone gives the same numbers


@pytest.mark.parametrize("family", ["anthropic", "nova"])
def test_invoke_model_cache_split(family: str) -> None:
    model, request = REQUESTS[family]
    cache = PromptCache()
    first = invoke_model(model, _dumps(request), cache)
    second = invoke_model(model, _dumps(request), cache)
    u1 = usage_from_response("InvokeModel", model, _headers(first), first.body)
    u2 = usage_from_response("InvokeModel", model, _headers(second), second.body)
    assert u1 is not None and u2 is not None
    assert u1.cache_write_tokens > 0 and u1.cache_read_tokens == 0
    assert u2.cache_read_tokens == u1.cache_write_tokens and u2.cache_write_tokens == 0
    assert u1.input_tokens == u2.input_tokens < 20  # only the uncached suffix


def test_invoke_model_headers_win_and_cache_headers() -> None:
    model, request = REQUESTS["llama"]
    answer = invoke_model(model, _dumps(request))
    headers = _headers(answer) | {"x-amzn-bedrock-input-token-count": "1000"}
    usage = usage_from_response("InvokeModel", model, headers, answer.body)
    assert usage == Usage(1000, answer.output_tokens)
    headers |= {
        "x-amzn-bedrock-cache-read-input-token-count": "7",
        "x-amzn-bedrock-cache-write-input-token-count": "3",
    }
    assert usage_from_response("InvokeModel", model, headers, b"{}") == Usage(
        1000, answer.output_tokens, 7, 3
    )
    garbage = {"x-amzn-bedrock-input-token-count": "-5", "x-amzn-bedrock-output-token-count": "x"}
    assert usage_from_response("InvokeModel", model, garbage, b"not json") is None


# -- InvokeModelWithResponseStream ------------------------------------------------------------


def _invoke_stream(family: str, cache: PromptCache | None = None) -> tuple[Answer, bytes]:
    model, request = REQUESTS[family]
    answer = invoke_model_stream(model, _dumps(request), cache)
    return answer, _stream_bytes(answer)


INVOKE_STREAMS = {family: _invoke_stream(family) for family in GENERATING}


@pytest.mark.parametrize("family", GENERATING)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_invoke_stream_any_chunking(family: str, cuts: list[int]) -> None:
    answer, data = INVOKE_STREAMS[family]
    usage = _observe("InvokeModelWithResponseStream", list(iter_frames(_split(data, cuts))))
    assert usage is not None
    billed_in = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    assert (billed_in, usage.output_tokens) == (answer.input_tokens, answer.output_tokens)


def test_invoke_stream_anthropic_cache_split_and_cut() -> None:
    cache = PromptCache()
    _invoke_stream("anthropic", cache)
    answer, data = _invoke_stream("anthropic", cache)  # second call: cache read
    frames = list(iter_frames([data]))
    full = _observe("InvokeModelWithResponseStream", frames)
    assert full is not None and full.cache_read_tokens > 0 and full.cache_write_tokens == 0
    assert full.total_tokens == answer.input_tokens + answer.output_tokens
    partial = _observe("InvokeModelWithResponseStream", frames[:-1])  # no metrics yet
    assert partial is not None and partial.input_tokens == full.input_tokens
    assert partial.cache_read_tokens == full.cache_read_tokens and partial.output_tokens == 1


@pytest.mark.parametrize("family", ["titan-text", "llama", "mistral", "nova"])
def test_invoke_stream_cut_before_metrics(family: str) -> None:
    frames = list(iter_frames([INVOKE_STREAMS[family][1]]))
    assert _observe("InvokeModelWithResponseStream", frames[:-1]) is None


def test_invoke_stream_metrics_cache_fields() -> None:
    inner = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 12,
            "outputTokenCount": 5,
            "cacheReadInputTokenCount": 100,
            "cacheWriteInputTokenCount": 0,
        },
    }
    payload = {"bytes": base64.b64encode(_dumps(inner)).decode(), "p": "abc"}
    frames = [Frame(event_frame("chunk", payload))]
    assert _observe("InvokeModelWithResponseStream", frames) == Usage(12, 5, 100, 0)


# -- Other operations -------------------------------------------------------------------------


def test_count_tokens_is_free() -> None:
    body = _dumps({"input": {"converse": CONVERSE_BODY}})
    answer = _dumps(count_tokens(ANTHROPIC, body))
    assert usage_from_response("CountTokens", ANTHROPIC, {}, answer) == Usage()


def test_apply_guardrail_units() -> None:
    body = _dumps({"source": "INPUT", "content": [{"text": {"text": "hello"}}]})
    response = apply_guardrail(body)
    expected = sum(v for k, v in response["usage"].items() if "Free" not in k)
    usage = usage_from_response("ApplyGuardrail", None, {}, _dumps(response))
    assert usage == Usage(guardrail_units=expected) and expected == 4
    assert usage.total_tokens == 0


def test_invoke_guardrail_checks_units() -> None:
    request = {
        "messages": [{"role": "user", "content": [{"text": "x" * 2500}]}],
        "checks": {
            "contentFilter": {"categories": [{"category": "HATE"}]},
            "sensitiveInformation": {},
        },
    }
    response = invoke_guardrail_checks(_dumps(request))
    usage = usage_from_response("InvokeGuardrailChecks", None, {}, _dumps(response))
    assert usage == Usage(guardrail_units=6)  # 3 text units x 2 checks


@pytest.mark.parametrize("operation", ["StartAsyncInvoke", "GetAsyncInvoke", "ListAsyncInvokes"])
def test_async_operations_have_no_usage(operation: str) -> None:
    assert usage_from_response(operation, None, {}, b'{"invocationArn": "arn"}') is None


# -- Malformed input never raises -------------------------------------------------------------

OPERATIONS = [
    "Converse",
    "InvokeModel",
    "CountTokens",
    "ApplyGuardrail",
    "InvokeGuardrailChecks",
    "Nonsense",
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b"null", b'{"usage": 3}', b'{"usage": {"inputTokens": "x"}}', b"[" * 5000],
)
def test_malformed_bodies(operation: str, body: bytes) -> None:
    result = usage_from_response(operation, None, {}, body)
    assert result is None or result == Usage()


@given(body=st.binary(max_size=200), operation=st.sampled_from(OPERATIONS))
def test_random_bodies_never_raise(body: bytes, operation: str) -> None:
    usage_from_response(operation, None, {"x-amzn-bedrock-input-token-count": "3"}, body)


def _chunk(payload: bytes) -> Frame:
    headers = {":event-type": "chunk", ":content-type": "application/json"}
    return Frame(encode_frame(headers | {":message-type": "event"}, payload))


def test_malformed_stream_frames_keep_usage_so_far() -> None:
    good = list(iter_frames([INVOKE_STREAMS["llama"][1]]))
    bad = [
        _chunk(b'{"bytes": "!!!not base64"}'),
        _chunk(b'{"bytes": "abc"}'),  # bad padding
        _chunk(b'{"bytes": "' + base64.b64encode(b'{"amazon-bedrock-invocationMetrics": [') + b'"}'),
        _chunk(b"\xff\xfe not json"),
        _chunk(b""),
        Frame(event_frame("metadata", {"usage": "nope"})),
        Frame(exception_frame("throttlingException", "slow down")),
    ]
    expected = _observe("InvokeModelWithResponseStream", good)
    assert expected is not None
    assert _observe("InvokeModelWithResponseStream", [*good, *bad]) == expected
    assert _observe("InvokeModelWithResponseStream", bad) is None
    metadata = Frame(encode_frame({":event-type": "metadata", ":message-type": "event"}, b"{"))
    assert _observe("ConverseStream", [*bad, metadata]) is None


@given(payload=st.binary(max_size=300))
def test_random_chunk_payloads_never_raise(payload: bytes) -> None:
    for operation in ("ConverseStream", "InvokeModelWithResponseStream"):
        su = StreamUsage(operation, None)
        su.observe(_chunk(payload))
        su.observe(Frame(encode_frame({":event-type": "metadata"}, payload)))
        assert su.usage is None or isinstance(su.usage, Usage)


# -- Real wire bytes from FakeBedrock ---------------------------------------------------------


def test_wire_invoke_model_and_stream(fake_bedrock: Any, bedrock_client_factory: Any) -> None:
    client = bedrock_client_factory(fake_bedrock.endpoint_url)
    for family in ("anthropic", "cohere-embed", "mistral"):
        model, request = REQUESTS[family]
        response = client.invoke_model(modelId=model, body=_dumps(request))
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        usage = usage_from_response("InvokeModel", model, headers, response["body"].read())
        assert usage is not None
        assert usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens == int(
            headers["x-amzn-bedrock-input-token-count"]
        )
        assert usage.output_tokens == int(headers["x-amzn-bedrock-output-token-count"])

    model, request = REQUESTS["anthropic"]
    response = client.invoke_model_with_response_stream(modelId=model, body=_dumps(request))
    inner = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    metrics = inner[-1]["amazon-bedrock-invocationMetrics"]
    usage = _observe("InvokeModelWithResponseStream", list(iter_frames([fake_bedrock.last_stream_body])))
    assert usage is not None
    assert usage.total_tokens == metrics["inputTokenCount"] + metrics["outputTokenCount"]
    assert usage.output_tokens == metrics["outputTokenCount"] and usage.cache_read_tokens > 0

    response = client.converse_stream(modelId=model, **CONVERSE_BODY)
    events = list(response["stream"])
    reported = next(e["metadata"]["usage"] for e in events if "metadata" in e)
    usage = _observe("ConverseStream", list(iter_frames([fake_bedrock.last_stream_body])))
    assert usage is not None and usage.total_tokens == reported["totalTokens"]
    assert (usage.input_tokens, usage.output_tokens) == (
        reported["inputTokens"],
        reported["outputTokens"],
    )
    assert usage.cache_write_tokens == reported["cacheWriteInputTokens"]


@given(pad=st.text(max_size=12), text=st.text(max_size=40))
def test_metrics_found_at_every_base64_alignment(pad: str, text: str) -> None:
    """The base64 pre-filter never hides the metrics, wherever they fall in the 3-byte groups."""
    metrics = {"inputTokenCount": 3, "outputTokenCount": 4, "cacheWriteInputTokenCount": 5}
    inner = {"x": pad, "outputText": text, "amazon-bedrock-invocationMetrics": metrics}
    payload = {"bytes": base64.b64encode(_dumps(inner)).decode(), "p": "ab"}
    frames = [Frame(event_frame("chunk", payload))]
    assert _observe("InvokeModelWithResponseStream", frames) == Usage(3, 4, 0, 5)
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}
    head = {"bytes": base64.b64encode(_dumps({"pad": pad} | start)).decode()}
    frames.insert(0, Frame(event_frame("chunk", head)))
    assert _observe("InvokeModelWithResponseStream", frames[:1]) == Usage(9, 1)
