"""In-process cost of one call through the pipeline, including SigV4 signing of the request.

A 2 KB Converse body goes through ``Gateway.handle`` (routing, JSON check, middleware chain)
to a terminal handler that does everything the real forwarder does before the network —
header selection, path rebuild and botocore SigV4 signing — and returns a canned response.
Five repeats of N calls; the medians of the repeats' p50 and p99 are reported.

    python benchmarks/bench_pipeline.py --calls 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from botocore.credentials import Credentials

from bedrock_gateway import Call, Gateway, Next, Response, SigV4Forwarder

BODY = json.dumps({
    "messages": [{"role": "user", "content": [{"text": "benchmark " * 190}]}],
    "inferenceConfig": {"maxTokens": 256},
}).encode()
PATH = "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
HEADERS = [
    ("host", "127.0.0.1:8080"), ("content-type", "application/json"),
    ("user-agent", "Boto3/1.43 md/Botocore#1.43 ua/2.1 os/linux#6 lang/python#3.11"),
    ("x-amz-date", "20261126T000000Z"), ("amz-sdk-invocation-id", "0f0e"),
    ("amz-sdk-request", "attempt=1; max=3"), ("content-length", str(len(BODY))),
    ("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/bedrock/aws4_request,"
                      " SignedHeaders=content-type;host;x-amz-date, Signature=00"),
]


def passthrough(call: Call, next_: Next) -> Response:
    return next_(call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    forwarder = SigV4Forwarder(region="us-east-1", credentials=Credentials("AKID", "SECRET"))
    canned = (b'{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},'
              b'"usage":{"inputTokens":510,"outputTokens":12,"totalTokens":522}}')

    def terminal(call: Call) -> Response:
        url = forwarder.endpoint_url + call.upstream_path
        forwarder._sign(call, url)  # exactly what an attempt does before it sends
        return Response(200, {"content-type": "application/json"}, canned)

    from bedrock_gateway.quota.pricing import Pricing
    from bedrock_gateway.quota.records import UsageRecorder

    recorder = UsageRecorder(lambda record: None, Pricing())  # usage + cost, records discarded
    for label, mws in (("no middleware", []), ("3 pass-through middleware", [passthrough] * 3),
                       ("usage recorder (usage, cost, record)", [recorder])):
        gw = Gateway(terminal, mws, anonymous=True)
        p50s, p99s = [], []
        for _ in range(args.repeats):
            samples = []
            for _ in range(args.calls):
                t0 = time.perf_counter_ns()
                gw.handle("POST", PATH, "", HEADERS, BODY).close()
                samples.append(time.perf_counter_ns() - t0)
            samples.sort()
            p50s.append(samples[len(samples) // 2] / 1000)
            p99s.append(samples[int(len(samples) * 0.99)] / 1000)
        print(f"{label}: p50 {statistics.median(p50s):.1f} us, p99 {statistics.median(p99s):.1f} us"
              f"  (repeats p50: {', '.join(f'{v:.1f}' for v in p50s)})")


if __name__ == "__main__":
    main()
