"""The gateway configuration both functions use: ``gateway.toml`` plus the deployment's values.

``[auth.jwt]``'s issuer, audience and JWKS URL and the quota table are template parameters and
resources, so the template passes them as environment variables and they override the file
here. The TOML configuration has no environment interpolation of its own (only ``*_env`` keys
for secrets); overlaying a dict and validating it with the same pydantic models keeps every
check ``load_config`` makes.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$BEDROCK_GATEWAY_CONFIG``, else the ``gateway.toml`` next to this file."""
    return Path(environ.get("BEDROCK_GATEWAY_CONFIG") or HERE / "gateway.toml")


def load_settings(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The configuration as a dict: the TOML file with the environment's values laid over it."""
    data: dict[str, Any] = tomllib.loads(config_path(environ).read_text(encoding="utf-8"))
    jwt = data.setdefault("auth", {}).get("jwt")
    if jwt is not None:
        for key, name in (("issuer", "JWT_ISSUER"), ("audience", "JWT_AUDIENCE"),
                          ("jwks_url", "JWT_JWKS_URL")):
            if environ.get(name):
                jwt[key] = environ[name]
    region = environ.get("AWS_REGION")
    if region:
        data.setdefault("upstream", {})["region"] = region
    table = environ.get("QUOTA_TABLE")
    if table:
        store = f"dynamodb://{table}"
        data.setdefault("quota", {})["store"] = f"{store}?region={region}" if region else store
    return data
