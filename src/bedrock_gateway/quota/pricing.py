"""Model prices (USD per 1M tokens) and the cost of a call, in :class:`~decimal.Decimal`.

The packaged table (``pricing.json``, with its source and date) is keyed by base model ids or
globs. :meth:`Pricing.price_for` resolves what a client sends, in this order:

1. ``overrides`` on the id as given;
2. ``profiles`` (application-inference-profile ARN or alias -> model id, resolved again);
3. an ARN (``foundation-model/…`` or ``inference-profile/…``) -> its resource id, resolved again;
4. a cross-region prefix (``us.``, ``eu.``, ``apac.``, ``jp.``, ``au.``, ``ca.``, ``us-gov.``,
   ``global.``) -> the base model: ``overrides`` then the table (the prefixed id first), with the
   model's ``regional`` rate for a geography prefix (``global.`` keeps the base rate);
5. the table on the id as given;
6. ``default`` (a warning, once per model id), else ``None`` (a warning, once): never a silent $0.

Exact keys beat globs; among globs the longest pattern wins. Cache tokens with no cache rate
are charged at the input rate.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase
from importlib import resources
from typing import Any
from urllib.parse import unquote

__all__ = ["CROSS_REGION_PREFIXES", "Price", "Pricing", "load_packaged_table"]

log = logging.getLogger("bedrock_gateway.quota")

GLOBAL_PREFIX = "global."
CROSS_REGION_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", GLOBAL_PREFIX)
_MODEL_ARN = re.compile(
    r"arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d*:(?:foundation-model|inference-profile)/(?P<id>.+)"
)
_PRICE_KEYS = frozenset({"input", "output", "cache_read", "cache_write"})
_ENTRY_KEYS = _PRICE_KEYS | {"regional", "note"}
_MILLION = Decimal(1_000_000)
_MAX_DEPTH = 8  # profile -> ARN -> prefixed id chains are short; this stops alias cycles
_MAX_WARNED = 1024  # model ids come from clients: bound the once-only memory


def _rate(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"{what}: a price must be a number, not {value!r}")
    try:
        rate = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:  # decimal.InvalidOperation: "abc"
        rate = Decimal("NaN")
    if not rate.is_finite() or rate < 0:
        raise ValueError(f"{what}: a price must be a finite number >= 0, not {value!r}")
    return rate


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. A cache rate of ``None`` charges those tokens at the input rate."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write"):
            value = getattr(self, name)
            if value is None and name.startswith("cache"):
                continue
            if not isinstance(value, Decimal):  # floats would carry binary error into money
                raise TypeError(f"Price.{name} must be a Decimal, not {type(value).__name__}")
            _rate(value, f"Price.{name}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], what: str = "price") -> Price:
        """``{"input": .., "output": .., "cache_read"?: .., "cache_write"?: ..}`` (numbers)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{what}: expected a mapping, not {type(data).__name__}")
        unknown = set(data) - _PRICE_KEYS
        if unknown:
            raise ValueError(f"{what}: unknown keys {sorted(unknown)}")
        missing = {"input", "output"} - set(data)
        if missing:
            raise ValueError(f"{what}: missing {sorted(missing)}")

        def opt(key: str) -> Decimal | None:
            value = data.get(key)
            return None if value is None else _rate(value, f"{what}.{key}")

        return cls(_rate(data["input"], f"{what}.input"), _rate(data["output"], f"{what}.output"),
                   opt("cache_read"), opt("cache_write"))

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
             cache_write_tokens: int = 0) -> Decimal:
        """Exact USD: tokens x rate / 1,000,000 (not rounded; round only for display)."""
        counts = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        for count in counts:
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"token counts must be integers >= 0, not {count!r}")
        rates = (self.input, self.output, self.cache_read if self.cache_read is not None
                 else self.input, self.cache_write if self.cache_write is not None else self.input)
        with localcontext() as ctx:
            ctx.prec = 60  # far beyond any bill: the products and the sum stay exact
            total = sum((Decimal(n) * r for n, r in zip(counts, rates, strict=True)), Decimal(0))
            return total / _MILLION


_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Entry:
    price: Price
    regional: Price | None = None  # for geography-prefixed cross-region profiles


def _entry(data: Price | Mapping[str, Any], what: str) -> _Entry:
    if isinstance(data, Price):
        return _Entry(data)
    if not isinstance(data, Mapping):
        raise TypeError(f"{what}: expected a Price or a mapping, not {type(data).__name__}")
    unknown = set(data) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}")
    base = Price.from_mapping({k: v for k, v in data.items() if k in _PRICE_KEYS}, what)
    regional = data.get("regional")
    if regional is None:
        return _Entry(base)
    return _Entry(base, Price.from_mapping(regional, f"{what}.regional"))


class _Table:
    """Exact keys first, then globs (longest pattern first)."""

    def __init__(self, entries: Mapping[str, Price | Mapping[str, Any]], what: str) -> None:
        parsed = {key: _entry(value, f"{what}[{key!r}]") for key, value in entries.items()}
        self.exact = {k: v for k, v in parsed.items() if not any(c in k for c in "*?[")}
        self.globs = sorted(((k, v) for k, v in parsed.items() if k not in self.exact),
                            key=lambda kv: -len(kv[0]))

    def get(self, model_id: str) -> _Entry | None:
        found = self.exact.get(model_id)
        if found is None:
            found = next((e for pattern, e in self.globs if fnmatchcase(model_id, pattern)), None)
        return found


def load_packaged_table() -> dict[str, Any]:
    """The packaged ``pricing.json`` (numbers as exact Decimals), read via importlib.resources."""
    text = resources.files(__package__ or "bedrock_gateway.quota").joinpath("pricing.json")
    data: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"), parse_float=Decimal)
    return data


class Pricing:
    """Prices models: the packaged table (or ``table``), ``overrides``, ``profiles``, ``default``.

    ``table`` is either a whole document (``{"source", "date", "models": {...}}``) or just
    the models mapping (model id or glob -> ``{"input", "output", "cache_read"?,
    "cache_write"?, "regional"?: {...}}``).
    """

    def __init__(self, table: Mapping[str, Any] | None = None, *,
                 overrides: Mapping[str, Price | Mapping[str, Any]] | None = None,
                 profiles: Mapping[str, str] | None = None,
                 default: Price | None = None) -> None:
        document: Mapping[str, Any] = load_packaged_table() if table is None else table
        models = document.get("models", document)
        if not isinstance(models, Mapping):
            raise TypeError("pricing table: 'models' must be a mapping")
        self.source: str | None = document.get("source") if models is not document else None
        self.date: str | None = document.get("date") if models is not document else None
        self._table = _Table(models, "pricing table")
        self._overrides = _Table(overrides or {}, "pricing overrides")
        self._profiles = dict(profiles or {})
        if default is not None and not isinstance(default, Price):
            raise TypeError("default must be a Price")
        self.default = default
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._resolved: dict[str, object] = {}  # model id -> Price | None

    def price_for(self, model_id: str) -> Price | None:
        """The price of one call to ``model_id`` (see the module docstring for the order)."""
        if "%" in model_id:  # a percent-encoded id from a URL path
            model_id = unquote(model_id)
        cached = self._resolved.get(model_id, _MISSING)
        if cached is _MISSING:  # the table never changes: resolve each id once (bounded)
            cached = self._resolve(model_id, 0)
            if len(self._resolved) >= 4096:
                self._resolved.clear()
            self._resolved[model_id] = cached
        price = cached if isinstance(cached, Price) else None
        if price is not None:
            return price
        if self.default is not None:
            self._warn_once(model_id, "unpriced model %r charged at the default rate")
            return self.default
        self._warn_once(model_id, "unpriced model %r: no price in the table; its cost is unknown")
        return None

    def cost(self, model_id: str, input_tokens: int, output_tokens: int,
             cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> Decimal | None:
        """USD for one call, or ``None`` when the model has no price and there is no default."""
        price = self.price_for(model_id)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)

    def _resolve(self, model_id: str, depth: int) -> Price | None:
        if depth > _MAX_DEPTH:
            return None
        found = self._overrides.get(model_id)
        if found is not None:
            return found.price
        alias = self._profiles.get(model_id)
        if alias is not None:
            return self._resolve(alias, depth + 1)
        arn = _MODEL_ARN.fullmatch(model_id)
        if arn is not None:
            return self._resolve(arn["id"], depth + 1)
        prefix = next((p for p in CROSS_REGION_PREFIXES if model_id.startswith(p)), None)
        if prefix is not None:
            base = model_id.removeprefix(prefix)
            found = self._overrides.get(base)
            if found is None:
                exact = self._table.get(model_id)  # the table may price a profile itself
                if exact is not None:
                    return exact.price
                found = self._table.get(base)
            if found is not None:
                if prefix != GLOBAL_PREFIX and found.regional is not None:
                    return found.regional
                return found.price
        found = self._table.get(model_id)
        return None if found is None else found.price

    def _warn_once(self, model_id: str, message: str) -> None:
        with self._lock:
            if model_id in self._warned or len(self._warned) > _MAX_WARNED:
                return
            self._warned.add(model_id)
            full = len(self._warned) > _MAX_WARNED
        log.warning(message, model_id[:200])
        if full:
            log.warning("more than %d unpriced model ids: no further warnings", _MAX_WARNED)
