"""The quota ledger: what one limit holds for one call, and the arithmetic every store applies.

A :class:`Charge` is one limit's share of one call: a store key, the call's worst case
(``amount``) and the limit (``capacity``), in the limit's unit (requests, tokens or nano-USD —
integers, so sums are exact). There are two kinds of counter:

- **rate** (``period_ms > 0``): GCRA in its leaky-bucket form. The bucket holds at most
  ``capacity`` and drains ``capacity`` per ``period_ms``; state ``{"l": level, "t": ms}``.
  A call fits when ``level + amount <= capacity``; otherwise it may retry once enough has
  drained (:attr:`Decision.retry_after_ms`, exact). O(1) state per key, no log of past calls.
- **calendar** (``period_ms == 0``): a budget for one UTC day or month — the key names the
  period. State ``{"u": settled, "h": {slot: held}}``: settled usage, plus what outstanding
  reservations hold, grouped by the minute (*slot*) in which they expire. A call fits when
  ``settled + live holds + amount <= capacity``. A hold whose slot has passed no longer counts,
  so a reservation whose process died releases itself.

Reserving is all or nothing over a call's charges; settling replaces each charge's worst case by
the real amount. :func:`reserve_states` and :func:`settle_state` are the pure functions the
memory, SQLite and DynamoDB stores apply to the states they read; the Redis store runs the same
rules in Lua. The conformance suite (``tests/quota/test_store_conformance.py``) holds every
store to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HOLD_SLOT_MS",
    "Charge",
    "Decision",
    "QuotaStore",
    "QuotaStoreError",
    "current_level",
    "hold_slot",
    "reserve_states",
    "settle_state",
]

HOLD_SLOT_MS = 60_000
State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Charge:
    key: str
    amount: int  # the call's worst case, in the limit's unit
    capacity: int
    period_ms: int = 0  # > 0: a rate draining ``capacity`` per period; 0: a calendar budget
    expires_ms: int = 0  # calendar: when the period ends (the store may forget the key after)

    @property
    def is_rate(self) -> bool:
        return self.period_ms > 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a reservation: ``remaining`` per charge (after it, when ``ok``)."""

    ok: bool
    remaining: tuple[float, ...] = ()
    refused: int = -1  # index of the first charge that did not fit
    retry_after_ms: int = 0  # a refused rate charge fits again after this long (0: calendar)


class QuotaStoreError(Exception):
    """The store could not be reached or answered nonsense (the gateway fails closed or open)."""


def hold_slot(now_ms: int, ttl_ms: int) -> int:
    """The slot a reservation made at ``now_ms`` holds in: it expires at ``slot * HOLD_SLOT_MS``,
    no sooner than ``now_ms + ttl_ms``."""
    return -(-(now_ms + ttl_ms) // HOLD_SLOT_MS)


def _live(holds: dict[str, int], now_ms: int) -> dict[str, int]:
    return {s: v for s, v in holds.items() if int(s) * HOLD_SLOT_MS > now_ms and v > 0}


def current_level(state: State | None, charge: Charge, now_ms: int) -> float:
    """What the key holds now: the drained bucket level, or settled usage plus live holds."""
    if not state:
        return 0
    period = charge.period_ms
    if period:
        elapsed = now_ms - state["t"]
        level: float = state["l"]
        if elapsed > 0:
            level -= elapsed * charge.capacity / period
        return level if level > 0 else 0.0
    holds: dict[str, int] = state["h"]
    used: int = state["u"]
    if not holds:
        return used
    return used + sum(v for s, v in holds.items() if int(s) * HOLD_SLOT_MS > now_ms)


def _with(state: State | None, charge: Charge, now_ms: int, *, level: float, delta: int,
          slot: int, settled: int) -> State:
    """The state after adding ``delta`` to a bucket, or to the hold in ``slot`` plus
    ``settled`` to a budget (expired holds are dropped on the way)."""
    if charge.period_ms:
        at = state["t"] if state and state["t"] > now_ms else now_ms
        level += delta
        return {"l": level if level > 0 else 0.0, "t": at}
    holds = _live(state["h"], now_ms) if state and state["h"] else {}
    key = str(slot)
    if delta and (delta > 0 or key in holds):
        held = holds.get(key, 0) + delta
        if held > 0:
            holds[key] = held
        else:
            holds.pop(key, None)
    return {"u": (state["u"] if state else 0) + settled, "h": holds}


def reserve_states(states: Sequence[State | None], charges: Sequence[Charge], now_ms: int,
                   slot: int) -> tuple[Decision, list[State] | None]:
    """Reserve every charge or none: the decision, and the new states when it fits."""
    levels = [current_level(st, ch, now_ms) for st, ch in zip(states, charges, strict=True)]
    for i, (level, charge) in enumerate(zip(levels, charges, strict=True)):
        if level + charge.amount > charge.capacity:
            retry = 0
            if charge.is_rate and charge.capacity > 0:
                excess = level + charge.amount - charge.capacity
                retry = max(-int(-excess * charge.period_ms // charge.capacity), 1)
            elif charge.is_rate:  # a zero rate never refills: say "a period", not forever
                retry = charge.period_ms
            remaining = tuple(c.capacity - lv for c, lv in zip(charges, levels, strict=True))
            return Decision(False, remaining, i, retry), None
    new = [_with(st, ch, now_ms, level=lv, delta=ch.amount, slot=slot, settled=0)
           for st, ch, lv in zip(states, charges, levels, strict=True)]
    held = slot * HOLD_SLOT_MS > now_ms  # a hold in a slot already past counts for nothing
    remaining = tuple(c.capacity - (lv + c.amount if held or c.period_ms else lv)
                      for c, lv in zip(charges, levels, strict=True))
    return Decision(True, remaining), new


def settle_state(state: State | None, charge: Charge, actual: int, now_ms: int,
                 slot: int) -> State:
    """Replace the charge's reserved worst case by ``actual``: a bucket gives back the
    difference (never below empty); a budget drops the hold (if it has not expired) and adds
    ``actual`` to what is settled."""
    if charge.is_rate:
        level = current_level(state, charge, now_ms)
        return _with(state, charge, now_ms, level=level, delta=actual - charge.amount,
                     slot=slot, settled=0)
    return _with(state, charge, now_ms, level=0, delta=-charge.amount, slot=slot,
                 settled=actual)


class QuotaStore(ABC):
    """Where counters live. Each method is atomic over all the charges it is given.

    Implementations: ``MemoryStore``, ``SQLiteStore``, ``RedisStore``, ``DynamoDBStore``,
    chosen by URL with :func:`bedrock_gateway.quota.stores.open_store`.
    Outages raise :class:`QuotaStoreError`.
    """

    @abstractmethod
    def reserve(self, charges: Sequence[Charge], now_ms: int, slot: int) -> Decision:
        """Hold every charge's ``amount`` (holds expire at ``slot``), or nothing."""

    @abstractmethod
    def settle(self, charges: Sequence[Charge], actual: Sequence[int], now_ms: int,
               slot: int) -> None:
        """Replace what :meth:`reserve` held in ``slot`` with the real amounts."""

    @abstractmethod
    def level(self, charge: Charge, now_ms: int) -> float:
        """What the charge's key holds now (for inspection and remaining-quota answers)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
