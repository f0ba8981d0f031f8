"""Streaming through the gateway: time to first event added, throughput, and gateway memory.

1. Time to first event: a ConverseStream request sent over a raw socket; the clock stops when
   the first complete event-stream frame has arrived. Direct and via-gateway requests alternate.
2. A long stream (default 500 MB of 16 KiB contentBlockDelta frames) pulled through the gateway
   while the gateway process's RSS is sampled every 20 ms; reported: RSS before, peak, growth,
   and throughput next to a direct pull of the same stream.

    python benchmarks/bench_stream.py --ttfe-requests 300 --stream-mb 500 --frame-kib 16
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time

from _procs import Proc, fake_bedrock, gateway, percentile

PATH = "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "stream please"}]}]}).encode()
REQUEST = (f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("connection closed before the first event")
    return data


def _dechunk_first_frame(sock: socket.socket) -> None:
    """Read until the first whole event-stream frame of a chunked response is in."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
        raise RuntimeError(f"unexpected response: {head[:200]!r}")
    payload = b""
    while True:
        while b"\r\n" not in body:
            body += _recv(sock)
        size_line, rest = body.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            rest += _recv(sock)
        payload += rest[:size]
        body = rest[size + 2:]
        if len(payload) >= 4 and len(payload) >= int.from_bytes(payload[:4], "big"):
            return


def _ttfe(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        sock.sendall(REQUEST)
        _dechunk_first_frame(sock)
        return time.perf_counter() - t0


def _pull(port: int) -> tuple[int, float]:
    """Read a whole response (until the server's terminating chunk) and count bytes."""
    total = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        t0 = time.perf_counter()
        sock.sendall(REQUEST)
        tail = b""
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            total += len(data)
            tail = (tail + data)[-16:]
            if tail.endswith(b"\r\n0\r\n\r\n"):
                break
        return total, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ttfe-requests", type=int, default=300)
    parser.add_argument("--stream-mb", type=int, default=500)
    parser.add_argument("--frame-kib", type=int, default=16)
    args = parser.parse_args()
    with fake_bedrock() as fake, gateway(fake.url) as gw:
        for _ in range(20):
            _ttfe(fake.port), _ttfe(gw.port)
        direct, via = [], []
        for i in range(args.ttfe_requests):
            if i % 2:
                direct.append(_ttfe(fake.port))
                via.append(_ttfe(gw.port))
            else:
                via.append(_ttfe(gw.port))
                direct.append(_ttfe(fake.port))
        ms = 1000
        print(f"time to first event, {args.ttfe_requests} requests per path:")
        print(f"  direct  p50 {percentile(direct, .5) * ms:.3f} ms  p99 {percentile(direct, .99) * ms:.3f} ms")
        print(f"  gateway p50 {percentile(via, .5) * ms:.3f} ms  p99 {percentile(via, .99) * ms:.3f} ms")
        print(f"  added   p50 {(percentile(via, .5) - percentile(direct, .5)) * ms:.3f} ms"
              f"  (median of pairwise differences"
              f" {statistics.median(v - d for v, d in zip(via, direct, strict=True)) * ms:.3f} ms)")

        frame = args.frame_kib * 1024
        count = args.stream_mb * 1024 * 1024 // frame
        fake.command(f"stream_frames {count} {frame}")
        nbytes, secs = _pull(fake.port)
        print(f"direct pull : {nbytes / 1e6:.0f} MB in {secs:.2f} s = {nbytes / 1e6 / secs:.0f} MB/s")
        fake.command(f"stream_frames {count} {frame}")
        rss = _sample_rss(gw)
        before = gw.rss_kib()
        nbytes, secs = _pull(gw.port)
        rss.stop = True
        rss.join()
        print(f"via gateway : {nbytes / 1e6:.0f} MB in {secs:.2f} s = {nbytes / 1e6 / secs:.0f} MB/s"
              f" ({count} frames of {args.frame_kib} KiB)")
        print(f"gateway RSS : before {before / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB,"
              f" growth {(rss.peak - before) / 1024:.1f} MiB")


class _sample_rss(threading.Thread):
    def __init__(self, proc: Proc) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.peak = proc.rss_kib()
        self.stop = False
        self.start()

    def run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.proc.rss_kib())
            time.sleep(0.02)


if __name__ == "__main__":
    main()
