"""A client that goes away mid-stream releases the upstream connection and runs close hooks."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from bedrock_gateway import Call, Next, Response
from bedrock_gateway.testing import FakeBedrock

from .test_e2e import CLAUDE, MESSAGES


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition (not a time window): returns as soon as it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


def test_client_disconnect_mid_stream(serve_gateway: Callable[..., Any],
                                      fake_bedrock: FakeBedrock) -> None:
    closed = threading.Event()

    def on_close_recorder(call: Call, next_: Next) -> Response:
        response = next_(call)
        response.on_close(closed.set)
        return response

    server = serve_gateway([on_close_recorder])
    release = fake_bedrock.hold_stream_after(2)
    body = json.dumps({"messages": MESSAGES}).encode()
    request = (f"POST /model/{CLAUDE.replace(':', '%3A')}/converse-stream HTTP/1.1\r\n"
               f"Host: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    host, port = server.url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            received = sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")
        # the client is gone while the upstream is still holding its stream open
        assert closed.wait(10), "close hooks did not run"
        assert wait_until(lambda: fake_bedrock.stream_disconnects >= 1), (
            "the upstream connection was not released")
    finally:
        release.set()
