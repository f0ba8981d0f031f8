"""A client that goes away mid-stream releases the upstream connection and runs close hooks."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from bedrock_gateway import Call, Next, Response
from bedrock_gateway.testing import FakeBedrock

from .test_e2e import CLAUDE, MESSAGES


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
        assert fake_bedrock.wait_for_stream_disconnects(1, timeout=10), (
            "the upstream connection was not released")
    finally:
        release.set()
