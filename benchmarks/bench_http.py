"""Added latency over loopback: client -> gateway -> FakeBedrock vs client -> FakeBedrock.

Both targets are measured in the same run, in alternating rounds (direct first on even rounds,
gateway first on odd ones), so machine noise hits both alike. Each client thread keeps one
persistent connection per target. Reported: p50/p99 of each path and the difference, pooled
over all rounds, plus the median over rounds of the per-round p50 difference.

    python benchmarks/bench_http.py --concurrency 1 16 64 --rounds 5 --requests 2000
    python benchmarks/bench_http.py --auth jwt ...   # JWT (RS256, PEM key) + access rules

With ``--auth jwt`` the gateway verifies an RS256 JWT (a PEM public key) and evaluates three
access rules on every call; the client sends the same token each time, as a real client would
between refreshes (the gateway caches verified tokens).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time

from _procs import fake_bedrock, gateway, percentile

PATH = "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
BODY = json.dumps({
    "messages": [{"role": "user", "content": [{"text": "benchmark " * 190}]}],
    "inferenceConfig": {"maxTokens": 64},
}).encode()
HEADERS = {"Content-Type": "application/json"}


def _jwt_setup(directory: str) -> tuple[list[str], str]:
    """Config lines for JWT auth + rules, and a token that passes them."""
    import time as _time

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = f"{directory}/jwt-public.pem"
    with open(pem, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    now = int(_time.time())
    token = jwt.encode({"sub": "bench", "tenant": "t1", "groups": ["engineering"],
                        "iss": "https://issuer.bench", "aud": "gw", "iat": now,
                        "exp": now + 3600}, key, algorithm="RS256")
    lines = [
        "[auth]\nanonymous = false",
        f'[auth.jwt]\npublic_key_file = "{pem}"\nissuer = "https://issuer.bench"\n'
        'audience = "gw"\nalgorithms = ["RS256"]',
        '[[access]]\nname = "t2"\ntenants = ["t2"]\nallow_models = ["amazon.*"]',
        '[[access]]\nname = "eng"\ngroups = ["engineering"]\nallow_models = ["*anthropic.*"]',
        '[[access]]\nname = "no-opus"\ndeny_models = ["*opus*"]',
    ]
    return lines, token


def _phase(conns: list[http.client.HTTPConnection], per_thread: int) -> list[float]:
    samples: list[list[float]] = [[] for _ in conns]
    barrier = threading.Barrier(len(conns))

    def worker(i: int) -> None:
        conn = conns[i]
        out = samples[i]
        barrier.wait()
        for _ in range(per_thread):
            t0 = time.perf_counter()
            conn.request("POST", PATH, BODY, HEADERS)
            resp = conn.getresponse()
            resp.read()
            out.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"status {resp.status}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [s for per in samples for s in per]


def run(concurrency: int, rounds: int, requests: int, fake_port: int, gw_port: int) -> dict[str, float]:
    direct = [http.client.HTTPConnection("127.0.0.1", fake_port) for _ in range(concurrency)]
    via = [http.client.HTTPConnection("127.0.0.1", gw_port) for _ in range(concurrency)]
    per_thread = max(1, requests // concurrency)
    _phase(direct, max(1, 50 // concurrency))  # warm up connections and code paths
    _phase(via, max(1, 50 // concurrency))
    d_all: list[float] = []
    g_all: list[float] = []
    deltas: list[float] = []
    for r in range(rounds):
        order = [("d", direct), ("g", via)] if r % 2 == 0 else [("g", via), ("d", direct)]
        got: dict[str, list[float]] = {}
        for name, conns in order:
            got[name] = _phase(conns, per_thread)
        d_all += got["d"]
        g_all += got["g"]
        deltas.append(statistics.median(got["g"]) - statistics.median(got["d"]))
    for c in direct + via:
        c.close()
    ms = 1000.0
    return {
        "concurrency": concurrency,
        "direct_p50_ms": percentile(d_all, 0.5) * ms,
        "direct_p99_ms": percentile(d_all, 0.99) * ms,
        "gateway_p50_ms": percentile(g_all, 0.5) * ms,
        "gateway_p99_ms": percentile(g_all, 0.99) * ms,
        "added_p50_ms": (percentile(g_all, 0.5) - percentile(d_all, 0.5)) * ms,
        "added_p99_ms": (percentile(g_all, 0.99) - percentile(d_all, 0.99)) * ms,
        "added_p50_median_of_rounds_ms": statistics.median(deltas) * ms,
        "samples_per_path": len(d_all),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="per path per round")
    parser.add_argument("--auth", choices=["anonymous", "jwt"], default="anonymous")
    args = parser.parse_args()
    extra: list[str] = []
    if args.auth == "jwt":
        import tempfile

        extra, token = _jwt_setup(tempfile.mkdtemp())
        HEADERS["Authorization"] = f"Bearer {token}"  # the fake ignores it (no signature check)
    with fake_bedrock() as fake, gateway(fake.url, *extra) as gw:
        print("| concurrency | direct p50 | direct p99 | gateway p50 | gateway p99 |"
              " added p50 | added p99 | added p50 (median of rounds) |")
        print("|---|---|---|---|---|---|---|---|")
        for c in args.concurrency:
            r = run(c, args.rounds, args.requests, fake.port, gw.port)
            print(f"| {c} | {r['direct_p50_ms']:.3f} ms | {r['direct_p99_ms']:.3f} ms |"
                  f" {r['gateway_p50_ms']:.3f} ms | {r['gateway_p99_ms']:.3f} ms |"
                  f" {r['added_p50_ms']:.3f} ms | {r['added_p99_ms']:.3f} ms |"
                  f" {r['added_p50_median_of_rounds_ms']:.3f} ms |", flush=True)


if __name__ == "__main__":
    main()
