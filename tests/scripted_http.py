"""A loopback HTTP/1.1 server that answers from a script, for fault tests (truncated, dripped,
held or oversized answers) where a well-behaved server cannot misbehave on purpose."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

# Writes an answer on the connection; returns the body bytes it got out. ``stop`` is set when
# the test tears the server down (answers that drip or hold should end then).
Answer = Callable[[socket.socket, threading.Event], int]


class ScriptedServer:
    """Answers request *n* with ``answers[n]`` (the last one repeats), then closes the
    connection. ``requests`` counts requests; ``started`` is released as an answer begins and
    ``done`` when it ends; ``sent`` holds each answer's body bytes (-1: the peer hung up)."""

    def __init__(self, *answers: Answer, path: str = "") -> None:
        self._answers = list(answers)
        self._path = path
        self.requests = 0
        self.sent: list[int] = []
        self.stop = threading.Event()
        self.started = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self._sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}{self._path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            header, _, body = head.partition(b"\r\n\r\n")
            length = 0
            for line in header.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            index = self.requests
            self.requests += 1
            self.started.release()
            answer = self._answers[min(index, len(self._answers) - 1)]
            try:
                self.sent.append(answer(conn, self.stop))
            except OSError:
                self.sent.append(-1)
            self.done.release()

    def close(self) -> None:
        self.stop.set()
        self._sock.close()
