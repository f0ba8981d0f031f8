"""Shared fixtures: a gateway served by uvicorn over real HTTP in front of FakeBedrock.

FakeBedrock fixtures (``fake_bedrock``, ``fake_bedrock_server``, ``bedrock_client_factory``)
come from the package's own pytest plugin, the same one users get.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import settings

from bedrock_gateway import Call, Gateway, Middleware, Principal, Response, SigV4Forwarder
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

# No per-example deadline: CI machines are noisy, and a slow example is not a wrong one.
settings.register_profile("bedrock_gateway", deadline=None)
settings.load_profile("bedrock_gateway")


class Recorder:
    """A terminal handler for in-process gateway tests: records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, call: Call) -> Response:
        self.calls.append(call)
        return Response(200, {}, b"{}")

    @property
    def principal(self) -> Principal | None:
        assert len(self.calls) == 1, f"{len(self.calls)} calls reached the handler"
        return self.calls[0].principal


def make_forwarder(fake: FakeBedrock, **kwargs: Any) -> SigV4Forwarder:
    options: dict[str, Any] = {
        "region": "us-east-1",
        "endpoint_url": fake.endpoint_url,
        "credentials": Credentials(FAKE_ACCESS_KEY, FAKE_SECRET_KEY),
        "sleep": lambda _seconds: None,  # never wait for backoff in tests
    }
    options.update(kwargs)
    return SigV4Forwarder(**options)


def gateway_client(url: str, **config: Any) -> Any:
    """An ordinary boto3 client pointed at a gateway (anonymous: it sends no credentials)."""
    options: dict[str, Any] = {"retries": {"total_max_attempts": 1}, "signature_version": UNSIGNED}
    options.update(config)
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=url,
                        config=Config(**options))


@pytest.fixture(scope="session")
def gateway_server(fake_bedrock_server: FakeBedrock) -> Iterator[BackgroundServer]:
    forwarder = make_forwarder(fake_bedrock_server)
    with BackgroundServer(Gateway(forwarder, anonymous=True)) as server:
        yield server
    forwarder.close()


@pytest.fixture
def client(gateway_server: BackgroundServer, fake_bedrock: FakeBedrock) -> Iterator[Any]:
    c = gateway_client(gateway_server.url)
    yield c
    c.close()


@pytest.fixture
def direct(fake_bedrock: FakeBedrock, bedrock_client_factory: Callable[..., Any]) -> Any:
    return bedrock_client_factory(fake_bedrock.endpoint_url, retries={"total_max_attempts": 1})


@pytest.fixture
def serve_gateway(fake_bedrock: FakeBedrock) -> Iterator[Callable[..., BackgroundServer]]:
    """Start a dedicated gateway (own middleware / forwarder options) for one test."""
    started: list[tuple[BackgroundServer, SigV4Forwarder]] = []

    def start(middleware: list[Middleware] | None = None, **forwarder_options: Any
              ) -> BackgroundServer:
        forwarder = make_forwarder(fake_bedrock, **forwarder_options)
        server = BackgroundServer(Gateway(forwarder, middleware or [], anonymous=True)).start()
        started.append((server, forwarder))
        return server

    yield start
    for server, forwarder in started:
        server.stop()
        forwarder.close()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto in server mode (STS, DynamoDB) on a free loopback port: real HTTP for boto3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    server._server.server_close()  # type: ignore[union-attr]  # stop() leaves the socket open


ServeConfig = Callable[..., tuple[BackgroundServer, Path]]


@pytest.fixture
def configured(tmp_path: Path, fake_bedrock: FakeBedrock,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeConfig]:
    """Serve gateways built from TOML, as ``bedrock-gateway serve`` would: ``[upstream]`` aimed
    at the fake (plus ``upstream`` lines), anonymous, a usage log, plus ``extra`` sections.
    Returns ``(server, usage log)``; everything is stopped after the test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)  # the standard credential chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    running: list[tuple[BackgroundServer, Gateway]] = []

    def start(extra: str = "", upstream: str = "", endpoint_url: str | None = None
              ) -> tuple[BackgroundServer, Path]:
        log = tmp_path / f"usage-{len(running)}.jsonl"
        config = tmp_path / f"gateway-{len(running)}.toml"
        config.write_text(f"""
[upstream]
endpoint_url = "{endpoint_url or fake_bedrock.endpoint_url}"
backoff_base_s = 0
{upstream}
[auth]
anonymous = true
[usage]
log = "{log}"
{extra}
""")
        gateway = Gateway.from_config(config)
        server = BackgroundServer(gateway).start()
        running.append((server, gateway))
        return server, log

    yield start
    for server, gateway in running:
        server.stop()
        gateway.close()


def records(log: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` usage records (waits for close hooks that run after the response)."""
    done = threading.Event()
    for _ in range(500):
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines[:count]]
        done.wait(0.01)
    raise AssertionError(f"expected {count} records, found {len(lines)}")


def leave_mid_stream(server: BackgroundServer, model: str, body: bytes) -> None:
    """Start a ConverseStream over a raw socket, read the first bytes, and hang up."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /model/{model.replace(':', '%3A')}/converse-stream HTTP/1.1\r\n"
                     f"Host: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
