"""ResponseCache: keys, what is and is not cached, streams recorded and replayed byte-exact,
stores (memory with an injected clock, Redis against a real server), and end to end with boto3
through the gateway over HTTP in front of FakeBedrock."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from bedrock_gateway import Call, Gateway, Principal, Response
from bedrock_gateway.errors import ModelTimeoutError
from bedrock_gateway.eventstream import Frame, event_frame, exception_frame
from bedrock_gateway.pipeline import Next
from bedrock_gateway.quota.records import UsageRecord, UsageRecorder
from bedrock_gateway.routing.cache import CACHE_NOTE, ResponseCache, cache_key, is_deterministic
from bedrock_gateway.routing.cache_store import (
    CachedAnswer,
    MemoryCacheStore,
    RedisCacheStore,
    decode_entry,
    encode_entry,
)
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock
from tests.quota.conftest import redis_url  # noqa: F401 - the fixture

from ..conftest import gateway_client

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/"
DONE = {"stopReason": "end_turn", "output": {"message": {"role": "assistant",
                                                          "content": [{"text": "hi"}]}}}


def converse_body(text: str = "hello", temperature: float | None = 0, **extra: Any) -> bytes:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": text}]}], **extra}
    if temperature is not None:
        body["inferenceConfig"] = {"temperature": temperature, "maxTokens": 50}
    return json.dumps(body).encode()


def tenant_from_header(call: Call, next_: Next) -> Response:
    """Principals for tests: the tenant is the ``x-tenant`` header."""
    call.principal = Principal("user", tenant=call.headers.get("x-tenant"))
    return next_(call)


class Upstream:
    """A stub terminal handler: answers with what a test queued (default: a Converse answer)."""

    def __init__(self) -> None:
        self.calls = 0
        self.answers: list[Callable[[], Response]] = []

    def __call__(self, call: Call) -> Response:
        self.calls += 1
        if self.answers:
            return self.answers.pop(0)()
        if call.operation.streaming:
            return Response(200, {"content-type": "application/vnd.amazon.eventstream"},
                            frames=iter([Frame(raw) for raw in stream_frames()]))
        return Response(200, {"content-type": "application/json", "x-amzn-requestid": "r1",
                              "x-amzn-bedrock-input-token-count": "3"},
                        json.dumps(DONE).encode())


def stream_frames(stop: str = "end_turn") -> list[bytes]:
    return [event_frame("messageStart", {"role": "assistant"}),
            event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}),
            event_frame("messageStop", {"stopReason": stop}),
            event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1}})]


def gateway(upstream: Upstream, cache: ResponseCache, *before: Any) -> Gateway:
    return Gateway(upstream, [tenant_from_header, *before, cache], anonymous=True)


def send(gw: Gateway, op: str = "converse", body: bytes | None = None,
         **headers: str) -> tuple[Response, bytes]:
    response = gw.handle("POST", PATH + op, "", {k.replace("_", "-"): v for k, v in
                                                 headers.items()},
                         converse_body() if body is None else body)
    return response, b"".join(response.chunks())


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


# -- keys and the determinism predicate -------------------------------------------------------

def make_call(body: bytes, tenant: str | None = "a", subject: str = "u", op: str = "converse",
              **headers: str) -> Call:
    from bedrock_gateway.operations import route

    r = route("POST", PATH + op, "")
    return Call("POST", PATH + op, "", dict(headers), body, r.operation, r.params,
                Principal(subject, tenant=tenant))


def test_key_canonicalizes_the_body_and_separates_scopes() -> None:
    a = make_call(b'{"messages": [], "inferenceConfig": {"temperature": 0, "maxTokens": 5}}')
    b = make_call(b'{"inferenceConfig":{"maxTokens":5,"temperature":0},"messages":[]}')
    assert cache_key(a) == cache_key(b)
    assert cache_key(make_call(b.body, tenant="b")) != cache_key(a)
    # a tenant named "u" is not the tenant-less subject "u"
    assert cache_key(make_call(b.body, tenant="u")) != cache_key(make_call(b.body, tenant=None))
    assert cache_key(make_call(b.body, op="converse-stream")) != cache_key(a)
    invoke = make_call(b'{"temperature": 0}', op="invoke", accept="application/json")
    assert cache_key(invoke) != cache_key(make_call(invoke.body, op="invoke", accept="*/*"))


@pytest.mark.parametrize(("op", "body", "expected"), [
    ("converse", {"inferenceConfig": {"temperature": 0}}, True),
    ("converse", {"inferenceConfig": {"temperature": 0.0, "topP": 0.9}}, True),
    ("converse", {"inferenceConfig": {"temperature": 0.7}}, False),
    ("converse", {"inferenceConfig": {"maxTokens": 10}}, False),  # Bedrock's default is > 0
    ("converse", {"temperature": 0}, False),  # not where Converse reads it
    ("invoke", {"temperature": 0, "max_tokens": 5}, True),
    ("invoke", {"textGenerationConfig": {"temperature": 0}}, True),
    ("invoke", {"temperature": 0, "inferenceConfig": {"temperature": 1}}, False),
    ("invoke", {"temperature": False}, False),
])
def test_is_deterministic(op: str, body: dict[str, Any], expected: bool) -> None:
    assert is_deterministic(make_call(json.dumps(body).encode(), op=op)) is expected


# -- buffered answers --------------------------------------------------------------------------

def test_converse_hit_skips_upstream(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache())
    first, body1 = send(gw)
    second, body2 = send(gw)
    assert upstream.calls == 1
    assert (first.headers["x-bedrock-gateway-cache"], second.headers["x-bedrock-gateway-cache"]) \
        == ("miss", "hit")
    assert body1 == body2
    assert second.headers["content-type"] == "application/json"
    assert second.headers["x-amzn-bedrock-input-token-count"] == "3"
    assert second.headers["x-amzn-requestid"] != "r1"
    send(gw, body=converse_body("other"))
    assert upstream.calls == 2


def test_nondeterministic_requests_are_not_cached_unless_asked(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache())
    for _ in range(2):
        response, _ = send(gw, body=converse_body(temperature=None))
        assert "x-bedrock-gateway-cache" not in response.headers
    assert upstream.calls == 2
    gw = gateway(upstream, ResponseCache(cache_nondeterministic=True))
    send(gw, body=converse_body(temperature=0.9))
    send(gw, body=converse_body(temperature=0.9))
    assert upstream.calls == 3


def test_tenants_never_share_entries(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache())
    send(gw, x_tenant="a")
    response, _ = send(gw, x_tenant="b")
    assert response.headers["x-bedrock-gateway-cache"] == "miss"
    assert send(gw, x_tenant="a")[0].headers["x-bedrock-gateway-cache"] == "hit"
    assert upstream.calls == 2


def test_bypass_neither_reads_nor_writes(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache())
    bypass = {"x_bedrock_gateway_cache": "bypass"}
    assert send(gw, **bypass)[0].headers["x-bedrock-gateway-cache"] == "bypass"
    assert send(gw)[0].headers["x-bedrock-gateway-cache"] == "miss"  # nothing was written
    assert send(gw, **bypass)[0].headers["x-bedrock-gateway-cache"] == "bypass"  # nor read
    assert upstream.calls == 3


def test_errors_and_interventions_are_not_cached(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache())
    blocked = json.dumps({**DONE, "stopReason": "guardrail_intervened"}).encode()
    upstream.answers = [lambda: Response(429, {"x-amzn-errortype": "ThrottlingException"}, b"{}"),
                        lambda: Response(200, {"content-type": "application/json"}, blocked)]
    assert send(gw)[0].status == 429
    assert send(gw)[1] == blocked
    assert send(gw)[0].headers["x-bedrock-gateway-cache"] == "miss"
    assert upstream.calls == 3
    invoke = b'{"temperature": 0, "prompt": "x"}'
    upstream.answers = [lambda: Response(200, {"content-type": "application/json"},
                                         b'{"amazon-bedrock-guardrailAction": "INTERVENED"}')]
    send(gw, "invoke", invoke)
    send(gw, "invoke", invoke)
    assert upstream.calls == 5


def test_an_intervention_noted_by_a_guardrail_policy_is_not_cached(upstream: Upstream) -> None:
    def note(call: Call, next_: Next) -> Response:
        response = next_(call)
        call.attrs["bedrock_gateway.guardrail"] = {"output": {"action": "GUARDRAIL_INTERVENED"}}
        return response

    gw = Gateway(upstream, [ResponseCache(), note], anonymous=True)
    send(gw, body=converse_body())
    send(gw, body=converse_body())
    assert upstream.calls == 2


def test_ttl_expiry_with_an_injected_clock(upstream: Upstream) -> None:
    now = [1000.0]
    gw = gateway(upstream, ResponseCache(MemoryCacheStore(clock=lambda: now[0]), ttl_s=60))
    send(gw)
    now[0] += 59.9
    assert send(gw)[0].headers["x-bedrock-gateway-cache"] == "hit"
    now[0] += 0.1
    assert send(gw)[0].headers["x-bedrock-gateway-cache"] == "miss"
    assert upstream.calls == 2


def test_entries_over_the_size_cap_are_not_stored(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache(max_entry_bytes=100))
    send(gw)
    send(gw)
    assert upstream.calls == 2


def test_operations_are_configurable(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache(operations=["ConverseStream"]))
    send(gw)
    assert send(gw)[0].headers.get("x-bedrock-gateway-cache") is None
    with pytest.raises(ValueError, match="cannot cache"):
        ResponseCache(operations=["CountTokens"])


def test_a_hit_is_recorded_as_cached_and_free(upstream: Upstream) -> None:
    records: list[UsageRecord] = []
    gw = Gateway(upstream, [UsageRecorder(records.append), ResponseCache()], anonymous=True)
    send(gw)
    send(gw)
    assert [(r.cached, r.cost_usd) for r in records] == [(False, None), (True, "0")]


# -- streams -----------------------------------------------------------------------------------

def test_a_stream_is_replayed_byte_exact(upstream: Upstream) -> None:
    gw = gateway(upstream, ResponseCache())
    first, wire1 = send(gw, "converse-stream")
    assert first.headers["x-bedrock-gateway-cache"] == "miss"
    second, wire2 = send(gw, "converse-stream")
    assert wire1 == wire2 == b"".join(stream_frames())
    assert upstream.calls == 1
    assert second.is_stream and second.headers["x-bedrock-gateway-cache"] == "hit"
    assert second.headers["content-type"] == "application/vnd.amazon.eventstream"


def test_a_stream_is_passed_on_frame_by_frame(upstream: Upstream) -> None:
    produced: list[int] = []

    def slow() -> Iterator[Frame]:
        for i, raw in enumerate(stream_frames()):
            produced.append(i)
            yield Frame(raw)

    upstream.answers = [lambda: Response(200, {}, frames=slow())]
    response = gateway(upstream, ResponseCache()).handle(
        "POST", PATH + "converse-stream", "", {}, converse_body())
    it = response.chunks()
    next(it)
    assert produced == [0]  # the client got frame 0 before frame 1 was asked for
    it.close()


@pytest.mark.parametrize("ending", ["exception_frame", "error", "client_gone", "intervened",
                                    "too_big"])
def test_streams_that_do_not_end_cleanly_are_not_stored(upstream: Upstream, ending: str) -> None:
    def frames() -> Iterator[Frame]:
        raws = stream_frames("guardrail_intervened" if ending == "intervened" else "end_turn")
        yield Frame(raws[0])
        if ending == "exception_frame":
            yield Frame(exception_frame("modelStreamErrorException", "boom"))
        if ending == "error":
            raise ModelTimeoutError("timed out")
        yield from (Frame(raw) for raw in raws[1:])

    upstream.answers = [lambda: Response(200, {}, frames=frames())]
    gw = gateway(upstream, ResponseCache(max_entry_bytes=200 if ending == "too_big" else 10**6))
    response = gw.handle("POST", PATH + "converse-stream", "", {}, converse_body())
    it = response.chunks()
    if ending == "client_gone":
        next(it)
        it.close()
    else:
        wire = b"".join(it)
        if ending == "too_big":
            assert wire == b"".join(stream_frames())  # the client still got it all
    assert send(gw, "converse-stream")[0].headers["x-bedrock-gateway-cache"] == "miss"
    assert upstream.calls == 2


def test_invoke_stream_chunk_interventions_are_not_stored(upstream: Upstream) -> None:
    inner = base64.b64encode(b'{"amazon-bedrock-guardrailAction":"INTERVENED"}').decode()
    chunk = event_frame("chunk", {"bytes": inner})
    upstream.answers = [lambda: Response(200, {}, frames=iter([Frame(chunk)]))]
    gw = gateway(upstream, ResponseCache())
    body = b'{"temperature": 0, "prompt": "x"}'
    send(gw, "invoke-with-response-stream", body)
    send(gw, "invoke-with-response-stream", body)
    assert upstream.calls == 2


# -- stores and entries ------------------------------------------------------------------------

def test_entry_codec_round_trips_and_rejects_garbage() -> None:
    frames = tuple(stream_frames())
    answer = CachedAnswer((("content-type", "x"), ("x-amzn-bedrock-a", "1")), frames=frames)
    assert decode_entry(encode_entry(answer)) == answer
    body = CachedAnswer((), body=b"{}")
    assert decode_entry(encode_entry(body)) == body
    assert decode_entry(b"nope") is None
    assert decode_entry(encode_entry(answer)[:-3]) is None


def test_memory_store_is_lru_bounded_by_bytes() -> None:
    now = [0.0]
    store = MemoryCacheStore(max_bytes=30, clock=lambda: now[0])
    store.set("a", b"x" * 10, 10)
    store.set("b", b"x" * 10, 10)
    assert store.get("a") is not None  # a is now the most recently used
    store.set("c", b"x" * 15, 10)
    assert (store.get("a"), store.get("b")) == (b"x" * 10, None)
    assert store.size == 25
    store.set("big", b"x" * 31, 10)
    assert store.get("big") is None
    now[0] = 10
    assert store.get("a") is None and len(store) == 1


def test_redis_store(redis_url: str, upstream: Upstream) -> None:  # noqa: F811
    store = RedisCacheStore.from_url(redis_url, prefix="t-cache")
    store.set("k", b"\x00value", 30)
    assert store.get("k") == b"\x00value"
    assert 0 < store.client.pttl("t-cache:k") <= 30_000
    assert store.get("missing") is None
    gw = gateway(upstream, ResponseCache(store))
    send(gw, "converse-stream")
    assert send(gw, "converse-stream")[1] == b"".join(stream_frames())
    assert upstream.calls == 1
    store.close()
    broken = RedisCacheStore.from_url("redis://127.0.0.1:1/0")
    assert broken.get("k") is None  # a failing store is a miss, not a failed call
    broken.set("k", b"v", 1)


# -- end to end: boto3 -> gateway over HTTP -> FakeBedrock -------------------------------------

def post(url: str, op: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    try:
        conn.request("POST", PATH + op, body, {"content-type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def cached_gateway(serve_gateway: Callable[..., BackgroundServer]) -> BackgroundServer:
    return serve_gateway(middleware=[tenant_from_header, ResponseCache()])


def test_e2e_converse_hit(cached_gateway: BackgroundServer, fake_bedrock: FakeBedrock) -> None:
    client = gateway_client(cached_gateway.url)
    request: dict[str, Any] = {
        "modelId": MODEL, "inferenceConfig": {"temperature": 0, "maxTokens": 20},
        "messages": [{"role": "user", "content": [{"text": "cache me"}]}]}
    first, second = client.converse(**request), client.converse(**request)
    assert len(fake_bedrock.requests) == 1
    headers = second["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-bedrock-gateway-cache"] == "hit"
    assert first["output"] == second["output"] and first["usage"] == second["usage"]
    client.close()


def test_e2e_stream_replays_the_wire_bytes(cached_gateway: BackgroundServer,
                                           fake_bedrock: FakeBedrock) -> None:
    body = converse_body("stream me please")
    status1, h1, wire1 = post(cached_gateway.url, "converse-stream", body)
    status2, h2, wire2 = post(cached_gateway.url, "converse-stream", body)
    assert (status1, status2) == (200, 200)
    assert (h1["x-bedrock-gateway-cache"], h2["x-bedrock-gateway-cache"]) == ("miss", "hit")
    assert wire1 == wire2 == fake_bedrock.last_stream_body
    assert len(fake_bedrock.requests) == 1
    client = gateway_client(cached_gateway.url)
    events = client.converse_stream(
        modelId=MODEL, inferenceConfig={"temperature": 0, "maxTokens": 50},
        messages=[{"role": "user", "content": [{"text": "stream me please"}]}])["stream"]
    assert [next(iter(e)) for e in events][-2:] == ["messageStop", "metadata"]
    assert len(fake_bedrock.requests) == 1
    client.close()


def test_e2e_tenants_bypass_errors_and_guardrails(cached_gateway: BackgroundServer,
                                                  fake_bedrock: FakeBedrock) -> None:
    url, body = cached_gateway.url, converse_body("tenant data")
    assert post(url, "converse", body, **{"x-tenant": "a"})[1]["x-bedrock-gateway-cache"] == "miss"
    assert post(url, "converse", body, **{"x-tenant": "b"})[1]["x-bedrock-gateway-cache"] == "miss"
    assert post(url, "converse", body, **{"x-tenant": "a"})[1]["x-bedrock-gateway-cache"] == "hit"
    bypass = {"x-tenant": "a", "x-bedrock-gateway-cache": "bypass"}
    assert post(url, "converse", body, **bypass)[1]["x-bedrock-gateway-cache"] == "bypass"
    assert len(fake_bedrock.requests) == 3
    fake_bedrock.fail_next(1, 400, "ValidationException", "bad")
    other = converse_body("fails first")
    assert post(url, "converse", other)[0] == 400
    assert post(url, "converse", other)[1]["x-bedrock-gateway-cache"] == "miss"
    guarded = converse_body("BLOCKME now", guardrailConfig={"guardrailIdentifier": "g1",
                                                              "guardrailVersion": "1"})
    for _ in range(2):
        status, _, answer = post(url, "converse", guarded)
        assert status == 200 and b"guardrail_intervened" in answer
    assert len(fake_bedrock.requests) == 7
    assert CACHE_NOTE == "bedrock_gateway.cache"


def test_a_failing_store_never_fails_the_call(upstream: Upstream) -> None:
    class Broken:
        def get(self, key: str) -> bytes | None:
            raise OSError("down")

        def set(self, key: str, value: bytes, ttl_s: float) -> None:
            raise OSError("down")

    gw = gateway(upstream, ResponseCache(Broken()))
    assert [send(gw)[0].status for _ in range(2)] == [200, 200]
    assert upstream.calls == 2
