"""The Lambda Runtime API client under :mod:`.runtime`: plain sockets, stdlib only.

Requests are written by hand (request head and first HTTP chunk in one ``sendall``, so one
TCP segment with ``TCP_NODELAY``) and answers parsed with :class:`http.client.HTTPResponse`.
One connection at a time: ``GET /next`` and the error posts keep it alive; a streamed
``/response`` is written on it and then the connection is closed, as the Runtime API
documentation asks ("close the underlying connection after it has successfully written the
response"). The protocol itself is described in :mod:`.runtime`. (``http.client`` costs no
extra cold-start time: urllib3, under the forwarder, imports it anyway.)
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import socket
import threading
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import quote

__all__ = ["ClientGone", "Invocation", "ResponseStream", "RuntimeAPIClient", "RuntimeAPIError"]

log = logging.getLogger("bedrock_gateway.lambda_runtime")

API = "/2018-06-01/runtime"
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
ERROR_CONTENT_TYPE = "application/vnd.aws.lambda.error+json"
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
_STREAM_HEADERS = (
    f"Content-Type: {HTTP_INTEGRATION}\r\n"
    "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
    "Transfer-Encoding: chunked\r\n"
    f"Trailer: {ERROR_TYPE}, {ERROR_BODY}\r\n"
)
_LAST_CHUNK = b"0\r\n"


class RuntimeAPIError(Exception):
    """The Runtime API failed (``/next`` refused or unreachable): the runtime should exit."""


class ClientGone(Exception):
    """The Runtime API connection broke while a response was being written."""


class Invocation(NamedTuple):
    request_id: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def _chunk(data: bytes) -> bytes:
    return b"%X\r\n%b\r\n" % (len(data), data)


class RuntimeAPIClient:
    """Talks to ``AWS_LAMBDA_RUNTIME_API`` (``host:port``)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._address = (host.strip("[]") or "127.0.0.1", int(port))
        self._host_header = address
        self._sock: socket.socket | None = None
        self._watcher = _HangupWatcher()

    def close(self) -> None:
        self._drop()
        self._watcher.close()

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _send(self, head: str, payload: bytes = b"") -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self._address)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(head.encode("latin-1") + payload)
        return self._sock

    def _answer(self, sock: socket.socket, method: str) -> tuple[int, dict[str, str], bytes]:
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            body = response.read()
        finally:
            response.close()
        if response.will_close:
            self._drop()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def next_invocation(self) -> Invocation:
        """Block until Lambda hands over the next event."""
        head = f"GET {API}/invocation/next HTTP/1.1\r\nHost: {self._host_header}\r\n\r\n"
        try:
            status, headers, body = self._answer(self._send(head), "GET")
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise RuntimeAPIError(f"GET /runtime/invocation/next failed: {exc!r}") from exc
        request_id = headers.get("lambda-runtime-aws-request-id")
        if status != 200 or not request_id:
            raise RuntimeAPIError(f"GET /runtime/invocation/next answered {status}")
        return Invocation(request_id, headers, body)

    def post_error(self, request_id: str | None, error_type: str, message: str) -> None:
        """``/invocation/{id}/error`` (or ``/init/error`` without an id), Lambda's error JSON."""
        path = (f"{API}/init/error" if request_id is None
                else f"{API}/invocation/{quote(request_id, safe='')}/error")
        body = json.dumps({"errorMessage": message, "errorType": error_type,
                           "stackTrace": []}).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"Content-Type: {ERROR_CONTENT_TYPE}\r\n{ERROR_TYPE}: {error_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        try:
            status, _, answer = self._answer(self._send(head, body), "POST")
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            log.error("posting an error to %s failed: %r", path, exc)
            return
        if status != 202:
            log.error("%s answered %s: %r", path, status, answer[:200])

    def open_stream(self, request_id: str, first: bytes, *, on_hangup: Callable[[], None],
                    final: bool = False) -> ResponseStream:
        """Start the streamed ``/response``: head and ``first`` in one write. ``final``: there
        is nothing else (a buffered answer), so the terminating chunk goes in the same write.
        Otherwise ``on_hangup`` is called (from another thread) if the Runtime API hangs up
        while the response is being produced. Raises :class:`ClientGone`."""
        head = (f"POST {API}/invocation/{quote(request_id, safe='')}/response HTTP/1.1\r\n"
                f"Host: {self._host_header}\r\n{_STREAM_HEADERS}\r\n")
        payload = _chunk(first) + (_LAST_CHUNK + b"\r\n" if final else b"")
        try:
            sock = self._send(head, payload)
        except OSError as exc:
            self._drop()
            raise ClientGone(repr(exc)) from exc
        stream = ResponseStream(self, sock)
        if final:
            stream.finish()
        else:
            self._watcher.watch(sock, on_hangup)
        return stream


class ResponseStream:
    """One streamed ``/response`` POST: HTTP chunks as they come, then the end or the error
    trailers; the connection is closed afterwards."""

    def __init__(self, client: RuntimeAPIClient, sock: socket.socket) -> None:
        self._client = client
        self._sock = sock
        self._done = False

    @property
    def hung_up(self) -> bool:
        return self._client._watcher.fired

    def write(self, data: bytes) -> None:
        if not data:  # an empty chunk would end the body
            return
        if self.hung_up:
            raise ClientGone("the Runtime API hung up")
        try:
            self._sock.sendall(_chunk(data))
        except OSError as exc:
            raise ClientGone(repr(exc)) from exc

    def finish(self) -> None:
        """The terminating chunk: a successful answer."""
        self._end(b"\r\n")

    def fail(self, error_type: str, message: str) -> None:
        """End with the error trailers (declared in the request's ``Trailer`` header)."""
        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        self._end(f"{ERROR_TYPE}: {error_type}\r\n"
                  f"{ERROR_BODY}: {base64.b64encode(body).decode()}\r\n\r\n".encode())

    def _end(self, trailer: bytes) -> None:
        # Stop watching first: the Runtime API's own answer makes the socket readable.
        hung_up = self._client._watcher.unwatch()
        self._done = True
        try:
            if hung_up:
                raise ClientGone("the Runtime API hung up")
            self._sock.sendall(_LAST_CHUNK + trailer)
            status, _, answer = self._client._answer(self._sock, "POST")
        except (OSError, http.client.HTTPException) as exc:
            raise ClientGone(repr(exc)) from exc
        finally:
            self._client._drop()
        if status != 202:
            log.error("the Runtime API refused the response (%s): %r", status, answer[:200])

    def close(self) -> None:
        """Give up on an unfinished stream (the caller left): drop the connection."""
        if not self._done:
            self._done = True
            self._client._watcher.unwatch()
            self._client._drop()


class _HangupWatcher:
    """One daemon thread that notices the Runtime API hanging up on a response in progress.

    A producer spends most of a stream blocked reading Bedrock (the model is thinking), so a
    failed write is a late signal. The response connection turning readable before the
    request is finished means the Runtime API closed it, reset it or answered early (a 413):
    nobody will read the rest, so ``on_hangup`` (``Response.abort``) unblocks the producer
    at once and the upstream stream is released. Started on the first streamed response.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._target: tuple[socket.socket, Callable[[], None]] | None = None
        self._busy = False  # selecting on (or firing for) a target socket
        self._closed = False
        self.fired = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, on_hangup: Callable[[], None]) -> None:
        with self._cond:
            self._target = (sock, on_hangup)
            self.fired = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambda-hangup-watcher",
                                                daemon=True)
                self._thread.start()
        self._wake_w.send(b"w")

    def unwatch(self) -> bool:
        """Stop watching; returns whether the hang-up fired. Once this returns, the watcher
        neither looks at the socket nor calls ``on_hangup``."""
        with self._cond:
            self._target = None
            if self._busy:
                self._wake_w.send(b"w")
                self._cond.wait_for(lambda: not self._busy)
            fired, self.fired = self.fired, False
            return fired

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._target = None
            thread = self._thread
        if thread is not None:
            self._wake_w.send(b"w")
            thread.join()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                target = self._target
                self._busy = target is not None
            fds = [self._wake_r] if target is None else [self._wake_r, target[0]]
            readable, _, _ = select.select(fds, [], [])
            if self._wake_r in readable:
                self._wake_r.recv(4096)
            fire = None
            with self._cond:
                if target is not None and target[0] in readable and self._target is target:
                    self._target = None
                    self.fired = True
                    fire = target[1]
            if fire is not None:
                try:
                    fire()
                except Exception:
                    log.exception("unblocking the producer failed")
            with self._cond:
                self._busy = False
                self._cond.notify_all()
