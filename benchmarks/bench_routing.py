"""Routing and cache costs in process: a cache hit for a 4 KB Converse answer, a replayed
1,000-frame stream against the same stream passed through (as canned Frame objects, and as the
forwarder really does it: the wire bytes decoded in 64 KiB reads, both CRCs checked), the
fallback handler's cost when the first target is healthy, and the cost of the per-(service,
region) upstream dispatch. p50 of each repeat, median of the repeats.

    python benchmarks/bench_routing.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterator

from _procs import p50

from bedrock_gateway import Call, Gateway, Response
from bedrock_gateway.eventstream import EventStreamDecoder, Frame, event_frame
from bedrock_gateway.routing.aliases import Alias, AliasRouter, Target
from bedrock_gateway.routing.cache import ResponseCache
from bedrock_gateway.routing.fallback import FallbackHandler

PATH = "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse"
STREAM_PATH = "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse-stream"
HEADERS = {"content-type": "application/json"}
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                   "inferenceConfig": {"temperature": 0, "maxTokens": 100}}).encode()
ANSWER = json.dumps({"output": {"message": {"role": "assistant", "content": [
    {"text": "x" * 3900}]}}, "stopReason": "end_turn", "metrics": {"latencyMs": 1},
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}).encode()
FRAMES = [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "word "},
                                            "p": "abcdefgh"}) for _ in range(1000)]


def drain(gateway: Gateway, path: str) -> None:
    for _ in gateway.handle("POST", path, "", HEADERS, BODY).chunks():
        pass


def upstream(call: Call) -> Response:
    if call.operation.streaming:
        return Response(200, {"content-type": "application/vnd.amazon.eventstream"},
                        frames=iter([Frame(f) for f in FRAMES]))
    return Response(200, {"content-type": "application/json"}, ANSWER)


WIRE = b"".join(FRAMES)


def decoded_upstream(call: Call) -> Response:
    """The stream as the forwarder yields it: decoded from wire bytes read 64 KiB at a time."""
    def frames() -> Iterator[Frame]:
        decoder = EventStreamDecoder()
        for at in range(0, len(WIRE), 65536):
            yield from decoder.feed(WIRE[at:at + 65536])
        decoder.finish()

    return Response(200, {"content-type": "application/vnd.amazon.eventstream"},
                    frames=frames())


class _Forwarder:
    """Stands in for SigV4Forwarder behind Upstreams (the upstream itself is canned)."""

    def __init__(self, **_options: object) -> None:
        pass

    def __call__(self, call: Call) -> Response:
        return upstream(call)

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    cached = Gateway(upstream, [ResponseCache()], anonymous=True)
    plain = Gateway(upstream, anonymous=True)
    drain(cached, PATH)
    drain(cached, STREAM_PATH)  # both now stored
    wire = Gateway(decoded_upstream, anonymous=True)
    hit, miss, replay, passthrough, decoded = [], [], [], [], []
    for _ in range(args.repeats):
        hit.append(p50(lambda: drain(cached, PATH), args.calls))
        miss.append(p50(lambda: drain(plain, PATH), args.calls))
        replay.append(p50(lambda: drain(cached, STREAM_PATH), args.calls // 20))
        passthrough.append(p50(lambda: drain(plain, STREAM_PATH), args.calls // 20))
        decoded.append(p50(lambda: drain(wire, STREAM_PATH), args.calls // 20))
    print(f"cache hit, 4 KB Converse answer: {statistics.median(hit):.1f} µs"
          f" (no cache, canned upstream: {statistics.median(miss):.1f} µs)")
    r, p = statistics.median(replay), statistics.median(passthrough)
    print(f"1,000-frame stream: replayed {r / 1000:.2f} µs/frame,"
          f" passed through {p / 1000:.2f} µs/frame as canned Frames,"
          f" {statistics.median(decoded) / 1000:.2f} µs/frame decoded from the wire")

    router = AliasRouter([Alias("chat", [Target("anthropic.claude-3-5-haiku-20241022-v1:0")],
                                fallback=("meta.llama3-1-8b-instruct-v1:0",))])
    direct = Gateway(upstream, [router], anonymous=True)
    fallback = Gateway(FallbackHandler(upstream), [router], anonymous=True)
    chat = "/model/chat/converse"
    a, b = [], []
    for _ in range(args.repeats):
        a.append(p50(lambda: drain(direct, chat), args.calls))
        b.append(p50(lambda: drain(fallback, chat), args.calls))
    print(f"fallback handler, healthy first target: +{statistics.median(b) - statistics.median(a):.1f}"
          f" µs per call ({statistics.median(a):.1f} -> {statistics.median(b):.1f})")

    from bedrock_gateway.upstreams import Upstreams

    upstreams = Upstreams(region="us-east-1", services=["bedrock-runtime", "bedrock-agent-runtime"],
                          regions=["us-west-2"], forwarder=_Forwarder)
    one, many = Gateway(_Forwarder(), anonymous=True), Gateway(upstreams, anonymous=True)
    a, b = [], []
    for _ in range(args.repeats):
        a.append(p50(lambda: drain(one, PATH), args.calls))
        b.append(p50(lambda: drain(many, PATH), args.calls))
    print(f"upstream dispatch by (service, region): +{statistics.median(b) - statistics.median(a):.1f}"
          f" µs per call ({statistics.median(a):.1f} -> {statistics.median(b):.1f})")


if __name__ == "__main__":
    main()
