"""SQLiteStore beyond the shared contract: processes sharing one file, the file's layout,
sweeping expired rows, and errors (a locked, missing or foreign file)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from bedrock_gateway.quota.ledger import HOLD_SLOT_MS, Charge, QuotaStoreError, hold_slot
from bedrock_gateway.quota.stores import open_store
from bedrock_gateway.quota.stores import sqlite as sqlite_module
from bedrock_gateway.quota.stores.sqlite import SQLiteStore

T0 = 1_790_000_000_000
MINUTE = 60_000
DAY = 86_400_000
SLOT = hold_slot(T0, 15 * MINUTE)


def rate(key: str = "rpm", capacity: int = 10) -> Charge:
    return Charge(key, 1, capacity, period_ms=MINUTE)


def budget(key: str = "day", amount: int = 1, capacity: int = 1_000) -> Charge:
    return Charge(key, amount, capacity, expires_ms=T0 + DAY)


def calls(path: Path) -> dict[str, tuple[str, int, int]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT call, status, slot, expires_ms FROM quota_calls").fetchall()
    conn.close()
    return {call: (status, slot, expires) for call, status, slot, expires in found}


def rows(path: Path) -> dict[str, tuple[Any, int]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT key, state, expires_ms FROM quota").fetchall()
    conn.close()
    return {key: (json.loads(state), expires) for key, state, expires in found}


def _reserve_many(path: str, calls: int, start: Any, results: Any) -> None:
    """One process of a gateway: ``calls`` reservations of one request, all at T0."""
    start.wait()
    try:
        store = SQLiteStore(path)
        tag = os.getpid()
        results.put(sum(store.reserve(f"{tag}-{i}", [rate(capacity=250), budget()], T0,
                                      SLOT).ok for i in range(calls)))
        store.close()
    except Exception as exc:  # the parent reports it
        results.put(repr(exc))


def test_processes_sharing_one_file_enforce_one_limit(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"  # created by whichever process comes first
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(str(path), 150, start, results))
             for _ in range(3)]
    for proc in procs:
        proc.start()
    admitted = [results.get(timeout=60) for _ in procs]
    assert all(isinstance(n, int) for n in admitted), admitted
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert sum(admitted) == 250  # 450 tries, one limit of 250 for the three of them
    store = SQLiteStore(path)
    assert store.level(rate(capacity=250), T0) == 250
    assert store.level(budget(), T0) == 250  # the other key moved with it, all or nothing
    store.close()


def test_stores_opening_a_new_file_together_all_open_it(tmp_path: Path) -> None:
    # Switching a new file to WAL mode takes a lock SQLite does not wait for.
    failures: list[BaseException] = []
    for attempt in range(50):
        path = tmp_path / f"new-{attempt}.db"
        start = threading.Barrier(8)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                SQLiteStore(path).close()
            except QuotaStoreError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[0]


def test_the_file_is_in_wal_mode_with_one_json_row_per_key(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"
    store = SQLiteStore(path)
    assert store.reserve("a", [rate(), budget(amount=7)], T0, SLOT).ok
    assert calls(path) == {"a": ("h", SLOT, SLOT * HOLD_SLOT_MS + 60_000)}
    store.settle("a", [rate(), budget(amount=7)], [1, 5], T0 + 1_000)
    store.void("b", [rate()], T0 + 1_000, SLOT)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert rows(path) == {
        "rpm": ({"l": pytest.approx(1 - 10 / 60), "t": T0 + 1_000}, T0 + 1_000 + MINUTE),
        "day": ({"u": 5, "h": {}}, T0 + DAY),
    }
    assert calls(path) == {"a": ("s", SLOT, T0 + 1_000 + 60_000),
                           "b": ("v", SLOT, SLOT * HOLD_SLOT_MS + 60_000)}
    store.close()


def test_expired_rows_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "quota.db"
    store = SQLiteStore(path)
    assert store.reserve("a", [rate(), budget()], T0, SLOT).ok
    assert store.sweep(T0 + MINUTE) == 0  # a bucket is kept until it has drained
    assert store.sweep(T0 + MINUTE + 1) == 1
    assert set(rows(path)) == {"day"}
    assert store.sweep(SLOT * HOLD_SLOT_MS + 60_000) == 0  # the call's record, until then
    assert store.sweep(SLOT * HOLD_SLOT_MS + 60_001) == 1
    assert calls(path) == {}
    assert store.sweep(T0 + DAY + 1) == 1
    assert rows(path) == {}
    store.close()
    # ... and every _SWEEP_EVERY-th write of a store sweeps by itself
    monkeypatch.setattr(sqlite_module, "_SWEEP_EVERY", 3)
    store = SQLiteStore(path)
    assert store.reserve("old", [rate("old")], T0, SLOT).ok
    later = SLOT * HOLD_SLOT_MS + 2 * MINUTE
    assert store.reserve("new", [rate("new")], later, SLOT).ok
    assert set(rows(path)) == {"old", "new"}
    assert set(calls(path)) == {"old", "new"}
    store.settle("new", [rate("new")], [1], later)
    assert set(rows(path)) == {"new"}
    assert set(calls(path)) == {"new"}
    store.close()


def test_a_locked_database_is_a_store_error_until_released(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"
    store = SQLiteStore(path, timeout_s=0.05)
    assert store.reserve("a", [rate()], T0, SLOT).ok
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(QuotaStoreError, match="locked"):
        store.reserve("b", [rate()], T0, SLOT)
    with pytest.raises(QuotaStoreError, match="locked"):
        store.settle("a", [rate()], [1], T0)
    assert store.level(rate(), T0) == 1  # WAL: reading never waits for the writer
    other.execute("ROLLBACK")
    other.close()
    assert store.reserve("b", [rate()], T0, SLOT).ok  # the failed try left no record
    assert store.level(rate(), T0) == 2
    store.close()


def test_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(QuotaStoreError, match="cannot open"):
        SQLiteStore(tmp_path / "absent" / "quota.db")
    assert not (tmp_path / "absent").exists()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"
    path.write_bytes(b"not a database, just some bytes" * 100)
    with pytest.raises(QuotaStoreError, match="cannot open"):
        SQLiteStore(path)


def test_an_unreadable_state_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"
    store = SQLiteStore(path)
    assert store.reserve("a", [rate()], T0, SLOT).ok
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE quota SET state = '[1, 2' WHERE key = 'rpm'")
    conn.close()
    with pytest.raises(QuotaStoreError, match="rpm"):
        store.reserve("b", [rate()], T0, SLOT)
    with pytest.raises(QuotaStoreError, match="rpm"):
        store.level(rate(), T0)
    store.close()


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "quota.db")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(QuotaStoreError, match="closed"):
        store.reserve("a", [rate()], T0, SLOT)


def test_the_url_names_the_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/quota.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/quota.db"
    store.close()
