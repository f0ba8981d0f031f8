"""Usage extraction (bedrock_gateway.quota.usage) against the fake's builders and wire bytes."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bedrock_gateway.errors import ValidationError
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


def _headers(answer: Answer, *extra: tuple[str, str]) -> dict[str, str]:
    """The headers FakeBedrock's dispatcher sets on InvokeModel (lower-cased)."""
    headers = [("Content-Type", "application/json"), *answer.token_headers(), *extra]
    return {name.lower(): value for name, value in headers}


def _fake_total(answer: Answer) -> int:
    return answer.input_tokens + answer.output_tokens + answer.cache_read + answer.cache_write


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
        assert (usage.input_tokens, usage.output_tokens) == (answer.input_tokens,
                                                             answer.output_tokens)
        assert (usage.cache_read_tokens, usage.cache_write_tokens) == (answer.cache_read,
                                                                       answer.cache_write)
        assert usage.total_tokens == _fake_total(answer)
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
    assert (usage.input_tokens, usage.output_tokens) == (answer.input_tokens,
                                                         answer.output_tokens)
    assert usage.total_tokens == _fake_total(answer)


def test_invoke_stream_anthropic_cache_split_and_cut() -> None:
    cache = PromptCache()
    _invoke_stream("anthropic", cache)
    answer, data = _invoke_stream("anthropic", cache)  # second call: cache read
    frames = list(iter_frames([data]))
    full = _observe("InvokeModelWithResponseStream", frames)
    assert full is not None and full.cache_read_tokens > 0 and full.cache_write_tokens == 0
    assert full.total_tokens == _fake_total(answer)
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
    usage = usage_from_response("ApplyGuardrail", None, {}, _dumps(response))
    assert usage is not None and usage.guardrail_units == 4  # 1 text unit x 4 policies
    assert usage.guardrail_policy_units == (
        ("contentPolicyUnits", 1), ("sensitiveInformationPolicyUnits", 1),
        ("topicPolicyUnits", 1), ("wordPolicyUnits", 1))
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
    assert usage == Usage(guardrail_units=6, guardrail_policy_units=(  # 3 text units x 2 checks
        ("contentFilter", 3), ("sensitiveInformation", 3)))


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
        assert usage.input_tokens == int(headers["x-amzn-bedrock-input-token-count"])
        assert usage.output_tokens == int(headers["x-amzn-bedrock-output-token-count"])
        if family == "anthropic":  # the prompt has a cache point: Bedrock reports both counts
            assert usage.cache_write_tokens == int(
                headers["x-amzn-bedrock-cache-write-input-token-count"]) > 0
            assert headers["x-amzn-bedrock-cache-read-input-token-count"] == "0"

    model, request = REQUESTS["anthropic"]
    response = client.invoke_model_with_response_stream(modelId=model, body=_dumps(request))
    inner = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    metrics = inner[-1]["amazon-bedrock-invocationMetrics"]
    usage = _observe("InvokeModelWithResponseStream", list(iter_frames([fake_bedrock.last_stream_body])))
    assert usage is not None
    assert usage.total_tokens == sum(metrics[k] for k in (
        "inputTokenCount", "outputTokenCount", "cacheReadInputTokenCount",
        "cacheWriteInputTokenCount"))
    assert usage.input_tokens == metrics["inputTokenCount"]
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


# -- Bedrock's convention: inputs exclude the cache everywhere --------------------------------


def test_header_input_count_is_taken_as_is() -> None:
    """The billed input header excludes cached tokens: it is never reduced by the body's cache
    counts (the old 'header counted the cached prefix' heuristic is gone)."""
    body = _dumps({"type": "message", "usage": {
        "input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 0}})
    headers = {"x-amzn-bedrock-input-token-count": "110",
               "x-amzn-bedrock-output-token-count": "5"}
    assert usage_from_response("InvokeModel", ANTHROPIC, headers, body) == Usage(110, 5, 100, 0)


def _cached_system(*parts: tuple[int, str | None]) -> list[dict[str, Any]]:
    """Converse ``system`` blocks: ``(chars, ttl)`` text parts, each followed by a cache point
    when ``ttl`` is not None ("" is a point without a ``ttl`` member)."""
    blocks: list[dict[str, Any]] = []
    for i, (chars, ttl) in enumerate(parts):
        blocks.append({"text": (f"part {i} " + "x" * chars)[:chars]})
        if ttl is not None:
            blocks.append({"cachePoint": {"type": "default"} | ({"ttl": ttl} if ttl else {})})
    return blocks


def _converse_body(*parts: tuple[int, str | None], question: str = "why") -> bytes:
    return _dumps({"system": _cached_system(*parts),
                   "messages": [{"role": "user", "content": [{"text": question}]}]})


def test_converse_cache_ttls_split_by_prefix_position() -> None:
    cache = PromptCache()
    first = json.loads(converse(ANTHROPIC, _converse_body((400, "1h"), (400, "5m")), cache).body)
    assert first["usage"]["cacheWriteInputTokens"] == 200
    assert first["usage"]["cacheDetails"] == [{"ttl": "1h", "inputTokens": 100},
                                              {"ttl": "5m", "inputTokens": 100}]
    usage = usage_from_response("Converse", ANTHROPIC, {}, _dumps(first))
    assert usage == Usage(first["usage"]["inputTokens"], 2, 0, 200, cache_write_1h_tokens=100)
    # Same 1h prefix, new 5m part: the 1h prefix is read, the 5m part written.
    second = json.loads(converse(ANTHROPIC, _converse_body((400, "1h"), (800, "")), cache).body)
    assert second["usage"]["cacheReadInputTokens"] == 100
    assert second["usage"]["cacheDetails"] == [{"ttl": "5m", "inputTokens": 200}]
    usage = usage_from_response("Converse", ANTHROPIC, {}, _dumps(second))
    assert usage is not None and usage.cache_write_1h_tokens == 0
    third = json.loads(converse(ANTHROPIC, _converse_body((400, "1h"), (400, "5m")), cache).body)
    assert third["usage"]["cacheReadInputTokens"] == 200 and "cacheDetails" not in third["usage"]


@pytest.mark.parametrize("system", [
    _cached_system((40, "5m"), (40, "1h")),  # a 1h point after a 5m one
    _cached_system((40, "2h")),
    [{"text": "x"}, {"cachePoint": {"type": "ephemeral"}}],
    [{"text": "x"}, {"cachePoint": {}}],
])
def test_converse_invalid_cache_points(system: list[dict[str, Any]]) -> None:
    body = _dumps({"system": system, "messages": [{"role": "user", "content": [{"text": "q"}]}]})
    with pytest.raises(ValidationError):
        converse(ANTHROPIC, body)


def test_anthropic_native_one_hour_cache() -> None:
    request = {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
        "system": [{"type": "text", "text": LONG,
                    "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": "hello there"}],
    }
    answer = invoke_model(ANTHROPIC, _dumps(request), PromptCache())
    body = json.loads(answer.body)
    assert body["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": body["usage"]["cache_creation_input_tokens"]}
    assert body["usage"]["input_tokens"] == answer.input_tokens < 10  # excludes the cache
    usage = usage_from_response("InvokeModel", ANTHROPIC, _headers(answer), answer.body)
    assert usage is not None and usage.cache_write_1h_tokens == usage.cache_write_tokens > 0
    stream = invoke_model_stream(ANTHROPIC, _dumps(request), PromptCache())
    streamed = _observe("InvokeModelWithResponseStream",
                        list(iter_frames([_stream_bytes(stream)])))
    assert streamed == usage
    request["system"][0]["cache_control"]["ttl"] = "24h"
    with pytest.raises(ValidationError):
        invoke_model(ANTHROPIC, _dumps(request))


# -- Service tier, latency, images ------------------------------------------------------------

ASK = {"messages": [{"role": "user", "content": [{"text": "a quick question"}]}]}


def test_converse_service_tier_and_latency() -> None:
    options = {"serviceTier": {"type": "priority"}, "performanceConfig": {"latency": "optimized"}}
    body = converse(NOVA, _dumps(ASK | options)).body
    assert {k: v for k, v in json.loads(body).items() if k in options} == options
    usage = usage_from_response("Converse", NOVA, {}, body)
    assert usage is not None and (usage.service_tier, usage.latency) == ("priority", "optimized")
    plain = usage_from_response("Converse", NOVA, {}, converse(NOVA, _dumps(ASK)).body)
    assert plain is not None and (plain.service_tier, plain.latency) == (None, None)
    frames = list(iter_frames([_stream_bytes(converse_stream(NOVA, _dumps(ASK | options)))]))
    metadata = frames[-1].json()
    assert isinstance(metadata, dict) and metadata["serviceTier"] == {"type": "priority"}
    streamed = _observe("ConverseStream", frames)
    assert streamed == usage
    for bad in ({"serviceTier": {"type": "gold"}}, {"performanceConfig": {"latency": "fast"}}):
        with pytest.raises(ValidationError):
            converse(NOVA, _dumps(ASK | bad))


def test_invoke_model_tier_and_latency_headers() -> None:
    model, request = REQUESTS["nova"]
    answer = invoke_model(model, _dumps(request))
    options = (("X-Amzn-Bedrock-Service-Tier", "flex"),
               ("X-Amzn-Bedrock-PerformanceConfig-Latency", "optimized"))
    usage = usage_from_response("InvokeModel", model, _headers(answer, *options), answer.body)
    assert usage is not None and (usage.service_tier, usage.latency) == ("flex", "optimized")
    stream = invoke_model_stream(model, _dumps(request))
    su = StreamUsage("InvokeModelWithResponseStream", model, headers=dict(options))
    for frame in iter_frames([_stream_bytes(stream)]):
        su.observe(frame)
    assert su.usage is not None and (su.usage.service_tier, su.usage.latency) == (
        "flex", "optimized")
    assert su.usage.total_tokens == _fake_total(stream)
    assert StreamUsage("InvokeModelWithResponseStream", model, headers={}).usage is None


@pytest.mark.parametrize(("model", "request_body", "count"), [
    ("amazon.nova-canvas-v1:0", {"taskType": "TEXT_IMAGE", "textToImageParams": {
        "text": "a red fox"}, "imageGenerationConfig": {"numberOfImages": 3}}, 3),
    ("amazon.titan-image-generator-v2:0", {"taskType": "TEXT_IMAGE",
                                           "textToImageParams": {"text": "a red fox"}}, 1),
    ("stability.sd3-5-large-v1:0", {"prompt": "a red fox"}, 1),
])
def test_image_models_count_images_and_no_tokens(model: str, request_body: dict[str, Any],
                                                 count: int) -> None:
    answer = invoke_model(model, _dumps(request_body))
    headers = _headers(answer)
    assert "x-amzn-bedrock-input-token-count" not in headers
    assert usage_from_response("InvokeModel", model, headers, answer.body) == Usage(images=count)


def test_rerank_has_no_token_usage() -> None:
    request = {"query": "q", "documents": ["a", "b"], "api_version": 2}
    answer = invoke_model("cohere.rerank-v3-5:0", _dumps(request))
    assert usage_from_response("InvokeModel", None, _headers(answer), answer.body) is None


def test_apply_guardrail_every_policy_and_images() -> None:
    body = _dumps({"source": "OUTPUT", "content": [
        {"text": {"text": "y" * 2001}}, {"image": {"format": "png", "source": {"bytes": "AA=="}}}]})
    response = apply_guardrail(body)
    usage = usage_from_response("ApplyGuardrail", None, {}, _dumps(response))
    assert usage is not None
    assert dict(usage.guardrail_policy_units) == {
        "contentPolicyImageUnits": 1, "contentPolicyUnits": 3, "topicPolicyUnits": 3,
        "sensitiveInformationPolicyUnits": 3, "wordPolicyUnits": 3}
    assert usage.guardrail_units == 13
    free = response | {"usage": response["usage"] | {"sensitiveInformationPolicyFreeUnits": 9,
                                                     "automatedReasoningPolicies": 2}}
    assert usage_from_response("ApplyGuardrail", None, {}, _dumps(free)) == usage


# -- Properties: whatever the prompt, the extracted usage is the fake's bill ------------------

PARTS = st.tuples(
    st.lists(st.tuples(st.integers(0, 300), st.sampled_from([None, "1h"])), max_size=3),
    st.lists(st.tuples(st.integers(0, 300), st.sampled_from([None, "5m", ""])), max_size=3),
)


def _oracle(parts: list[tuple[int, str | None]], question: str) -> Usage:
    """All-writes usage computed from first principles (ceil(chars / 4) per prefix)."""
    chars, last, one_hour = 0, 0, 0
    for size, ttl in parts:
        chars += size
        if ttl is not None:
            last = -(-chars // 4)
            one_hour = last if ttl == "1h" else one_hour
    total = -(-(chars + len(question)) // 4)
    return Usage(total - last, 0, 0, last, cache_write_1h_tokens=one_hour)


def _native_bodies(parts: list[tuple[int, str | None]], question: str) -> dict[str, bytes]:
    system = _cached_system(*parts)
    anthropic = [{"type": "text", "text": b["text"]} for b in system if "text" in b]
    for block, (_, ttl) in zip(anthropic, parts, strict=True):
        if ttl is not None:
            block["cache_control"] = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    return {
        ANTHROPIC: _dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                           "system": anthropic, "messages": [{"role": "user",
                                                              "content": question}]}),
        NOVA: _dumps({"system": system,
                      "messages": [{"role": "user", "content": [{"text": question}]}]}),
    }


def _same_bill(usage: Usage | None, expected: Usage) -> None:
    assert usage is not None
    got = (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
           usage.cache_write_1h_tokens)
    assert got == (expected.input_tokens, expected.cache_read_tokens,
                   expected.cache_write_tokens, expected.cache_write_1h_tokens)


@settings(max_examples=60, deadline=None)
@given(parts=PARTS, question=st.text(min_size=1, max_size=30).filter(str.strip))
def test_any_cached_prompt_is_billed_alike_by_every_operation(
    parts: tuple[list[tuple[int, str | None]], list[tuple[int, str | None]]], question: str
) -> None:
    prompt = [*parts[0], *parts[1]]
    expected = _oracle(prompt, question)
    body = _converse_body(*prompt, question=question)
    reported = json.loads(converse(ANTHROPIC, body).body)["usage"]
    usage = usage_from_response("Converse", ANTHROPIC, {}, _dumps({"usage": reported}))
    _same_bill(usage, expected)
    assert usage is not None and usage.total_tokens == reported["totalTokens"]
    frames = list(iter_frames([_stream_bytes(converse_stream(ANTHROPIC, body))]))
    assert _observe("ConverseStream", frames) == usage
    for model, native in _native_bodies(prompt, question).items():
        if model == NOVA:  # Nova's native usage has no split by TTL
            expected = replace(expected, cache_write_1h_tokens=0)
        answer = invoke_model(model, native)
        headers = _headers(answer)
        whole = usage_from_response("InvokeModel", model, headers, answer.body)
        _same_bill(whole, expected)
        assert whole is not None and whole.total_tokens == _fake_total(answer)
        # header, body and stream metrics agree
        assert usage_from_response("InvokeModel", model, {}, answer.body) == whole
        streamed = invoke_model_stream(model, native)
        got = _observe("InvokeModelWithResponseStream", list(iter_frames([
            _stream_bytes(streamed)])))
        assert got is not None and got.total_tokens == whole.total_tokens
        _same_bill(got, expected)


@settings(max_examples=40, deadline=None)
@given(parts=PARTS, extra=st.integers(1, 200))
def test_a_second_call_reads_the_longest_written_prefix(
    parts: tuple[list[tuple[int, str | None]], list[tuple[int, str | None]]], extra: int
) -> None:
    prompt = [*parts[0], *parts[1]]
    cache = PromptCache()
    first = _oracle(prompt, "q")
    usages = []
    for body in (_converse_body(*prompt, question="q"),
                 _converse_body(*prompt, (extra, "5m"), question="q")):
        usages.append(usage_from_response("Converse", NOVA, {}, converse(NOVA, body, cache).body))
    written, longer = usages
    _same_bill(written, first)
    assert longer is not None
    assert longer.cache_read_tokens == first.cache_write_tokens  # every earlier prefix is read
    assert longer.cache_write_1h_tokens == 0
    assert longer.cache_read_tokens + longer.cache_write_tokens == _oracle(
        [*prompt, (extra, "5m")], "q").cache_write_tokens


def test_images_are_counted_even_beside_token_headers() -> None:
    answer = invoke_model("amazon.nova-canvas-v1:0", _dumps({
        "taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a fox"},
        "imageGenerationConfig": {"numberOfImages": 2}}))
    headers = {"x-amzn-bedrock-input-token-count": "0", "x-amzn-bedrock-output-token-count": "0"}
    assert usage_from_response("InvokeModel", None, headers, answer.body) == Usage(images=2)
