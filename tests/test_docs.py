"""Code in the docs is code that runs: snippets are executed or are the example files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bedrock_gateway.config import parse_config

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)


def test_testing_md_snippets_run_or_are_examples() -> None:
    first, second = python_blocks("testing.md")
    exec(compile(first, "docs/testing.md", "exec"), {})  # noqa: S102 - our own documentation
    assert second.strip() in (ROOT / "examples" / "test_policy_example.py").read_text()


def test_configuration_md_example_is_valid() -> None:
    import tomllib

    (block,) = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "configuration.md").read_text(), re.S)
    config = parse_config(tomllib.loads(block))
    assert config.upstream.region == "eu-central-1"


@pytest.mark.parametrize("key", ["max_body_bytes", "worker_threads", "region", "endpoint_url",
                                 "connect_timeout_s", "read_timeout_s", "max_attempts",
                                 "backoff_base_s", "backoff_max_s", "max_connections", "profile",
                                 "anonymous"])
def test_every_config_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in (ROOT / "docs" / "configuration.md").read_text()


def test_documented_keys_exist() -> None:
    from bedrock_gateway.config import AuthSection, GatewaySection, UpstreamSection

    fields = {*GatewaySection.model_fields, *UpstreamSection.model_fields, *AuthSection.model_fields}
    documented = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "configuration.md").read_text(), re.M))
    assert documented == fields
