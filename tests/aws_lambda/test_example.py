"""examples/lambda_handler.py, loaded as Lambda would load it, serving a v2 and a v1 event."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from .support import CONVERSE, PROFILE_ARN, botocore_path, parse, present

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lambda_handler.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lambda_handler", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_is_short() -> None:
    assert len(EXAMPLE.read_text().strip().splitlines()) < 15


def test_example_handler(tmp_path: Path, fake_bedrock: FakeBedrock,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[upstream]\nregion = "us-east-1"\n'
                      f'endpoint_url = "{fake_bedrock.endpoint_url}"\n[auth]\nanonymous = true\n')
    monkeypatch.setenv("BEDROCK_GATEWAY_CONFIG", str(config))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    module = load_example()
    try:
        body = json.dumps(CONVERSE).encode()
        for kind in ("http_v2", "rest_v1_proxy"):
            event = present(kind, botocore_path(PROFILE_ARN, "ConverseStream"), body=body)
            stream = parse(module.handler(event, None), "ConverseStream")["stream"]
            assert "metadata" in stream[-1]
            assert fake_bedrock.requests[-1].params["modelId"] == PROFILE_ARN
        assert len(fake_bedrock.requests) == 2
    finally:
        module.handler.close()
