"""Content-filter costs: every built-in filter on a 10 KB prompt, and the stream scanner per frame.

- prompt: one 10 KB realistic prompt (prose, code, numbers that look like PII but are not, one
  e-mail address) scanned by PII (every category), 50 deny terms and 5 regexes — the scans
  alone, and the whole input check through ``Gateway.handle`` (extraction, size and parameter
  policies, the three text filters, redaction, re-encoding) against the same gateway without
  filters, interleaved; p50 of each repeat, median of the repeats.
- conversation: the same 10 KB as a system prompt and 40 messages of two text blocks each,
  through ``Gateway.handle`` (the texts are judged joined, across blocks and roles).
- non-ASCII: a 10 KB prompt of Japanese prose with the same numbers and address, scans only
  (PII folds such text before scanning it).
- stream: a ConverseStream of 1,000 ``contentBlockDelta`` frames (4-12 characters each) through
  the StreamScanner with the same three filters; µs per frame, and the most text held back
  against the filters' window.

    python benchmarks/bench_filters.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Iterator

from _procs import p50

from bedrock_gateway import Gateway, Response
from bedrock_gateway.eventstream import Frame, event_frame
from bedrock_gateway.filters import (
    ContentFilter,
    DenyTermsFilter,
    FilterRule,
    ParameterPolicy,
    PIIFilter,
    RegexFilter,
    SizeFilter,
    StreamScanner,
)

WORDS = ["the", "quarterly", "report", "shows", "revenue", "growth", "in", "the", "northern", "region", "while", "costs", "stayed", "flat;", "version", "2.4.1", "of", "the", "client", "shipped", "on", "2024-03-15", "with", "build", "10.0.19041.1", "and", "order", "4111", "1111", "1111", "1112", "is", "pending", "review", "by", "the", "team"]
TERMS = [f"codename{i} project" for i in range(48)] + ["launch codes", "internal only"]
PATTERNS = {"ticket": r"TCK-[0-9]{4,8}", "host": r"[a-z0-9-]+\.corp\.example\.com",
            "account": r"ACC[0-9]{10}", "badge": r"BADGE-[A-Z]{2}[0-9]{4}",
            "cost_center": r"CC-[0-9]{3}-[0-9]{3}"}


def prompt(size: int = 10_000) -> str:
    rng = random.Random(7)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size - 40:
        words.append(rng.choice(WORDS))
    words.insert(len(words) // 2, "contact jane.doe@example.com")
    return " ".join(words)[:size]


def filters() -> list[object]:
    return [PIIFilter(action="redact"), DenyTermsFilter(TERMS), RegexFilter(PATTERNS, action="log")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    text = prompt()
    scanners = filters()
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}],
                       "inferenceConfig": {"maxTokens": 512}}).encode()
    rules = [FilterRule(f, input=True) for f in scanners] + [
        FilterRule(SizeFilter(max_prompt_chars=100_000, max_messages=50, max_media=5)),
        FilterRule(ParameterPolicy(max_tokens=4096, temperature=(0.0, 1.0)))]

    def upstream(call: object) -> Response:
        return Response(200, {"content-type": "application/json"}, b"{}")

    plain = Gateway(upstream, anonymous=True)
    filtered = Gateway(upstream, [ContentFilter(rules)], anonymous=True)
    path = "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse"
    headers = {"content-type": "application/json"}
    scan, base, full = [], [], []
    for _ in range(args.repeats):
        scan.append(p50(lambda: [f.scan(text) for f in scanners], args.calls))  # type: ignore[attr-defined]
        base.append(p50(lambda: plain.handle("POST", path, "", headers, body), args.calls))
        full.append(p50(lambda: filtered.handle("POST", path, "", headers, body), args.calls))
    print(f"10 KB prompt, PII + 50 terms + 5 regexes, scans only: "
          f"{statistics.median(scan):.0f} µs p50")
    b, f = statistics.median(base), statistics.median(full)
    print(f"whole input check through Gateway.handle: {b:.0f} -> {f:.0f} µs (+{f - b:.0f} µs)")

    pieces = [text[i:i + 120] for i in range(0, len(text), 120)]
    conversation = json.dumps({
        "system": [{"text": pieces[0]}],
        "messages": [{"role": ("user", "assistant")[i % 2], "content": [
            {"text": pieces[1 + 2 * i]}, {"text": pieces[2 + 2 * i]}]} for i in range(40)],
        "inferenceConfig": {"maxTokens": 512}}).encode()
    chat = []
    for _ in range(args.repeats):
        chat.append(p50(lambda: filtered.handle("POST", path, "", headers, conversation),
                        args.calls))
    print(f"the same as 81 blocks (system + 40 messages): {b:.0f} -> "
          f"{statistics.median(chat):.0f} µs (+{statistics.median(chat) - b:.0f} µs)")
    japanese = text.replace("the ", "四半期の報告書によると、").replace(" and ", "および")[:10_000]
    wide = []
    for _ in range(args.repeats):
        wide.append(p50(lambda: [f.scan(japanese) for f in scanners], args.calls))  # type: ignore[attr-defined]
    print(f"10 KB non-ASCII prompt, scans only: {statistics.median(wide):.0f} µs p50")

    rng = random.Random(3)
    stream_text = prompt(8_000)
    pieces, pos = [], 0
    while pos < len(stream_text) and len(pieces) < 1000:
        step = rng.randint(4, 12)
        pieces.append(stream_text[pos:pos + step])
        pos += step
    frames = [Frame(event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                      "delta": {"text": p}, "p": "abcd"}))
              for p in pieces]
    per_frame = []
    for _ in range(args.repeats):  # timed: the scanner alone
        scanner = StreamScanner("ConverseStream", scanners)  # type: ignore[arg-type]
        t0 = time.perf_counter_ns()
        for _out in scanner(iter(frames)):
            pass
        per_frame.append((time.perf_counter_ns() - t0) / 1000 / len(frames))
    fed = released = held = 0  # not timed: how much text waits at most

    def counted() -> Iterator[Frame]:
        nonlocal fed
        for frame in frames:
            fed += len(json.loads(frame.payload)["delta"]["text"])
            yield frame

    for out in StreamScanner("ConverseStream", scanners)(counted()):  # type: ignore[arg-type]
        released += len(json.loads(out.payload)["delta"]["text"])
        held = max(held, fed - released)
    window = max(f.window for f in scanners)  # type: ignore[attr-defined]
    print(f"stream, {len(frames)} delta frames: {statistics.median(per_frame):.1f} µs per frame;"
          f" most text held back {held} chars (window {window} + the frame being read)")


if __name__ == "__main__":
    main()
