"""The streaming Lambda runtime against a fake Runtime API and FakeBedrock, byte for byte."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

from bedrock_gateway import Call, Gateway, Next, Response
from bedrock_gateway.adapters.aws_lambda.runtime import LambdaContext, main, run
from bedrock_gateway.eventstream import EventStreamDecoder
from bedrock_gateway.testing import FakeBedrock
from bedrock_gateway.testing.fake_lambda_runtime import FakeLambdaRuntime, RecordedResponse

from ..conftest import make_forwarder

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
NULS = b"\0" * 8
TRAILER_TYPE = "Lambda-Runtime-Function-Error-Type"
TRAILER_BODY = "Lambda-Runtime-Function-Error-Body"


def event(operation: str, text: str = "hello there") -> dict[str, Any]:
    """A minimal HTTP API payload 2.0 event for a boto3 call (the runtime knows no shape)."""
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]})
    return {"version": "2.0", "rawPath": f"/model/{HAIKU.replace(':', '%3A')}/{operation}",
            "rawQueryString": "", "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": "POST"}}, "body": body,
            "isBase64Encoded": False}


def responder(gateway: Gateway) -> Callable[[dict[str, Any], Any], Response]:
    def respond(ev: dict[str, Any], context: Any) -> Response:
        return gateway.handle(ev["requestContext"]["http"]["method"], ev["rawPath"],
                              ev["rawQueryString"], ev["headers"], ev["body"].encode())
    return respond


class Hooks:
    """Middleware that records when the response's close and abort hooks run."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.aborted = threading.Event()

    def __call__(self, call: Call, next_: Next) -> Response:
        response = next_(call)
        response.on_close(self.closed.set)
        response.on_abort(self.aborted.set)
        return response


@pytest.fixture
def runtime() -> Iterator[FakeLambdaRuntime]:
    with FakeLambdaRuntime() as fake:
        yield fake


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def gateway(fake_bedrock: FakeBedrock, hooks: Hooks) -> Iterator[Gateway]:
    gw = Gateway(make_forwarder(fake_bedrock), [hooks], anonymous=True)
    yield gw
    gw.close()


@contextmanager
def serving(runtime: FakeLambdaRuntime, respond: Callable[..., Any], invocations: int,
            **options: Any) -> Iterator[None]:
    """Run the loop in a thread for ``invocations``; it must end cleanly."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            run(respond, runtime_api=runtime.address, max_invocations=invocations, **options)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(10)  # a safety net: a passing test has already seen every answer
        if thread.is_alive():
            runtime.stop()  # unblocks a GET /next that will never be answered
            thread.join(10)
    assert not failures, failures
    assert not thread.is_alive()


def frames(data: bytes) -> list[bytes]:
    return [frame.raw for frame in EventStreamDecoder().feed(data)]


def botocore_events(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    parser = EventStreamBuffer()
    parser.add_data(data)
    return [(message.headers, message.payload) for message in parser]


def chunked(chunks: list[bytes], tail: bytes = b"\r\n") -> bytes:
    return b"".join(b"%X\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + tail


def assert_streaming_request(rec: RecordedResponse) -> None:
    assert rec.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert rec.header("Transfer-Encoding") == "chunked"
    assert rec.header("Content-Type") == "application/vnd.awslambda.http-integration-response"
    assert rec.header("Trailer") == f"{TRAILER_TYPE}, {TRAILER_BODY}"
    assert rec.header("Content-Length") is None


def test_converse_stream_passes_through_byte_for_byte(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock,
        hooks: Hooks) -> None:
    request_id = runtime.push(event("converse-stream"))
    with serving(runtime, responder(gateway), 1):
        rec = runtime.response(request_id)
    assert (rec.state, rec.status) == ("complete", 202)
    assert_streaming_request(rec)
    # the prelude is its own first chunk: JSON without NUL, then exactly 8 NULs
    head = rec.chunks[0]
    assert head.endswith(NULS) and b"\0" not in head[:-8]
    prelude = json.loads(head[:-8])
    assert prelude["statusCode"] == 200 and prelude["cookies"] == []
    assert prelude["headers"]["content-type"] == "application/vnd.amazon.eventstream"
    assert "x-amzn-requestid" in prelude["headers"]
    assert rec.prelude == prelude
    # then the body, identical to what Bedrock sent, one HTTP chunk per event-stream frame
    assert fake_bedrock.last_stream_body is not None
    assert rec.payload == b"".join(rec.chunks[1:]) == fake_bedrock.last_stream_body
    assert rec.chunks[1:] == frames(fake_bedrock.last_stream_body)
    assert bytes(rec.wire) == chunked(rec.chunks)
    assert rec.trailers == [] and runtime.errors == []
    assert hooks.closed.is_set() and not hooks.aborted.is_set()


def test_botocore_decodes_the_streamed_body_to_the_same_events(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock) -> None:
    request_id = runtime.push(event("converse-stream", "stream me"))
    with serving(runtime, responder(gateway), 1):
        rec = runtime.response(request_id)
    assert fake_bedrock.last_stream_body is not None
    decoded = botocore_events(rec.payload)
    assert decoded == botocore_events(fake_bedrock.last_stream_body)
    kinds = [headers[":event-type"] for headers, _ in decoded]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata"
    text = "".join(json.loads(payload)["delta"]["text"] for headers, payload in decoded
                   if headers[":event-type"] == "contentBlockDelta")
    assert text == "Echo: stream me"


def test_frames_are_written_as_they_arrive(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock) -> None:
    release = fake_bedrock.hold_stream_after(2)
    request_id = runtime.push(event("converse-stream"))
    try:
        with serving(runtime, responder(gateway), 1):
            # Bedrock has sent two frames and holds the rest: they are already here
            rec = runtime.wait_for_chunks(request_id, 3)
            assert rec.state == "receiving"
            assert fake_bedrock.last_stream_body is not None
            upstream = frames(fake_bedrock.last_stream_body)
            assert rec.chunks[1:3] == upstream[:2]
            release.set()
            rec = runtime.response(request_id)
    finally:
        release.set()
    assert rec.state == "complete"
    assert rec.chunks[1:] == upstream


def test_buffered_converse_is_one_chunk(runtime: FakeLambdaRuntime, gateway: Gateway,
                                        hooks: Hooks) -> None:
    request_id = runtime.push(event("converse", "buffered"))
    with serving(runtime, responder(gateway), 1):
        rec = runtime.response(request_id)
    assert (rec.state, rec.status) == ("complete", 202)
    assert_streaming_request(rec)
    assert len(rec.chunks) == 1 and bytes(rec.wire) == chunked(rec.chunks)
    assert rec.prelude["statusCode"] == 200
    assert rec.prelude["headers"]["content-type"] == "application/json"
    assert json.loads(rec.payload)["output"]["message"]["content"][0]["text"] == "Echo: buffered"
    assert hooks.closed.is_set()


def test_bedrock_error_keeps_its_status_and_code(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.fail_next(1, 400, "ValidationException", "bad request")
    request_id = runtime.push(event("converse"))
    with serving(runtime, responder(gateway), 1):
        rec = runtime.response(request_id)
    assert rec.prelude["statusCode"] == 400
    assert rec.prelude["headers"]["x-amzn-errortype"].startswith("ValidationException")
    assert json.loads(rec.payload) == {"message": "bad request"}
    assert runtime.errors == []


def test_failure_before_the_first_byte_is_posted_to_error(
        runtime: FakeLambdaRuntime, gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    good = responder(gateway)
    calls: list[str] = []

    def respond(ev: dict[str, Any], context: LambdaContext) -> Response:
        calls.append(context.aws_request_id)
        if len(calls) == 1:
            raise RuntimeError("secret-detail-xyz")
        return good(ev, context)

    failed = runtime.push(event("converse-stream"))
    unreadable = runtime.push(b"{not json")
    served = runtime.push(event("converse"))
    with caplog.at_level(logging.ERROR, "bedrock_gateway.lambda_runtime"), \
            serving(runtime, respond, 3):
        rec = runtime.response(served)
    assert rec.state == "complete" and failed not in runtime.responses
    assert [e.request_id for e in runtime.errors] == [failed, unreadable]
    error, bad_event = runtime.errors
    assert error.header("Content-Type") == "application/vnd.aws.lambda.error+json"
    assert error.header(TRAILER_TYPE) == "Runtime.HandlerError"
    assert error.json() == {"errorType": "Runtime.HandlerError", "stackTrace": [],
                            "errorMessage": "The gateway failed to answer the request."}
    assert bad_event.json()["errorType"] == "Runtime.UnmarshalError"
    assert calls == [failed, served]  # the unreadable event never reached respond
    # the traceback stays in the function's logs
    assert "secret-detail-xyz" in caplog.text and "Traceback" in caplog.text


class ExplodingResponse(Response):
    """A producer that fails after its first frame in a way chunks() does not absorb."""

    def chunks(self) -> Iterator[bytes]:  # type: ignore[override]
        try:
            assert self.frames is not None
            yield next(self.frames).raw
            raise RuntimeError("producer bug with secret-detail-xyz")
        finally:
            self.close()


def test_failure_after_the_first_bytes_ends_with_error_trailers(
        runtime: FakeLambdaRuntime, caplog: pytest.LogCaptureFixture) -> None:
    frame = frames(_sample_stream())[0]
    closed = threading.Event()

    def respond(ev: Any, context: Any) -> Response:
        response = ExplodingResponse(200, {"content-type": "application/vnd.amazon.eventstream"},
                                     frames=iter(EventStreamDecoder().feed(frame)))
        response.on_close(closed.set)
        return response

    request_id = runtime.push({"any": "event"})
    with caplog.at_level(logging.ERROR, "bedrock_gateway.lambda_runtime"), \
            serving(runtime, respond, 1):
        rec = runtime.response(request_id)
    assert (rec.state, rec.status) == ("complete", 202)
    assert rec.payload == frame and runtime.errors == []
    assert rec.trailer(TRAILER_TYPE) == "Runtime.StreamError"
    error_body = rec.trailer(TRAILER_BODY)
    assert error_body is not None
    assert json.loads(base64.b64decode(error_body)) == {
        "errorType": "Runtime.StreamError",
        "errorMessage": "The response stream failed inside the gateway."}
    assert bytes(rec.wire) == chunked(rec.chunks, (
        f"{TRAILER_TYPE}: Runtime.StreamError\r\n{TRAILER_BODY}: {error_body}\r\n\r\n").encode())
    assert closed.is_set() and "secret-detail-xyz" in caplog.text


def _sample_stream() -> bytes:
    from bedrock_gateway.eventstream import event_frame

    return event_frame("messageStart", {"role": "assistant"})


def test_upstream_failure_mid_stream_is_an_exception_frame_not_trailers(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.cut_stream_after(2)
    request_id = runtime.push(event("converse-stream"))
    with serving(runtime, responder(gateway), 1):
        rec = runtime.response(request_id)
    assert rec.state == "complete" and rec.trailers == []
    decoded = botocore_events(rec.payload)
    assert fake_bedrock.last_stream_body is not None
    assert decoded[:2] == botocore_events(fake_bedrock.last_stream_body)[:2]
    last_headers, _ = decoded[-1]
    assert last_headers[":message-type"] == "exception"


def test_caller_leaving_while_bedrock_is_silent_releases_the_upstream(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock,
        hooks: Hooks) -> None:
    release = fake_bedrock.hold_stream_after(2)
    left = runtime.push(event("converse-stream"))
    after = runtime.push(event("converse", "still serving"))
    try:
        with serving(runtime, responder(gateway), 2):
            # everything Bedrock sent so far has been written; the runtime now waits on
            # Bedrock, with no write that could fail, when the caller leaves
            runtime.wait_for_chunks(left, 3)
            assert runtime.hang_up(left)
            assert hooks.aborted.wait(10), "the producer was not unblocked"
            assert fake_bedrock.wait_for_stream_disconnects(1, timeout=10), (
                "the upstream stream was not released")
            rec = runtime.response(after)
    finally:
        release.set()
    assert runtime.response(left).state == "hung_up"
    assert hooks.closed.is_set()
    assert json.loads(rec.payload)["output"]["message"]["content"][0]["text"] == (
        "Echo: still serving")
    assert runtime.errors == []


def test_caller_leaving_mid_stream_stops_the_stream_and_serves_the_next(
        runtime: FakeLambdaRuntime, gateway: Gateway, fake_bedrock: FakeBedrock,
        hooks: Hooks) -> None:
    fake_bedrock.stream_frames(2000, 64)
    left = runtime.push(event("converse-stream"), hang_up_after=4096)
    after = runtime.push(event("converse", "next one"))
    with serving(runtime, responder(gateway), 2):
        rec = runtime.response(after)
        cut = runtime.response(left)
    assert cut.state == "hung_up" and 4096 <= len(cut.body) < fake_bedrock.last_stream_size
    assert hooks.aborted.is_set() and hooks.closed.is_set()
    assert rec.state == "complete" and b"Echo: next one" in rec.payload


def test_context_and_trace_header(runtime: FakeLambdaRuntime,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "bedrock-gateway")
    seen: list[tuple[LambdaContext, str | None]] = []

    def respond(ev: Any, context: LambdaContext) -> Response:
        seen.append((context, os.environ.get("_X_AMZN_TRACE_ID")))
        return Response(200, {"content-type": "application/json"}, b"{}")

    request_id = runtime.push({}, deadline_ms=1_000_030_000, trace_id="Root=1-abc",
                              client_context='{"custom": {"k": "v"}}')
    with serving(runtime, respond, 1, clock=lambda: 1_000_010.0):
        runtime.response(request_id)
    (context, trace), = seen
    assert context.aws_request_id == request_id and trace == "Root=1-abc"
    assert context.invoked_function_arn == runtime.function_arn
    assert context.get_remaining_time_in_millis() == 20_000
    assert context.client_context == {"custom": {"k": "v"}} and context.identity is None
    assert context.function_name == "bedrock-gateway"


def test_stop_event_ends_the_loop_between_invocations(runtime: FakeLambdaRuntime) -> None:
    stop = threading.Event()

    def respond(ev: Any, context: Any) -> Response:
        stop.set()
        return Response(204, {})

    first = runtime.push({})
    runtime.push({})
    assert run(respond, runtime_api=runtime.address, stop=stop) == 1
    assert runtime.response(first).prelude["statusCode"] == 204


class StaticHandler:
    def respond(self, ev: Any, context: Any) -> Response:
        return Response(200, {"content-type": "application/json"}, b'{"ok":true}')


STATIC = StaticHandler()


def test_main_serves_the_handler_named_in_the_environment(
        runtime: FakeLambdaRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", runtime.address)
    monkeypatch.setenv("BEDROCK_GATEWAY_HANDLER", f"{__name__}:STATIC")
    request_id = runtime.push({})
    assert main(max_invocations=1) == 0
    assert runtime.response(request_id).payload == b'{"ok":true}'


@pytest.mark.parametrize("handler_spec", [f"{__name__}:MISSING", "no_such_module_xyz:h",
                                          f"{__name__}:HAIKU"])
def test_main_reports_init_errors(runtime: FakeLambdaRuntime, monkeypatch: pytest.MonkeyPatch,
                                  handler_spec: str) -> None:
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", runtime.address)
    monkeypatch.setenv("BEDROCK_GATEWAY_HANDLER", handler_spec)
    assert main() == 1
    (error,) = runtime.init_errors
    assert error.header(TRAILER_TYPE) == "Runtime.InitError"
    assert error.json()["errorType"] == "Runtime.InitError"


def test_runtime_api_failure_ends_main(runtime: FakeLambdaRuntime,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", runtime.address)
    monkeypatch.setenv("BEDROCK_GATEWAY_HANDLER", f"{__name__}:STATIC")
    runtime.stop()  # nothing listens any more: GET /next fails
    assert main() == 1


def test_lambda_handler_replies_stream_through_the_runtime(
        runtime: FakeLambdaRuntime, handler: Any, fake_bedrock: FakeBedrock) -> None:
    """``LambdaHandler.respond`` (a ``Reply``) plugs in as is: its ``headers()`` make the
    prelude and the function URL's ConverseStream comes out byte for byte."""
    from .support import CONVERSE, botocore_path, present

    ev = present("function_url", botocore_path(HAIKU, "ConverseStream"),
                 body=json.dumps(CONVERSE).encode())
    request_id = runtime.push(ev)
    with serving(runtime, handler.respond, 1):
        rec = runtime.response(request_id)
    assert rec.prelude["statusCode"] == 200
    assert "content-length" not in rec.prelude["headers"]
    assert rec.prelude["headers"]["content-type"] == "application/vnd.amazon.eventstream"
    assert rec.payload == fake_bedrock.last_stream_body
