"""Serve a :class:`Gateway` as an ASGI application (uvicorn, hypercorn, FastAPI mounts...).

The pipeline is synchronous; it runs in a thread pool. A streamed answer is pumped by one
worker thread into a bounded buffer that the event loop drains, sending everything that has
arrived in one ``http.response.body`` message — so a burst of small frames costs one send, not
one thread hop per frame, and a slow client makes the producer wait instead of growing memory.
When the client disconnects, the producer is told to stop, the upstream read is unblocked, and
the response's close hooks run.

The body is read under the gateway's limits (:mod:`~bedrock_gateway.adapters.asgi_body`): size,
authentication from the headers before a large body, and the request's read deadline — given
by the server in the scope (``DEADLINE_EXTENSION``, :mod:`~bedrock_gateway.adapters.http_guard`)
or, under any other server, ``limits.request_read_timeout_s`` from the start of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from bedrock_gateway.adapters.asgi_body import Refused, RequestHead, read_body
from bedrock_gateway.adapters.limits import DEADLINE_EXTENSION, ServerLimits
from bedrock_gateway.call import Response
from bedrock_gateway.errors import GatewayError, ValidationError
from bedrock_gateway.pipeline import Gateway

__all__ = ["ASGIApp"]

log = logging.getLogger("bedrock_gateway.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HIGH_WATER = 1024 * 1024  # bytes buffered between producer thread and event loop


class _Disconnected(Exception):
    pass


class ASGIApp:
    """``ASGIApp(gateway)`` is an ASGI 3 application serving the gateway over HTTP.

    ``limits`` are the server's (:class:`ServerLimits`): :mod:`bedrock_gateway.serve` applies
    them to uvicorn; the app itself uses ``request_read_timeout_s`` when its server gives no
    read deadline."""

    def __init__(self, gateway: Gateway, *, max_workers: int = 128,
                 limits: ServerLimits | None = None) -> None:
        self.gateway = gateway
        self.limits = limits or ServerLimits()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bgw")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not part of Bedrock's protocol
        loop = asyncio.get_running_loop()
        try:
            head = _head(scope)
            body = await read_body(self.gateway, self._executor, head, receive,
                                   _deadline(scope, loop, self.limits.request_read_timeout_s))
        except GatewayError as exc:  # the rest of the request is not read: close
            await _send_buffered(send, Response.from_error(exc), close=True)
            return
        except Refused as refused:
            await _send_buffered(send, refused.response, close=True)
            return
        pump = _Pump(loop)
        # One worker thread runs the pipeline and, for a stream, goes on producing its frames:
        # no second thread hop between "response ready" and "first frame".
        # A bare submit: wrapping the future for the loop would cost one more wake-up per call.
        self._executor.submit(
            pump.run, partial(self.gateway.handle, head.method, head.path, head.query,
                              head.headers, body, mount=head.mount)
        )
        response = await pump.response
        if response.is_stream:
            await self._stream(pump, response, receive, send)
        else:
            try:
                await _send_buffered(send, response)
            finally:
                response.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._executor.shutdown(wait=False, cancel_futures=True)
                self.gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _stream(self, pump: _Pump, response: Response, receive: Receive, send: Send
                      ) -> None:
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": _encode_headers(response.headers)})
            while True:
                item = pump.poll()
                if item is None:  # nothing yet: wait for the producer or for the client to leave
                    ready = asyncio.ensure_future(pump.wait())
                    await asyncio.wait({ready, watcher}, return_when=asyncio.FIRST_COMPLETED)
                    if not ready.done():
                        ready.cancel()
                        raise _Disconnected
                    continue
                data, finished = item
                if finished:  # the last bytes and the end of the body in one message
                    await send({"type": "http.response.body", "body": data, "more_body": False})
                    return
                await send({"type": "http.response.body", "body": data, "more_body": True})
                if watcher.done():
                    raise _Disconnected
        except (_Disconnected, OSError):
            log.info("client disconnected mid-stream; closing upstream")
        finally:
            watcher.cancel()
            pump.cancel(response)


def _head(scope: Scope) -> RequestHead:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    try:
        path = raw_path.decode("ascii")
        query = scope.get("query_string", b"").decode("ascii")
    except UnicodeDecodeError:
        raise ValidationError("The request path is not valid.") from None
    mount = scope.get("root_path", "")
    if mount and path.startswith(mount):  # mounted under a prefix (FastAPI/Starlette Mount)
        path = path[len(mount):]
    else:
        mount = ""
    return RequestHead(scope["method"], path, query, mount, scope["headers"])


def _deadline(scope: Scope, loop: asyncio.AbstractEventLoop, timeout_s: float) -> float:
    """The loop time by which the whole request must have arrived."""
    given = (scope.get("extensions") or {}).get(DEADLINE_EXTENSION)
    return float(given["at"]) if given else loop.time() + timeout_s


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _Pump:
    """Runs the pipeline in a worker thread and moves a stream's chunks to the event loop,
    with bounded buffering."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.response: asyncio.Future[Response] = loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._cancelled = False
        self._cond = threading.Condition()
        self._ready = asyncio.Event()

    def run(self, handle: Callable[[], Response]) -> None:
        try:
            response = handle()
        except BaseException:  # handle() answers every error itself; this is a last resort
            log.exception("the pipeline raised")
            response = Response.from_error(GatewayError())
        if response.is_stream:
            self.produce(response)
        else:
            self._loop.call_soon_threadsafe(self.response.set_result, response)

    def _publish(self, response: Response) -> None:  # on the loop
        if not self.response.done():
            self.response.set_result(response)
        self._ready.set()

    def produce(self, response: Response) -> None:
        """Pump the stream. The response is published with its first chunk, so the event loop
        is woken once for "headers + first event", not twice."""
        chunks = response.chunks()
        published = False
        try:
            for chunk in chunks:
                with self._cond:
                    while self._size >= _HIGH_WATER and not self._cancelled:
                        self._cond.wait()
                    if self._cancelled:
                        break
                    wake = not self._chunks
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                if not published:
                    published = True
                    self._loop.call_soon_threadsafe(self._publish, response)
                elif wake:
                    self._loop.call_soon_threadsafe(self._ready.set)
        finally:
            chunks.close()  # runs the response's close hooks
            with self._cond:
                self._done = True
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._publish, response)

    def poll(self) -> tuple[bytes, bool] | None:
        """Everything produced so far and whether the stream has ended; ``None`` if nothing."""
        with self._cond:
            if not self._chunks and not self._done:
                self._ready.clear()
                return None
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            self._cond.notify()
            return data, self._done

    async def wait(self) -> None:
        await self._ready.wait()

    def cancel(self, response: Response) -> None:
        with self._cond:
            if self._done:
                return
            self._cancelled = True
            self._cond.notify()
        response.abort()


async def _send_buffered(send: Send, response: Response, *, close: bool = False) -> None:
    headers = _encode_headers(response.headers)
    headers.append((b"content-length", str(len(response.body)).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})


def _encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            if k != "content-length"]
