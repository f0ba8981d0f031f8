"""The fake's HTTP/1.1 side: read a request, authenticate, route, answer, stream frames.

One handler thread per connection (``ThreadingHTTPServer``), keep-alive, Nagle off. Plain
answers go out in one write; event streams use chunked transfer-encoding with one chunk per
frame (flushed as written), or ~1 MiB chunks of a pre-encoded frame for synthetic load streams.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from bedrock_gateway.errors import GatewayError
from bedrock_gateway.eventstream import exception_frame
from bedrock_gateway.operations import route
from bedrock_gateway.testing.fake_dispatch import Outgoing
from bedrock_gateway.testing.fake_faults import StreamEnding, StreamShape
from bedrock_gateway.testing.fake_models import Segments

if TYPE_CHECKING:
    from bedrock_gateway.testing.fake_bedrock import FakeBedrock

__all__ = ["FakeHTTPServer"]

_BATCH = 1 << 20  # bytes per write for repeated frames
_KEEP_LIMIT = 10 * 1024 * 1024  # last_stream_body is kept below this size
_CRLF = b"\r\n"
_END = b"0\r\n\r\n"
_REASONS = {s.value: s.phrase for s in HTTPStatus}


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + _CRLF


def _runs(segments: Segments, start: int, stop: int) -> Iterator[tuple[bytes, int]]:
    """``(frame, repeat)`` runs covering frames ``[start, stop)`` of ``segments``."""
    pos = 0
    for frame, count in segments:
        lo, hi = max(start, pos), min(stop, pos + count)
        if lo < hi:
            yield frame, hi - lo
        pos += count
        if pos >= stop:
            return


def _body(segments: Segments, stop: int, tail: bytes) -> tuple[bytes | None, int]:
    """The body bytes of frames ``[0, stop)`` plus ``tail`` (``None`` when too large), and size."""
    size = sum(len(f) * n for f, n in _runs(segments, 0, stop)) + len(tail)
    if size >= _KEEP_LIMIT:
        return None, size
    return b"".join(f * n for f, n in _runs(segments, 0, stop)) + tail, size


def _frame_at(segments: Segments, index: int) -> bytes | None:
    return next((frame for frame, _ in _runs(segments, index, index + 1)), None)


class _Disconnected(Exception):
    pass


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the default of 5 resets connections under load tests

    def __init__(self, address: tuple[str, int], fake: FakeBedrock) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FakeBedrock"
    sys_version = ""
    server: FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._closed(self.connection)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    # -- request ---------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        fake = self.server.fake
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(400, [("Content-Type", "text/plain")], b"bad request body")
            return
        raw_path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            routed = route(self.command, raw_path, query)
            operation, params, problem = routed.operation, routed.params, None
        except GatewayError as exc:
            operation, params, problem = None, {}, exc
        fake._record(
            method=self.command,
            raw_path=raw_path,
            query=query,
            headers=headers,
            body=body,
            operation=operation,
            params=params,
        )
        denial = fake._authenticate(self.command, raw_path, query, headers, body)
        if denial is None:
            denial = fake._faults.take_error()
        if denial is not None:
            self._delay()
            self._send_error(denial.status, denial.code, denial.message)
            return
        if problem is not None or operation is None:
            self._send_gateway_error(problem or GatewayError())
            return
        shape: StreamShape | None = None
        ending: StreamEnding | None = None
        if operation.streaming:
            shape, ending = fake._faults.take_stream()
        try:
            synthetic = (shape.count, shape.payload_size) if shape else None
            out = fake._dispatch(operation.name, params, query, body, synthetic=synthetic,
                                 headers=headers)
        except GatewayError as exc:
            fake._faults.untake(shape, ending)
            self._send_gateway_error(exc)
            return
        except Exception as exc:
            fake._faults.untake(shape, ending)
            fake.server_errors.append(exc)
            self._send_error(500, "InternalServerException", f"fake bedrock bug: {exc!r}")
            return
        self._delay()
        if out.segments is None:
            self._send(out.status, out.headers, out.body)
        else:
            self._stream(out, ending)

    def _delay(self) -> None:
        delay = self.server.fake._faults.delay
        if delay > 0:
            self.server.fake._stopping.wait(delay)

    # -- plain responses -------------------------------------------------------------------
    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"x-amzn-RequestId: {uuid.uuid4()}")
        lines.append(f"Date: {self.date_time_string()}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        head = self._head(status, [*headers, ("Content-Length", str(len(body)))])
        try:
            self.wfile.write(head + body)
        except OSError:
            self.close_connection = True

    def _send_error(self, status: int, code: str, message: str) -> None:
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        ]
        body = json.dumps({"message": message}).encode()
        self._send(status, headers, body)

    def _send_gateway_error(self, exc: GatewayError) -> None:
        self._send_error(exc.status, exc.code, exc.message)

    # -- event streams ---------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError:
            raise _Disconnected from None

    def _write_frames(self, segments: Segments, start: int, stop: int) -> None:
        for frame, count in _runs(segments, start, stop):
            if count == 1:
                self._write(_chunk(frame))
                continue
            per = max(1, _BATCH // len(frame))
            full = _chunk(frame * per)
            for _ in range(count // per):
                self._write(full)
            if count % per:
                self._write(_chunk(frame * (count % per)))

    def _stream(self, out: Outgoing, ending: StreamEnding | None) -> None:
        fake = self.server.fake
        segments = out.segments or []
        total = sum(count for _, count in segments)
        limit = total if ending is None else min(max(ending.frames, 0), total)
        tail = b""
        if ending is not None and ending.kind == "exception":
            tail = exception_frame(ending.exception_type, ending.message)
        elif ending is not None and ending.kind == "cut":
            tail = (_frame_at(segments, limit) or b"")[: max(ending.partial_bytes, 0)]
        holding = ending is not None and ending.kind == "hold"
        fake._stream_body(*_body(segments, total if holding else limit, tail))
        headers = [*out.headers, ("Transfer-Encoding", "chunked")]
        try:
            self._write(self._head(out.status, headers))
            self._write_frames(segments, 0, limit)
            if ending is None:
                self._write(_END)
            elif ending.kind == "exception":
                self._write(_chunk(tail) + _END)
            elif ending.kind == "cut":
                if tail:
                    self._write(_chunk(tail))
                self._hang_up()
            else:
                released = self._hold(ending)
                if not released:
                    fake._stream_body(*_body(segments, limit, b""))
                    if released is False:
                        raise _Disconnected
                    self._hang_up()
                    return
                self._write_frames(segments, limit, total)
                self._write(_END)
        except _Disconnected:
            fake._stream_disconnected()
            self._hang_up()

    def _hold(self, ending: StreamEnding) -> bool | None:
        """Wait for ``ending.release``: ``True`` once set, ``False`` if the client hung up,
        ``None`` if the server is stopping."""
        stopping = self.server.fake._stopping
        sock = self.connection
        while not ending.release.is_set():
            if stopping.is_set():
                return None
            readable, _, _ = select.select([sock], [], [], 0.02)
            if not readable:
                continue
            try:
                peeked = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                peeked = b""
            if not peeked:
                return False
            ending.release.wait(0.02)
        return True

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
