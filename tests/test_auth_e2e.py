"""Authentication and access rules end to end: boto3 -> gateway (from a TOML config, over
HTTP) -> FakeBedrock, with each credential a real client can send."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from bedrock_gateway.auth.api_keys import generate_api_key
from bedrock_gateway.client import gateway_client
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock, TokenIssuer
from bedrock_gateway.testing.tls import self_signed_cert

from .test_e2e import MESSAGES

CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
OPUS = "anthropic.claude-opus-4-20250514-v1:0"
GATEWAY_KEY_ID = "AKIAGATEWAYKEY000001"
GATEWAY_SECRET = "gateway-issued-secret-for-tests-0123456789"
API_KEY, API_KEY_SHA256 = generate_api_key()
NO_RETRY = {"total_max_attempts": 1}



@pytest.fixture(scope="module")
def auth_gateway(fake_bedrock_server: FakeBedrock, token_issuer: TokenIssuer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``bedrock-gateway serve`` in a subprocess, over HTTPS (botocore sends
    AWS_BEARER_TOKEN_BEDROCK only to https endpoints), configured from TOML."""
    config = tmp_path_factory.mktemp("auth") / "gateway.toml"
    config.write_text(f"""
[upstream]
region = "us-east-1"
endpoint_url = "{fake_bedrock_server.endpoint_url}"

[auth.jwt]
jwks_url = "{token_issuer.jwks_url}"
issuer = "{token_issuer.issuer}"
audience = "{token_issuer.audience}"
algorithms = ["RS256"]
groups_claim = "cognito:groups"

[[auth.api_keys]]
sha256 = "{API_KEY_SHA256}"
subject = "batch-job"
tenant = "t2"

[[auth.access_keys]]
access_key_id = "{GATEWAY_KEY_ID}"
secret_env = "TEST_GATEWAY_KEY_SECRET"
subject = "svc"
tenant = "t3"

[[access]]
name = "t1-anthropic"
tenants = ["t1"]
allow_models = ["*anthropic.*"]

[[access]]
name = "t2-nova"
tenants = ["t2"]
allow_models = ["*amazon.nova*"]
allow_operations = ["Converse", "ConverseStream"]

[[access]]
name = "t3-everything"
tenants = ["t3"]
allow_models = ["*"]

[[access]]
name = "no-opus"
deny_models = ["*opus*"]
""")
    cert, key = self_signed_cert(config.parent)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, TEST_GATEWAY_KEY_SECRET=GATEWAY_SECRET,
               AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=FAKE_SECRET_KEY)
    env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bedrock_gateway.cli", "serve", "--config", str(config),
         "--port", str(port), "--log-level", "warning", "--ssl-certfile", str(cert),
         "--ssl-keyfile", str(key)], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # poll for the port (up to ~20 s on a slow machine)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
                threading.Event().wait(0.05)
        yield SimpleNamespace(url=f"https://127.0.0.1:{port}", ca_file=str(cert), proc=proc)
    finally:
        proc.terminate()
        try:  # uvicorn waits for TLS connections whose clients left without close_notify
            _, stderr = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert "Traceback" not in stderr


def bearer_env_client(server: Any, token: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The zero-code path: an unmodified program with AWS_BEARER_TOKEN_BEDROCK set (botocore
    looks the variable up per request, and sends bearer tokens only over https)."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", token)
    return client_for(server, config=Config(retries=NO_RETRY))


def client_for(server: Any, **kwargs: Any) -> Any:
    return boto3.session.Session().client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
        verify=server.ca_file, **kwargs)


def assert_forwarded_as_gateway(fake: FakeBedrock, secret: str) -> None:
    seen = fake.requests[-1]
    assert seen.access_key == FAKE_ACCESS_KEY  # the gateway's identity, never the client's
    assert secret not in repr(seen.headers)


def test_jwt_via_aws_bearer_token_bedrock(auth_gateway: Any, fake_bedrock: FakeBedrock,
                                          token_issuer: TokenIssuer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    token = token_issuer.issue("alice", tenant="t1", **{"cognito:groups": ["dev"]})
    client = bearer_env_client(auth_gateway, token, monkeypatch)
    reply = client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert reply["output"]["message"]["role"] == "assistant"
    assert_forwarded_as_gateway(fake_bedrock, token)
    events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    assert "metadata" in events[-1]
    with pytest.raises(client.exceptions.AccessDeniedException, match="No access rule allows"):
        client.converse(modelId=NOVA, messages=MESSAGES)
    with pytest.raises(client.exceptions.AccessDeniedException, match="'no-opus'"):
        client.converse(modelId=OPUS, messages=MESSAGES)
    client.close()


def test_api_key_with_the_client_helper(auth_gateway: Any, fake_bedrock: FakeBedrock
                                        ) -> None:
    client = gateway_client(auth_gateway.url, token=lambda: API_KEY,
                            config=Config(retries=NO_RETRY), verify=auth_gateway.ca_file)
    assert client.converse(modelId=NOVA, messages=MESSAGES)["usage"]["inputTokens"] > 0
    assert_forwarded_as_gateway(fake_bedrock, API_KEY)
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    with pytest.raises(client.exceptions.AccessDeniedException):  # operation not allowed
        client.count_tokens(modelId=NOVA, input={"converse": {"messages": MESSAGES}})
    client.close()


def test_gateway_issued_sigv4_keys(auth_gateway: Any, fake_bedrock: FakeBedrock) -> None:
    client = client_for(auth_gateway, aws_access_key_id=GATEWAY_KEY_ID,
                        aws_secret_access_key=GATEWAY_SECRET, config=Config(retries=NO_RETRY))
    assert client.converse(modelId=OPUS.replace("opus", "sonnet"), messages=MESSAGES)["usage"]
    assert_forwarded_as_gateway(fake_bedrock, GATEWAY_SECRET)
    bad = client_for(auth_gateway, aws_access_key_id=GATEWAY_KEY_ID,
                     aws_secret_access_key="wrong-secret", config=Config(retries=NO_RETRY))
    with pytest.raises(ClientError) as info:
        bad.converse(modelId=NOVA, messages=MESSAGES)
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    client.close()
    bad.close()


@pytest.mark.parametrize(("token_kind", "code"), [
    ("none", "UnrecognizedClientException"), ("expired", "ExpiredTokenException"),
    ("garbage", "UnrecognizedClientException"), ("wrong-api-key", "UnrecognizedClientException"),
])
def test_refused_credentials(auth_gateway: Any, fake_bedrock: FakeBedrock,
                             token_issuer: TokenIssuer, token_kind: str, code: str) -> None:
    if token_kind == "none":
        client = client_for(auth_gateway,
                            config=Config(signature_version=UNSIGNED, retries=NO_RETRY))
    else:
        token = {"expired": token_issuer.issue("alice", tenant="t1", ttl_s=-120),
                 "garbage": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
                 "wrong-api-key": "bgw_not-a-key"}[token_kind]
        client = gateway_client(auth_gateway.url, token=token, config=Config(retries=NO_RETRY),
                                verify=auth_gateway.ca_file)
    with pytest.raises(ClientError) as info:
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert fake_bedrock.requests == []
    client.close()


def test_config_without_rules_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from bedrock_gateway.config import build_gateway, parse_config

    config = parse_config({"auth": {"api_keys": [{"sha256": API_KEY_SHA256, "subject": "x"}]}})
    build_gateway(config, credentials=object())
    assert "no [[access]] rules" in caplog.text
