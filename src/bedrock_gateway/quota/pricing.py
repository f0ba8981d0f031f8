"""The price table: which :class:`~.prices.Price` a model id is billed at, where.

The packaged table (``pricing.json``, made by ``scripts/gen_pricing.py`` with each entry's
source and date) is keyed by base model ids (globs allowed). Each entry has ``rates`` for the
bare model id invoked in-region, and may have ``geo`` rates per cross-region profile prefix
(``us``, ``eu``, ``apac``, ``jp``, ``au``, ``ca``, ``us-gov``, ``in``, ``global``) and
``regions`` rates for a bare id invoked in a region priced differently (GovCloud, say).
:meth:`Pricing.price_for` resolves what a client sends, in this order:

1. ``overrides`` on the id as given;
2. ``profiles`` (application-inference-profile ARN or alias -> model id, resolved again);
3. an ARN (``foundation-model/…`` or ``inference-profile/…``) -> its resource id, again;
4. a cross-region prefix -> the base model (``overrides``, then the table with the prefixed id
   first): its ``geo`` rates for that prefix, else its in-region ``rates``;
5. the bare id: its ``regions`` rates for the gateway's region, else ``rates``;
6. ``default`` (a warning, once per model id), else ``None`` (a warning, once): never a
   silent $0.

Exact keys beat globs; among globs the longest pattern wins. Resolutions are memoized per
(model id, region), so a lookup on the hot path is one dict read.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from decimal import Decimal
from fnmatch import fnmatchcase
from importlib import resources
from typing import Any
from urllib.parse import unquote

from bedrock_gateway.quota.prices import Price, Rates, atto, parse_rate

__all__ = ["CROSS_REGION_PREFIXES", "Price", "Pricing",
           "geography_of", "load_packaged_table"]

log = logging.getLogger("bedrock_gateway.quota")

GLOBAL_PREFIX = "global."
CROSS_REGION_PREFIXES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "in.",
                         GLOBAL_PREFIX)
_IMAGE_UNITS = "contentPolicyImageUnits"  # priced per image, the rest per text unit
_MODEL_ARN = re.compile(
    r"arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d*:(?:foundation-model|inference-profile)/(?P<id>.+)"
)
_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_META = frozenset({"name", "kind", "source", "date", "note"})
_ENTRY_KEYS = _META | {"rates", "geo", "regions"}
_GEOS = frozenset(p.rstrip(".") for p in CROSS_REGION_PREFIXES)
_MAX_DEPTH = 8  # profile -> ARN -> prefixed id chains are short; this stops alias cycles
_MAX_WARNED = 1024  # model ids come from clients: bound the once-only memory
_MAX_MEMO = 4096


def geography_of(model_id: str) -> str:
    """``global``, a geo prefix (``us``, ``eu``, …), ``in-region`` for a bare id, or
    ``profile`` for an application inference profile ARN."""
    if ":application-inference-profile/" in model_id:
        return "profile"
    resource = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    prefix = next((p for p in CROSS_REGION_PREFIXES if resource.startswith(p)), None)
    return prefix.rstrip(".") if prefix else "in-region"


class _Entry:
    """One model's rates: in-region, per geography prefix, per region."""

    __slots__ = ("geo", "kind", "rates", "regions")

    def __init__(self, data: Price | Mapping[str, Any], what: str) -> None:
        self.geo: dict[str, Price] = {}
        self.regions: dict[str, Price] = {}
        self.kind = "text"
        if isinstance(data, Price):
            self.rates = data
            return
        if not isinstance(data, Mapping):
            raise TypeError(f"{what}: expected a mapping, not {type(data).__name__}")
        if "rates" not in data:  # a bare rate set (overrides, hand-written tables)
            self.rates = Price.from_mapping({k: v for k, v in data.items() if k not in _META},
                                            what)
            return
        unknown = set(data) - _ENTRY_KEYS
        if unknown:
            raise ValueError(f"{what}: unknown keys {sorted(unknown)}")
        self.kind = str(data.get("kind", "text"))
        self.rates = Price.from_mapping(data["rates"], f"{what}.rates")
        for name, into in (("geo", self.geo), ("regions", self.regions)):
            variants = data.get(name) or {}
            if not isinstance(variants, Mapping):
                raise TypeError(f"{what}.{name}: expected a mapping")
            for key, rates in variants.items():
                if name == "geo" and key not in _GEOS:
                    raise ValueError(f"{what}.geo: unknown prefix {key!r}; use one of"
                                     f" {sorted(_GEOS)}")
                into[key] = Price.from_mapping(rates, f"{what}.{name}[{key!r}]")

    def variant(self, geo: str | None, region: str | None) -> Price:
        if geo is not None:
            return self.geo.get(geo, self.rates)
        if region is not None:
            return self.regions.get(region, self.rates)
        return self.rates


def _unversioned(model_id: str) -> str:
    """``anthropic.claude-opus-4-6-v1:0`` -> ``anthropic.claude-opus-4-6`` (Bedrock's newer
    ids drop the version suffix; tables spell one model both ways)."""
    return _VERSION.sub("", model_id)


class _Table:
    """Exact keys first, then globs (longest pattern first), then the id without its version
    suffix against keys without theirs (when that names one model only)."""

    def __init__(self, entries: Mapping[str, Price | Mapping[str, Any]], what: str) -> None:
        if not isinstance(entries, Mapping):
            raise TypeError(f"{what}: expected a mapping of model id to prices")
        parsed = {key: _Entry(value, f"{what}[{key!r}]") for key, value in entries.items()}
        self.exact = {k: v for k, v in parsed.items() if not any(c in k for c in "*?[")}
        self.globs = sorted(((k, v) for k, v in parsed.items() if k not in self.exact),
                            key=lambda kv: -len(kv[0]))
        stems: dict[str, list[_Entry]] = {}
        for key, entry in self.exact.items():
            stems.setdefault(_unversioned(key), []).append(entry)
        self.stems = {stem: found[0] for stem, found in stems.items() if len(found) == 1}

    def get(self, model_id: str) -> _Entry | None:
        found = self.exact.get(model_id)
        if found is None:
            found = next((e for pattern, e in self.globs if fnmatchcase(model_id, pattern)), None)
        if found is None:
            found = self.stems.get(_unversioned(model_id))
        return found

    def __len__(self) -> int:
        return len(self.exact) + len(self.globs)


def load_packaged_table() -> dict[str, Any]:
    """The packaged ``pricing.json``, read via importlib.resources."""
    text = resources.files(__package__ or "bedrock_gateway.quota").joinpath("pricing.json")
    data: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return data


_MISSING = object()


class Pricing:
    """Prices models: the packaged table (or ``table``), ``overrides``, ``profiles``,
    ``default``; ``region`` is the gateway's upstream region (prices of bare model ids).

    ``table`` is a whole document (``{"models": {...}, "guardrails"?: {...}}``) or just the
    models mapping. ``operations`` prices calls that are not billed by model usage, per call
    (``{"Retrieve": "0.002", "InvokeAgent": "0.05"}``): without one, such a call cannot be
    held to a dollar limit.
    """

    def __init__(self, table: Mapping[str, Any] | None = None, *,
                 overrides: Mapping[str, Price | Mapping[str, Any]] | None = None,
                 profiles: Mapping[str, str] | None = None, default: Price | None = None,
                 region: str | None = None,
                 operations: Mapping[str, Any] | None = None) -> None:
        document: Mapping[str, Any] = load_packaged_table() if table is None else table
        models = document.get("models", document)
        whole = models is not document
        self.source: str | None = _text(document.get("sources") or document.get("source")) \
            if whole else None
        self.date: str | None = document.get("generated") or document.get("date") \
            if whole else None
        self._table = _Table(models, "pricing table")
        self._overrides = _Table(overrides or {}, "pricing overrides")
        self._profiles = dict(profiles or {})
        if default is not None and not isinstance(default, Price):
            raise TypeError("default must be a Price")
        self.default = default
        self.region = region
        guardrails = (document.get("guardrails") or {}) if whole else {}
        if table is not None and not guardrails:
            guardrails = load_packaged_table().get("guardrails") or {}
        per_1000 = guardrails.get("per_1000_units", {}) if isinstance(guardrails, Mapping) \
            else {}
        self.guardrails: dict[str, Decimal] = {
            k: parse_rate(v, f"guardrails.per_1000_units[{k!r}]") for k, v in per_1000.items()}
        # Atto-USD per unit (prices are per 1,000 units), computed once.
        self._guardrail_unit = {k: atto(v) // 1_000 for k, v in self.guardrails.items()}
        self.operations: dict[str, Decimal] = {
            k: parse_rate(v, f"pricing operations[{k!r}]") for k, v in (operations or {}).items()}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, str | None], object] = {}
        # Memo of quota.costing for calls priced at one model (read-mostly; a race only
        # computes the same value twice).
        self.costings: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self._table)

    def price_for(self, model_id: str, region: str | None = None) -> Price | None:
        """The price of one call to ``model_id`` in ``region`` (default: the gateway's)."""
        region = region or self.region
        key = (model_id, region)
        cached = self._resolved.get(key, _MISSING)
        if cached is _MISSING:  # the table never changes: resolve each id once (bounded)
            plain = unquote(model_id) if "%" in model_id else model_id
            cached = self._resolve(plain, region, 0)
            if len(self._resolved) >= _MAX_MEMO:
                self._resolved.clear()
            self._resolved[key] = cached
        if isinstance(cached, Price):
            return cached
        if self.default is not None:
            self._warn_once(model_id, "unpriced model %r charged at the default rate")
            return self.default
        self._warn_once(model_id, "unpriced model %r: no price in the table; its cost is unknown")
        return None

    def rates_for(self, model_id: str, region: str | None = None) -> Rates | None:
        """The compiled (integer) rates of :meth:`price_for`."""
        price = self.price_for(model_id, region)
        return None if price is None else price.compiled()

    def cost(self, model_id: str, input_tokens: int, output_tokens: int,
             cache_read_tokens: int = 0, cache_write_tokens: int = 0, **dimensions: Any
             ) -> Decimal | None:
        """USD for one call, or ``None`` when the model has no price and there is no default.
        ``dimensions``: ``cache_write_1h_tokens``, ``tier``, ``latency``."""
        price = self.price_for(model_id)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                          **dimensions)

    def guardrail_atto(self, units: tuple[tuple[str, int], ...]) -> int | None:
        """Atto-USD for ApplyGuardrail's billed units by policy; ``None`` if a policy that
        processed units has no price."""
        total = 0
        for policy, count in units:
            if not count:
                continue
            if policy not in self._guardrail_unit:
                return None
            total += count * self._guardrail_unit[policy]
        return total

    def guardrail_worst_atto(self, text_units: int, image_units: int) -> int | None:
        """The most ``text_units`` of text and ``image_units`` images can cost: every text
        policy applied to every unit (a guardrail's policies are not known in advance)."""
        text = [a for k, a in self._guardrail_unit.items() if k != _IMAGE_UNITS]
        if not text:
            return None
        return text_units * sum(text) + image_units * self._guardrail_unit.get(_IMAGE_UNITS, 0)

    def _resolve(self, model_id: str, region: str | None, depth: int) -> Price | None:
        if depth > _MAX_DEPTH:
            return None
        found = self._overrides.get(model_id)
        if found is not None:
            return found.variant(None, region)
        alias = self._profiles.get(model_id)
        if alias is not None:
            return self._resolve(alias, region, depth + 1)
        arn = _MODEL_ARN.fullmatch(model_id)
        if arn is not None:
            return self._resolve(arn["id"], region, depth + 1)
        prefix = next((p for p in CROSS_REGION_PREFIXES if model_id.startswith(p)), None)
        if prefix is not None:
            base = model_id.removeprefix(prefix)
            geo = prefix.rstrip(".")
            found = self._overrides.get(base)
            if found is not None:
                return found.variant(geo, None)
            exact = self._table.get(model_id)  # the table may price a profile itself
            if exact is not None:
                return exact.rates
            found = self._table.get(base)
            return None if found is None else found.variant(geo, None)
        found = self._table.get(model_id)
        return None if found is None else found.variant(None, region)

    def _warn_once(self, model_id: str, message: str) -> None:
        with self._lock:
            if model_id in self._warned or len(self._warned) > _MAX_WARNED:
                return
            self._warned.add(model_id)
            full = len(self._warned) > _MAX_WARNED
        log.warning(message, model_id[:200])
        if full:
            log.warning("more than %d unpriced model ids: no further warnings", _MAX_WARNED)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)
