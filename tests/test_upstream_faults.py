"""Upstream faults through the real path (boto3 or a raw socket -> gateway over HTTP -> a
misbehaving upstream): a 200 whose body breaks is never retried and is charged at its
reservation; buffered answers are capped; a client that leaves is not an upstream fault; and
``--log-level`` reaches the gateway's own loggers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EventStreamError

from bedrock_gateway import Call, Next, Response
from bedrock_gateway.quota.meter import Meter
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from .conftest import ServeConfig, gateway_client, leave_mid_stream, records
from .scripted_http import Answer, ScriptedServer
from .test_e2e import CLAUDE, MESSAGES

NOVA_PRO = "amazon.nova-pro-v1:0"  # priced: $3.2 per 1M output tokens
MAX_TOKENS = 500



def truncated_200(conn: socket.socket, stop: threading.Event) -> int:
    """Content-Length 2,000, then 600 bytes and the connection closes."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2000\r\n\r\n" + b'{"output": "' + b"x" * 588)
    return 600


def huge_200(total: int, *, chunked: bool) -> Answer:
    """A 200 of ``total`` bytes sent 64 KiB at a time (chunked or with a Content-Length);
    returns how much went out before the gateway hung up."""
    def respond(conn: socket.socket, stop: threading.Event) -> int:
        framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing
                     + b"\r\n\r\n")
        piece, sent = b"x" * 65536, 0
        try:
            while sent < total:
                conn.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            if chunked:
                conn.sendall(b"0\r\n\r\n")
        except OSError:  # the gateway stopped reading and closed the connection
            pass
        return sent
    return respond


def small_200(conn: socket.socket, stop: threading.Event) -> int:
    body = json.dumps({"output": {"message": {"role": "assistant", "content": [
        {"text": "ok"}]}}, "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
        "metrics": {"latencyMs": 1}}).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return len(body)


@pytest.fixture
def serve_raw(configured: ServeConfig) -> Callable[..., tuple[BackgroundServer, Path]]:
    """A gateway from TOML (usage log, a dollar budget) in front of a :class:`ScriptedServer`;
    ``extra`` lines go to ``[upstream]``."""
    def start(upstream: ScriptedServer, extra: str = "") -> tuple[BackgroundServer, Path]:
        return configured('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n',
                          upstream=f"max_attempts = 3\n{extra}", endpoint_url=upstream.url)
    return start


def converse_error(server: BackgroundServer) -> ClientError:
    # The SDK's own retries on: a 5xx answer here would be sent again (and paid again).
    client = gateway_client(server.url, retries={"mode": "standard", "total_max_attempts": 3})
    try:
        with pytest.raises(ClientError) as info:
            client.converse(modelId=NOVA_PRO, messages=MESSAGES,
                            inferenceConfig={"maxTokens": MAX_TOKENS})
    finally:
        client.close()
    return info.value


def test_a_truncated_200_is_sent_once_answered_424_and_charged_its_reservation(
        serve_raw: Callable[..., tuple[BackgroundServer, Path]]) -> None:
    upstream = ScriptedServer(truncated_200)
    server, log = serve_raw(upstream)
    try:
        error = converse_error(server)
    finally:
        upstream.close()
    assert error.response["Error"]["Code"] == "ModelErrorException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert upstream.requests == 1  # not by the gateway, not by the SDK: the model ran once
    (record,) = records(log, 1)
    assert record["status"] == 424
    assert record["complete"] is False
    assert record["error"] == "ModelErrorException"
    assert record["estimated"] is True  # the worst case: the usage never arrived
    # at least the output bound at $3.2 per 1M tokens; never null, never $0
    assert record["cost_usd"] is not None
    assert Decimal(record["cost_usd"]) >= MAX_TOKENS * Decimal("3.2") / 1_000_000


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_buffered_answer_over_the_cap_is_refused_and_its_connection_dropped(
        serve_raw: Callable[..., tuple[BackgroundServer, Path]], chunked: bool) -> None:
    total = 64 * 1024 * 1024
    upstream = ScriptedServer(huge_200(total, chunked=chunked), small_200)
    server, log = serve_raw(upstream, extra=f"max_response_bytes = {1024 * 1024}")
    try:
        error = converse_error(server)
        assert error.response["Error"]["Code"] == "ModelErrorException"
        assert "larger than this gateway accepts" in error.response["Error"]["Message"]
        assert upstream.done.acquire(timeout=10)
        assert upstream.requests == 1
        assert upstream.sent[0] < total // 2  # the gateway stopped reading and hung up
        # the gateway goes on working (a fresh connection, the broken one was not pooled)
        client = gateway_client(server.url)
        assert client.converse(modelId=NOVA_PRO, messages=MESSAGES)["stopReason"] == "end_turn"
        client.close()
    finally:
        upstream.close()
    first, _ = records(log, 2)
    assert first["status"] == 424 and first["estimated"] is True
    assert first["cost_usd"] is not None and Decimal(first["cost_usd"]) > 0


def test_streams_are_not_capped(serve_gateway: Callable[..., BackgroundServer],
                                fake_bedrock: FakeBedrock) -> None:
    server = serve_gateway(max_response_bytes=4096)
    fake_bedrock.stream_frames(200, 100)  # ~30 KB of events
    client = gateway_client(server.url)
    try:
        events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    finally:
        client.close()
    assert len(events) > 200
    assert "messageStop" in events[-2] or "metadata" in events[-1]


# -- a client that leaves is not an upstream fault ----------------------------------------------


def _metered(meters: list[Meter], closed: threading.Event) -> Callable[[Call, Next], Response]:
    def middleware(call: Call, next_: Next) -> Response:
        response = next_(call)
        meters.append(Meter.of(call, response))
        response.on_close(closed.set)
        return response
    return middleware


def test_a_client_leaving_mid_stream_is_logged_as_such_not_as_an_interruption(
        serve_gateway: Callable[..., BackgroundServer], fake_bedrock: FakeBedrock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bedrock_gateway")
    meters: list[Meter] = []
    closed = threading.Event()
    server = serve_gateway([_metered(meters, closed)])
    release = fake_bedrock.hold_stream_after(2)
    body = json.dumps({"messages": MESSAGES}).encode()
    try:
        leave_mid_stream(server, CLAUDE, body)
        assert closed.wait(10), "close hooks did not run"
        assert fake_bedrock.wait_for_stream_disconnects(1, timeout=10)
    finally:
        release.set()
    gateway_logs = [r for r in caplog.records if r.name.startswith("bedrock_gateway")]
    assert not [r for r in gateway_logs if r.levelno >= logging.WARNING], caplog.text
    assert "interrupted" not in caplog.text
    assert any(r.name == "bedrock_gateway.forward" and r.levelno <= logging.INFO
               and "the client left mid-stream" in r.getMessage() for r in gateway_logs), caplog.text
    (meter,) = meters
    assert meter.complete is False  # still an incomplete stream for quotas and records


def test_an_upstream_cut_mid_stream_is_still_a_warning(
        serve_gateway: Callable[..., BackgroundServer], fake_bedrock: FakeBedrock,
        caplog: pytest.LogCaptureFixture) -> None:
    server = serve_gateway()
    fake_bedrock.cut_stream_after(2)
    client = gateway_client(server.url)
    stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
    try:
        with pytest.raises(EventStreamError, match="modelStreamErrorException"):
            list(stream)
    finally:
        stream.close()
        client.close()
    assert any(r.levelno == logging.WARNING and "The model stream was interrupted" in
               r.getMessage() for r in caplog.records), caplog.text


# -- --log-level reaches bedrock_gateway.* ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    tick = threading.Event()
    for _ in range(1200):  # up to ~30 s on a loaded machine; a started gateway ends the wait
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert proc.poll() is None, "the gateway exited"
            tick.wait(0.025)
    raise AssertionError("the gateway did not start")


@pytest.mark.parametrize(("level", "shown"), [("debug", True), ("warning", False)])
def test_log_level_applies_to_the_gateways_own_loggers(
        tmp_path: Path, fake_bedrock: FakeBedrock, level: str, shown: bool) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[upstream]\nendpoint_url = "{fake_bedrock.endpoint_url}"\n'
                      "[auth]\nanonymous = true\n")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bedrock_gateway.cli", "serve", "--config", str(config),
         "--port", str(port), "--log-level", level], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    release = fake_bedrock.hold_stream_after(2)
    try:
        _wait_for_port(port, proc)
        leave_mid_stream(_Port(port), CLAUDE,  # type: ignore[arg-type]
                         json.dumps({"messages": MESSAGES}).encode())
        assert fake_bedrock.wait_for_stream_disconnects(1, timeout=10)
    finally:
        release.set()
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    text = err.decode()
    assert ("DEBUG bedrock_gateway.forward: the client left mid-stream" in text) is shown, text
    assert "stream ended with" not in text and "interrupted" not in text


class _Port:
    """What :func:`leave_mid_stream` reads of a server: its port."""

    def __init__(self, port: int) -> None:
        self.port = port
