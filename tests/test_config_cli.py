"""Config validation with key paths, Gateway.from_config, and the CLI commands."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from bedrock_gateway import Gateway
from bedrock_gateway.cli import main
from bedrock_gateway.config import ConfigError, load_config
from bedrock_gateway.demo import run_demo
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from .conftest import gateway_client
from .test_e2e import CLAUDE, MESSAGES


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_errors_name_their_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, """
[gateway]
max_body_bytes = -1
[upstream]
region = "Mars"
read_timeout_s = 0
endpoint_url = "ftp://x"
retries = 3
[auth]
anonymous = true
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    paths = sorted(p for p, _ in info.value.errors)
    assert paths == ["gateway.max_body_bytes", "upstream.endpoint_url", "upstream.read_timeout_s",
                     "upstream.region", "upstream.retries"]


def test_anonymous_must_be_explicit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="anonymous = true"):
        load_config(write(tmp_path, '[upstream]\nregion = "us-east-1"\n'))


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[auth]\nanonymous = true\n")
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[upstream]\nmax_attempts = 0\n[auth]\nanonymous = true\n")
    assert main(["check-config", str(bad)]) == 1
    assert "upstream.max_attempts" in capsys.readouterr().out
    broken = tmp_path / "broken.toml"
    broken.write_text("[upstream\n")
    assert main(["check-config", str(broken)]) == 1


def test_from_config_serves_through_the_configured_upstream(
        tmp_path: Path, fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)  # the standard credential chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    path = write(tmp_path, f"""
[gateway]
max_body_bytes = 4096
[upstream]
region = "us-east-1"
endpoint_url = "{fake_bedrock.endpoint_url}"
max_attempts = 2
backoff_base_s = 0
[auth]
anonymous = true
""")
    gateway = Gateway.from_config(path)
    assert "SECURITY" in caplog.text
    assert gateway.max_body_bytes == 4096
    with BackgroundServer(gateway) as server:
        client = gateway_client(server.url)
        fake_bedrock.fail_next(1, status=429, code="ThrottlingException")
        reply: Any = client.converse(modelId=CLAUDE, messages=MESSAGES)
        assert reply["output"]["message"]["role"] == "assistant"
        assert len(fake_bedrock.requests) == 2  # one retry, as configured
        with pytest.raises(client.exceptions.ValidationException):
            client.converse(modelId=CLAUDE, messages=[
                {"role": "user", "content": [{"text": "x" * 5000}]}])
    gateway.close()


def test_demo_runs_without_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    out = io.StringIO()
    assert run_demo(out) == 0
    text = out.getvalue()
    for marker in ("1. Converse", "2. ConverseStream", "3. InvokeModel", "4. Bedrock throttled",
                   "5. An access rule refused", "AccessDeniedException",
                   "6. A call without a token was refused", "UnrecognizedClientException"):
        assert marker in text
    assert json.dumps(text)  # printable


def test_tenant_roles_config_builds_the_sts_hook() -> None:
    from bedrock_gateway.auth.tenant_roles import TenantRoleCredentials
    from bedrock_gateway.config import build_gateway, parse_config

    config = parse_config({
        "auth": {"anonymous": True},
        "upstream": {"tenant_roles": {"duration_s": 1800, "roles": {
            "acme": "arn:aws:iam::111122223333:role/bedrock-acme"}}},
    })
    gateway = build_gateway(config, credentials=object())
    hook = gateway.handler.forwarder("bedrock-runtime")._credentials_for  # type: ignore[attr-defined]
    assert isinstance(hook, TenantRoleCredentials)
    with pytest.raises(ConfigError, match=r"upstream\.tenant_roles\.roles\.acme"):
        parse_config({"auth": {"anonymous": True},
                      "upstream": {"tenant_roles": {"roles": {"acme": "not-an-arn"}}}})


def test_serve_refuses_a_quota_store_it_cannot_open(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"""
[auth]
anonymous = true
[quota]
store = "sqlite://{tmp_path}/missing-dir/quota.db"
[[quota.limits]]
scope = "global"
requests_per_minute = 1
""")
    assert main(["serve", "--config", str(path), "--port", "1"]) == 2
    assert "cannot open the SQLite quota store" in capsys.readouterr().err
