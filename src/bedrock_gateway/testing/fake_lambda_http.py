"""The HTTP side of :class:`~bedrock_gateway.testing.fake_lambda_runtime.FakeLambdaRuntime`.

Requests are parsed by hand, not with ``http.server``, so that nothing about the chunked
encoding (chunk boundaries, the last chunk, trailers) is normalized away before it is recorded.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bedrock_gateway.testing.fake_lambda_runtime import FakeLambdaRuntime

__all__ = ["Pending", "RecordedError", "RecordedResponse", "RuntimeHandler", "RuntimeServer"]

API = "/2018-06-01/runtime"
_DELIMITER = b"\0" * 8
_OUTCOME = re.compile(rf"^{API}/invocation/([^/]+)/(response|error)$")
_MAX_LINE = 65537


@dataclass
class RecordedResponse:
    """One ``POST /invocation/{id}/response`` as the fake received it (so far)."""

    request_id: str
    headers: list[tuple[str, str]]
    """The request headers exactly as sent (order and case kept)."""
    chunks: list[bytes] = field(default_factory=list)
    """The de-chunked data, one item per HTTP chunk, in order."""
    wire: bytearray = field(default_factory=bytearray)
    """The body exactly as sent: chunk sizes, data, CRLFs, last chunk and trailers."""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    state: str = "receiving"
    """``receiving``, ``complete``, ``hung_up`` (the fake closed it) or ``abandoned`` (the
    runtime closed it before the last chunk)."""
    status: int = 0
    """What the fake answered: 202, or 400 for an unknown or already answered request id."""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def trailer(self, name: str) -> str | None:
        return next((v for k, v in self.trailers if k.lower() == name.lower()), None)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def prelude(self) -> dict[str, Any]:
        """The HTTP integration prelude: the JSON before the first 8 NUL bytes."""
        head, found, _ = self.body.partition(_DELIMITER)
        if not found:
            raise ValueError("no 8-NUL delimiter in the body")
        document: dict[str, Any] = json.loads(head)
        return document

    @property
    def payload(self) -> bytes:
        """The client's body: everything after the first 8 NUL bytes."""
        _, found, rest = self.body.partition(_DELIMITER)
        if not found:
            raise ValueError("no 8-NUL delimiter in the body")
        return rest


@dataclass(frozen=True)
class RecordedError:
    """One ``/invocation/{id}/error`` (``request_id``) or ``/init/error`` (``None``) post."""

    request_id: str | None
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Pending:
    """An invocation queued for ``GET /next``."""

    request_id: str
    body: bytes
    headers: list[tuple[str, str]]
    hang_up_after: int | None


class RuntimeServer(socketserver.ThreadingTCPServer):
    daemon_threads = False  # server_close() joins the connection threads
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, fake: FakeLambdaRuntime) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), RuntimeHandler)


class RuntimeHandler(socketserver.StreamRequestHandler):
    server: RuntimeServer

    def handle(self) -> None:
        fake = self.server.fake
        fake._track(self.connection, True)
        try:
            while self._serve_one():
                pass
        except (OSError, ValueError):
            pass
        finally:
            fake._track(self.connection, False)

    def _line(self) -> bytes:
        return self.rfile.readline(_MAX_LINE)

    def _serve_one(self) -> bool:
        """One request; whether the connection stays open."""
        request_line = self._line()
        if not request_line:
            return False
        method, path, _ = request_line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while (line := self._line()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        fake = self.server.fake
        if method == "GET" and path == f"{API}/invocation/next":
            pending = fake._next()
            if pending is None:  # stopping
                return False
            self._send(200, pending.body, pending.headers)
            return True
        if method == "POST" and path == f"{API}/init/error":
            fake._record_error(RecordedError(None, headers, self._read_plain(headers)))
            self._send(202, b'{"status":"OK"}')
            return True
        found = _OUTCOME.match(path) if method == "POST" else None
        if found is None:
            self._read_plain(headers)
            self._send(404, b'{"errorMessage":"not found","errorType":"NotFound"}')
            return True
        request_id, kind = found.groups()
        accepted = fake._claim(request_id)
        if kind == "error":
            fake._record_error(RecordedError(request_id, headers, self._read_plain(headers)))
            status = 202 if accepted else 400
        else:
            record = RecordedResponse(request_id, headers)
            fake._record_response(record, self.connection)
            try:
                if not self._read_chunked(record, fake._hang_up_after(request_id)):
                    return False
            finally:
                fake._streaming_done(request_id)
            status = 202 if accepted else 400
            fake._update(record, state="complete", status=status)
        body = b'{"status":"OK"}' if status == 202 else (
            b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}')
        self._send(status, body)
        return True

    def _read_plain(self, headers: list[tuple[str, str]]) -> bytes:
        chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower()
                      for k, v in headers)
        if chunked:
            record = RecordedResponse("", headers)
            self._read_chunked(record, None)
            return record.body
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, record: RecordedResponse, hang_up_after: int | None) -> bool:
        """Read a chunked body into ``record`` as it arrives; ``False`` if the connection
        ended (the runtime abandoned it, or the fake hung up after ``hang_up_after`` bytes)."""
        fake = self.server.fake
        received = 0
        while True:
            size_line = self._line()
            if not size_line.endswith(b"\n"):
                fake._update(record, state=fake._cut_state(record.request_id))
                return False
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                wire = bytearray(size_line)
                while (line := self._line()) not in (b"\r\n", b"\n", b""):
                    wire += line
                    name, _, value = line.decode("latin-1").partition(":")
                    record.trailers.append((name.strip(), value.strip()))
                fake._update(record, wire=bytes(wire + line))
                return True
            data = self.rfile.read(size)
            end = self.rfile.read(2)
            if len(data) < size or end != b"\r\n":
                fake._update(record, state=fake._cut_state(record.request_id))
                return False
            received += size
            fake._update(record, chunk=data, wire=size_line + data + end)
            if hang_up_after is not None and received >= hang_up_after:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                fake._update(record, state="hung_up")
                return False

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
              ) -> None:
        reason = {200: "OK", 202: "Accepted", 400: "Bad Request"}.get(status, "Not Found")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers or [])]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
