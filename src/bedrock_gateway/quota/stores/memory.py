"""The default store: counters in a dict behind one lock (one process, any number of threads)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from bedrock_gateway.quota.ledger import (
    Charge,
    Decision,
    QuotaStore,
    State,
    current_level,
    reserve_states,
    settle_state,
)

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 4096  # reservations between sweeps of finished periods and empty buckets


class MemoryStore(QuotaStore):
    def __init__(self) -> None:
        self._states: dict[str, State] = {}
        self._expires: dict[str, int] = {}  # key -> when it may be forgotten
        self._lock = threading.Lock()
        self._ops = 0

    def reserve(self, charges: Sequence[Charge], now_ms: int, slot: int) -> Decision:
        states = self._states
        with self._lock:
            decision, new = reserve_states([states.get(c.key) for c in charges], charges,
                                           now_ms, slot)
            if new is not None:
                for charge, state in zip(charges, new, strict=True):
                    states[charge.key] = state
                    self._expires[charge.key] = (
                        now_ms + charge.period_ms if charge.is_rate else charge.expires_ms)
            self._ops += 1
            if self._ops % _SWEEP_EVERY == 0:
                self._sweep(now_ms)
        return decision

    def settle(self, charges: Sequence[Charge], actual: Sequence[int], now_ms: int,
               slot: int) -> None:
        states = self._states
        with self._lock:
            for charge, amount in zip(charges, actual, strict=True):
                states[charge.key] = settle_state(states.get(charge.key), charge, amount,
                                                  now_ms, slot)
                if charge.is_rate:
                    self._expires[charge.key] = now_ms + charge.period_ms

    def level(self, charge: Charge, now_ms: int) -> float:
        with self._lock:
            return current_level(self._states.get(charge.key), charge, now_ms)

    def _sweep(self, now_ms: int) -> None:
        # A bucket untouched for a whole period has drained; a budget's period has ended.
        done = [key for key, until in self._expires.items() if 0 < until < now_ms]
        for key in done:
            del self._expires[key]
            self._states.pop(key, None)
