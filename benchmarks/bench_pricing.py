"""Price lookups and bills: the per-call cost of pricing (target: a lookup <= 5 µs).

- lookup: ``Pricing.rates_for(model id)`` for ids as clients send them (bare, geo and global
  profiles, ARNs, percent-encoded), after the first resolution (memoized per id and region);
- bill: ``Rates.bill(usage, terms)`` of a Converse answer with cache reads and writes;
- worst: ``Rates.worst(input bound, output bound, terms)``, the reservation;
- cold: resolving an id the first time (the table walk: prefix, ARN, globs).

    python benchmarks/bench_pricing.py --calls 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

from bedrock_gateway.quota.prices import Terms
from bedrock_gateway.quota.pricing import Pricing
from bedrock_gateway.quota.usage import Usage

IDS = [
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "eu.amazon.nova-pro-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
    "us.anthropic.claude-haiku-4-5-20251001-v1%3A0",
]


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def cold_us(calls: int) -> float:
    """Resolving ids the first time: a fresh table each run, no memo."""
    fresh = Pricing(region="us-east-1")
    ids = itertools.cycle(IDS)
    return per_call_us(lambda: fresh._resolve(next(ids), "us-east-1", 0), calls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    pricing = Pricing(region="us-east-1")
    load_ms = (time.perf_counter() - started) * 1000
    print(f"table: {len(pricing)} models, loaded and parsed in {load_ms:.1f} ms")
    ids = itertools.cycle(IDS)
    rates = pricing.rates_for(IDS[1])
    assert rates is not None
    usage = Usage(50, 500, cache_read_tokens=100_000, cache_write_tokens=2_000,
                  cache_write_1h_tokens=1_000, service_tier="default")
    terms = Terms(cache_1h=True)
    results: dict[str, list[float]] = {"lookup": [], "bill": [], "worst": [], "cold": []}
    for _ in range(args.repeats):
        results["lookup"].append(per_call_us(lambda: pricing.rates_for(next(ids)), args.calls))
        results["bill"].append(per_call_us(lambda: rates.bill(usage, terms), args.calls))
        results["worst"].append(per_call_us(lambda: rates.worst(120_000, 4_096, terms),
                                            args.calls))
        results["cold"].append(cold_us(len(IDS) * 200))
    for name, values in results.items():
        print(f"{name:7s} median {statistics.median(values):6.2f} µs"
              f"  (runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
