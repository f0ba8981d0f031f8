"""Reading genai-prices (PyPI ``genai-prices``), provider ``aws``: which Bedrock ids it
prices and, per id, the rate set of each geo variant on a given date."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .core import PREFIXES, Model, RateSet, dist_version, money

GENAI_FIELDS = {"input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cache_read",
                "cache_write_mtok": "cache_write", "cache_write_1h_mtok": "cache_write_1h"}
Genai = dict[str, tuple[RateSet, Any, dict[str, str]]]  # variant -> rates, model, unplaced


def load_genai(folder: str | None) -> tuple[Any, str]:
    """genai-prices' ``aws`` provider and the package version."""
    if folder:
        sys.path.insert(0, folder)
    if importlib.util.find_spec("httpx2") is None:  # only genai-prices' live updater uses it
        sys.modules["httpx2"] = types.ModuleType("httpx2")
    if importlib.util.find_spec("genai_prices") is None:
        sys.exit("genai-prices not found: pip install genai-prices, or pass --genai-prices DIR")
    from genai_prices import data

    provider = next(p for p in data.providers if p.id == "aws")
    return provider, dist_version("genai-prices", Path(folder) if folder else None)


def refs(base: str) -> Iterator[tuple[str, str]]:
    """(geo prefix, id) for a Bedrock id bare ("") and under each geo prefix."""
    yield "", base
    yield from ((prefix, f"{prefix}.{base}") for prefix in PREFIXES)


def genai_rates(prices: Any, unplaced: dict[str, str]) -> RateSet:
    """A genai-prices ModelPrice as a rate set; tiered prices become long-context sets."""
    from genai_prices.types import TieredPrices

    rates: RateSet = {}
    long: dict[int, dict[str, Decimal]] = {}
    for key, value in vars(prices).items():
        if value is None or key.startswith("_"):
            continue
        tiered, name = isinstance(value, TieredPrices), GENAI_FIELDS.get(key)
        base = value.base if tiered else value
        if name is None:
            unplaced[f"genai-prices {key}"] = money(base)
            continue
        rates[name] = base
        for tier in value.tiers if tiered else ():
            long.setdefault(tier.start, {})[name] = tier.price
    for lc in long.values():  # a flat field costs the same above the threshold: say so
        lc |= {k: v for k, v in rates.items() if k not in lc}
    return rates | ({"long_context": long} if long else {})


def genai_bases(provider: Any, litellm_ids: set[str]) -> set[str]:
    """The Bedrock ids genai-prices prices: the LiteLLM id a model's clause matches, else its
    own id without ``regional.``/``global.``."""
    out = set()
    for model in provider.models:
        hits = sorted(b for b in litellm_ids if any(model.is_match(ref) for _, ref in refs(b)))
        own = re.sub(r"^(regional|global)\.", "", model.id)
        out.add(own if own in hits or not hits else hits[0])
    return out


def genai_variants(provider: Any, base: str, when: datetime) -> Genai:
    """Each variant priced by the first model whose clause names it; a clause that also
    matches an unknown prefix is generic and prices the bare id only."""
    out = {}
    for prefix, ref in refs(base):
        model = next((m for m in provider.models if m.is_match(ref)
                      and not (prefix and m.is_match(f"xx.{base}"))), None)
        if model is not None:
            unplaced: dict[str, str] = {}
            rates = genai_rates(model.get_prices(when), unplaced)
            out[f"geo:{prefix}" if prefix else ""] = (rates, model, unplaced)
    return out


def describe(model: Model, variant: str, genai: Genai, urls: list[str]) -> RateSet:
    """Record what genai-prices says of one variant beyond its rates (name, cited pages,
    prices schema 2 has no place for) on ``model``; the variant's rates."""
    rates, info, unplaced = genai[variant]
    model.unplace(variant, unplaced)
    model.name = model.name or re.sub(r" \((global|regional)\)$", "", info.name or "") or None
    cited = re.findall(r"https?://[^\s,)]+", info.price_comments or "")
    model.sources |= {f"genai-prices:{u.rstrip('.')}" for u in [*urls, *cited]}
    return rates
