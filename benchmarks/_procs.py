"""Start FakeBedrock and a gateway as separate processes, so each has its own GIL and core time.

The fake answers without checking signatures here (both paths would pay the same check); the
gateway still signs every request, so its signing cost is part of what is measured.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

FAKE_SCRIPT = """
import sys
from bedrock_gateway.testing import FakeBedrock
fake = FakeBedrock(verify_signatures=False).start()
print(fake.endpoint_url, flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "stream_frames":
        fake.stream_frames(int(args[0]), int(args[1]))
    print("ok", flush=True)
fake.stop()
"""


class Proc:
    def __init__(self, popen: subprocess.Popen[str], url: str) -> None:
        self.popen = popen
        self.url = url
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def command(self, line: str) -> None:
        stdin: IO[str] | None = self.popen.stdin
        assert stdin is not None and self.popen.stdout is not None
        stdin.write(line + "\n")
        stdin.flush()
        self.popen.stdout.readline()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


@contextmanager
def fake_bedrock() -> Iterator[Proc]:
    popen = subprocess.Popen([sys.executable, "-c", FAKE_SCRIPT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert popen.stdout is not None
        yield Proc(popen, popen.stdout.readline().strip())
    finally:
        popen.terminate()
        popen.wait(10)


@contextmanager
def gateway(upstream_url: str, *extra_toml: str) -> Iterator[Proc]:
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        auth = "" if any(t.startswith("[auth]") for t in extra_toml) else "[auth]\nanonymous = true\n"
        f.write(f'[upstream]\nregion = "us-east-1"\nendpoint_url = "{upstream_url}"\n'
                + auth + "\n".join(extra_toml) + "\n")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=FAKE_SECRET_KEY, AWS_EC2_METADATA_DISABLED="true")
    popen = subprocess.Popen(
        [sys.executable, "-m", "bedrock_gateway.cli", "serve", "--config", f.name,
         "--port", str(port), "--log-level", "error"],
        env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_port(port)
        yield Proc(popen, f"http://127.0.0.1:{port}")
    finally:
        popen.terminate()
        popen.wait(10)
        os.unlink(f.name)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50(fn: Callable[[], object], n: int) -> float:
    """The median time of ``n`` calls of ``fn``, in µs (in process)."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return percentile(samples, 0.5) / 1000
