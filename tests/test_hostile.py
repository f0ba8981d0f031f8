"""Hostile input gets a Bedrock-shaped 4xx, reaches no upstream, leaks nothing, and the
gateway keeps serving."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from bedrock_gateway.testing import FakeBedrock

from .test_e2e import CLAUDE, MESSAGES


def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def post(path: str, body: bytes, extra: str = "", content_length: int | None = None) -> bytes:
    length = len(body) if content_length is None else content_length
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {length}\r\n\r\n").encode() + body


GOOD = json.dumps({"messages": MESSAGES}).encode()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (post("/model/x.y/delete", GOOD), 404, "UnknownOperationException"),
        (post("/admin/../model/x.y/converse", GOOD), 404, "UnknownOperationException"),
        (post("/model/..%2F..%2Fetc/converse", GOOD), 400, "ValidationException"),
        (post("/model/a%0D%0AX-Evil:%201/converse", GOOD), 400, "ValidationException"),
        (post("/model/%C0%AF/converse", GOOD), 400, "ValidationException"),
        (post(f"/model/{CLAUDE}/converse", b'{"messages": [tru'), 400, "ValidationException"),
        (post(f"/model/{CLAUDE}/converse", b"\xff\xfe{}"), 400, "ValidationException"),
        (post(f"/model/{CLAUDE}/converse", b"[1, 2]"), 400, "ValidationException"),
        (post(f"/model/{CLAUDE}/invoke", b"not json"), 400, "ValidationException"),
        (post(f"/model/{CLAUDE}/converse", b"", content_length=30 * 1024 * 1024),
         413, "ValidationException"),
        (b"GET /async-invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
         400, "ValidationException"),
    ],
    ids=["unknown-op", "dot-dot", "encoded-dot-dot", "crlf", "bad-utf8-path", "bad-json",
         "bad-utf8-body", "json-not-object", "invoke-not-json", "too-large", "get-with-body"],
)
def test_hostile_requests_are_refused(gateway_server: Any, fake_bedrock: FakeBedrock,
                                      request_bytes: bytes, status: int, code: str) -> None:
    got_status, headers, body = raw_request(gateway_server.url, request_bytes)
    assert got_status == status
    assert headers["x-amzn-errortype"].split(":")[0] == code
    message = json.loads(body)["message"]
    assert "Traceback" not in message and "File " not in message
    assert fake_bedrock.requests == []  # nothing was forwarded
    # ... and the gateway keeps serving
    ok_status, _, _ = raw_request(gateway_server.url, post(f"/model/{CLAUDE}/converse", GOOD))
    assert ok_status == 200


def test_oversized_chunked_body_is_cut_off(gateway_server: Any, fake_bedrock: FakeBedrock) -> None:
    chunk = b"x" * (1024 * 1024)
    head = (b"POST /model/a.b/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    host, port = gateway_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        try:
            for _ in range(40):  # 40 MiB offered; the gateway answers once 25 MiB is passed
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the gateway may stop reading once it has answered
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413")
    assert fake_bedrock.requests == []
