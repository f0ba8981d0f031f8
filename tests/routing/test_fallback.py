"""CircuitBreaker (injected clock) and FallbackHandler (fake handler, then boto3 end to end)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway import Call, Gateway, Principal, Response
from bedrock_gateway.errors import (
    GatewayError,
    ServiceUnavailableError,
    ThrottlingError,
    UpstreamUnavailableError,
    ValidationError,
)
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.routing.aliases import ROUTE_KEY, Alias, AliasRouter, Target
from bedrock_gateway.routing.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from bedrock_gateway.routing.fallback import FallbackHandler, is_fallback_status
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock
from tests.conftest import gateway_client, make_forwarder
from tests.routing.test_aliases import CLAUDE, HAIKU, LLAMA, make_call


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the breaker -------------------------------------------------------------------------------

def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=3, reset_s=30, clock=clock)
    for _ in range(2):
        b.record_failure("m")
        assert b.allow("m") and b.state("m") == CLOSED
    b.record_failure("m")
    assert not b.allow("m") and b.state("m") == OPEN
    clock.now += 29.9
    assert not b.allow("m")
    clock.now += 0.1
    assert b.state("m") == HALF_OPEN
    assert b.allow("m")  # the probe
    assert not b.allow("m") and not b.allow("m")  # only one
    b.record_success("m")
    assert b.state("m") == CLOSED and b.allow("m") and b.allow("m")


def test_a_failed_probe_reopens_for_another_period() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=10, clock=clock)
    b.record_failure("m")
    clock.now += 10
    assert b.allow("m")
    b.record_failure("m")
    assert b.state("m") == OPEN and not b.allow("m")
    clock.now += 9.99
    assert not b.allow("m")
    clock.now += 0.01
    assert b.allow("m")


def test_success_resets_the_count_and_keys_are_independent() -> None:
    b = CircuitBreaker(failures=2, reset_s=10, clock=Clock())
    b.record_failure("a")
    b.record_success("a")
    b.record_failure("a")
    assert b.allow("a")
    b.record_failure("b")
    b.record_failure("b")
    assert b.allow("a") and not b.allow("b")
    b.reset("b")
    assert b.allow("b")


def test_a_lost_probe_is_replaced_after_reset_s() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=5, clock=clock)
    b.record_failure("m")
    clock.now += 5
    assert b.allow("m")  # probe never reports back
    clock.now += 4
    assert not b.allow("m")
    clock.now += 1
    assert b.allow("m")


def test_late_failures_while_open_do_not_extend_it() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=5, clock=clock)
    b.record_failure("m")
    clock.now += 4
    b.record_failure("m")  # an in-flight call from before the circuit opened
    clock.now += 1
    assert b.allow("m")


def test_exactly_one_probe_under_concurrency() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=1, clock=clock)
    b.record_failure("m")
    clock.now += 1
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results.append(b.allow("m"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_breaker_validates_its_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0)
    with pytest.raises(ValueError):
        CircuitBreaker(reset_s=-1)


# -- the fallback handler, with a fake handler -----------------------------------------------

def error(exc: GatewayError) -> Response:
    return Response.from_error(exc)


class Script:
    """A terminal handler answering per model from a script; records models and closes."""

    def __init__(self, answers: dict[str, list[Response | Exception]],
                 on_call: Callable[[], None] | None = None) -> None:
        self.answers = answers
        self.models: list[str] = []
        self.closed: list[str] = []
        self.on_call = on_call

    def __call__(self, call: Call) -> Response:
        model = call.params["modelId"]
        self.models.append(model)
        if self.on_call:
            self.on_call()
        answers = self.answers.get(model) or [Response(200, {}, b"{}")]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        answer.on_close(lambda: self.closed.append(model))
        return answer


def routed(fallback: tuple[str, ...] = (HAIKU, LLAMA)) -> Call:
    call = make_call("chat", principal=Principal("u"))
    AliasRouter([Alias("chat", [Target(CLAUDE)], fallback=fallback)])(call, lambda c: Response(200))
    return call


def outcomes(call: Call) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in call.attrs[ROUTE_KEY]["attempts"]]


def test_calls_without_a_route_note_pass_straight_through() -> None:
    script = Script({HAIKU: [error(ThrottlingError())]})
    assert FallbackHandler(script)(make_call(HAIKU)).status == 429
    assert script.models == [HAIKU]


def test_healthy_first_target_is_used_alone() -> None:
    script = Script({})
    call = routed()
    assert FallbackHandler(script)(call).status == 200
    assert script.models == [CLAUDE]
    assert outcomes(call) == [(CLAUDE, "ok")]
    assert call.attrs[ROUTE_KEY]["served"] == CLAUDE


@pytest.mark.parametrize("failure", [
    error(ThrottlingError()),
    Response(429, {"x-amzn-errortype": "ModelNotReadyException:http://x/"}, b"{}"),
    error(ServiceUnavailableError()),
    Response(500, {}, b"{}"),
    UpstreamUnavailableError("down"),
])
def test_falls_back_on_throttling_not_ready_5xx_and_unreachable(
        failure: Response | Exception) -> None:
    script = Script({CLAUDE: [failure]})
    call = routed()
    assert FallbackHandler(script)(call).status == 200
    assert script.models == [CLAUDE, HAIKU]
    assert call.params["modelId"] == HAIKU
    assert outcomes(call)[-1] == (HAIKU, "ok")
    assert call.attrs[ROUTE_KEY]["served"] == HAIKU
    if isinstance(failure, Response):
        assert script.closed == [CLAUDE]  # the superseded failure was released


def test_is_fallback_status() -> None:
    assert is_fallback_status(Response(400, {"x-amzn-errortype": "ModelNotReadyException"}))
    assert not is_fallback_status(error(ValidationError()))
    assert not is_fallback_status(Response(200))


def test_client_errors_and_started_streams_are_never_retried_elsewhere() -> None:
    bad = error(ValidationError("bad body"))
    script = Script({CLAUDE: [bad]})
    assert FallbackHandler(script)(routed()) is bad
    stream = Response(200, {}, frames=iter(list[Frame]()))
    script = Script({CLAUDE: [stream]})
    assert FallbackHandler(script)(routed()) is stream
    assert script.models == [CLAUDE]


def test_the_last_failure_is_returned_as_is() -> None:
    last = error(ServiceUnavailableError("llama down"))
    script = Script({CLAUDE: [error(ThrottlingError())], HAIKU: [UpstreamUnavailableError()],
                     LLAMA: [last]})
    call = routed()
    assert FallbackHandler(script)(call) is last
    assert outcomes(call) == [(CLAUDE, "failed"), (HAIKU, "unavailable"), (LLAMA, "failed")]
    assert script.closed == [CLAUDE]


def test_a_last_failure_that_raised_is_raised() -> None:
    script = Script({CLAUDE: [error(ThrottlingError())], HAIKU: [UpstreamUnavailableError()]})
    with pytest.raises(UpstreamUnavailableError):
        FallbackHandler(script)(routed((HAIKU,)))


def test_open_circuits_are_skipped() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, reset_s=30, clock=clock)
    script = Script({CLAUDE: [error(ThrottlingError())]})
    handler = FallbackHandler(script, breaker, clock=clock)
    for _ in range(2):
        assert handler(routed()).status == 200
    assert breaker.state(CLAUDE) == OPEN
    call = routed()
    script.models.clear()
    assert handler(call).status == 200
    assert script.models == [HAIKU]
    assert outcomes(call) == [(CLAUDE, "circuit-open"), (HAIKU, "ok")]
    clock.now += 30  # half-open: the primary gets its probe, still failing: re-opened
    script.models.clear()
    assert handler(routed()).status == 200
    assert script.models == [CLAUDE, HAIKU]
    assert breaker.state(CLAUDE) == OPEN


def test_every_circuit_open_is_a_503() -> None:
    breaker = CircuitBreaker(failures=1, clock=Clock())
    for model in (CLAUDE, HAIKU):
        breaker.record_failure(model)
    with pytest.raises(ServiceUnavailableError, match="chat"):
        FallbackHandler(Script({}), breaker)(routed((HAIKU,)))


def test_no_attempt_starts_after_the_deadline() -> None:
    clock = Clock()

    def slow() -> None:
        clock.now += 6

    first = error(ThrottlingError())
    second = error(ThrottlingError("again"))
    script = Script({CLAUDE: [first], HAIKU: [second]}, on_call=slow)
    call = routed()
    assert FallbackHandler(script, deadline_s=10, clock=clock)(call) is second
    assert script.models == [CLAUDE, HAIKU]
    assert outcomes(call) == [(CLAUDE, "failed"), (HAIKU, "failed"), (LLAMA, "deadline")]


def test_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FallbackHandler(Script({}), deadline_s=0)


def test_in_process_gateway_routes_and_falls_back() -> None:
    script = Script({CLAUDE: [error(ThrottlingError())]})
    router = AliasRouter([Alias("chat", [Target(CLAUDE)], fallback=[HAIKU])])
    gateway = Gateway(FallbackHandler(script), [router], anonymous=True)
    response = gateway.handle("POST", "/model/chat/converse", "",
                              {"content-type": "application/json"}, b"{}")
    assert response.status == 200
    assert script.models == [CLAUDE, HAIKU]


# -- end to end: boto3 -> gateway over HTTP -> FakeBedrock ------------------------------------

MESSAGES = [{"role": "user", "content": [{"text": "hello"}]}]


@pytest.fixture
def serve_routed(fake_bedrock: FakeBedrock) -> Iterator[Callable[..., Any]]:
    started: list[tuple[BackgroundServer, Any, Any]] = []

    def start(aliases: list[Alias]) -> Any:
        forwarder = make_forwarder(fake_bedrock, max_attempts=1)
        handler = FallbackHandler(forwarder, CircuitBreaker(), deadline_s=10)
        gateway = Gateway(handler, [AliasRouter(aliases)], anonymous=True)
        server = BackgroundServer(gateway).start()
        client = gateway_client(server.url)
        started.append((server, forwarder, client))
        return client

    yield start
    for server, forwarder, client in started:
        client.close()
        server.stop()
        forwarder.close()


def upstream_models(fake: FakeBedrock) -> list[str]:
    return [r.params.get("modelId", "") for r in fake.requests]


def test_e2e_alias_reaches_bedrock_as_the_concrete_model(
        serve_routed: Callable[..., Any], fake_bedrock: FakeBedrock) -> None:
    client = serve_routed([Alias("chat", [Target(CLAUDE)], fallback=[HAIKU])])
    out = client.converse(modelId="chat", messages=MESSAGES)
    assert out["output"]["message"]["content"][0]["text"] == "Echo: hello"
    assert upstream_models(fake_bedrock) == [CLAUDE]


def test_e2e_throttled_primary_is_answered_by_the_fallback(
        serve_routed: Callable[..., Any], fake_bedrock: FakeBedrock) -> None:
    client = serve_routed([Alias("chat", [Target(CLAUDE)], fallback=[LLAMA])])
    fake_bedrock.fail_next(1, status=429, code="ThrottlingException")
    out = client.converse(modelId="chat", messages=MESSAGES)  # client retries are off
    assert out["output"]["message"]["content"][0]["text"] == "Echo: hello"
    assert upstream_models(fake_bedrock) == [CLAUDE, LLAMA]


def test_e2e_stream_falls_back_before_the_first_byte(
        serve_routed: Callable[..., Any], fake_bedrock: FakeBedrock) -> None:
    client = serve_routed([Alias("chat", [Target(CLAUDE)], fallback=[HAIKU])])
    fake_bedrock.fail_next(1, status=503, code="ServiceUnavailableException")
    out = client.converse_stream(modelId="chat", messages=MESSAGES)
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in out["stream"]
                   if "contentBlockDelta" in e)
    assert text == "Echo: hello"
    assert upstream_models(fake_bedrock) == [CLAUDE, HAIKU]


def test_e2e_every_model_throttled_returns_bedrocks_error(
        serve_routed: Callable[..., Any], fake_bedrock: FakeBedrock) -> None:
    client = serve_routed([Alias("chat", [Target(CLAUDE)], fallback=[HAIKU])])
    fake_bedrock.fail_next(2, status=429, code="ThrottlingException", message="slow down")
    with pytest.raises(ClientError) as info:
        client.converse(modelId="chat", messages=MESSAGES)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert info.value.response["Error"]["Message"] == "slow down"
    assert upstream_models(fake_bedrock) == [CLAUDE, HAIKU]


def test_e2e_invoke_model_on_a_cross_family_alias_is_refused_before_upstream(
        serve_routed: Callable[..., Any], fake_bedrock: FakeBedrock) -> None:
    client = serve_routed([Alias("chat", [Target(CLAUDE)], fallback=[LLAMA]),
                           Alias("claude", [Target(CLAUDE, 1), Target(HAIKU, 1)])])
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,' \
           b'"messages":[{"role":"user","content":"hi"}]}'
    with pytest.raises(ClientError) as info:
        client.invoke_model(modelId="chat", body=body, contentType="application/json")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert fake_bedrock.requests == []
    out = client.invoke_model(modelId="claude", body=body, contentType="application/json")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert b"Echo: hi" in out["body"].read()  # read: an unread body holds its connection
    assert upstream_models(fake_bedrock)[0] in (CLAUDE, HAIKU)
