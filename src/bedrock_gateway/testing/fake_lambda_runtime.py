"""FakeLambdaRuntime: a loopback Lambda Runtime API, to test a custom runtime without AWS.

Queue events with :meth:`~FakeLambdaRuntime.push`; point the runtime at
:attr:`~FakeLambdaRuntime.address` (the ``AWS_LAMBDA_RUNTIME_API`` value). ``GET /next`` hands
them out in order with the headers Lambda sends, and blocks while the queue is empty. Every
``/response`` is recorded as it arrives, byte for byte: the request headers as sent (order and
case kept), each HTTP chunk, the chunk framing on the wire and the trailers; tests can wait for
the first chunks while the rest is still being produced. ``push(..., hang_up_after=n)`` closes
the connection once ``n`` body bytes have arrived (at a chunk boundary), and
:meth:`~FakeLambdaRuntime.hang_up` closes it at any moment, the way a caller that goes away
would end it. ``/invocation/{id}/error`` and ``/init/error`` posts are recorded too.

The fake's answers follow the Runtime API's OpenAPI description: ``202 {"status": "OK"}``,
``400`` for a request id that was not handed out or already has its outcome.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from bedrock_gateway.testing.fake_lambda_http import (
    Pending,
    RecordedError,
    RecordedResponse,
    RuntimeServer,
)

__all__ = ["FakeLambdaRuntime", "RecordedError", "RecordedResponse"]


class FakeLambdaRuntime:
    """A Lambda Runtime API on a loopback port, served from background threads."""

    def __init__(self, *, function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:"
                 "bedrock-gateway", timeout_ms: int = 30_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.function_arn = function_arn
        self.timeout_ms = timeout_ms
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[Pending] = deque()
        self._handed_out: dict[str, Pending] = {}
        self._answered: set[str] = set()
        self.responses: dict[str, RecordedResponse] = {}
        self.errors: list[RecordedError] = []
        self.init_errors: list[RecordedError] = []
        self._connections: set[socket.socket] = set()
        self._streams: dict[str, socket.socket] = {}  # responses being received
        self._hung_up: set[str] = set()
        self._stopping = False
        self._server: RuntimeServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeLambdaRuntime:
        if self._server is None:
            self._stopping = False
            self._server = RuntimeServer(self)
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True,
                                            name="FakeLambdaRuntime")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; a runtime blocked in ``GET /next`` sees its connection close."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        server.shutdown()
        thread.join()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # joins the connection threads
        self._server = self._thread = None

    def __enter__(self) -> FakeLambdaRuntime:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the value for ``AWS_LAMBDA_RUNTIME_API``."""
        if self._server is None:
            raise RuntimeError("FakeLambdaRuntime is not started")
        return f"127.0.0.1:{self._server.server_address[1]}"

    # -- test API --------------------------------------------------------------------------
    def push(self, event: Any, *, request_id: str | None = None, deadline_ms: int | None = None,
             trace_id: str | None = None, client_context: str | None = None,
             cognito_identity: str | None = None, hang_up_after: int | None = None) -> str:
        """Queue an invocation (``event``: JSON-able, or raw ``bytes``); returns its id."""
        request_id = request_id or f"{next(self._ids):08d}-{uuid.uuid4()}"
        deadline = deadline_ms if deadline_ms is not None else (
            int(self._clock() * 1000) + self.timeout_ms)
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline)),
            ("Lambda-Runtime-Invoked-Function-Arn", self.function_arn),
            ("Lambda-Runtime-Trace-Id", trace_id or f"Root=1-{uuid.uuid4().hex[:8]}-"
             f"{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"),
        ]
        if client_context is not None:
            headers.append(("Lambda-Runtime-Client-Context", client_context))
        if cognito_identity is not None:
            headers.append(("Lambda-Runtime-Cognito-Identity", cognito_identity))
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        with self._cond:
            self._queue.append(Pending(request_id, body, headers, hang_up_after))
            self._cond.notify_all()
        return request_id

    def hang_up(self, request_id: str) -> bool:
        """Close the connection of a response being received now (the caller left while the
        function is still producing); ``False`` if that response is not being received."""
        with self._cond:
            conn = self._streams.get(request_id)
            if conn is None:
                return False
            self._hung_up.add(request_id)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate()`` (evaluated under the fake's lock) holds."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_chunks(self, request_id: str, count: int, timeout: float = 10.0
                        ) -> RecordedResponse:
        """The response once ``count`` chunks of it have arrived (or it ended)."""
        def ready() -> bool:
            found = self.responses.get(request_id)
            return found is not None and (len(found.chunks) >= count
                                          or found.state != "receiving")
        if not self.wait(ready, timeout):
            raise AssertionError(f"{request_id}: fewer than {count} chunks within {timeout}s")
        return self.responses[request_id]

    def response(self, request_id: str, timeout: float = 10.0) -> RecordedResponse:
        """The response once it has ended (completed, hung up or abandoned)."""
        def ended() -> bool:
            found = self.responses.get(request_id)
            return found is not None and found.state != "receiving"
        if not self.wait(ended, timeout):
            raise AssertionError(f"{request_id}: no finished response within {timeout}s")
        return self.responses[request_id]

    # -- called by the handler -------------------------------------------------------------
    def _next(self) -> Pending | None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or bool(self._queue))
            if self._stopping:
                return None
            pending = self._queue.popleft()
            self._handed_out[pending.request_id] = pending
            return pending

    def _hang_up_after(self, request_id: str) -> int | None:
        with self._cond:
            pending = self._handed_out.get(request_id)
            return pending.hang_up_after if pending is not None else None

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._cond:
            if not opened:
                self._connections.discard(conn)
                return
            self._connections.add(conn)
            stopping = self._stopping
        if stopping:  # accepted while stop() ran: it may have missed this one
            conn.shutdown(socket.SHUT_RDWR)

    def _record_error(self, error: RecordedError) -> None:
        with self._cond:
            (self.errors if error.request_id is not None else self.init_errors).append(error)
            self._cond.notify_all()

    def _record_response(self, record: RecordedResponse, conn: socket.socket) -> None:
        with self._cond:
            self.responses.setdefault(record.request_id, record)
            self._streams[record.request_id] = conn
            self._cond.notify_all()

    def _streaming_done(self, request_id: str) -> None:
        with self._cond:
            self._streams.pop(request_id, None)

    def _cut_state(self, request_id: str) -> str:
        """How a response that ended before its last chunk is recorded."""
        with self._cond:
            return "hung_up" if request_id in self._hung_up else "abandoned"

    def _update(self, record: RecordedResponse, *, chunk: bytes | None = None,
                wire: bytes = b"", state: str | None = None, status: int | None = None) -> None:
        with self._cond:
            if chunk is not None:
                record.chunks.append(chunk)
            record.wire += wire
            if state is not None:
                record.state = state
            if status is not None:
                record.status = status
            self._cond.notify_all()

    def _claim(self, request_id: str) -> bool:
        """Whether an outcome for ``request_id`` is acceptable (handed out, not yet answered)."""
        with self._cond:
            if request_id not in self._handed_out or request_id in self._answered:
                return False
            self._answered.add(request_id)
            return True


