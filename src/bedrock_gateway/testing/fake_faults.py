"""Fault injection queues for the fake Bedrock (thread-safe, consumed in order).

Three independent queues: error answers (any request), stream *shapes* (``stream_frames``: a
huge synthetic stream) and stream *endings* (exception frame, cut connection, hold). The next
streaming response takes one item from each of the two stream queues, so a huge stream can also
end in a fault.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["ErrorFault", "FaultQueue", "StreamEnding", "StreamShape"]


@dataclass(frozen=True, slots=True)
class ErrorFault:
    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class StreamShape:
    """Replace the reply by ``count`` deltas of ``payload_size`` characters each."""

    count: int
    payload_size: int


@dataclass(frozen=True, slots=True)
class StreamEnding:
    """After ``frames`` frames: ``exception`` frame, ``cut`` connection or ``hold`` until set."""

    kind: str
    frames: int
    exception_type: str = ""
    message: str = ""
    partial_bytes: int = 0
    release: threading.Event = field(default_factory=threading.Event)


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: deque[ErrorFault] = deque()
        self._shapes: deque[StreamShape] = deque()
        self._endings: deque[StreamEnding] = deque()
        self._holds: list[threading.Event] = []
        self.delay = 0.0

    def add_errors(self, count: int, fault: ErrorFault) -> None:
        with self._lock:
            self._errors.extend([fault] * count)

    def add_shape(self, shape: StreamShape) -> None:
        with self._lock:
            self._shapes.append(shape)

    def add_ending(self, ending: StreamEnding) -> None:
        with self._lock:
            self._endings.append(ending)
            if ending.kind == "hold":
                self._holds.append(ending.release)

    def take_error(self) -> ErrorFault | None:
        if not self._errors:  # fast path without the lock; re-checked under it
            return None
        with self._lock:
            return self._errors.popleft() if self._errors else None

    def take_stream(self) -> tuple[StreamShape | None, StreamEnding | None]:
        if not self._shapes and not self._endings:
            return None, None
        with self._lock:
            shape = self._shapes.popleft() if self._shapes else None
            ending = self._endings.popleft() if self._endings else None
            return shape, ending

    def untake(self, shape: StreamShape | None, ending: StreamEnding | None) -> None:
        """Put back what :meth:`take_stream` gave a request that failed before streaming."""
        with self._lock:
            if shape is not None:
                self._shapes.appendleft(shape)
            if ending is not None:
                self._endings.appendleft(ending)

    def release_holds(self) -> None:
        """Set every hold event handed out so far (on reset and stop)."""
        with self._lock:
            holds, self._holds = self._holds, []
        for event in holds:
            event.set()

    def clear(self) -> None:
        with self._lock:
            self._errors.clear()
            self._shapes.clear()
            self._endings.clear()
            self.delay = 0.0
        self.release_holds()
