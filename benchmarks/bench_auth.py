"""In-process cost of authenticating one call: JWT (RS256), SigV4 access keys, API keys.

Each case is timed two ways: the authorizer alone (``authorizer.authenticate``) and what a
request pays in the pipeline (``AuthMiddleware``: reading and classifying the credential from
the headers, then the authorizer, then a no-op next step). Repeats of N calls; the medians of
the repeats' p50 and p99 are reported.

- JWT, new token: RS256, 2048-bit key, keys already fetched (JWKS cached), every call a token
  never seen before (pre-signed outside the timed loop) — the full verification.
- JWT, repeated token: the same token again — the verified-token cache.
- SigV4: a 2 KB Converse body signed by botocore, verified over method, path, headers, body.
- API key: SHA-256 and a constant-time comparison with every stored hash (1 and 100 keys).

    python benchmarks/bench_auth.py --calls 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.auth.dispatch import AuthMiddleware, Credential
from bedrock_gateway.auth.jwt import JWTAuthorizer
from bedrock_gateway.auth.jwt_keys import JWKSKeys
from bedrock_gateway.auth.sigv4_keys import AccessKey, SigV4Authorizer
from bedrock_gateway.call import Call, Response
from bedrock_gateway.operations import route
from bedrock_gateway.testing.tokens import TokenIssuer

PATH = "/model/anthropic.claude-v2/converse"
BODY = json.dumps({
    "messages": [{"role": "user", "content": [{"text": "benchmark " * 190}]}],
    "inferenceConfig": {"maxTokens": 256},
}).encode()
CANNED = Response(200, {}, b"{}")
ROUTE = route("POST", PATH)


def make_call(headers: dict[str, str], body: bytes = BODY) -> Call:
    return Call("POST", PATH, "", headers, body, ROUTE.operation, dict(ROUTE.params))


def measure(fn: Callable[[Any, Any], object], args: list[tuple[Any, Any]]) -> list[float]:
    """Time ``fn(*a)`` for each ``a`` in ``args``; µs per call, sorted."""
    samples = []
    for a, b in args:
        t0 = time.perf_counter_ns()
        fn(a, b)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return [s / 1000 for s in samples]


def report(label: str, repeats: list[list[float]], target: str = "") -> None:
    p50s = [r[len(r) // 2] for r in repeats]
    p99s = [r[int(len(r) * 0.99)] for r in repeats]
    print(f"{label:<44} p50 {statistics.median(p50s):7.1f} us  p99 {statistics.median(p99s):7.1f} us"
          f"  {target:<14} (repeats p50: {', '.join(f'{v:.1f}' for v in p50s)})", flush=True)


def bench_jwt(calls: int, repeats: int) -> None:
    issuer = TokenIssuer()  # not started: the JWKS document is handed over in-process
    jwks = json.dumps(issuer.jwks()).encode()
    keys = JWKSKeys("https://idp.bench/.well-known/jwks.json", fetch=lambda url, timeout: jwks)
    authorizer = JWTAuthorizer(keys, issuer=issuer.issuer, audience=issuer.audience,
                               cache_size=calls * repeats * 2 + 10)
    middleware = AuthMiddleware([authorizer])

    def next_(call: Call) -> Response:
        return CANNED

    warm = issuer.issue("warm-up", tenant="t1", groups=["dev"])
    authorizer.authenticate(Credential("jwt", warm), make_call({}))  # fetches the JWKS once
    counter = 0

    def fresh_tokens() -> list[str]:
        nonlocal counter
        counter += 1
        return [issuer.issue(f"user-{counter}-{i}", tenant="t1", groups=["dev", "ops"],
                             scope="bedrock:invoke") for i in range(calls)]

    new_auth, new_mw, same_auth, same_mw = [], [], [], []
    for _ in range(repeats):
        tokens = fresh_tokens()
        call = make_call({})
        new_auth.append(measure(authorizer.authenticate,
                                [(Credential("jwt", t), call) for t in tokens]))
        tokens = fresh_tokens()
        new_mw.append(measure(middleware, [
            (make_call({"authorization": f"Bearer {t}"}), next_) for t in tokens]))
        same_auth.append(measure(authorizer.authenticate, [(Credential("jwt", warm), call)] * calls))
        same_call = make_call({"authorization": f"Bearer {warm}"})
        same_mw.append(measure(middleware, [(same_call, next_)] * calls))
    report("JWT RS256, new token: authorizer", new_auth, "p50 <= 80 us")
    report("JWT RS256, new token: AuthMiddleware", new_mw)
    report("JWT, repeated token: authorizer", same_auth, "p50 <= 5 us")
    report("JWT, repeated token: AuthMiddleware", same_mw)


def bench_sigv4(calls: int, repeats: int) -> None:
    akid, secret = "AKIDGATEWAYBENCH01", "bench-secret-0123456789abcdef0123456789"
    request = AWSRequest("POST", f"http://gw.bench:8080{PATH}", data=BODY,
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(akid, secret), "bedrock", "us-east-1").add_auth(request)
    signed_at = datetime.now(UTC)
    headers = {k.lower(): v for k, v in request.prepare().headers.items()}
    headers["host"] = "gw.bench:8080"
    authorizer = SigV4Authorizer([AccessKey(akid, secret=secret, subject="svc", tenant="t1")],
                                 clock=lambda: signed_at)
    middleware = AuthMiddleware([authorizer])
    call = make_call(headers)
    credential = Credential("sigv4", headers["authorization"])
    authorizer.authenticate(credential, call)  # it verifies

    def next_(c: Call) -> Response:
        return CANNED

    auth_runs, mw_runs = [], []
    for _ in range(repeats):
        auth_runs.append(measure(authorizer.authenticate, [(credential, call)] * calls))
        mw_runs.append(measure(middleware, [(call, next_)] * calls))
    report(f"SigV4, {len(BODY)} B body: authorizer", auth_runs, "p50 <= 100 us")
    report(f"SigV4, {len(BODY)} B body: AuthMiddleware", mw_runs)


def bench_api_keys(calls: int, repeats: int) -> None:
    def next_(c: Call) -> Response:
        return CANNED

    for stored in (1, 100):
        pairs = [generate_api_key() for _ in range(stored)]
        authorizer = APIKeyAuthorizer(APIKey(digest, f"bot-{i}", "t1")
                                      for i, (_, digest) in enumerate(pairs))
        key = pairs[-1][0]
        credential = Credential("api_key", key)
        call = make_call({"x-api-key": key})
        middleware = AuthMiddleware([authorizer])
        auth_runs, mw_runs = [], []
        for _ in range(repeats):
            auth_runs.append(measure(authorizer.authenticate, [(credential, call)] * calls))
            mw_runs.append(measure(middleware, [(call, next_)] * calls))
        report(f"API key, {stored} stored: authorizer", auth_runs)
        report(f"API key, {stored} stored: AuthMiddleware", mw_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench_jwt(args.calls, args.repeats)
    bench_sigv4(args.calls * 5, args.repeats)
    bench_api_keys(args.calls * 5, args.repeats)


if __name__ == "__main__":
    main()
