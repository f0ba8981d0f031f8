"""Cold start: ``import bedrock_gateway`` and building the Lambda handler from a config.

A Lambda execution environment pays this once per cold start, before the first request, so it
is measured in *fresh interpreters*: each repeat is a new ``python`` process that

(a) imports ``bedrock_gateway``,
(b) builds ``Gateway.from_config(<config>)`` and wraps it in the Lambda handler
    (``adapters.aws_lambda.handler.LambdaHandler`` when that module exists; otherwise the
    figure is ``Gateway.from_config`` alone and the report says so).

The clock runs inside the child, from its first statement to the end of (b): interpreter
start-up is the Lambda runtime's, not ours; the whole process's wall time (start-up, the
child's output, exit) is reported separately. The config is a realistic one: RS256 JWT auth with a PEM public key
file (or an HMAC secret from the environment, ``--key hmac``), three access rules, quota
limits on ``memory://``, a PII filter and a route.

Byte code: a deployment package built by pip carries ``.pyc`` files, and Lambda's ``/var/task``
is read-only, so a package *without* them recompiles every module on every cold start. The
children therefore write and reuse ``.pyc`` files under a temporary ``PYTHONPYCACHEPREFIX``
(``PYTHONDONTWRITEBYTECODE`` is dropped for them; the source tree stays clean); a first,
discarded run compiles them. ``--no-pyc`` measures the other case.

(c) ``python -X importtime`` of the same script: the 15 modules with the largest cumulative
import time, and whether the optional/heavy modules were loaded at all.

    python benchmarks/bench_coldstart.py --repeats 15
    python benchmarks/bench_coldstart.py --repeats 15 --baseline-src /tmp/before  # A/B
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _procs import percentile

CHILD = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import bedrock_gateway
t1 = time.perf_counter()
from bedrock_gateway import Gateway
gateway = Gateway.from_config(CONFIG)
t2 = time.perf_counter()
try:
    from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
except ImportError:
    LambdaHandler = None
if LambdaHandler is not None:
    handler = LambdaHandler(gateway)
t3, c3 = time.perf_counter(), time.process_time()
import json, sys
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "handler": t3 - t2, "total": t3 - t0,
                  "cpu": c3 - c0, "lambda_handler": LambdaHandler is not None,
                  "source": bedrock_gateway.__file__, "modules": sorted(sys.modules)}))
"""

# What any gateway built from that config needs whatever the code does: the third-party
# modules it cannot work without, and one pydantic model (pydantic finishes loading itself on
# the first). Run the same way, it is the floor the target has to be read against.
FLOOR = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import pydantic, jwt, cryptography.hazmat.primitives.serialization, botocore.auth, urllib3
class _Model(pydantic.BaseModel):
    value: int = 1
t1, c1 = time.perf_counter(), time.process_time()
import json
print(json.dumps({"total": t1 - t0, "cpu": c1 - c0}))
"""

# Modules whose presence after construction is worth reporting: optional or heavy ones that a
# cold start should not pay for unless the config needs them.
WATCH = ("boto3", "botocore", "botocore.auth", "urllib3", "tenacity", "pydantic", "jwt",
         "cryptography", "redis", "sqlite3", "hypothesis", "email", "http.client",
         "bedrock_gateway.quota.stores.dynamodb", "bedrock_gateway.quota.stores.redis",
         "bedrock_gateway.quota.stores.sqlite", "bedrock_gateway.quota.count_tokens",
         "bedrock_gateway.filters.guardrails", "bedrock_gateway.auth.tenant_roles",
         "bedrock_gateway.testing", "uvicorn", "asyncio")


def write_config(directory: Path, key: str) -> tuple[Path, dict[str, str]]:
    """A realistic gateway.toml in ``directory``, and the environment its key needs."""
    env: dict[str, str] = {}
    if key == "hmac":
        env["GATEWAY_JWT_SECRET"] = "s" * 48
        jwt_section = 'secret_env = "GATEWAY_JWT_SECRET"\nalgorithms = ["HS256"]\n'
    else:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() \
            .public_bytes(serialization.Encoding.PEM,
                          serialization.PublicFormat.SubjectPublicKeyInfo)
        (directory / "jwt.pem").write_bytes(pem)
        jwt_section = f'public_key_file = "{directory / "jwt.pem"}"\nalgorithms = ["RS256"]\n'
    config = directory / "gateway.toml"
    config.write_text(f"""
[upstream]
region = "eu-west-1"
read_timeout_s = 300

[auth.jwt]
{jwt_section}issuer = "https://issuer.example.com"
audience = "bedrock-gateway"
tenant_claim = "custom:tenant"

[[access]]
name = "engineers"
groups = ["engineering"]
allow_models = ["*anthropic.claude-*", "*amazon.nova-*", "chat-default"]

[[access]]
name = "analytics"
tenants = ["analytics"]
allow_models = ["*amazon.nova-*"]

[[access]]
name = "no-opus"
deny_models = ["*opus*"]

[quota]
store = "memory://"

[[quota.limits]]
scope = "tenant"
requests_per_minute = 600
tokens_per_minute = 400000
usd_per_day = 50

[[quota.limits]]
scope = "subject:model"
models = ["*anthropic.claude-*"]
usd_per_month = 200

[[filters]]
type = "pii"
applies_to = ["input", "output"]
categories = {{ credit_card = "block", email = "redact", aws_secret_key = "block" }}

[[routes]]
alias = "chat-default"
targets = [{{ model = "eu.anthropic.claude-3-5-haiku-20241022-v1:0", weight = 90 }},
           {{ model = "eu.amazon.nova-pro-v1:0", weight = 10 }}]
""")
    return config, env


def child_env(extra: dict[str, str], pycache: Path | None) -> dict[str, str]:
    """The children's environment: byte code cached under ``pycache``, or never written."""
    env = {**os.environ, **extra}
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def run_child(script: str, env: dict[str, str], *flags: str,
              ) -> tuple[dict[str, Any], str, float]:
    """One fresh interpreter: its own figures, its stderr, and the whole process's wall time."""
    import time

    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *flags, "-c", script], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the child failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1]), done.stderr, wall


def with_source(env: dict[str, str], src: Path | None) -> dict[str, str]:
    """``env`` importing ``bedrock_gateway`` from ``src`` (a tree holding the package)."""
    if src is None:
        return env
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, (str(src),
                                                                env.get("PYTHONPATH"))))}


def row(label: str, values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (f"{label[:37]:<38}{statistics.median(ms):>9.1f}{percentile(ms, 0.9):>9.1f}"
            f"{min(ms):>9.1f}")


def importtime_top(stderr: str, n: int) -> list[tuple[int, int, str]]:
    """``(cumulative µs, self µs, module)`` of the ``n`` largest cumulative import times."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    rows.sort(reverse=True)
    return rows[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--key", choices=("pem", "hmac"), default="pem")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-pyc", action="store_true",
                        help="compile every module from source (a package shipped without .pyc)")
    parser.add_argument("--baseline-src", type=Path,
                        help="a directory holding another bedrock_gateway package (e.g. a copy "
                             "before a change): run interleaved with this one, A/B")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config, extra = write_config(Path(tmp), args.key)
        env = child_env(extra, None if args.no_pyc else Path(tmp) / "pycache")
        script = f"CONFIG = {str(config)!r}\n" + CHILD
        variants: dict[str, dict[str, str]] = {"this tree": env}
        if args.baseline_src is not None:
            variants["baseline"] = with_source(env, args.baseline_src.resolve())
        runs: dict[str, list[tuple[dict[str, Any], str, float]]] = {v: [] for v in variants}
        floor: list[dict[str, Any]] = []
        for variant_env in variants.values():
            run_child(script, variant_env)  # compiles .pyc files; not counted
        run_child(FLOOR, env)
        for i in range(args.repeats):  # interleaved: the machine's drift hits all alike
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                runs[name].append(run_child(script, variants[name]))
            floor.append(run_child(FLOOR, env)[0])
        _, importtime_err, _ = run_child(script, env, "-X", "importtime")

    print(f"python {sys.version.split()[0]}, {args.repeats} fresh processes per variant, "
          f"key={args.key}, " + ("no .pyc (every module compiled)" if args.no_pyc
                                 else ".pyc cached"))
    totals: dict[str, float] = {}
    for name, variant_runs in runs.items():
        figures = [r[0] for r in variant_runs]
        what = ("import + from_config + LambdaHandler" if figures[0]["lambda_handler"]
                else "import + from_config (no LambdaHandler)")
        print(f"\n[{name}] {Path(figures[0]['source']).parent}")
        print(f"{'phase':<38}{'p50 ms':>9}{'p90 ms':>9}{'min ms':>9}")
        print(row("import bedrock_gateway", [f["import"] for f in figures]))
        print(row("Gateway.from_config", [f["build"] for f in figures]))
        print(row("LambdaHandler(gateway)", [f["handler"] for f in figures]))
        print(row(what, [f["total"] for f in figures]))
        print(row("  the same, CPU time", [f["cpu"] for f in figures]))
        print(row("whole process (incl. interpreter)", [r[2] for r in variant_runs]))
        totals[name] = statistics.median(f["total"] for f in figures) * 1000
        if name == "this tree":
            loaded = set(figures[0]["modules"])
    print(f"\n{'dependency floor (see FLOOR)':<38}"
          f"{statistics.median(f['total'] for f in floor) * 1000:>9.1f}"
          f"{percentile([f['total'] * 1000 for f in floor], 0.9):>9.1f}"
          f"{min(f['total'] for f in floor) * 1000:>9.1f}")
    print(row("  the same, CPU time", [f["cpu"] for f in floor]))
    summary = ", ".join(f"{name} {ms:.1f} ms" for name, ms in totals.items())
    print(f"\n-> p50 {summary} (target <= 150 ms)")

    print(f"\nmodules loaded: {len(loaded)}; of the watched ones:")
    print("  loaded:     " + ", ".join(m for m in WATCH if m in loaded))
    print("  not loaded: " + ", ".join(m for m in WATCH if m not in loaded))

    print(f"\npython -X importtime, top {args.top} by cumulative time (one run, this tree):")
    print(f"{'cumulative ms':>14}{'self ms':>9}  module")
    for cumulative, self_us, name in importtime_top(importtime_err, args.top):
        print(f"{cumulative / 1000:>14.1f}{self_us / 1000:>9.1f}  {name}")


if __name__ == "__main__":
    main()
