"""Issue 13 §1: a client that has not authenticated cannot exhaust the server.

Each finding of the red-team run has a test here, through a real uvicorn server and raw
sockets, with small configured limits and short timeouts: header size and count (431), a
request that never finishes arriving (408), idle keep-alive connections, the connection cap
(503, evicting connections that only wait), authentication before a large body is read, and —
in a ``bedrock-gateway serve`` subprocess under a small ``ulimit -n`` — the open-files limit,
an idle-socket flood and the memory held by stalled unauthenticated uploads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bedrock_gateway.adapters.asgi import ASGIApp
from bedrock_gateway.adapters.limits import ServerLimits
from bedrock_gateway.auth.api_keys import generate_api_key
from bedrock_gateway.config import ConfigError, build_gateway, parse_config
from bedrock_gateway.serve import BackgroundServer, _fit
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

KEY, KEY_SHA256 = generate_api_key()
GOOD = f"Authorization: Bearer {KEY}\r\n"
BAD = "Authorization: Bearer bgw_not-a-key\r\n"
ACCESS_KEY_ID = "AKIDGATEWAYLIMITS1"
BODY = json.dumps({"inputText": "hi"}).encode()
INVOKE = "/model/amazon.titan-text-express-v1/invoke"
Limited = Callable[..., BackgroundServer]


@pytest.fixture
def limited(fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch,
            caplog: pytest.LogCaptureFixture) -> Iterator[Limited]:
    """Serve a gateway as ``bedrock-gateway serve`` does (TOML -> gateway + server limits), with
    API keys and SigV4 keys; ``gateway`` lines go under ``[gateway]``. No test logs a
    traceback."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.setenv("LIMITS_TEST_SECRET", "s3cr3t-s3cr3t-s3cr3t")
    running: list[BackgroundServer] = []

    def start(gateway: str = "") -> BackgroundServer:
        config = parse_config(tomllib.loads(f"""
[gateway]
{gateway}
[upstream]
endpoint_url = "{fake_bedrock.endpoint_url}"
backoff_base_s = 0
[[auth.api_keys]]
sha256 = "{KEY_SHA256}"
subject = "client"
[[auth.access_keys]]
access_key_id = "{ACCESS_KEY_ID}"
secret_env = "LIMITS_TEST_SECRET"
"""))
        app = ASGIApp(build_gateway(config), limits=config.gateway.server_limits())
        running.append(BackgroundServer(app).start())
        return running[-1]

    with caplog.at_level(logging.INFO):
        yield start
    for server in running:
        server.stop()
        server.app.gateway.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def connect(server: BackgroundServer, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def head(path: str = INVOKE, extra: str = "", length: int | None = len(BODY),
         method: str = "POST") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"{framing}\r\n").encode()


def answer(sock: socket.socket) -> SimpleNamespace:
    """Read one response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return SimpleNamespace(status=int(lines[0].split()[1]), headers=headers, body=body)


def bedrock_shaped(r: SimpleNamespace, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.headers["x-amzn-errortype"].split(":")[0] == code
    assert json.loads(r.body)["message"]
    assert r.headers.get("connection") == "close"


def closes_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


# -- request heads ---------------------------------------------------------------------------

def test_a_request_head_over_the_byte_limit_is_431(limited: Limited) -> None:
    server = limited("max_header_bytes = 2048")
    with connect(server, timeout=2) as sock:
        sock.sendall(head(extra=GOOD + "X-Big: " + "a" * 4096 + "\r\n") + BODY)
        bedrock_shaped(answer(sock), 431, "ValidationException")
    with connect(server) as sock:  # just under the limit is served
        sock.sendall(head(extra=GOOD + "X-Big: " + "a" * 1500 + "\r\n") + BODY)
        assert answer(sock).status == 200


def test_too_many_header_fields_is_431(limited: Limited) -> None:
    server = limited("max_header_count = 20")
    with connect(server, timeout=2) as sock:
        sock.sendall(head(extra=GOOD + "X-A: b\r\n" * 50) + BODY)
        r = answer(sock)
    bedrock_shaped(r, 431, "ValidationException")
    assert "20 header fields" in json.loads(r.body)["message"]
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD + "X-A: b\r\n" * 10) + BODY)
        assert answer(sock).status == 200


def test_an_endless_header_is_cut_off_at_the_limit(limited: Limited) -> None:
    server = limited("max_header_bytes = 4096")
    with connect(server, timeout=2) as sock:
        sock.sendall(head(extra=GOOD)[:-2] + b"X-Endless: ")
        sent = 0
        with pytest.raises(OSError):  # the server stops reading and closes
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
    assert sent < 16 * 1024 * 1024  # what the socket buffers took before the close


# -- read deadline and keep-alive ------------------------------------------------------------

def test_a_connection_that_sends_nothing_is_closed(limited: Limited) -> None:
    server = limited("request_read_timeout_s = 0.3")
    with connect(server) as sock:
        started = time.monotonic()
        assert closes_within(sock, 3)
        assert time.monotonic() - started < 2


def test_a_stalled_half_header_gets_408(limited: Limited) -> None:
    server = limited("request_read_timeout_s = 0.3")
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD)[:40])
        bedrock_shaped(answer(sock), 408, "RequestTimeoutException")


@pytest.mark.parametrize("credential", [GOOD, BAD, ""])
def test_a_stalled_half_body_gets_408_and_the_connection_closes(
        limited: Limited, credential: str) -> None:
    server = limited("request_read_timeout_s = 0.4")
    with connect(server) as sock:
        sock.sendall(head(extra=credential, length=1000) + b"{" + b" " * 499)
        bedrock_shaped(answer(sock), 408, "RequestTimeoutException")
        assert closes_within(sock, 2)


def test_a_trickling_kept_alive_connection_gets_408(limited: Limited) -> None:
    """uvicorn's keep-alive timer is cancelled by any byte; the read deadline is not."""
    server = limited("request_read_timeout_s = 0.4")
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD) + BODY)
        assert answer(sock).status == 200
        sock.sendall(b"POST ")
        deadline = time.monotonic() + 3
        with pytest.raises(OSError):  # answered 408 and closed while we trickle
            while time.monotonic() < deadline:
                sock.sendall(b"a")
                time.sleep(0.05)
                sock.settimeout(0.001)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                assert data.startswith(b"HTTP/1.1 408"), data
                raise ConnectionResetError
        assert time.monotonic() < deadline


def test_idle_keep_alive_connections_close_after_the_configured_time(limited: Limited) -> None:
    server = limited("keep_alive_timeout_s = 0.4")
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD) + BODY)
        assert answer(sock).status == 200
        assert not closes_within(sock, 0.05)  # kept alive...
        assert closes_within(sock, 3)  # ...for 0.4 s


# -- connection cap --------------------------------------------------------------------------

def test_over_the_cap_a_connection_gets_503_when_none_can_be_evicted(limited: Limited) -> None:
    server = limited("max_connections = 3\nrequest_read_timeout_s = 10")
    busy = [connect(server) for _ in range(3)]
    for sock in busy:  # a request in progress on each: headers done, body half sent
        sock.sendall(head(extra=GOOD, length=100) + b"{")
    time.sleep(0.2)
    with connect(server) as sock:
        bedrock_shaped(answer(sock), 503, "ServiceUnavailableException")
    for sock in busy:
        sock.close()
    time.sleep(0.2)
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD) + BODY)
        assert answer(sock).status == 200


def test_at_the_cap_connections_that_only_wait_make_room(limited: Limited) -> None:
    """Idle sockets, half heads and idle keep-alive connections are evicted (oldest first) for
    a new connection; requests in progress are not."""
    server = limited("max_connections = 4\nrequest_read_timeout_s = 10")
    busy = connect(server)
    busy.sendall(head(extra=GOOD, length=100) + b"{")
    idle = [connect(server) for _ in range(10)]
    idle[-1].sendall(b"POST /mod")
    time.sleep(0.2)
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD) + BODY)
        assert answer(sock).status == 200
    assert sum(closes_within(sock, 0.5) for sock in idle) >= 7
    busy.sendall(b" " * 98 + b"}")  # the request in progress was never touched
    assert answer(busy).status == 400  # (its body is not a valid invoke body)
    for sock in [busy, *idle]:
        sock.close()


# -- authentication before the body ----------------------------------------------------------

@pytest.mark.parametrize("credential", [BAD, "", "Authorization: Basic dXNlcjpwYXNz\r\n"])
def test_a_refused_credential_is_answered_before_a_large_body(
        limited: Limited, credential: str) -> None:
    server = limited("max_unauthenticated_body_bytes = 4096")
    with connect(server) as sock:
        sock.sendall(head(extra=credential, length=20 * 1024 * 1024) + b"{" + b" " * 8191)
        bedrock_shaped(answer(sock), 403, "UnrecognizedClientException")  # without the 20 MiB
        assert closes_within(sock, 2)


def test_a_chunked_body_is_judged_after_the_unauthenticated_limit(limited: Limited) -> None:
    server = limited("max_unauthenticated_body_bytes = 4096")
    with connect(server) as sock:
        sock.sendall(head(extra=BAD + "Transfer-Encoding: chunked\r\n", length=None)
                     + b"2000\r\n" + b" " * 0x2000 + b"\r\n")
        bedrock_shaped(answer(sock), 403, "UnrecognizedClientException")
        assert closes_within(sock, 2)


def test_expect_100_continue_is_refused_without_asking_for_the_body(limited: Limited) -> None:
    server = limited("max_unauthenticated_body_bytes = 4096")
    with connect(server) as sock:
        sock.sendall(head(extra=BAD + "Expect: 100-continue\r\n", length=10 * 1024 * 1024))
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 403"), data


def test_an_unknown_sigv4_key_is_refused_before_the_body(limited: Limited) -> None:
    """SigV4 signs the body, so early only the header's form and the key id are checked."""
    server = limited("max_unauthenticated_body_bytes = 4096")
    sig = ("Authorization: AWS4-HMAC-SHA256 Credential={}/20250101/us-east-1/bedrock/"
           "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64 + "\r\n"
           "X-Amz-Date: 20250101T000000Z\r\n")
    with connect(server) as sock:
        sock.sendall(head(extra=sig.format("AKIDUNKNOWN"), length=10 * 1024 * 1024) + b"{")
        bedrock_shaped(answer(sock), 403, "UnrecognizedClientException")
    with connect(server, timeout=1) as sock:  # a known key id: the body is read (and the
        sock.sendall(head(extra=sig.format(ACCESS_KEY_ID), length=10 * 1024 * 1024) + b"{")
        with pytest.raises(TimeoutError):  # signature checked over it); no early answer
            sock.recv(65536)


def test_a_valid_credential_sends_a_large_body_and_an_unknown_path_is_refused_early(
        limited: Limited) -> None:
    server = limited("max_unauthenticated_body_bytes = 1024")
    body = json.dumps({"inputText": "x" * 200_000}).encode()
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD, length=len(body)) + body)
        assert answer(sock).status == 200
    with connect(server) as sock:
        sock.sendall(head("/model/x.y/delete", extra=GOOD, length=10 * 1024 * 1024))
        bedrock_shaped(answer(sock), 404, "UnknownOperationException")


def test_an_oversized_body_is_refused_and_the_connection_closed(limited: Limited) -> None:
    server = limited("max_body_bytes = 1000")
    with connect(server) as sock:
        sock.sendall(head(extra=GOOD + "Transfer-Encoding: chunked\r\n", length=None)
                     + b"800\r\n" + b" " * 0x800 + b"\r\n")
        bedrock_shaped(answer(sock), 413, "ValidationException")
        assert closes_within(sock, 2)


# -- configuration ---------------------------------------------------------------------------

def test_limits_are_validated_and_have_safe_defaults() -> None:
    defaults = parse_config({"auth": {"anonymous": True}}).gateway
    assert defaults.server_limits() == ServerLimits()
    assert defaults.max_unauthenticated_body_bytes == 64 * 1024
    assert ServerLimits().max_connections <= 1024 - 256
    for key, value in [("max_header_bytes", 10), ("request_read_timeout_s", 0),
                       ("max_connections", 0), ("keep_alive_timeout_s", -1)]:
        with pytest.raises(ConfigError, match=f"gateway.{key}"):
            parse_config({"auth": {"anonymous": True}, "gateway": {key: value}})


def test_a_cap_the_open_files_limit_cannot_hold_is_lowered(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    assert _fit(ServerLimits(), 4096) == ServerLimits()
    assert _fit(ServerLimits(), None) == ServerLimits()
    assert _fit(ServerLimits(), 1024).max_connections == 768
    with caplog.at_level(logging.WARNING):
        assert _fit(ServerLimits(), 512).max_connections == 256
    assert "lowered to 256" in caplog.text


# -- the whole process, under a small ulimit -n ----------------------------------------------

@pytest.fixture(scope="module")
def served(fake_bedrock_server: FakeBedrock, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[SimpleNamespace]:
    """``bedrock-gateway serve`` started with a soft open-files limit of 200 (hard: 400)."""
    config = tmp_path_factory.mktemp("limits") / "gateway.toml"
    config.write_text(f"""
[upstream]
endpoint_url = "{fake_bedrock_server.endpoint_url}"
[[auth.api_keys]]
sha256 = "{KEY_SHA256}"
subject = "client"
""")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=FAKE_SECRET_KEY)
    command = (f"ulimit -Sn 200 && ulimit -Hn 400 && exec {sys.executable} -m bedrock_gateway.cli"
               f" serve --config {config} --port {port} --log-level warning")
    proc = subprocess.Popen(["bash", "-c", command], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
                time.sleep(0.05)
        yield SimpleNamespace(port=port, pid=proc.pid)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr
    assert "max_connections 768 lowered to 144" in stderr


def _status(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head(extra=GOOD) + BODY)
        return int(answer(sock).status)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
def test_the_process_raises_its_open_files_limit_and_survives_an_idle_flood(
        served: SimpleNamespace) -> None:
    limits = Path(f"/proc/{served.pid}/limits").read_text()
    (line,) = [ln for ln in limits.splitlines() if ln.startswith("Max open files")]
    assert line.split()[3:5] == ["400", "400"]  # soft raised to the hard limit
    flood = []
    try:
        for _ in range(500):  # more sockets than the process may open
            flood.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        time.sleep(0.3)
        assert _status(served.port) == 200
        assert len(os.listdir(f"/proc/{served.pid}/fd")) < 400
    finally:
        for sock in flood:
            sock.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_stalled_unauthenticated_uploads_hold_no_memory(served: SimpleNamespace) -> None:
    """The red-team run: 20 connections each sending 25 MiB - 1 bytes without a credential,
    then stalling, pinned 575 MB. Now each is refused after 64 KiB."""
    before = _rss_mib(served.pid)
    size = 25 * 1024 * 1024 - 1
    socks = [socket.create_connection(("127.0.0.1", served.port), timeout=10) for _ in range(20)]
    refused = []

    def upload(sock: socket.socket) -> None:
        sock.sendall(head(length=size))
        try:
            sock.sendall(b" " * (size - 1))  # all but the last byte
        except OSError:
            refused.append(sock)

    threads = [threading.Thread(target=upload, args=(sock,)) for sock in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    grown = _rss_mib(served.pid) - before
    for sock in socks:
        sock.close()
    assert len(refused) == 20
    assert grown < 40, f"RSS grew {grown:.0f} MiB"
