"""The README's snippets are the files in examples/, and they work."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from .conftest import gateway_client
from .test_e2e import CLAUDE, MESSAGES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def configured(tmp_path: Path, fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[upstream]\nregion = "us-east-1"\nendpoint_url = "{fake_bedrock.endpoint_url}"\n'
                      "[auth]\nanonymous = true\n")
    monkeypatch.setenv("BEDROCK_GATEWAY_CONFIG", str(config))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["asgi_app", "lambda_handler"])
def test_readme_shows_the_example_files(name: str) -> None:
    code = (ROOT / "examples" / f"{name}.py").read_text().strip()
    assert code in (ROOT / "README.md").read_text()
    assert len(code.splitlines()) < 10


def test_asgi_example(configured: None, fake_bedrock: FakeBedrock) -> None:
    module = load("asgi_app")
    with BackgroundServer(module.app) as server:
        client = gateway_client(server.url)
        assert client.converse(modelId=CLAUDE, messages=MESSAGES)["usage"]["inputTokens"] > 0
        client.close()
    module.app.gateway.close()
