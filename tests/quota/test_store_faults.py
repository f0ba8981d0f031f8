"""Quota stores under faults: answers lost, stores down, Redis paused (SIGSTOP) and killed.

No call may be charged twice, no settlement lost, no hold left behind. Every scenario drives
real calls through the gateway (``UsageRecorder`` outside ``QuotaEnforcer``) and ends with the
same check (:meth:`World.check`): what the store counts is exactly what the usage records say,
and nothing is held any more.

Timing: a paused Redis is detected by short socket timeouts (0.25-0.5 s) set on the store, never
by sleeping; the end of a pause is observed in Redis' own counters (the scripts it had queued have
run), and hold expiry by an injected clock.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bedrock_gateway import Call, Gateway, Response
from bedrock_gateway.quota.enforcer import QuotaEnforcer
from bedrock_gateway.quota.journal import Journal, Pending
from bedrock_gateway.quota.ledger import Charge, Decision, QuotaStore, QuotaStoreError
from bedrock_gateway.quota.limits import Limit, period_of
from bedrock_gateway.quota.pricing import Pricing
from bedrock_gateway.quota.records import UsageRecord, UsageRecorder
from bedrock_gateway.quota.stores.memory import MemoryStore

from .conftest import StoreFactory, _free_port

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"  # 0.8 / 4 USD per 1M tokens
T0 = 1_795_000_000.0  # 2026-11-18T08:53:20Z: holds of 15 minutes expire the same UTC day
NOW_MS = int(T0 * 1000)
AFTER_HOLDS_MS = NOW_MS + 20 * 60_000  # every reservation's hold has expired
LIMITS = [Limit("global", "requests_per_day", Decimal(10**6)),
          Limit("global", "tokens_per_day", Decimal(10**9)),
          Limit("global", "usd_per_day", Decimal(1_000)),
          Limit("global", "requests_per_minute", Decimal(10**6))]
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello"}]}],
                   "inferenceConfig": {"maxTokens": 500}}).encode()


class Upstream:
    """Answers Converse with a usage drawn at random (each call costs something different)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def __call__(self, call: Call) -> Response:
        with self.lock:
            inp, out = self.rng.randint(1, 60), self.rng.randint(0, 500)
        usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out}
        body = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
                "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 1}}
        return Response(200, {"content-type": "application/json"}, json.dumps(body).encode())


def finish(response: Response) -> None:
    """Send the answer: runs its close hooks (the settlement)."""
    b"".join(response.chunks())


class World:
    """A gateway (recorder outside the enforcer) on ``store``, with a fixed clock."""

    def __init__(self, store: QuotaStore, *, journal: Journal | str | Path | None = None,
                 seed: int = 0) -> None:
        self.store = store
        self.records: list[UsageRecord] = []
        self.enforcer = QuotaEnforcer(LIMITS, store, Pricing(), clock=lambda: T0,
                                      journal=journal)
        self.journal = self.enforcer.journal
        self.gateway = Gateway(Upstream(seed), [UsageRecorder(self.records.append),
                                                self.enforcer], anonymous=True)

    def call(self, *, hold: bool = False) -> Response:
        """One Converse call; ``hold``: reserved and answered, but not yet sent (unsettled)."""
        response = self.gateway.handle("POST", f"/model/{MODEL}/converse", "",
                                       {"content-type": "application/json"}, BODY)
        if not hold:
            finish(response)
        return response

    def check(self, store: QuotaStore | None = None) -> None:
        """What the store counts is what the records say, exactly; nothing is held."""
        store = store if store is not None else self.store
        served = [r for r in self.records if r.status == 200]
        tokens = sum(r.input_tokens + r.output_tokens for r in served)
        nano = sum(Decimal(r.cost_usd or 0) * 10**9 for r in served)
        assert nano == int(nano)
        day = period_of("day", NOW_MS).label
        keys = {limit.kind: str(limit.scope_key(None, MODEL)) for limit in LIMITS}
        budgets = [(Charge(f"{keys['requests_per_day']}|{day}", 0, 1), len(served)),
                   (Charge(f"{keys['tokens_per_day']}|{day}", 0, 1), tokens),
                   (Charge(f"{keys['usd_per_day']}|{day}", 0, 1), int(nano))]
        for charge, expected in budgets:
            assert (charge.key, store.level(charge, NOW_MS)) == (charge.key, expected)
            # a hold still counting at NOW would be gone once holds expire: there is none
            assert (charge.key, store.level(charge, AFTER_HOLDS_MS)) == (charge.key, expected)
        rate = Charge(keys["requests_per_minute"], 0, 10**6, period_ms=60_000)
        assert store.level(rate, NOW_MS) == len(served)  # voids gave their requests back


class Faulty(QuotaStore):
    """A store whose operations fail at random: ``down`` before reaching it, ``lost`` after it
    applied them (the answer never came back). ``on = False`` heals it."""

    def __init__(self, inner: QuotaStore, seed: int, *, down: float, lost: float) -> None:
        self.inner, self.rng, self.down, self.lost = inner, random.Random(seed), down, lost
        self.on = True
        self.faults = {"down": 0, "lost": 0}

    def _run(self, operation: Callable[[], Any]) -> Any:
        roll = self.rng.random() if self.on else 1.0
        if roll < self.down:
            self.faults["down"] += 1
            raise QuotaStoreError("connection refused")
        result = operation()
        if roll < self.down + self.lost:
            self.faults["lost"] += 1
            raise QuotaStoreError("timed out reading the answer")
        return result

    def reserve(self, call: str, charges: Sequence[Charge], now_ms: int,
                slot: int) -> Decision:
        decision: Decision = self._run(lambda: self.inner.reserve(call, charges, now_ms, slot))
        return decision

    def _finish(self, call: str, charges: Sequence[Charge], actual: Sequence[int] | None,
                now_ms: int, slot: int) -> None:
        self._run(lambda: self.inner._finish(call, charges, actual, now_ms, slot))

    def level(self, charge: Charge, now_ms: int) -> float:
        return self.inner.level(charge, now_ms)


@contextmanager
def under_load(world: World, threads: int = 8) -> Iterator[None]:
    """``threads`` callers holding and finishing calls in random order until the block ends;
    then every caller finishes what it holds, and any error in a caller fails the test."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        held: list[Response] = []
        try:
            while not stop.is_set():
                held.append(world.call(hold=True))
                while held and rng.random() < 0.7:
                    finish(held.pop(rng.randrange(len(held))))
            for response in held:
                finish(response)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in workers:
            thread.join(30)
    assert not errors, errors[0]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (a background thread's work, a process' state) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# -- every store: lost answers and outages, through the enforcer and its journal -------------


def test_lost_answers_and_outages_never_charge_twice_nor_lose_spend(
        store_factory: StoreFactory, request: pytest.FixtureRequest) -> None:
    """A quarter of all store operations apply but lose their answer, a sixth never arrive;
    settlements interleave out of order and the journal replays under the same faults. At the
    end the store agrees with the records to the nano-dollar."""
    kind = request.node.callspec.params["store_factory"]
    calls = 40 if kind == "dynamodb" else 160
    inner = store_factory()
    faulty = Faulty(inner, seed=7, down=0.15, lost=0.25)
    world = World(faulty, journal=Journal(background=False), seed=1)
    rng = random.Random(3)
    open_: list[Response] = []
    statuses: list[int] = []
    for i in range(calls):
        response = world.call(hold=True)
        statuses.append(response.status)
        open_.append(response)
        while open_ and rng.random() < 0.6:  # answers sent in any order
            finish(open_.pop(rng.randrange(len(open_))))
        if i % 10 == 9:
            world.journal.replay()  # the journal retries, and meets the same faults
    for response in open_:
        finish(response)
    assert 503 in statuses and 200 in statuses
    assert faulty.faults["down"] > 5 and faulty.faults["lost"] > 5
    assert world.journal.pending > 0
    faulty.on = False  # the store recovers
    assert world.journal.replay() == 0
    world.check(inner)
    world.enforcer.close()


def test_a_settlement_is_tried_once_on_the_request_thread_then_journaled() -> None:
    inner = MemoryStore()
    faulty = Faulty(inner, seed=0, down=1.0, lost=0.0)
    faulty.on = False
    world = World(faulty, journal=Journal(background=False))
    response = world.call(hold=True)
    settles: list[str] = []
    real_settle = faulty.settle

    def counted(*args: Any) -> None:
        settles.append("settle")
        real_settle(*args)

    faulty.settle = counted  # type: ignore[method-assign,assignment]
    faulty.on = True
    finish(response)  # the store is down: one try, no sleeping retries in the close hook
    assert settles == ["settle"]
    (entry,) = world.journal.entries()
    assert entry.actual is not None and entry.actual[0] == 1  # a request, settled at 1
    faulty.on = False
    assert world.journal.replay() == 0
    world.check(inner)


def test_the_journal_applies_its_entries_as_soon_as_the_store_answers_again() -> None:
    """The background retry waits a long time between tries here (60 s); the enforcer wakes it
    when a reservation gets an answer, so recovery does not wait for the timer."""
    inner = MemoryStore()
    faulty = Faulty(inner, seed=0, down=1.0, lost=0.0)
    world = World(faulty, journal=Journal(retry_s=(60.0, 60.0)))
    faulty.on = False
    held = [world.call(hold=True) for _ in range(3)]
    faulty.on = True
    for response in held:
        finish(response)
    assert world.call().status == 503
    wait_for(lambda: world.journal._worker is not None, "the retrying thread")
    faulty.on = False
    assert world.call().status == 200  # the store answers: the journal is woken
    wait_for(lambda: world.journal.pending == 0, "the journal to drain")
    world.check(inner)
    world.enforcer.close()


def test_a_reservation_whose_answer_was_lost_is_voided_not_left_holding() -> None:
    """The phantom-hold case: the reservation applied, its answer was lost, the call was
    refused with 503. The void the enforcer journaled releases the hold at once when the store
    answers — not 15 minutes later."""
    inner = MemoryStore()
    faulty = Faulty(inner, seed=0, down=0.0, lost=1.0)
    world = World(faulty, journal=Journal(background=False))
    assert world.call().status == 503
    usd = Charge(f"{LIMITS[2].scope_key(None, MODEL)}|{period_of('day', NOW_MS).label}", 0, 1)
    assert inner.level(usd, NOW_MS) > 0  # it holds, though the call was refused
    faulty.on = False
    assert world.journal.replay() == 0
    assert inner.level(usd, NOW_MS) == 0
    world.check(inner)


def test_a_locked_sqlite_file_delays_settlements_and_loses_none(tmp_path: Path) -> None:
    import sqlite3

    from bedrock_gateway.quota.stores.sqlite import SQLiteStore

    path = tmp_path / "quota.db"
    store = SQLiteStore(path, timeout_s=0.05)
    world = World(store, journal=Journal(tmp_path / "journal", background=False))
    held = [world.call(hold=True) for _ in range(5)]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    for response in held:
        finish(response)
    assert world.call().status == 503
    assert world.journal.pending == 6
    other.execute("ROLLBACK")
    other.close()
    assert world.journal.replay() == 0
    world.check()
    world.enforcer.close()
    store.close()


def test_a_dynamodb_settlement_whose_answer_was_lost_counts_once(
        dynamodb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transaction reaches DynamoDB, the connection drops before the answer, botocore does
    not resend: the settlement is journaled, replayed, and finds its call already settled."""
    import boto3
    import urllib3
    from botocore.config import Config
    from botocore.exceptions import ConnectionClosedError

    from bedrock_gateway.quota.stores.dynamodb import DynamoDBStore, create_table

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    table = f"q{uuid.uuid4().hex[:12]}"
    create_table(table, region="us-east-1", endpoint_url=dynamodb_url)
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=dynamodb_url,
                          config=Config(retries={"mode": "standard", "max_attempts": 1}))
    store = DynamoDBStore(table, client=client)
    world = World(store, journal=Journal(background=False))
    held = [world.call(hold=True) for _ in range(3)]
    lose = {"on": True}

    def deliver_then_drop(request: Any, **_: Any) -> None:
        if lose["on"]:
            answer = urllib3.request("POST", request.url, body=request.body,
                                     headers=dict(request.headers), timeout=10)
            assert answer.status == 200
            raise ConnectionClosedError(endpoint_url=request.url)

    client.meta.events.register("before-send.dynamodb.TransactWriteItems", deliver_then_drop)
    for response in held:
        finish(response)
    assert world.journal.pending == 3
    world.check()  # applied already, though no answer came back
    lose["on"] = False
    assert world.journal.replay() == 0
    world.check()  # and replaying changed nothing
    client.close()


# -- the journal file -------------------------------------------------------------------------


def _entry(call: str, actual: tuple[int, ...] | None = (5,)) -> Pending:
    return Pending(call, (Charge("k|2026-11-18", 10, 100, 0, NOW_MS + 86_400_000),),
                   actual, NOW_MS, 29_916_682)


def test_journal_entries_are_durable_and_replayed_by_the_next_process(tmp_path: Path) -> None:
    path = tmp_path / "quota.journal"
    journal = Journal(path, background=False)
    journal.add(_entry("a"))
    journal.add(_entry("b", None))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["call"] for line in lines] == ["a", "b"] and lines[1]["actual"] is None
    journal.close()  # the process ends with the store still down
    with path.open("ab") as torn:
        torn.write(b'{"call": "c", "charges": [["k|2026')  # a crash mid-line
    store = MemoryStore()
    assert store.reserve("a", [_entry("a").charges[0]], NOW_MS, 29_916_682).ok
    assert store.reserve("b", [_entry("b").charges[0]], NOW_MS, 29_916_682).ok
    again = Journal(path, background=False)
    assert [e.call for e in again.entries()] == ["a", "b"]  # the torn line is skipped
    assert again.replay(store) == 0
    assert path.read_bytes() == b""  # nothing left: emptied
    assert store.level(_entry("a").charges[0], NOW_MS) == 5  # a settled at 5, b voided
    again.close()


def test_done_entries_are_not_replayed_again(tmp_path: Path) -> None:
    path = tmp_path / "quota.journal"
    journal = Journal(path, background=False)
    failing = Faulty(MemoryStore(), seed=0, down=1.0, lost=0.0)
    journal.add(_entry("a"))
    journal.add(_entry("b"))
    assert journal.replay(failing) == 2
    failing.on = False
    failing.down = 0.0
    journal.replay(failing)
    journal.close()
    again = Journal(path, background=False)
    assert again.entries() == []
    again.close()


def test_processes_sharing_a_journal_path_use_their_own_files(tmp_path: Path) -> None:
    path = tmp_path / "quota.journal"
    first = Journal(path, background=False)
    second = Journal(path, background=False)  # another process: the file is locked
    assert first.path == path and second.path == tmp_path / "quota.journal.1"
    second.add(_entry("x"))
    second.close()  # that process exits with an entry left
    first.add(_entry("y"))
    third = Journal(path, background=False)  # a new process takes the free file
    assert third.path == tmp_path / "quota.journal.1"
    assert [e.call for e in third.entries()] == ["x"]
    third.close()
    first.close()
    fourth = Journal(path, background=False)  # adopts what the siblings left
    assert fourth.path == path and sorted(e.call for e in fourth.entries()) == ["x", "y"]
    assert (tmp_path / "quota.journal.1").read_bytes() == b""
    fourth.close()


def test_a_journal_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Journal(tmp_path / "absent" / "quota.journal")


# -- a real redis-server, paused and killed ---------------------------------------------------


class RedisProcess:
    """A redis-server of the test's own, on a fixed port, to pause, kill and start again."""

    def __init__(self, workdir: Path, *, appendonly: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (.ci/run installs it)")
        self.port = _free_port()
        self.args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--dir", str(workdir), "--appendonly", "yes" if appendonly else "no",
                     "--appendfsync", "always"]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(self._ready, "redis-server to accept commands")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")  # not -LOADING: the AOF is read
        except OSError:
            return False

    @contextmanager
    def paused(self) -> Iterator[None]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown, no final save
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)

    def scripts_run(self) -> int:
        """How many scripts (EVAL, EVALSHA) Redis has run."""
        import redis

        admin = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            stats: dict[str, Any] = admin.info("commandstats")
        finally:
            admin.close()
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                   for name in ("eval", "evalsha"))

    def raw_holds(self, prefix: str) -> dict[Any, Any]:
        """The budget hashes that still have a hold field (``h:<slot>``)."""
        import redis

        admin: Any = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            found = {}
            for key in admin.scan_iter(match=f"{{{prefix}}}:*|20*"):
                fields = admin.hgetall(key)
                if any(f.startswith(b"h:") for f in fields):
                    found[key] = fields
            return found
        finally:
            admin.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path, appendonly=False)
    yield server
    server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """appendonly yes, appendfsync always: Redis answers a write once it is on disk."""
    server = RedisProcess(tmp_path, appendonly=True)
    yield server
    server.stop()


def _redis_store(url: str, prefix: str, timeout_s: float = 0.25) -> Any:
    pytest.importorskip("redis")
    from bedrock_gateway.quota.stores.redis import RedisStore

    return RedisStore.from_url(url, prefix=prefix, socket_timeout_s=timeout_s)


def _warm(store: Any, connections: int) -> None:
    """Open ``connections`` pooled connections now, so that operations during a pause are
    written to a live socket (and queued in Redis) instead of failing in the handshake."""
    pool = store.client.connection_pool
    taken = [pool.get_connection() for _ in range(connections)]
    for conn in taken:
        pool.release(conn)


@pytest.mark.parametrize("background", [False, True], ids=["replayed after", "retried during"])
def test_a_redis_paused_during_settlements_charges_each_call_once(
        redis_server: RedisProcess, background: bool) -> None:
    """The red team's case: Redis stops for longer than the socket timeout while calls settle
    and reserve. Redis runs every script it had queued when it resumes; the journal replays the
    same settlements and voids — afterwards, or (background) retrying during the pause and
    racing the queued scripts when it ends. Each call counts once; the refused calls' holds
    are released as soon as the voids apply."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    store = _redis_store(redis_server.url, prefix, timeout_s=0.5)
    journal = Journal(retry_s=(0.05, 0.1)) if background else Journal(background=False)
    world = World(store, journal=journal, seed=2)
    world.call()  # both scripts are cached in Redis: EVALSHA from now on
    held = [world.call(hold=True) for _ in range(8)]
    assert all(r.status == 200 for r in held)
    _warm(store, 12)
    before = redis_server.scripts_run()
    refused: list[Response] = []
    with redis_server.paused():  # 11 concurrent calls, each on a live connection of its own
        jobs = [threading.Thread(target=finish, args=(r,)) for r in held]
        jobs += [threading.Thread(target=lambda: refused.append(world.call()))
                 for _ in range(3)]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join()  # each settlement and reservation times out after 0.5 s
    assert [r.status for r in refused] == [503] * 3
    if background:  # the journal's own tries race the queued scripts
        wait_for(lambda: world.journal.pending == 0, "the journal to drain")
        wait_for(lambda: redis_server.scripts_run() >= before + 11, "the queued scripts")
    else:
        assert world.journal.pending == 11  # 8 settlements, 3 voids
        # Redis resumes and runs the 11 scripts it had queued: settlements and reservations
        wait_for(lambda: redis_server.scripts_run() >= before + 11, "the queued scripts")
        assert redis_server.raw_holds(prefix)  # the refused calls' reservations hold
        assert world.journal.replay() == 0  # the same settlements again, and the voids
    assert redis_server.raw_holds(prefix) == {}
    world.check()
    world.enforcer.close()
    store.close()


def test_redis_pauses_under_concurrent_load_lose_nothing_and_double_nothing(
        redis_server: RedisProcess) -> None:
    """Eight threads call continuously while Redis is paused twice; the journal retries in the
    background. Afterwards the ledger and the records agree exactly."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    store = _redis_store(redis_server.url, prefix)
    world = World(store, journal=Journal(retry_s=(0.05, 0.2)), seed=4)
    _warm(store, 16)
    with under_load(world):
        for _ in range(2):
            wait_for(lambda: len(world.records) > 40, "calls before the pause")
            with redis_server.paused():
                wait_for(lambda: world.journal.pending > 8, "settlements to fail")
            count = len(world.records)
            wait_for(lambda c=count: len(world.records) > c + 40,  # type: ignore[misc]
                     "calls after the pause")
    wait_for(lambda: world.journal.pending == 0, "the journal to drain", timeout_s=30)
    assert any(r.status == 503 for r in world.records)
    assert redis_server.raw_holds(prefix) == {}
    world.check()
    world.enforcer.close()
    store.close()


def test_a_redis_killed_and_restarted_loses_no_settled_spend(
        durable_redis: RedisProcess, tmp_path: Path) -> None:
    """SIGKILL with calls settled, calls in flight and calls arriving while it is down; the
    gateway itself restarts too. With ``appendonly yes`` + ``appendfsync always`` Redis keeps
    every write it acknowledged; the gateway's journal file holds the rest."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    journal_path = tmp_path / "quota.journal"
    store = _redis_store(durable_redis.url, prefix)
    world = World(store, journal=Journal(journal_path, background=False), seed=5)
    for _ in range(20):
        world.call()  # settled before the crash
    in_flight = [world.call(hold=True) for _ in range(10)]
    durable_redis.kill()
    for response in in_flight[:6]:
        finish(response)  # connection refused: journaled
    down = [world.call() for _ in range(4)]
    assert [r.status for r in down] == [503] * 4
    durable_redis.start()  # same port, same directory: Redis reloads its append-only file
    for response in in_flight[6:]:
        finish(response)  # the store is back: these settle directly
    assert world.journal.pending == 10  # 6 settlements and 4 voids, on disk
    world.enforcer.close()  # the gateway process ends before replaying them

    store2 = _redis_store(durable_redis.url, prefix)
    restarted = World(store2, journal=journal_path)  # replays its journal at start
    wait_for(lambda: restarted.journal.pending == 0, "the restarted gateway's replay")
    assert journal_path.read_bytes() == b""
    world.check(store2)
    assert durable_redis.raw_holds(prefix) == {}
    restarted.enforcer.close()
    store2.close()


def test_a_redis_killed_under_concurrent_load_loses_no_settled_spend(
        durable_redis: RedisProcess, tmp_path: Path) -> None:
    prefix = f"q{uuid.uuid4().hex[:8]}"
    store = _redis_store(durable_redis.url, prefix)
    world = World(store, journal=Journal(tmp_path / "quota.journal", retry_s=(0.05, 0.2)),
                  seed=6)
    with under_load(world):
        wait_for(lambda: len(world.records) > 100, "calls before the crash")
        durable_redis.kill()
        wait_for(lambda: world.journal.pending > 8, "calls to fail")
        durable_redis.start()
        count = len(world.records)
        wait_for(lambda: len(world.records) > count + 100, "calls after the restart")
    wait_for(lambda: world.journal.pending == 0, "the journal to drain", timeout_s=30)
    assert any(r.status == 503 for r in world.records)
    world.check()
    assert durable_redis.raw_holds(prefix) == {}
    world.enforcer.close()
    store.close()


def test_the_journal_path_is_configurable(tmp_path: Path) -> None:
    from bedrock_gateway.quota.config import QuotaSection, build_enforcer

    section = QuotaSection.model_validate({
        "journal": str(tmp_path / "quota.journal"),
        "limits": [{"scope": "global", "requests_per_minute": 5}]})
    enforcer = build_enforcer(section, Pricing())
    assert enforcer.journal.path == tmp_path / "quota.journal"
    assert os.path.exists(tmp_path / "quota.journal")
    enforcer.close()
