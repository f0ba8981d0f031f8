"""A Lambda runtime loop that streams the gateway's answers (Python has no native streaming).

The managed Python runtime answers an invocation only with a whole payload. This loop speaks
the Lambda Runtime API itself, like the Lambda Web Adapter does: an ``AWS_LAMBDA_EXEC_WRAPPER``
script ends in ``exec python3 -m bedrock_gateway.adapters.aws_lambda.runtime`` and the managed
runtime never starts. Stdlib only, and nothing heavy is imported before the handler is built.

The protocol, and where each fact comes from:

- ``GET /2018-06-01/runtime/invocation/next`` blocks until an event arrives; the body is the
  event JSON, the headers ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``
  (epoch ms), ``Lambda-Runtime-Invoked-Function-Arn``, ``Lambda-Runtime-Trace-Id`` (to copy
  into ``_X_AMZN_TRACE_ID``), ``Lambda-Runtime-Client-Context``,
  ``Lambda-Runtime-Cognito-Identity``. A 500 means "non-recoverable, exit promptly"
  (AWS Lambda Runtime API OpenAPI spec 2018-06-01; docs.aws.amazon.com/lambda/latest/dg/
  runtimes-api.html; ``lambda_runtime`` crate, ``types.rs``/``constants.rs``).
- Streaming (docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html, "Implementing response
  streaming in a custom runtime"): ``POST /runtime/invocation/{id}/response`` with
  ``Lambda-Runtime-Function-Response-Mode: streaming`` and ``Transfer-Encoding: chunked``,
  the body written as HTTP/1.1 chunks, the connection closed afterwards; answer ``202``.
  ``/invocation/{id}/error`` may only be used *before* the response starts. After that, an
  error is reported in the trailers ``Lambda-Runtime-Function-Error-Type`` (a string,
  ``Category.Reason`` recommended) and ``Lambda-Runtime-Function-Error-Body`` (base64), which
  must be announced up front in a ``Trailer`` header; Lambda then treats the invocation as
  successful and forwards the error metadata. The Node.js runtime client
  (aws-lambda-nodejs-runtime-interface-client ``ResponseStream.js``) always sends
  ``Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body`` and on
  failure the trailers with the base64 of ``{"errorType", "errorMessage"}``.
- HTTP shape (Function URLs in ``RESPONSE_STREAM`` mode, API Gateway REST ``STREAM``
  integrations): ``Content-Type: application/vnd.awslambda.http-integration-response``, the
  body starting with a JSON prelude ``{"statusCode", "headers", "cookies"}``, then 8 NUL
  bytes, then the client's body. Node's ``awslambda.HttpResponseStream.from`` writes exactly
  this before the first write; the Rust ``lambda_runtime`` streaming module (used by the
  Lambda Web Adapter through ``lambda_http``) sends the same headers, ``Set-Cookie`` moved to
  ``cookies``. API Gateway wants the prelude and delimiter within the first 16 KB and starts
  streaming to the client once it has them (API Gateway guide, response-transfer-mode-lambda).
- Errors posted to ``/error`` and ``/init/error`` use ``Content-Type:
  application/vnd.aws.lambda.error+json``, ``{"errorMessage", "errorType", "stackTrace"}``
  and the ``Lambda-Runtime-Function-Error-Type`` header (OpenAPI spec). ``/init/error`` is
  answered to the first invocation; the runtime then exits.

Decisions: every answer, buffered ones too, goes through the streaming path, because an
integration configured for streaming needs the prelude to learn status and headers (a 429 or a
400 must keep its status and ``x-amzn-ErrorType``). A buffered answer is one HTTP chunk (prelude,
delimiter, body) written with the request head and the last chunk in one ``sendall``. A stream
sends the prelude at once (first byte as early as possible), then one HTTP chunk per event-stream
frame as it arrives. Which failure goes where:

- ``respond`` raises (or its answer cannot be framed) -> ``/error``, logged with its traceback;
  the client gets Lambda's generic error, never a traceback.
- Bedrock or a policy fails mid-stream -> ``Response.chunks`` has already turned it into an
  exception frame; the stream ends cleanly (no trailers), as it would from Bedrock itself.
- Anything else after the first byte (the producer itself raising) -> error trailers.
- The Runtime API connection breaks (the caller left) -> ``Response.abort()`` and ``close()``:
  the upstream stream is released, close hooks run, and the loop takes the next invocation.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from threading import Event
from typing import TYPE_CHECKING, Any, cast

from bedrock_gateway.adapters.aws_lambda._runtime_api import (
    ClientGone,
    Invocation,
    ResponseStream,
    RuntimeAPIClient,
    RuntimeAPIError,
)

if TYPE_CHECKING:
    from bedrock_gateway.call import Response

__all__ = ["LambdaContext", "RuntimeAPIError", "main", "run"]

log = logging.getLogger("bedrock_gateway.lambda_runtime")

Respond = Callable[[Any, "LambdaContext"], Any]
"""``respond(event, context)`` returns a :class:`~bedrock_gateway.call.Response`, or an object
whose ``response`` attribute is one and whose ``headers()`` method, if any, gives the headers
for the client (``LambdaHandler.respond``'s ``Reply``). The runtime knows no event shape."""

_DELIMITER = b"\0" * 8
_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding", "connection", "set-cookie"})


class LambdaContext:
    """The invocation context, with the managed Python runtime's attribute names."""

    def __init__(self, headers: Mapping[str, str], clock: Callable[[], float] = time.time
                 ) -> None:
        self.aws_request_id = headers["lambda-runtime-aws-request-id"]
        self.deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn", "")
        self.trace_id = headers.get("lambda-runtime-trace-id")
        self.client_context = _json_header(headers.get("lambda-runtime-client-context"))
        self.identity = _json_header(headers.get("lambda-runtime-cognito-identity"))
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(self._clock() * 1000))


def _json_header(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def prelude(status: int, headers: Mapping[str, str]) -> bytes:
    """The HTTP integration prelude and its 8-NUL delimiter."""
    kept = {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}
    cookies = [v for k, v in headers.items() if k.lower() == "set-cookie"]
    document = {"statusCode": status, "headers": kept, "cookies": cookies}
    # json.dumps escapes control characters, so no NUL can appear before the delimiter.
    return json.dumps(document, separators=(",", ":")).encode() + _DELIMITER


def run(
    respond: Respond,
    *,
    runtime_api: str | None = None,
    max_invocations: int | None = None,
    stop: Event | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Serve invocations until ``max_invocations`` are done or ``stop`` is set (both checked
    between invocations; a ``GET /next`` in progress is not interrupted). Returns how many
    were served. Raises :class:`RuntimeAPIError` when the Runtime API fails (exit then)."""
    client = RuntimeAPIClient(runtime_api or os.environ["AWS_LAMBDA_RUNTIME_API"])
    served = 0
    try:
        while (max_invocations is None or served < max_invocations) and not (
                stop is not None and stop.is_set()):
            _invoke(client, client.next_invocation(), respond, clock)
            served += 1
    finally:
        client.close()
    return served


def _invoke(client: RuntimeAPIClient, invocation: Invocation, respond: Respond,
            clock: Callable[[], float]) -> None:
    request_id = invocation.request_id
    trace_id = invocation.headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        event = json.loads(invocation.body)
    except ValueError:
        log.error("invocation %s: the event is not JSON", request_id)
        client.post_error(request_id, "Runtime.UnmarshalError", "The event is not valid JSON.")
        return
    response: Response | None = None
    try:
        result = respond(event, LambdaContext(invocation.headers, clock))
        answer = cast("Response", getattr(result, "response", result))
        response = answer
        shape = getattr(result, "headers", None)  # Reply.headers(); Response.headers is a dict
        first = prelude(answer.status, shape() if callable(shape) else answer.headers)
    except Exception:
        log.exception("invocation %s failed before its first byte", request_id)
        if response is not None:
            response.close()
        client.post_error(request_id, "Runtime.HandlerError",
                          "The gateway failed to answer the request.")
        return
    _answer(client, request_id, answer, first)


def _answer(client: RuntimeAPIClient, request_id: str, response: Response, first: bytes
            ) -> None:
    if not response.is_stream:
        try:
            client.open_stream(request_id, first + response.body, on_hangup=response.abort,
                               final=True)
        except ClientGone as exc:
            log.info("invocation %s: the caller left before the answer (%s)", request_id, exc)
        finally:
            response.close()
        return
    chunks = response.chunks()
    stream: ResponseStream | None = None
    try:
        stream = client.open_stream(request_id, first, on_hangup=response.abort)
        for data in chunks:
            stream.write(data)
        stream.finish()
    except ClientGone as exc:
        log.info("invocation %s: the caller left mid-stream (%s); releasing the upstream",
                 request_id, exc)
        response.abort()
    except Exception:
        log.exception("invocation %s: the response stream failed after its first bytes",
                      request_id)
        if stream is not None:
            try:
                stream.fail("Runtime.StreamError", "The response stream failed inside the gateway.")
            except ClientGone:
                pass
    finally:
        if stream is not None:
            stream.close()
        chunks.close()
        response.close()


def _load_handler() -> Any:
    spec = os.environ.get("BEDROCK_GATEWAY_HANDLER")
    if spec:
        import importlib

        module_name, _, attr = spec.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in (attr or "handler").split("."):
            target = getattr(target, part)
    else:
        from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
        from bedrock_gateway.pipeline import Gateway

        target = LambdaHandler(Gateway.from_config(os.environ["BEDROCK_GATEWAY_CONFIG"]))
    if not callable(getattr(target, "respond", None)):
        raise TypeError(f"{spec or 'LambdaHandler'} has no respond(event, context) method")
    return target


def main(*, max_invocations: int | None = None) -> int:
    """Build the handler from the environment and serve; exit status for the process.

    ``BEDROCK_GATEWAY_HANDLER=module:attr`` names a ``LambdaHandler`` (anything with
    ``respond(event, context)``); otherwise the gateway is built from the TOML file named by
    ``BEDROCK_GATEWAY_CONFIG``. A failure there is posted to ``/runtime/init/error``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper(),
                            format="%(levelname)s %(name)s %(message)s")
    runtime_api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    try:
        handler = _load_handler()
    except Exception:
        log.exception("the gateway could not be initialized")
        client = RuntimeAPIClient(runtime_api)
        try:
            client.post_error(None, "Runtime.InitError", "The gateway could not start.")
        finally:
            client.close()
        return 1
    try:
        run(handler.respond, runtime_api=runtime_api, max_invocations=max_invocations)
    except RuntimeAPIError:
        log.exception("the Runtime API failed; exiting")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
