"""Store fixtures: every store the gateway ships, each against its real backend.

Redis tests run against a real ``redis-server`` started on a free port when the binary is on
PATH (``.ci/run`` installs it, so CI always runs them); DynamoDB tests against moto's server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_gateway.quota.ledger import QuotaStore

StoreFactory = Callable[[], QuotaStore]
STORES = ["memory", "sqlite", "redis", "dynamodb"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def dynamodb_url(moto_url: str) -> str:
    return moto_url


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of stores that share one backend (several "processes" on one ledger)."""
    name = f"q{uuid.uuid4().hex[:12]}"
    if kind == "memory":
        from bedrock_gateway.quota.stores.memory import MemoryStore

        shared = MemoryStore()
        return lambda: shared
    if kind == "sqlite":
        from bedrock_gateway.quota.stores.sqlite import SQLiteStore

        path = tmp_path / f"{name}.db"
        return lambda: SQLiteStore(path)
    if kind == "redis":
        from bedrock_gateway.quota.stores.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        return lambda: RedisStore.from_url(url, prefix=name)
    if kind == "dynamodb":
        from bedrock_gateway.quota.stores.dynamodb import DynamoDBStore, create_table

        endpoint = request.getfixturevalue("dynamodb_url")
        options: dict[str, Any] = {"region": "us-east-1", "endpoint_url": endpoint}
        create_table(name, **options)
        return lambda: DynamoDBStore(name, **options)
    raise AssertionError(kind)


@pytest.fixture(params=STORES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreFactory]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    opened: list[QuotaStore] = []
    make = _open(request.param, request, tmp_path)

    def factory() -> QuotaStore:
        store = make()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> QuotaStore:
    return store_factory()
