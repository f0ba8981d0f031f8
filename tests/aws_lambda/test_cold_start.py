"""A Lambda cold start loads what its configuration uses, not every optional module.

Run in a fresh interpreter: ``sys.modules`` of the test process holds everything other tests
imported. The figures are in docs/performance.md, (j); this guards the mechanism.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from bedrock_gateway import Gateway
from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
LambdaHandler(Gateway.from_config(sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""

CONFIG = """
[upstream]
region = "eu-west-1"

[auth.jwt]
secret_env = "COLD_START_SECRET"
algorithms = ["HS256"]

[[access]]
name = "nova"
allow_models = ["*amazon.nova-*"]

[quota]
store = "memory://"

[[quota.limits]]
scope = "tenant"
requests_per_minute = 60

[[filters]]
type = "pii"
"""

NOT_NEEDED = (
    # filters this configuration does not have
    "bedrock_gateway.filters.guardrails", "bedrock_gateway.filters.terms",
    "bedrock_gateway.filters.regex", "bedrock_gateway.filters.size",
    "bedrock_gateway.filters.parameters",
    # usage records (no [usage] log) and the stores it does not use
    "bedrock_gateway.quota.records", "bedrock_gateway.quota.stores.sqlite",
    "bedrock_gateway.quota.stores.redis", "bedrock_gateway.quota.stores.dynamodb",
    # clients nothing here needs
    "boto3", "redis", "sqlite3", "bedrock_gateway.auth.tenant_roles", "bedrock_gateway.testing",
    "hypothesis", "uvicorn",
)


def test_building_the_handler_loads_only_what_the_config_uses(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)], capture_output=True, text=True,
        check=False, timeout=120, env={"COLD_START_SECRET": "s" * 48, "PATH": "/usr/bin:/bin",
             "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "bedrock_gateway.filters.pii" in loaded  # it did build the filter and the quota
    assert "bedrock_gateway.quota.enforcer" in loaded
    assert sorted(m for m in NOT_NEEDED if m in loaded) == []
