"""Reading a request body under the gateway's limits, for the ASGI adapter.

- The declared ``Content-Length`` is checked before anything is read; a chunked body is counted
  as it arrives (``max_body_bytes``).
- A body larger than ``max_unauthenticated_body_bytes`` is not read past that limit until
  :meth:`Gateway.precheck` has judged the headers (in a worker thread: a JWKS fetch may block).
  With a declared length the check comes before the first byte is read — so a client that sent
  ``Expect: 100-continue`` is refused without ever being told to send its body.
- The whole request must arrive by ``deadline`` (loop time), else ``408``.

Any refusal here is answered with ``Connection: close``: the rest of the body is never read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor
from functools import partial
from typing import Any

from bedrock_gateway.adapters.limits import RequestTimeoutError
from bedrock_gateway.call import Response
from bedrock_gateway.errors import PayloadTooLargeError, ValidationError
from bedrock_gateway.pipeline import Gateway

__all__ = ["Refused", "RequestHead", "read_body"]

log = logging.getLogger("bedrock_gateway.server")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Refused(Exception):
    """The request is answered with ``response`` (and the connection closed) unread."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class RequestHead:
    """What :meth:`Gateway.precheck` and :meth:`Gateway.handle` take besides the body."""

    __slots__ = ("headers", "method", "mount", "path", "query", "raw_headers")

    def __init__(self, method: str, path: str, query: str, mount: str,
                 raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.mount = mount
        self.raw_headers = raw_headers
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]


async def read_body(gateway: Gateway, executor: Executor, head: RequestHead, receive: Receive,
                    deadline: float) -> bytes:
    """The whole body; raises :class:`Refused` or a :class:`GatewayError` to refuse it."""
    declared = None
    for name, value in head.raw_headers:
        if name == b"content-length":
            declared = gateway.check_content_length(value)
    early = gateway.max_unauthenticated_body_bytes
    checked = False
    try:
        async with asyncio.timeout_at(deadline):
            if declared is not None and declared > early:
                await _precheck(gateway, executor, head)
                checked = True
            limit = gateway.max_body_bytes
            parts: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ValidationError("The client disconnected before sending its body.")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError.over(limit)
                parts.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(parts)
                if not checked and size > early:  # chunked, or more than it declared
                    await _precheck(gateway, executor, head)
                    checked = True
    except TimeoutError:
        log.info("refused %s %r: its body did not arrive in time", head.method, head.path[:200])
        raise RequestTimeoutError(
            "The request body was not received in time; the connection is closed.") from None


async def _precheck(gateway: Gateway, executor: Executor, head: RequestHead) -> None:
    refusal = await asyncio.get_running_loop().run_in_executor(executor, partial(
        gateway.precheck, head.method, head.path, head.query, head.headers, mount=head.mount))
    if refusal is not None:
        raise Refused(refusal)
