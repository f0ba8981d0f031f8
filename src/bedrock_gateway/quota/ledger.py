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
  reservations hold, summed by the minute (*slot*) in which they expire. A call fits when
  ``settled + live holds + amount <= capacity``. A hold whose slot has passed no longer counts,
  so a reservation whose process died releases itself.

Every operation names its **call** (an id the caller makes up, one per reservation), and each
store keeps a small *record* per call next to the counters, written in the same atomic
operation: ``held`` (and the slot its holds are in), ``settled`` or ``voided``. The record makes
every operation idempotent, whatever the retries, timeouts or late deliveries:

- :meth:`QuotaStore.reserve` of a call that has a record changes nothing (held: it answers what
  remains; settled or voided: a reservation that arrived after its call was given up on, see
  :data:`LATE`).
- :meth:`QuotaStore.settle` applies once: from ``held`` it drops the call's own holds (never more:
  a hold summed in a slot can only be taken out by the call that put it in, once) and adds the
  real amounts; with no record (the hold expired long ago) it adds the real amounts and drops
  nothing; ``settled`` or ``voided``: nothing.
- :meth:`QuotaStore.void` gives up a reservation whose answer the caller never got: from ``held``
  it releases everything the call holds (a rate gets its amount back); with no record it leaves
  a ``voided`` tombstone, so the reservation, if it is still on its way, changes nothing when it
  arrives.

A record is kept while its holds could count (until its slot) and ``keep_ms`` longer (settled:
``keep_ms`` after the settlement) — long enough for any retry of the same operation.

Reserving is all or nothing over a call's charges; settling replaces each charge's worst case by
the real amount. :func:`reserve_states`, :func:`settle_state` and :func:`finish_plan` are the pure
functions the memory, SQLite and DynamoDB stores apply to what they read; the Redis store runs
the same rules in Lua. The conformance suite (``tests/quota/test_store_conformance.py``) holds
every store to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HELD",
    "HOLD_SLOT_MS",
    "KEEP_CALLS_MS",
    "LATE",
    "SETTLED",
    "VOIDED",
    "Charge",
    "Decision",
    "QuotaStore",
    "QuotaStoreError",
    "Record",
    "current_level",
    "finish_plan",
    "hold_slot",
    "keep_until",
    "repeat_decision",
    "reserve_states",
    "settle_state",
]

HOLD_SLOT_MS = 60_000
KEEP_CALLS_MS = 3_600_000  # how long a call's record outlives its holds (network stores)
HELD, SETTLED, VOIDED = "h", "s", "v"
LATE = -1  # Decision.refused of a reservation that arrived after its call was settled or voided
State = dict[str, Any]
Record = tuple[str, int]  # a call's status (HELD, SETTLED, VOIDED) and the slot of its holds


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
    """The answer to a reservation: ``remaining`` per charge (after it, when ``ok``).

    ``refused`` is the index of the first charge that did not fit, or :data:`LATE` when the
    call had already been settled or voided (the reservation arrived late and changed nothing).
    """

    ok: bool
    remaining: tuple[float, ...] = ()
    refused: int = -1  # index of the first charge that did not fit (LATE: see above)
    retry_after_ms: int = 0  # a refused rate charge fits again after this long (0: calendar)


class QuotaStoreError(Exception):
    """The store could not be reached or answered nonsense (the gateway fails closed or open)."""


def hold_slot(now_ms: int, ttl_ms: int) -> int:
    """The slot a reservation made at ``now_ms`` holds in: it expires at ``slot * HOLD_SLOT_MS``,
    no sooner than ``now_ms + ttl_ms``."""
    return -(-(now_ms + ttl_ms) // HOLD_SLOT_MS)


def keep_until(status: str, slot: int, now_ms: int, keep_ms: int) -> int:
    """When a call's record may be forgotten: ``keep_ms`` after its holds expire (a settled
    call's holds are gone: ``keep_ms`` after now). A voided record must outlive the slot, so a
    reservation still on its way finds it."""
    if status == SETTLED:
        return now_ms + keep_ms
    return max(slot * HOLD_SLOT_MS, now_ms) + keep_ms


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
          slot: int | None, settled: int) -> State:
    """The state after adding ``delta`` to a bucket, or to the hold in ``slot`` (``None``: no
    hold) plus ``settled`` to a budget (expired holds are dropped on the way)."""
    if charge.period_ms:
        at = state["t"] if state and state["t"] > now_ms else now_ms
        level += delta
        return {"l": level if level > 0 else 0.0, "t": at}
    holds = _live(state["h"], now_ms) if state and state["h"] else {}
    if delta and slot is not None:
        key = str(slot)
        if delta > 0 or key in holds:
            held = holds.get(key, 0) + delta
            if held > 0:
                holds[key] = held
            else:
                holds.pop(key, None)
    return {"u": (state["u"] if state else 0) + settled, "h": holds}


def _refusal(levels: Sequence[float], charges: Sequence[Charge], i: int) -> Decision:
    charge, level = charges[i], levels[i]
    retry = 0
    if charge.is_rate and charge.capacity > 0:
        excess = level + charge.amount - charge.capacity
        retry = max(-int(-excess * charge.period_ms // charge.capacity), 1)
    elif charge.is_rate:  # a zero rate never refills: say "a period", not forever
        retry = charge.period_ms
    remaining = tuple(c.capacity - lv for c, lv in zip(charges, levels, strict=True))
    return Decision(False, remaining, i, retry)


def reserve_states(states: Sequence[State | None], charges: Sequence[Charge], now_ms: int,
                   slot: int) -> tuple[Decision, list[State] | None]:
    """Reserve every charge or none: the decision, and the new states when it fits."""
    levels = [current_level(st, ch, now_ms) for st, ch in zip(states, charges, strict=True)]
    for i, (level, charge) in enumerate(zip(levels, charges, strict=True)):
        if level + charge.amount > charge.capacity:
            return _refusal(levels, charges, i), None
    new = [_with(st, ch, now_ms, level=lv, delta=ch.amount, slot=slot, settled=0)
           for st, ch, lv in zip(states, charges, levels, strict=True)]
    held = slot * HOLD_SLOT_MS > now_ms  # a hold in a slot already past counts for nothing
    remaining = tuple(c.capacity - (lv + c.amount if held or c.period_ms else lv)
                      for c, lv in zip(charges, levels, strict=True))
    return Decision(True, remaining), new


def repeat_decision(status: str, states: Sequence[State | None], charges: Sequence[Charge],
                    now_ms: int) -> Decision:
    """The answer to a reservation of a call that already has a record; it changes nothing.
    Held: it fits (what remains already counts the call). Settled or voided: :data:`LATE`."""
    remaining = tuple(c.capacity - current_level(st, c, now_ms)
                      for st, c in zip(states, charges, strict=True))
    if status == HELD:
        return Decision(True, remaining)
    return Decision(False, remaining, LATE, 0)


def finish_plan(record: Record | None, void: bool) -> tuple[bool, int | None]:
    """What a settlement (or, with ``void``, a voiding) of a call with ``record`` does:
    whether it changes the counters, and the slot of the holds it drops (``None``: none)."""
    if record is None:
        return not void, None  # a hold long expired (settle), or a reserve not yet arrived (void)
    if record[0] != HELD:
        return False, None  # applied already
    return True, record[1]


def settle_state(state: State | None, charge: Charge, actual: int, now_ms: int,
                 slot: int | None) -> State:
    """Replace the charge's reserved worst case by ``actual``: a bucket gives back the
    difference (never below empty); a budget drops the call's hold from ``slot`` (if the slot
    has not expired; ``None``: the call holds nothing) and adds ``actual`` to what is settled.
    A voided call settles at ``actual = 0``."""
    if charge.is_rate:
        level = current_level(state, charge, now_ms)
        return _with(state, charge, now_ms, level=level, delta=actual - charge.amount,
                     slot=slot, settled=0)
    return _with(state, charge, now_ms, level=0, delta=-charge.amount, slot=slot,
                 settled=actual)


class QuotaStore(ABC):
    """Where counters live. Each method is atomic over all the charges it is given, and
    idempotent per ``call`` (see the module docstring).

    Implementations: ``MemoryStore``, ``SQLiteStore``, ``RedisStore``, ``DynamoDBStore``,
    chosen by URL with :func:`bedrock_gateway.quota.stores.open_store`.
    Outages raise :class:`QuotaStoreError`.
    """

    @abstractmethod
    def reserve(self, call: str, charges: Sequence[Charge], now_ms: int,
                slot: int) -> Decision:
        """Hold every charge's ``amount`` for ``call`` (holds expire at ``slot``), or nothing."""

    def settle(self, call: str, charges: Sequence[Charge], actual: Sequence[int],
               now_ms: int) -> None:
        """Replace what :meth:`reserve` held for ``call`` with the real amounts, once."""
        if charges:
            self._finish(call, charges, actual, now_ms, 0)

    def void(self, call: str, charges: Sequence[Charge], now_ms: int, slot: int) -> None:
        """Give up ``call``'s reservation (made with ``slot``), whether or not it has arrived:
        release what it holds, or make sure it holds nothing when it does arrive."""
        if charges:
            self._finish(call, charges, None, now_ms, slot)

    @abstractmethod
    def _finish(self, call: str, charges: Sequence[Charge], actual: Sequence[int] | None,
                now_ms: int, slot: int) -> None:
        """Settle (``actual``) or void (``None``, with the reservation's ``slot``) a non-empty
        set of ``call``'s charges, atomically and at most once."""

    @abstractmethod
    def level(self, charge: Charge, now_ms: int) -> float:
        """What the charge's key holds now (for inspection and remaining-quota answers)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
