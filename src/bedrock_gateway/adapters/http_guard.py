"""uvicorn's httptools protocol with the limits an Internet-facing server needs.

httptools (llhttp) puts no bound on a request head: a 16 MiB header value, 100,000 header lines
and a header that never ends are all buffered. uvicorn sets no deadline on a connection that
sends nothing or half a request, and its keep-alive timer is cancelled by any byte received.
:class:`GuardedHttpToolsProtocol` adds, per connection:

- a **head budget**: at most ``max_header_bytes`` are fed to the parser before the head is
  complete (the bytes are counted before parsing, so nothing larger is ever buffered), and at
  most ``max_header_count`` header fields — else ``431``;
- a **read deadline**: the whole request must arrive within ``request_read_timeout_s`` of its
  first byte (of the connection, for a new one). A stalled head gets ``408``; the deadline of
  the body is handed to the ASGI app in the scope (``DEADLINE_EXTENSION``), which answers its
  own ``408`` — the app owns the connection once the head is complete. A connection that sent
  nothing is closed silently;
- a **connection cap**: at ``max_connections``, a new connection first evicts the connection
  that has been *waiting* longest — no request in progress: it sent nothing yet, is idle between
  requests, or is still sending its head — so sockets that only hold a slot cannot lock real
  clients out (nginx reuses idle connections the same way). When every connection has a request
  in progress, the new one is answered ``503 ServiceUnavailableException`` at once and closed,
  so its file descriptor is free again and the served connections keep theirs.

Each refusal is Bedrock-shaped and closes the connection; it is logged at INFO (no traceback),
and cap refusals as one WARNING at most every 10 s with a count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bedrock_gateway.adapters.limits import (
    DEADLINE_EXTENSION,
    HeadersTooLargeError,
    RequestTimeoutError,
    ServerLimits,
    TooManyConnectionsError,
    raw_response,
)
from bedrock_gateway.errors import GatewayError, ValidationError

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol"]

log = logging.getLogger("bedrock_gateway.server")

_WARN_EVERY_S = 10.0


class _Stop(Exception):
    """Raised from a parser callback: httptools stops parsing and re-raises it wrapped."""


class _CapWarnings:
    """One WARNING per interval for connections refused at the cap, not one per connection."""

    def __init__(self) -> None:
        self.refused = 0
        self.last = float("-inf")

    def note(self, now: float, cap: int) -> None:
        self.refused += 1
        if now - self.last >= _WARN_EVERY_S:
            log.warning("connection cap (%d) reached: refused %d connection(s) with 503",
                        cap, self.refused)
            self.refused = 0
            self.last = now


_cap_warnings = _CapWarnings()


def guarded_protocol(limits: ServerLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, bound to ``limits``."""

    class Protocol(GuardedHttpToolsProtocol):
        pass

    Protocol.limits = limits
    Protocol.waiting = {}
    return Protocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ServerLimits] = ServerLimits()
    # Connections without a request in progress, longest waiting first (one server's).
    waiting: ClassVar[dict[GuardedHttpToolsProtocol, None]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = True  # between requests or inside a request head
        self._head_bytes = 0  # bytes of the current head fed to the parser
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        self._pending: GatewayError | None = None  # set by a callback before raising _Stop
        self._refused = False

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.limits.max_connections and not self._evict()
        super().connection_made(transport)
        if over:
            _cap_warnings.note(self.loop.time(), self.limits.max_connections)
            self._refuse(TooManyConnectionsError())
            return
        self._arm()  # a new connection must send its request in time, or it is closed
        self.waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def _evict(self) -> bool:
        """Close the connection waiting longest, to make room; ``False`` if none is waiting."""
        while self.waiting:
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            if oldest.transport is None or oldest.transport.is_closing():
                continue
            log.info("connection cap reached: closing %s, which has no request in progress",
                     oldest.client)
            if oldest._head_bytes:  # half a head: tell it why
                oldest._refuse(TooManyConnectionsError())
            else:
                oldest._refused = True
                oldest._disarm()
                oldest.transport.close()
            return True
        return False

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered and closing: the rest is not even parsed
            return
        self._unset_keepalive_if_required()
        while data:
            if self._head:
                if self._deadline is None:  # the first byte of a request on a kept-alive conn
                    self._arm()
                room = self.limits.max_header_bytes - self._head_bytes
                if room <= 0:
                    self._refuse(HeadersTooLargeError(
                        f"The request headers are larger than {self.limits.max_header_bytes}"
                        " bytes."))
                    return
                part, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
                self._head_bytes += len(part)
            else:  # a body; a pipelined next head in the same read is bounded by the read size
                part, data = data, b""
            if not self._feed(part):
                return

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            self._refuse(self._pending or ValidationError("The request is not valid HTTP/1.1."))
            return False
        return not self._refused

    # -- parser callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_header_count:
            self._pending = HeadersTooLargeError(
                f"The request has more than {self.limits.max_header_count} header fields.")
            raise _Stop
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head = False
        self.waiting.pop(self, None)
        self._disarm()  # from here on the app enforces the deadline on the body
        self.scope.setdefault("extensions", {})[DEADLINE_EXTENSION] = {"at": self._deadline_at}
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if (self._head and not self.transport.is_closing()  # kept alive: waiting again
                and (self.cycle is None or self.cycle.response_complete)):  # (none pipelined)
            self.waiting.pop(self, None)
            self.waiting[self] = None

    # -- deadline and refusals ----------------------------------------------------------------

    def _arm(self) -> None:
        self._deadline_at = self.loop.time() + self.limits.request_read_timeout_s
        self._deadline = self.loop.call_at(self._deadline_at, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if not self._head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # a new connection that sent nothing: nothing to answer
            self.transport.close()
            return
        self._refuse(RequestTimeoutError(
            f"The request was not received within {self.limits.request_read_timeout_s:g} s."))

    def _refuse(self, error: GatewayError) -> None:
        """Answer ``error`` and close the connection."""
        self._refused = True
        self._disarm()
        if not isinstance(error, TooManyConnectionsError):
            log.info("refused a request from %s: %s %s", self.client, error.status, error.message)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._head:  # a pipelined request behind one still being answered: finish that
                cycle.keep_alive = False  # one, then close (uvicorn closes after the response)
                self.flow.pause_reading()
                return
            if cycle.response_started:  # a malformed body under way: nothing more can be said
                self.transport.close()
                return
        self.transport.write(raw_response(error))
        self.transport.close()
