"""Quota costs: store reserve + settle per call, the enforcer in the pipeline, round trips, and
64 concurrent callers against one tenant's limits (throughput and overshoot).

- store: reserve + settle of one call under three limits (requests/minute, tokens/minute,
  USD/day) — p50/p99 µs, medians of the repeats; round trips (Redis: commands seen by the
  server; DynamoDB: write requests) per call.
- enforcer: a Converse call through ``Gateway.handle`` with a canned upstream, with and without
  the enforcer (three limits, memory store), interleaved; the added µs.
- 64 threads: each thread its own store handle; every call reserves the three limits and
  settles a random real usage. Reports calls/s and the overshoot of the USD budget (settled
  minus budget: must be <= 0).

Redis needs ``redis-server`` on PATH (started on a free port); DynamoDB runs on moto's server.

    python benchmarks/bench_quota.py --calls 5000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from _procs import percentile

from bedrock_gateway import Call, Gateway, Response
from bedrock_gateway.quota import (
    Charge,
    Limit,
    MemoryStore,
    QuotaEnforcer,
    QuotaStore,
    QuotaStoreError,
)
from bedrock_gateway.quota.ledger import hold_slot

T0 = 1_790_000_000_000
DAY = 86_400_000
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "benchmark " * 190}]}],
                   "inferenceConfig": {"maxTokens": 256}}).encode()
ANSWER = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                     "stopReason": "end_turn", "metrics": {"latencyMs": 1},
                     "usage": {"inputTokens": 500, "outputTokens": 40, "totalTokens": 540}}
                    ).encode()


def charges(tag: str, usd_capacity: int = 10**15) -> list[Charge]:
    return [Charge(f"{tag}|rpm", 1, 10**9, period_ms=60_000),
            Charge(f"{tag}|tpm", 3_000, 10**12, period_ms=60_000),
            Charge(f"{tag}|usd|2026-11-26", 5_000_000, usd_capacity, expires_ms=T0 + DAY)]


def time_store(store: QuotaStore, calls: int) -> tuple[float, float]:
    cs = charges(uuid.uuid4().hex[:8])
    actual = [1, 540, 1_000_000]
    samples = []
    tag = uuid.uuid4().hex[:8]
    for i in range(calls):
        now = T0 + i
        slot = hold_slot(now, 900_000)
        call = f"{tag}.{i:x}"
        t0 = time.perf_counter_ns()
        store.reserve(call, cs, now, slot)
        store.settle(call, cs, actual, now)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return percentile(samples, 0.5), percentile(samples, 0.99)


@contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--dir", workdir],
                                stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


@contextmanager
def moto_server() -> Iterator[str]:
    import logging

    from moto.dynamodb.responses import DynamoHandler
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    # moto's server handles requests on threads without a lock, and a TransactWriteItems
    # deep-copies the whole table first: concurrent ones corrupt each other (HTTP 500,
    # "dictionary changed size during iteration"). Real DynamoDB does neither: serialise.
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def serialised(self: Any) -> Any:
        with lock:
            return call_action(self)

    DynamoHandler.call_action = serialised  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def redis_commands(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    stats = client.info("commandstats")
    client.close()
    # commands a client sends (those a script runs inside Redis are counted too, so leave them)
    return sum(int(v["calls"]) for k, v in stats.items()
               if k in ("cmdstat_eval", "cmdstat_evalsha", "cmdstat_script|load"))


def overshoot_64(make: Callable[[], QuotaStore],
                 rounds: int) -> tuple[float, int, int, int]:
    """64 threads; returns (calls per second, settled - budget, admitted calls, store errors)."""
    tag = uuid.uuid4().hex[:8]
    budget = 64 * rounds * 1_500_000  # nano-USD: less than the threads would spend (2.5M each)
    settled: list[int] = []
    errors: list[QuotaStoreError] = []
    lock = threading.Lock()
    barrier = threading.Barrier(65)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        store = make()
        barrier.wait()
        for r in range(rounds):
            cs = charges(tag, budget)
            slot = hold_slot(T0, 900_000)
            call = f"{tag}.{seed}.{r}"
            try:
                if not store.reserve(call, cs, T0, slot).ok:
                    continue
                used = rng.randint(0, 5_000_000)
                store.settle(call, cs, [1, rng.randint(0, 3_000), used], T0)
            except QuotaStoreError as exc:  # a store too slow (moto, see moto_server)
                errors.append(exc)
                continue
            with lock:
                settled.append(used)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return 64 * rounds / elapsed, sum(settled) - budget, len(settled), len(errors)


def enforcer_overhead(calls: int) -> tuple[float, float]:
    def upstream(call: Call) -> Response:
        return Response(200, {"content-type": "application/json"}, ANSWER)

    limits = [Limit("tenant", "requests_per_minute", Decimal(10**9)),
              Limit("tenant", "tokens_per_minute", Decimal(10**12)),
              Limit("global", "usd_per_day", Decimal(10**6))]
    plain = Gateway(upstream, anonymous=True)
    metered = Gateway(upstream, [QuotaEnforcer(limits, MemoryStore())], anonymous=True)
    path = "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse"
    headers = {"content-type": "application/json"}
    a, b = [], []
    for _ in range(calls):
        for gw, out in ((plain, a), (metered, b)):
            t0 = time.perf_counter_ns()
            r = gw.handle("POST", path, "", headers, BODY)
            for _chunk in r.chunks():
                pass
            out.append((time.perf_counter_ns() - t0) / 1000)
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="calls per thread, 64 threads")
    args = parser.parse_args()
    from bedrock_gateway.quota.stores.sqlite import SQLiteStore

    tmp = Path(tempfile.mkdtemp())
    shared = MemoryStore()  # one process: every thread shares the one store
    stores: dict[str, Callable[[], QuotaStore]] = {
        "memory": lambda: shared, "sqlite": lambda: SQLiteStore(tmp / "q.db")}
    with redis_server() as redis_url, moto_server() as moto_url:
        if redis_url:
            from bedrock_gateway.quota.stores.redis import RedisStore

            stores["redis"] = lambda: RedisStore.from_url(redis_url, prefix="bench")
        import os

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        from bedrock_gateway.quota.stores.dynamodb import DynamoDBStore, create_table

        # moto deep-copies a whole table on each TransactWriteItems: a table per phase keeps
        # that copy (which grows with the table, not with anything DynamoDB does) small.
        table = {"name": "bench0"}
        create_table("bench0", region="us-east-1", endpoint_url=moto_url)
        stores["dynamodb"] = lambda: DynamoDBStore(table["name"], region="us-east-1",
                                                   endpoint_url=moto_url)
        print(f"{'store':10} {'p50 µs':>9} {'p99 µs':>9}  round trips/call")
        for name, make in stores.items():
            if name == "dynamodb":
                table["name"] = "bench1"
                create_table("bench1", region="us-east-1", endpoint_url=moto_url)
            store = make()
            n = args.calls if name != "dynamodb" else max(args.calls // 20, 50)
            runs = [time_store(store, n) for _ in range(args.repeats)]
            trips = ""
            if name == "redis" and redis_url:
                before = redis_commands(redis_url)
                time_store(store, 100)
                trips = f"{(redis_commands(redis_url) - before) / 100:.2f} round trips"
            if name == "dynamodb":
                trips = f"{dynamodb_writes(store):.2f} write requests"
            print(f"{name:10} {statistics.median(r[0] for r in runs):9.1f}"
                  f" {statistics.median(r[1] for r in runs):9.1f}  {trips}")
            if name != "memory":
                store.close()
        plain, metered = zip(*(enforcer_overhead(args.calls // 5) for _ in range(args.repeats)),
                             strict=True)
        p, m = statistics.median(plain), statistics.median(metered)
        print(f"\nenforcer, 3 limits, memory store: {p:.1f} µs -> {m:.1f} µs per call"
              f" (+{m - p:.1f} µs)")
        print(f"\n64 threads, {args.rounds} calls each, three limits per call:")
        for name, make in stores.items():
            rounds = args.rounds if name != "dynamodb" else max(args.rounds // 5, 2)
            if name == "dynamodb":
                table["name"] = "bench2"
                create_table("bench2", region="us-east-1", endpoint_url=moto_url)
            rate, over, admitted, failed = overshoot_64(make, rounds)
            print(f"{name:10} {rate:9.0f} calls/s  admitted {admitted:5d}"
                  f"  overshoot {over / 1e9:+.6f} USD"
                  + (f"  ({failed} store errors)" if failed else ""))


def dynamodb_writes(store: Any) -> float:
    counts = {"writes": 0}

    def count(**_: Any) -> None:
        counts["writes"] += 1

    events = store.client.meta.events
    for op in ("PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem"):
        events.register(f"before-call.dynamodb.{op}", count)
    time_store(store, 20)
    return counts["writes"] / 20


if __name__ == "__main__":
    main()
