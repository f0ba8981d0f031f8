"""What only the Redis store promises: one round trip per call, the key layout (hash tag, TTLs),
fast failures, surviving a script flush, and the ledger's arithmetic bit for bit in Lua."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis")

import redis
from redis.connection import AbstractConnection
from redis.crc import key_slot

from bedrock_gateway.quota.ledger import (
    HOLD_SLOT_MS,
    KEEP_CALLS_MS,
    Charge,
    QuotaStore,
    QuotaStoreError,
    hold_slot,
)
from bedrock_gateway.quota.stores import open_store
from bedrock_gateway.quota.stores.memory import MemoryStore
from bedrock_gateway.quota.stores.redis import GRACE_MS, RedisStore

T0 = 1_790_000_000_000
TTL = 15 * 60_000
MINUTE = 60_000
DAY = 86_400_000
SLOT = hold_slot(T0, TTL)


def rate(key: str = "rpm", amount: int = 1, capacity: int = 10) -> Charge:
    return Charge(key, amount, capacity, period_ms=MINUTE)


def budget(key: str = "day", amount: int = 100, capacity: int = 150) -> Charge:
    return Charge(key, amount, capacity, expires_ms=T0 + DAY)


@pytest.fixture
def prefix() -> str:
    return f"q{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_url, prefix=prefix)
    yield s
    s.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class Sent:
    """The commands every redis-py connection writes to its socket (one per round trip)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        original: Any = AbstractConnection.send_packed_command

        def send(conn: Any, command: Any, *args: Any, **kwargs: Any) -> None:
            packed = command if isinstance(command, bytes) else b"".join(command)
            self.names.append(packed.split(b"\r\n")[2].decode().upper())
            original(conn, command, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", send)

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


def evalsha_calls(admin: redis.Redis) -> int:
    stats: dict[str, Any] = admin.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_one_round_trip_per_reserve_and_per_settle(
        store: RedisStore, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    store.client.ping()  # connect first: the handshake is not the calls' business
    sent = Sent(monkeypatch)
    three = [rate(), budget(), Charge("tpm", 500, 1_000, period_ms=MINUTE)]
    assert store.reserve("a", three, T0, SLOT).ok
    assert sent.take() == ["EVAL"]  # first use sends the script itself, no NOSCRIPT detour
    store.settle("a", three, [1, 40, 300], T0)
    assert sent.take() == ["EVAL"]
    before = evalsha_calls(admin)
    sent.take()
    decision = store.reserve("b", three, T0 + 1, SLOT)
    assert decision.ok
    assert sent.take() == ["EVALSHA"]
    store.settle("b", three, [1, 40, 300], T0 + 1)
    assert sent.take() == ["EVALSHA"]
    refused = store.reserve("c", [budget(amount=1_000)], T0 + 2, SLOT)
    assert not refused.ok
    assert sent.take() == ["EVALSHA"]
    store.void("d", [budget()], T0 + 2, SLOT)
    assert sent.take() == ["EVALSHA"]
    assert store.level(budget(), T0 + 2) == 80
    assert sent.take() == ["HGETALL"]
    sent.take()
    assert evalsha_calls(admin) - before == 4


def test_an_empty_call_does_not_touch_redis(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Sent(monkeypatch)
    assert store.reserve("a", [], T0, SLOT).ok
    store.settle("a", [], [], T0)
    store.void("a", [], T0, SLOT)
    assert sent.take() == []


def test_keys_carry_the_prefix_hash_tag_and_expire(
        store: RedisStore, admin: redis.Redis, prefix: str) -> None:
    hostile = ["a{b}c", "}{", "{x}", "a%7Bb", "a{b", "%", "%25", "ü{😀}" * 50, "k" * 300]
    for i, key in enumerate(hostile):
        assert store.reserve(f"c{{{i}}}", [budget(key, 150, 150)], T0, SLOT).ok
    assert store.reserve("r", [rate("r{}")], T0, SLOT).ok
    keys = list(admin.scan_iter(match=f"{{{prefix}}}:*", count=1000))
    assert len(keys) == len(hostile) + 1  # quoting keeps distinct charge keys distinct
    calls = list(admin.scan_iter(match=f"{{{prefix}}}#*", count=1000))
    assert len(calls) == len(hostile) + 1  # one record per call, in the same hash slot
    keys += calls
    tag_slot = key_slot(prefix.encode())
    for key in keys:
        assert key.startswith((b"{" + prefix.encode() + b"}:", b"{" + prefix.encode() + b"}#"))
        assert key.count(b"{") == 1 and key.count(b"}") == 1
        assert key_slot(key) == tag_slot
    for key in hostile:
        assert store.level(budget(key), T0) == 150
        ttl = admin.pttl(store.key(key))
        assert DAY < ttl <= DAY + GRACE_MS  # the period ends a day after T0, then a day's grace
        assert admin.hget(store.key(key), "h:" + str(SLOT)) == b"150"
    assert 0 < admin.pttl(store.key("r{}")) <= MINUTE
    assert sorted(admin.hkeys(store.key("r{}"))) == [b"l", b"t"]
    # a held call's record lives until its holds expire, and KEEP_CALLS_MS more
    assert admin.get(store.call_key("r")) == f"h{SLOT}".encode()
    assert SLOT * HOLD_SLOT_MS - T0 < admin.pttl(store.call_key("r")) <= \
        SLOT * HOLD_SLOT_MS - T0 + KEEP_CALLS_MS


def test_a_bucket_key_lives_until_it_has_drained_even_from_a_clock_behind(
        store: RedisStore, admin: redis.Redis) -> None:
    assert store.reserve("a", [rate(amount=5)], T0 + 10_000, SLOT).ok
    assert store.reserve("b", [rate(amount=5)], T0, SLOT).ok  # t stays at T0 + 10 s
    assert MINUTE < admin.pttl(store.key("rpm")) <= MINUTE + 10_000


def test_expired_holds_are_pruned_on_write(store: RedisStore, admin: redis.Redis) -> None:
    early, later = hold_slot(T0, TTL), hold_slot(T0 + 5 * MINUTE, TTL)
    assert store.reserve("a", [budget(amount=50)], T0, early).ok
    assert store.reserve("b", [budget(amount=50)], T0 + 5 * MINUTE, later).ok
    assert admin.hlen(store.key("day")) == 3
    store.settle("b", [budget(amount=50)], [10], early * HOLD_SLOT_MS)
    assert admin.hgetall(store.key("day")) == {b"u": b"10"}
    assert admin.get(store.call_key("b")) == b"s"
    assert 0 < admin.pttl(store.call_key("b")) <= KEEP_CALLS_MS  # settled: keep_ms from now


def test_an_unreachable_redis_fails_fast_without_leaking_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore.from_url(f"redis://user:s3cr%21t@127.0.0.1:{port}/0")
    started = time.monotonic()
    for call in (lambda: store.reserve("a", [rate()], T0, SLOT),
                 lambda: store.settle("a", [rate()], [1], T0),
                 lambda: store.void("a", [rate()], T0, SLOT),
                 lambda: store.level(rate(), T0)):
        with pytest.raises(QuotaStoreError) as info:
            call()
        assert "s3cr" not in str(info.value)
    assert time.monotonic() - started < 1.0  # refused at once, and never retried
    store.close()


def test_a_redis_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout_s=0.2)
        started = time.monotonic()
        with pytest.raises(QuotaStoreError, match="Timeout"):
            store.reserve("a", [rate()], T0, SLOT)
        assert time.monotonic() - started < 2.0
        store.close()


def test_the_store_survives_a_script_flush(
        store: RedisStore, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.reserve("a", [rate()], T0, SLOT).ok
    store.settle("a", [rate()], [1], T0)
    admin.script_flush()
    sent = Sent(monkeypatch)
    assert store.reserve("b", [rate()], T0, SLOT).ok
    assert sent.take() == ["EVALSHA", "EVAL"]  # NOSCRIPT, then the script itself
    store.settle("b", [rate()], [1], T0)
    assert sent.take() == ["EVALSHA", "EVAL"]
    assert store.reserve("c", [rate()], T0, SLOT).ok
    assert sent.take() == ["EVALSHA"]
    assert store.level(rate(), T0) == pytest.approx(3)


def test_a_client_passed_in_stays_open(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix=prefix)
    assert store.reserve("a", [rate()], T0, SLOT).ok
    store.close()
    assert client.ping()
    client.close()


def test_a_prefix_must_be_a_hash_tag(redis_url: str) -> None:
    for bad in ("", "a{b", "a}b"):
        with pytest.raises(ValueError, match="prefix"):
            RedisStore.from_url(redis_url, prefix=bad)


def test_open_store_takes_the_prefix_from_the_url(
        redis_url: str, admin: redis.Redis, prefix: str) -> None:
    store = open_store(f"{redis_url}?prefix={prefix}&keep_calls_s=120")
    assert isinstance(store, RedisStore)
    assert store.reserve("a", [rate()], T0, SLOT).ok
    assert admin.exists(f"{{{prefix}}}:rpm") == 1
    store.settle("a", [rate()], [1], T0)
    assert 110_000 < admin.pttl(store.call_key("a")) <= 120_000  # a settled call's record
    store.close()
    for bad in ("0", "x", "0.5"):
        with pytest.raises(ValueError, match="keep_calls_s"):
            open_store(f"{redis_url}?prefix={prefix}&keep_calls_s={bad}")


def _cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too and exists: an ephemeral
    port above 55535 has none, and redis-server then exits at start."""
    for _ in range(100):
        port = random.randint(20_000, 50_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a Redis Cluster node")


@pytest.fixture(scope="module")
def cluster_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A one-node Redis Cluster serving every slot: it enforces the one-slot rule for real."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port, workdir = _cluster_port(), tmp_path_factory.mktemp("cluster")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin: Any = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "no redis-server"
                time.sleep(0.02)
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.02)
        yield port
    finally:
        admin.close()
        proc.terminate()
        proc.wait(10)


def test_a_cluster_client_runs_every_call_in_one_slot(cluster_port: int, prefix: str) -> None:
    client: Any = redis.RedisCluster(host="127.0.0.1", port=cluster_port)
    store = RedisStore(client, prefix=prefix)
    three = [rate("a{x}"), budget("b}"), Charge("c", 1, 1, expires_ms=T0 + DAY)]
    assert store.reserve("a", three, T0, SLOT).ok  # keys in different slots would be refused
    refused = store.reserve("b", three, T0, SLOT)
    assert not refused.ok and refused.refused == 1
    store.settle("a", three, [1, 30, 1], T0)
    client.script_flush()
    assert store.reserve("c", three[:2], T0, SLOT).ok
    store.void("d", three, T0, SLOT)
    assert store.level(budget("b}"), T0) == 130
    assert {key_slot(k) for k in client.keys(target_nodes=client.ALL_NODES)} == {
        key_slot(prefix.encode())}
    store.close()
    client.close()


def _random_charge(rng: random.Random, i: int) -> Charge:
    key = f"k{i}"
    if i % 2:  # odd capacities and periods make levels fractional
        capacity = rng.choice([3, 7, 1_000, 999_983, 10**12])
        return Charge(key, rng.randint(0, capacity), capacity,
                      period_ms=rng.choice([1_000, 7_777, MINUTE, 3_600_000]))
    capacity = rng.choice([0, 150, 10**6, 10**15])
    return Charge(key, rng.randint(0, max(capacity // 3, 1)), capacity,
                  expires_ms=T0 + DAY)


@pytest.mark.parametrize("seed", range(6))
def test_the_lua_arithmetic_matches_the_reference_exactly(
        store: RedisStore, seed: int) -> None:
    """Random calls against the memory store (the reference functions) and Redis: every
    decision, remaining amount, retry and level must be equal, not approximately equal."""
    rng = random.Random(seed)
    reference: QuotaStore = MemoryStore(keep_ms=KEEP_CALLS_MS)
    charges = [_random_charge(rng, i) for i in range(6)]
    now = T0
    held: list[tuple[str, list[Charge]]] = []
    for n in range(250):
        now += rng.choice([0, 0, 1, 333, 4_999, MINUTE, 7 * MINUTE, -700])
        slot = hold_slot(now, rng.choice([0, TTL, -2 * MINUTE]))  # some holds expire at once
        picked = rng.sample(charges, rng.randint(1, 3))
        picked = [Charge(c.key, rng.randint(0, c.capacity or 1), c.capacity, c.period_ms,
                         c.expires_ms) for c in picked]
        call = f"c{n}"
        expected = reference.reserve(call, picked, now, slot)
        assert store.reserve(call, picked, now, slot) == expected
        if expected.ok:
            held.append((call, picked))
        if held and rng.random() < 0.7:  # settle, void or resend one of the calls
            call, picked = held.pop(rng.randrange(len(held))) if rng.random() < 0.8 \
                else held[rng.randrange(len(held))]
            later = now + rng.choice([0, 10, 20_000, TTL + MINUTE])
            if rng.random() < 0.8:
                actual = [rng.randint(0, 2 * c.amount + 1) for c in picked]
                reference.settle(call, picked, actual, later)
                store.settle(call, picked, actual, later)
            else:
                reference.void(call, picked, later, slot)
                store.void(call, picked, later, slot)
        if rng.random() < 0.1:  # a void of a call never seen, and its reservation after it
            ghost = f"g{n}"
            reference.void(ghost, picked, now, slot)
            store.void(ghost, picked, now, slot)
            assert store.reserve(ghost, picked, now, slot) == \
                reference.reserve(ghost, picked, now, slot)
        for c in charges:
            assert store.level(c, now) == reference.level(c, now)
