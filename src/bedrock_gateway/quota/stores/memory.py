"""The default store: counters in a dict behind one lock (one process, any number of threads).

Call records (:mod:`~bedrock_gateway.quota.ledger`) live in a second dict. An in-process store
never loses an answer, so a settled call's record only has to outlive a retry in the same
process: ``keep_ms`` defaults to a minute (a voided or held record is kept until its holds have
expired, whatever ``keep_ms``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from bedrock_gateway.quota.ledger import (
    HELD,
    HOLD_SLOT_MS,
    SETTLED,
    VOIDED,
    Charge,
    Decision,
    QuotaStore,
    State,
    current_level,
    finish_plan,
    keep_until,
    repeat_decision,
    reserve_states,
    settle_state,
)

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 4096  # operations between sweeps of finished periods, empty buckets, old records


class MemoryStore(QuotaStore):
    def __init__(self, *, keep_ms: int = 60_000) -> None:
        self._states: dict[str, State] = {}
        self._expires: dict[str, int] = {}  # key -> when it may be forgotten
        self._calls: dict[str, tuple[str, int, int]] = {}  # call -> (status, slot, keep until)
        self._keep_ms = keep_ms
        self._lock = threading.Lock()
        self._ops = 0

    def reserve(self, call: str, charges: Sequence[Charge], now_ms: int,
                slot: int) -> Decision:
        states = self._states
        with self._lock:
            found = self._calls.get(call)
            if found is not None:
                return repeat_decision(found[0], [states.get(c.key) for c in charges], charges,
                                       now_ms)
            decision, new = reserve_states([states.get(c.key) for c in charges], charges,
                                           now_ms, slot)
            if new is not None:
                expires = self._expires
                for charge, state in zip(charges, new, strict=True):
                    states[charge.key] = state
                    expires[charge.key] = (
                        now_ms + charge.period_ms if charge.is_rate else charge.expires_ms)
                if charges:  # keep_until(HELD, ...), inline: this is the hot path
                    until = slot * HOLD_SLOT_MS
                    self._calls[call] = (HELD, slot, (until if until > now_ms else now_ms)
                                         + self._keep_ms)
            self._tick(now_ms)
        return decision

    def level(self, charge: Charge, now_ms: int) -> float:
        with self._lock:
            return current_level(self._states.get(charge.key), charge, now_ms)

    def _finish(self, call: str, charges: Sequence[Charge], actual: Sequence[int] | None,
                now_ms: int, slot: int) -> None:
        states = self._states
        with self._lock:
            found = self._calls.get(call)
            if found is not None and found[0] != HELD:
                return  # settled or voided already
            apply, held_in = finish_plan(None if found is None else (found[0], found[1]),
                                         actual is None)
            if apply:
                amounts = actual if actual is not None else [0] * len(charges)
                expires = self._expires
                for charge, amount in zip(charges, amounts, strict=True):
                    key = charge.key
                    states[key] = settle_state(states.get(key), charge, amount, now_ms,
                                               held_in)
                    if charge.period_ms:
                        expires[key] = now_ms + charge.period_ms
            status = SETTLED if actual is not None else VOIDED
            if found is not None:
                slot = found[1]
            self._calls[call] = (status, slot, keep_until(status, slot, now_ms, self._keep_ms))
            self._tick(now_ms)

    def _tick(self, now_ms: int) -> None:
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            self._sweep(now_ms)

    def _sweep(self, now_ms: int) -> None:
        # A bucket untouched for a whole period has drained; a budget's period has ended.
        done = [key for key, until in self._expires.items() if 0 < until < now_ms]
        for key in done:
            del self._expires[key]
            self._states.pop(key, None)
        old = [call for call, (_, _, until) in self._calls.items() if until < now_ms]
        for call in old:
            del self._calls[call]
