"""The framework, client and custom-policy examples run: each is served over real HTTP(S) on a
loopback port and called with an ordinary boto3 client, in front of FakeBedrock."""

from __future__ import annotations

import importlib.util
import json
import runpy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import urllib3
from botocore.exceptions import ClientError

from bedrock_gateway import Gateway
from bedrock_gateway.auth import AccessKey, SigV4Authorizer
from bedrock_gateway.eventstream import iter_frames
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock, TokenIssuer
from bedrock_gateway.testing.tls import self_signed_cert

from .conftest import gateway_client, make_forwarder, records
from .test_e2e import ARN, MESSAGES

ROOT = Path(__file__).resolve().parent.parent
KEY_ID = "AKIAGATEWAYKEY000001"
KEY_SECRET = "gateway-issued-secret-for-examples-0123"
ANTHROPIC_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
                             "messages": [{"role": "user", "content": "Tell me a story"}]})


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` afresh (it reads its config from the environment)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_config(tmp_path: Path, fake_bedrock: FakeBedrock,
                   monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Write a gateway.toml aimed at the fake (plus ``extra`` TOML), point
    BEDROCK_GATEWAY_CONFIG at it, and give the gateway the fake's AWS credentials through the
    standard chain. Returns a function ``(extra) -> usage log path``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.setenv("EXAMPLE_KEY_SECRET", KEY_SECRET)

    def write(extra: str) -> Path:
        log = tmp_path / "usage.jsonl"
        config = tmp_path / "gateway.toml"
        config.write_text(f'[upstream]\nregion = "us-east-1"\nendpoint_url = "{fake_bedrock.endpoint_url}"\n'
                          f'backoff_base_s = 0\n[usage]\nlog = "{log}"\n{extra}')
        monkeypatch.setenv("BEDROCK_GATEWAY_CONFIG", str(config))
        return log

    return write


ACCESS_KEYS = f"""
[[auth.access_keys]]
access_key_id = "{KEY_ID}"
secret_env = "EXAMPLE_KEY_SECRET"
subject = "reporting-service"
tenant = "finance"
"""


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Any ASGI app under uvicorn on a free loopback port, lifespan on (as serve.py runs it)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ready = threading.Event()
    while not server.started:
        assert thread.is_alive(), "uvicorn failed to start"
        ready.wait(0.005)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """Any WSGI app under werkzeug's threaded dev server (what ``flask run`` uses)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()


def check_mounted_gateway(base: str, fake: FakeBedrock, client: Any) -> None:
    """The app's own route answers, and the gateway under ``/bedrock`` serves Converse,
    ConverseStream (byte for byte) and InvokeModel with an inference-profile ARN, whose raw
    ``%3A``/``%2F`` path reaches Bedrock as the client sent it."""
    http = urllib3.PoolManager()
    try:
        health = http.request("GET", f"{base}/healthz")
        assert (health.status, health.json()) == (200, {"status": "ok"})
        stream = http.request("POST", f"{base}/bedrock/model/{quote(ARN, safe='')}/converse-stream",
                              body=json.dumps({"messages": MESSAGES}),
                              headers={"Content-Type": "application/json"})
        assert stream.status == 200
        assert stream.data == fake.last_stream_body
        assert [f.event_type for f in iter_frames([stream.data])][-1] == "metadata"
    finally:
        http.clear()
    assert client.converse(modelId=ARN, messages=MESSAGES)["usage"]["inputTokens"] > 0
    events = list(client.converse_stream(modelId=ARN, messages=MESSAGES)["stream"])
    assert "metadata" in events[-1]
    reply = client.invoke_model(modelId=ARN, body=ANTHROPIC_BODY)
    assert json.loads(reply["body"].read())["content"][0]["text"].startswith("Echo:")
    assert [r.operation for r in fake.requests] == [
        "ConverseStream", "Converse", "ConverseStream", "InvokeModel"]
    assert {r.params["modelId"] for r in fake.requests} == {ARN}  # "%2F" was not a "/"


def test_fastapi_app(example_config: Callable[[str], Path], fake_bedrock: FakeBedrock,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    example_config("[auth]\nanonymous = true\n")
    module = load("fastapi_app")
    closed: list[bool] = []
    close = module.gateway.close

    def recording_close() -> None:
        closed.append(True)
        close()

    monkeypatch.setattr(module.gateway, "close", recording_close)
    with uvicorn_server(module.app) as base:
        client = gateway_client(f"{base}/bedrock")
        check_mounted_gateway(base, fake_bedrock, client)
        client.close()
    assert closed == [True]  # the app's lifespan closed the gateway at shutdown


def test_flask_app(example_config: Callable[[str], Path], fake_bedrock: FakeBedrock,
                   bedrock_client_factory: Callable[..., Any]) -> None:
    """Mounted with DispatcherMiddleware: routed on the path after ``SCRIPT_NAME``, SigV4
    signatures verified over the full path the client signed (prefix included)."""
    log = example_config("[auth]\nanonymous = true\n" + ACCESS_KEYS)
    module = load("flask_app")
    with werkzeug_server(module.app) as base:
        client = bedrock_client_factory(f"{base}/bedrock", access_key=KEY_ID, secret_key=KEY_SECRET)
        check_mounted_gateway(base, fake_bedrock, client)
        forged = bedrock_client_factory(f"{base}/bedrock", access_key=KEY_ID, secret_key="wrong" * 8)
        with pytest.raises(ClientError) as refused:
            forged.converse(modelId=ARN, messages=MESSAGES)
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    subjects = [r["subject"] for r in records(log, 4)]  # (a refused credential never gets this far)
    assert subjects == ["anonymous", "reporting-service", "reporting-service", "reporting-service"]
    module.gateway.close()


def test_client_example(example_config: Callable[[str], Path], fake_bedrock: FakeBedrock,
                        token_issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Both ways of calling a gateway that accepts JWTs and gateway-issued SigV4 keys, over
    HTTPS (botocore sends bearer tokens only over https); the client trusts the test
    certificate through AWS_CA_BUNDLE, as it would a private CA."""
    log = example_config(f"""
[auth.jwt]
jwks_url = "{token_issuer.jwks_url}"
issuer = "{token_issuer.issuer}"
audience = "{token_issuer.audience}"
algorithms = ["RS256"]
{ACCESS_KEYS}""")
    tmp_path = log.parent
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    example = load("client")
    gateway = Gateway.from_config(tmp_path / "gateway.toml")
    tokens = tmp_path / "token"
    with BackgroundServer(gateway, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        assert server.url.startswith("https://")
        # (a) a JWT, re-read for every request: the client picks up the rotated token
        tokens.write_text(token_issuer.issue("alice") + "\n")
        client = example.jwt_client(server.url, example.token_file(str(tokens)))
        assert example.ask(client, "first") == "Echo: first"
        tokens.write_text(token_issuer.issue("bob"))
        assert example.ask(client, "second") == "Echo: second"
        client.close()
        # (b) a gateway-issued key pair in a plain boto3 client
        client = example.sigv4_client(server.url, KEY_ID, KEY_SECRET)
        assert example.ask(client, "third", model_id=ARN) == "Echo: third"
        client.close()
        # the script itself, both ways
        monkeypatch.setenv("GATEWAY_URL", server.url)
        monkeypatch.setenv("GATEWAY_TOKEN_FILE", str(tokens))
        runpy.run_path(str(ROOT / "examples" / "client.py"), run_name="__main__")["client"].close()
        monkeypatch.setenv("GATEWAY_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("GATEWAY_SECRET_ACCESS_KEY", KEY_SECRET)
        runpy.run_path(str(ROOT / "examples" / "client.py"), run_name="__main__")["client"].close()
    gateway.close()
    assert capsys.readouterr().out == "Echo: Hello!\n" * 2
    assert [r["subject"] for r in records(log, 5)] == [
        "alice", "bob", "reporting-service", "bob", "reporting-service"]
    assert {r.access_key for r in fake_bedrock.requests} == {FAKE_ACCESS_KEY}  # the gateway's own


def test_custom_policy_end_to_end(fake_bedrock: FakeBedrock,
                                  bedrock_client_factory: Callable[..., Any]) -> None:
    """boto3 -> gateway with OfficeHours over HTTP -> FakeBedrock: out of hours, a contractor's
    call arrives as botocore's typed AccessDeniedException and never reaches Bedrock."""
    policy = load("custom_policy")
    now = [datetime(2025, 1, 18, 12, 0, tzinfo=UTC)]  # a Saturday
    keys = SigV4Authorizer([
        AccessKey("AKIACONTRACTOR000001", secret="contractor-secret-0123456789", subject="c", tenant="contractors"),
        AccessKey("AKIASTAFFMEMBER00001", secret="staff-secret-0123456789", subject="s", tenant="staff")])
    forwarder = make_forwarder(fake_bedrock)
    office_hours = policy.OfficeHours({"contractors"}, ZoneInfo("Europe/Berlin"), clock=lambda: now[0])
    with BackgroundServer(Gateway(forwarder, [office_hours], authorizers=[keys])) as server:
        contractor = bedrock_client_factory(server.url, access_key="AKIACONTRACTOR000001",
                                            secret_key="contractor-secret-0123456789")
        staff = bedrock_client_factory(server.url, access_key="AKIASTAFFMEMBER00001",
                                       secret_key="staff-secret-0123456789")
        with pytest.raises(contractor.exceptions.AccessDeniedException, match="weekdays from 08:00 to 18:00"):
            contractor.converse(modelId=ARN, messages=MESSAGES)
        with pytest.raises(contractor.exceptions.AccessDeniedException):
            contractor.converse_stream(modelId=ARN, messages=MESSAGES)
        assert staff.converse(modelId=ARN, messages=MESSAGES)["usage"]["inputTokens"] > 0
        assert len(fake_bedrock.requests) == 1
        now[0] = datetime(2025, 1, 20, 9, 0, tzinfo=UTC)  # Monday, 10:00 in Berlin
        assert contractor.converse(modelId=ARN, messages=MESSAGES)["usage"]["inputTokens"] > 0
    assert len(fake_bedrock.requests) == 2
    forwarder.close()
