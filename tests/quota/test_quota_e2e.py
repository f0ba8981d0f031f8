"""Quotas end to end: boto3 -> gateway over HTTP (configured from TOML) -> FakeBedrock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway.quota.enforcer import QuotaEnforcer
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from ..conftest import ServeConfig, gateway_client, leave_mid_stream, records

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
Start = Callable[[str], tuple[BackgroundServer, Path]]


@pytest.fixture
def start(configured: ServeConfig) -> Start:
    return configured


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_twenty_concurrent_calls_against_ten_per_minute(start: Start) -> None:
    server, _ = start('[[quota.limits]]\nscope = "global"\nrequests_per_minute = 10\n')
    client = gateway_client(server.url, max_pool_connections=20)

    def call(_: int) -> str:
        try:
            client.converse(modelId=HAIKU, messages=MESSAGES)
            return "ok"
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-retry-after"]
            return error_code(exc)

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(call, range(20)))
    client.close()
    assert sorted(outcomes) == ["ThrottlingException"] * 10 + ["ok"] * 10


def test_a_small_budget_under_32_concurrent_calls_is_never_overspent(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    budget = Decimal("0.004")  # about 3 worst cases of $0.00135; about 15 real calls
    server, log = start(f"""
[[quota.limits]]
scope = "global"
usd_per_day = {budget}
""")
    client = gateway_client(server.url, max_pool_connections=32)
    config = {"maxTokens": 50}

    def call(i: int) -> str:
        try:
            if i % 2:
                events = list(client.converse_stream(modelId=HAIKU, messages=MESSAGES,
                                                     inferenceConfig=config)["stream"])
                assert "metadata" in events[-1]
            else:
                client.converse(modelId=HAIKU, messages=MESSAGES, inferenceConfig=config)
            return "ok"
        except ClientError as exc:
            return error_code(exc)

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(call, range(32)))
    client.close()
    ok = outcomes.count("ok")
    assert 0 < ok < 32
    assert set(outcomes) == {"ok", "ServiceQuotaExceededException"}
    written = records(log, 32)
    assert sum(Decimal(r["cost_usd"]) for r in written if r["cost_usd"]) <= budget
    streamed = [r for r in written if r["streamed"] and r["status"] == 200]
    assert streamed, "at least one stream got through"
    for r in streamed:
        assert r["complete"] and not r["estimated"] and r["limits"] == ["global usd_per_day"]
        assert r["input_tokens"] > 0 and r["output_tokens"] > 0 and Decimal(r["cost_usd"]) > 0
    refused = [r for r in written if r["status"] == 400]
    assert len(refused) == 32 - ok and all(r["error"] == "ServiceQuotaExceededException"
                                           for r in refused)


def test_a_client_gone_mid_stream_is_settled_at_its_worst_case(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\ntokens_per_day = 1000000\n')
    release = fake_bedrock.hold_stream_after(2)
    body = json.dumps({"messages": MESSAGES, "inferenceConfig": {"maxTokens": 77}}).encode()
    try:
        leave_mid_stream(server, HAIKU, body)
        (record,) = records(log, 1)
    finally:
        release.set()
    assert record["streamed"] and not record["complete"] and record["estimated"]
    enforcer = next(m for m in server.app.gateway.middleware if isinstance(m, QuotaEnforcer))
    (limit,) = enforcer.limits
    charge_key = f"{limit.scope_key(None, HAIKU)}|{time.strftime('%Y-%m-%d', time.gmtime())}"
    from bedrock_gateway.quota.ledger import Charge

    # settled (not merely held): the hold is gone, the worst case is in the settled total
    level = enforcer.store.level(Charge(charge_key, 0, 1), int(time.time() * 1000))
    assert level == len(body) + 1_000 + 77


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_processes(tmp_path: Path, fake_bedrock: FakeBedrock) -> Iterator[Callable[[str], list[str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def launch(store: str) -> list[str]:
        urls = []
        for i in range(2):
            config = tmp_path / f"proc-{i}.toml"
            config.write_text(f"""
[upstream]
endpoint_url = "{fake_bedrock.endpoint_url}"
backoff_base_s = 0
[auth]
anonymous = true
[quota]
store = "{store}"
[[quota.limits]]
scope = "global"
requests_per_minute = 10
""")
            port = _free_port()
            env = {**os.environ, "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY}
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bedrock_gateway.cli", "serve", "--config", str(config),
                 "--port", str(port), "--log-level", "warning"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            _wait(int(url.rsplit(":", 1)[1]))
        return urls

    yield launch
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def _wait(port: int) -> None:
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the gateway on port {port} did not start")


def _shared(urls: list[str]) -> list[str]:
    clients = [gateway_client(url) for url in urls]

    def call(i: int) -> str:
        try:
            clients[i % 2].converse(modelId=HAIKU, messages=MESSAGES)
            return "ok"
        except ClientError as exc:
            return error_code(exc)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, range(20)))
    for c in clients:
        c.close()
    return outcomes


@pytest.mark.slow
def test_two_gateway_processes_share_one_sqlite_file(
        two_processes: Callable[[str], list[str]], tmp_path: Path) -> None:
    outcomes = _shared(two_processes(f"sqlite://{tmp_path / 'quota.db'}"))
    assert sorted(outcomes) == ["ThrottlingException"] * 10 + ["ok"] * 10


@pytest.mark.slow
def test_two_gateway_processes_share_one_redis(
        two_processes: Callable[[str], list[str]], redis_url: str) -> None:
    outcomes = _shared(two_processes(f"{redis_url}?prefix=e2e-{os.getpid()}"))
    assert sorted(outcomes) == ["ThrottlingException"] * 10 + ["ok"] * 10





def test_remaining_quota_headers_and_the_count_tokens_bound_through_boto3(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    server, _ = start("""
[quota]
input_bound = "count_tokens"
default_max_tokens = 64
[[quota.limits]]
scope = "global"
requests_per_minute = 5
tokens_per_day = 100000
""")
    client = gateway_client(server.url)
    reply = client.converse(modelId=HAIKU, messages=MESSAGES)
    headers = reply["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-bedrock-gateway-remaining-requests-per-minute"] == "4"
    # held: Bedrock's own count of the prompt + the injected 64 output tokens
    counted = client.count_tokens(modelId=HAIKU, input={"converse": {"messages": MESSAGES}})
    assert int(headers["x-bedrock-gateway-remaining-tokens-per-day"]) == \
        100000 - counted["inputTokens"] - 64
    client.close()
    ops = [r.operation for r in fake_bedrock.requests]
    assert ops[:2] == ["CountTokens", "Converse"]
    assert json.loads(fake_bedrock.requests[1].body)["inferenceConfig"] == {"maxTokens": 64}
