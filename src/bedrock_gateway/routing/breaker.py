"""A circuit breaker per target key (a model id), so fallback skips a target that keeps failing.

States, per key:

- **closed** (the default, and every key never seen): calls pass; ``failures`` consecutive
  failures open the circuit. A success resets the count.
- **open**: :meth:`CircuitBreaker.allow` is ``False`` until ``reset_s`` has passed since it
  opened; then the circuit is
- **half-open**: exactly one probe is allowed (the first :meth:`~CircuitBreaker.allow` call);
  further calls are refused while it is in flight. Its success closes the circuit, its failure
  re-opens it for another ``reset_s``. A probe that never reports back (its caller died) is
  replaced by a new one after ``reset_s``, so a key cannot stay stuck half-open.

Pure: no threads, no sleeps; time comes from the injected ``clock`` (``time.monotonic``).
Thread-safe: one lock guards all state. A closed key with no recorded failure has no entry, so
the healthy path (:meth:`~CircuitBreaker.allow` then :meth:`~CircuitBreaker.record_success`)
takes no lock at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass(slots=True)
class _State:
    failures: int = 0
    opened_at: float | None = None  # set while open or half-open
    probe_at: float | None = None  # when the half-open probe was let through


class CircuitBreaker:
    """Consecutive-failure circuit breaker keyed by target (see the module docstring)."""

    def __init__(self, failures: int = 5, reset_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if reset_s < 0:
            raise ValueError("reset_s must not be negative")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def allow(self, key: str) -> bool:
        """Whether a call to ``key`` may go ahead now (in half-open: this call is the probe)."""
        if key not in self._states:  # closed, never failed: the lock-free fast path
            return True
        with self._lock:
            state = self._states.get(key)
            if state is None or state.opened_at is None:
                return True
            now = self._clock()
            if now - state.opened_at < self.reset_s:
                return False
            if state.probe_at is not None and now - state.probe_at < self.reset_s:
                return False  # one probe at a time
            state.probe_at = now
            return True

    def record_success(self, key: str) -> None:
        """A call to ``key`` succeeded: close its circuit."""
        if key not in self._states:
            return
        with self._lock:
            self._states.pop(key, None)

    def record_failure(self, key: str) -> None:
        """A call to ``key`` failed: count it, open the circuit at the threshold, or re-open
        it when the failure is the half-open probe's."""
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _State()
            now = self._clock()
            if state.opened_at is not None:
                if state.probe_at is not None:  # the probe failed: open again
                    state.opened_at, state.probe_at = now, None
                return  # a late failure from before the circuit opened changes nothing
            state.failures += 1
            if state.failures >= self.failures:
                state.opened_at = now

    def state(self, key: str) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (probe due or in flight), for metrics."""
        with self._lock:
            state = self._states.get(key)
            if state is None or state.opened_at is None:
                return CLOSED
            if state.probe_at is None and self._clock() - state.opened_at < self.reset_s:
                return OPEN
            return HALF_OPEN

    def reset(self, key: str | None = None) -> None:
        """Close one circuit (or all of them)."""
        with self._lock:
            if key is None:
                self._states.clear()
            else:
                self._states.pop(key, None)
