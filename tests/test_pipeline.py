"""The pipeline in-process: chain order, error rendering, close hooks, stream failures."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bedrock_gateway import Call, Gateway, Next, Principal, Response
from bedrock_gateway.errors import GatewayError, ThrottlingError
from bedrock_gateway.eventstream import Frame, event_frame, iter_frames

CONVERSE = "/model/anthropic.claude-v2/converse"


def ok_handler(call: Call) -> Response:
    return Response(200, {"content-type": "application/json"}, json.dumps(
        {"model": call.model_id, "subject": call.principal.subject if call.principal else None,
         "trail": call.attrs.get("trail", [])}).encode())


def tracer(name: str):  # type: ignore[no-untyped-def]
    def mw(call: Call, next_: Next) -> Response:
        call.attrs.setdefault("trail", []).append(name)
        return next_(call)
    return mw


def test_middleware_runs_outermost_first_and_anonymous_principal() -> None:
    gw = Gateway(ok_handler, [tracer("a"), tracer("b")], anonymous=True)
    resp = gw.handle("POST", CONVERSE, "", {"Content-Type": "application/json"}, b"{}")
    assert json.loads(resp.body) == {"model": "anthropic.claude-v2", "subject": "anonymous",
                                     "trail": ["a", "b"]}


def test_a_middleware_can_short_circuit_with_a_bedrock_error() -> None:
    def deny(call: Call, next_: Next) -> Response:
        raise ThrottlingError("Rate exceeded for tenant t1.")
    resp = Gateway(ok_handler, [deny], anonymous=True).handle("POST", CONVERSE, "", {}, b"{}")
    assert resp.status == 429
    assert resp.headers["x-amzn-errortype"].startswith("ThrottlingException")
    assert json.loads(resp.body) == {"message": "Rate exceeded for tenant t1."}


def test_unexpected_exception_is_a_500_without_details(caplog: pytest.LogCaptureFixture) -> None:
    def boom(call: Call) -> Response:
        raise RuntimeError("secret internal detail")
    resp = Gateway(boom, anonymous=True).handle("POST", CONVERSE, "", {}, b"{}")
    assert resp.status == 500
    assert b"secret internal detail" not in resp.body
    assert b"Traceback" not in resp.body
    assert "secret internal detail" in caplog.text  # the operator still sees it


def test_oversized_body_and_unknown_path() -> None:
    gw = Gateway(ok_handler, anonymous=True, max_body_bytes=10)
    assert gw.handle("POST", CONVERSE, "", {}, b"x" * 11).status == 413
    assert gw.handle("POST", "/admin", "", {}, b"").status == 404


def _stream(fail: Exception | None) -> Iterator[Frame]:
    yield from iter_frames([event_frame("messageStart", {"role": "assistant"})])
    if fail:
        raise fail


@pytest.mark.parametrize("fail", [None, ThrottlingError("slow"), RuntimeError("bug")])
def test_stream_errors_become_exception_frames_and_hooks_run(fail: Exception | None) -> None:
    closed: list[str] = []

    def handler(call: Call) -> Response:
        resp = Response(200, {}, frames=_stream(fail))
        resp.on_close(lambda: closed.append("upstream"))
        return resp

    def meter(call: Call, next_: Next) -> Response:
        resp = next_(call)
        resp.on_close(lambda: closed.append("meter"))
        return resp

    resp = Gateway(handler, [meter], anonymous=True).handle("POST", "/model/a.b/converse-stream", "", {}, b"{}")
    frames = list(iter_frames(resp.chunks()))
    assert frames[0].event_type == "messageStart"
    if fail is None:
        assert len(frames) == 1
    else:
        expected = "throttlingException" if isinstance(fail, GatewayError) else (
            "modelStreamErrorException")
        assert frames[-1].exception_type == expected
        assert b"bug" not in frames[-1].raw
    assert closed == ["upstream", "meter"]


def test_close_hooks_run_once_even_when_a_hook_fails_and_on_early_close() -> None:
    calls: list[int] = []
    resp = Response(200, {}, frames=_stream(None))
    resp.on_close(lambda: calls.append(1))
    resp.on_close(lambda: 1 / 0)  # type: ignore[func-returns-value]
    resp.on_close(lambda: calls.append(3))
    chunks = resp.chunks()
    next(chunks)
    chunks.close()  # the client went away after the first frame
    resp.close()
    assert calls == [1, 3]


def test_principal_is_a_plain_value() -> None:
    p = Principal("alice", tenant="t1", groups=frozenset({"dev"}))
    assert p == Principal("alice", tenant="t1", groups=frozenset({"dev"}))
    assert Principal.anonymous().subject == "anonymous"
    assert len({p, Principal("alice", tenant="t1", groups=frozenset({"dev"}))}) == 1
