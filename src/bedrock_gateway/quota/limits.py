"""Limits: who a limit counts (its scope), what it counts (its kind), and the store keys.

A :class:`Limit` is one number of one kind — ``requests_per_minute``, ``tokens_per_minute``,
``requests_per_day``, ``tokens_per_day``, ``usd_per_day``, ``usd_per_month`` — for one scope:

==================  =============================================================
``global``          one counter for every call
``tenant``          one counter per tenant (calls without a tenant are not counted)
``subject``         one counter per subject (user or workload)
``tenant:model``    one counter per (tenant, model)
``subject:model``   one counter per (subject, model)
==================  =============================================================

``tenants``, ``subjects`` and ``models`` (globs, matched like access rules: a rule on
``anthropic.*`` also covers ``us.anthropic.…`` and ARNs) narrow which calls a limit counts.
``*_per_minute`` kinds are rates (GCRA); ``*_per_day`` / ``*_per_month`` are budgets for the
UTC calendar day or month, reset at midnight UTC. Amounts are integers in the kind's unit:
requests, tokens, or nano-USD (so ``usd_per_day = 5`` holds 5,000,000,000 units).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from fnmatch import translate
from urllib.parse import quote

from bedrock_gateway.auth.access import model_names
from bedrock_gateway.call import Principal

__all__ = ["KINDS", "NANO_USD", "SCOPES", "Kind", "Limit", "Period", "period_of"]

NANO_USD = Decimal(1_000_000_000)
SCOPES = ("global", "tenant", "subject", "tenant:model", "subject:model")
_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    unit: str  # "requests" | "tokens" | "usd"
    rate_ms: int = 0  # a rate over this many ms; 0: a calendar budget
    calendar: str = ""  # "day" | "month"


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("requests_per_minute", "requests", rate_ms=_MINUTE_MS),
    Kind("tokens_per_minute", "tokens", rate_ms=_MINUTE_MS),
    Kind("requests_per_day", "requests", calendar="day"),
    Kind("tokens_per_day", "tokens", calendar="day"),
    Kind("usd_per_day", "usd", calendar="day"),
    Kind("usd_per_month", "usd", calendar="month"),
)}


@dataclass(frozen=True, slots=True)
class Period:
    """One UTC calendar period: its label (``2026-11-26`` / ``2026-11``) and when it ends."""

    label: str
    ends_ms: int


_current: dict[str, tuple[int, Period]] = {}  # calendar -> (start ms, period): most calls hit


def period_of(calendar: str, now_ms: int) -> Period:
    """The UTC ``"day"`` or ``"month"`` containing ``now_ms``."""
    cached = _current.get(calendar)
    if cached is not None and cached[0] <= now_ms < cached[1].ends_ms:
        return cached[1]
    period, start = _period(calendar, now_ms)
    _current[calendar] = (start, period)
    return period


def _period(calendar: str, now_ms: int) -> tuple[Period, int]:
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    if calendar == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start_ms = int(start.timestamp() * 1000)
        return Period(start.strftime("%Y-%m-%d"), start_ms + 86_400_000), start_ms
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = first.replace(year=first.year + 1, month=1) if first.month == 12 else \
        first.replace(month=first.month + 1)
    period = Period(first.strftime("%Y-%m"), int(following.timestamp() * 1000))
    return period, int(first.timestamp() * 1000)


def _quote(value: str) -> str:
    # Scope values come from tokens; keep the key's separators unambiguous.
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: ``value`` of ``kind`` per ``scope``, for the calls its filters select."""

    scope: str
    kind: str
    value: Decimal  # in the kind's natural unit: requests, tokens or USD
    tenants: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    models: tuple[str, ...] = ()
    name: str = ""
    # A dollar limit that lets through calls whose cost cannot be bounded (charged $0).
    allow_unpriced: bool = False
    _models: re.Pattern[str] | None = field(default=None, repr=False, compare=False)
    _tag: str = field(default="", repr=False, compare=False)
    _capacity: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; use one of {', '.join(SCOPES)}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown limit kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.value < 0:
            raise ValueError(f"{self.kind} must not be negative")
        if self.models:
            pattern = re.compile("|".join(translate(p) for p in self.models))
            object.__setattr__(self, "_models", pattern)
        # Filters are part of the key: two limits on one scope count separately, and
        # changing a limit's number keeps its counter.
        if self.tenants or self.subjects or self.models:
            spec = repr((sorted(self.tenants), sorted(self.subjects), self.models))
            object.__setattr__(self, "_tag", "#" + hashlib.sha256(spec.encode()).hexdigest()[:8])
        if not self.name:
            object.__setattr__(self, "name", f"{self.scope} {self.kind}")
        scale = NANO_USD if self.spec.unit == "usd" else Decimal(1)
        object.__setattr__(self, "_capacity", int(
            (self.value * scale).to_integral_value(rounding=ROUND_FLOOR)))

    @property
    def scope_key_template(self) -> str:
        """What identifies this limit's counters: scope and filters (not the number)."""
        return f"{self.scope}{self._tag}"

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    @property
    def capacity(self) -> int:
        """The limit in store units (nano-USD for money), rounded down."""
        return self._capacity

    def scope_key(self, principal: Principal | None, model: str | None) -> str | None:
        """The counter this call lands on, or ``None`` when the limit does not count it."""
        tenant = principal.tenant if principal else None
        subject = principal.subject if principal else None
        if self.tenants and tenant not in self.tenants:
            return None
        if self.subjects and subject not in self.subjects:
            return None
        if self._models is not None:
            pattern = self._models
            if model is None or not any(pattern.fullmatch(n) for n in model_names(model)):
                return None
        scope = self.scope
        if scope == "global":
            who = "global"
        elif scope.startswith("tenant"):
            if tenant is None:
                return None
            who = "tenant=" + _quote(tenant)
        else:
            if subject is None:
                return None
            who = "subject=" + _quote(subject)
        if scope.endswith(":model"):
            if model is None:
                return None
            who += "/model=" + _quote(model)
        return f"{who}|{self.kind}{self._tag}"
