"""The quota enforcer's per-call overhead, side by side for two source trees (before/after).

Each run is a fresh process with one tree's ``src`` first on ``sys.path``; runs alternate
between the trees so the machine's noise falls on both. Prints every pair and the medians.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_quota_pair.py /tmp/before . --pairs 5 --calls 3000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = """
import sys
root = sys.argv[1]
sys.path[:0] = [root + "/src", root + "/benchmarks"]
import bench_quota, bedrock_gateway
assert bedrock_gateway.__file__.startswith(root), bedrock_gateway.__file__
base, metered = bench_quota.enforcer_overhead(int(sys.argv[2]))
print(metered - base)
"""


def overhead_us(tree: Path, calls: int) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(calls)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    trees = (args.before.resolve(), args.after.resolve())
    runs: dict[Path, list[float]] = {tree: [] for tree in trees}
    for _ in range(args.pairs):
        pair = [overhead_us(tree, args.calls) for tree in trees]
        for tree, value in zip(trees, pair, strict=True):
            runs[tree].append(value)
        print(f"before +{pair[0]:.1f} µs   after +{pair[1]:.1f} µs")
    before, after = (statistics.median(runs[tree]) for tree in trees)
    print(f"median enforcer overhead: before +{before:.1f} µs, after +{after:.1f} µs"
          f" ({after / before:.2f}x)")


if __name__ == "__main__":
    main()
