"""What every stage of the generator shares: rate sets (exact USD, the conflict tolerance,
overlaying one on another, their JSON form), the per-model record, the report, and the
version of a dataset package."""

from __future__ import annotations

import importlib.metadata
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
TIERS = ("priority", "flex", "latency_optimized")
UNITS = ("video_second", "query", "image_input")
PREFIXES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca", "in", "global")
TOLERANCE = Decimal("0.005")

# A rate set: token fields -> Decimal; long_context -> {above: {field: Decimal}}; tiers ->
# {field: Decimal}; image -> {key: Decimal}; units -> Decimal.
RateSet = dict[str, Any]
Report = defaultdict[str, list[str]]  # section -> lines
Conflict = Callable[[str, Decimal, Decimal], None]  # path, kept, other


@dataclass
class Model:
    variants: dict[str, RateSet] = field(default_factory=dict)  # "", "geo:us", "region:…"
    kind: str | None = None
    name: str | None = None
    sources: set[str] = field(default_factory=set)  # "dataset" or "dataset:url"
    notes: set[str] = field(default_factory=set)
    unplaced: dict[str, dict[str, str]] = field(default_factory=dict)  # price -> where -> USD
    derived: dict[str, set[str]] = field(default_factory=dict)  # rule -> where
    dataset: bool = False
    supplement_date: str | None = None

    def unplace(self, variant: str, found: Mapping[str, str]) -> None:
        for price, value in found.items():
            self.unplaced.setdefault(price, {})[where(variant)] = value


def money(value: Decimal) -> str:
    return format(value.normalize(), "f")


def usd(value: float) -> Decimal:
    """A dataset's float as the exact decimal it was written as."""
    return Decimal(repr(value))


def per_mtok(value: float) -> Decimal:
    return (usd(value) * 1_000_000).normalize()


def differs(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) > TOLERANCE * max(abs(a), abs(b))


def where(variant: str) -> str:
    return variant.replace(":", ".").replace("region.", "regions.") if variant else "rates"


def set_label(base: str, variant: str) -> str:
    """How the report names one rate set of a model."""
    return f"{base} {where(variant)}"


def sub_sets(rates: RateSet, tiers: bool = True) -> Iterator[tuple[str, dict[str, Decimal]]]:
    """The long-context (and tier) rate dicts of a rate set, named."""
    for above, lc in sorted(rates.get("long_context", {}).items()):
        yield f"long_context>{above}.", lc
    yield from ((f"{t}.", rates[t]) for t in TIERS if t in rates and tiers)


def overlay(dst: dict[str, Any], src: Mapping[str, Any], path: str = "",
            conflict: Conflict | None = None) -> None:
    """Fill ``dst`` with what ``src`` has and it lacks (recursively); ``conflict(path, kept,
    other)`` is called for leaves more than the tolerance apart."""
    for key, value in src.items():
        if isinstance(value, dict):
            overlay(dst.setdefault(key, {}), value, f"{path}{key}.", conflict)
        elif key not in dst:
            dst[key] = value
        elif conflict is not None and differs(dst[key], value):
            conflict(f"{path}{key}", dst[key], value)


def reporter(lines: list[str], label: str, kept: str, other: str) -> Conflict:
    """A conflict callback appending "<label> <path>: <kept> $a, <other> $b" to ``lines``."""
    def add(path: str, a: Decimal, b: Decimal) -> None:
        lines.append(f"{label} {path}: {kept} {money(a)}, {other} {money(b)}")
    return add


def parse_rates(data: Mapping[str, Any]) -> RateSet:
    """A rate set as written in JSON (strings; long_context a list) with Decimals."""
    out: RateSet = {}
    for key, value in data.items():
        if key == "long_context":
            out[key] = {e["above"]: parse_rates({k: v for k, v in e.items() if k != "above"})
                        for e in value}
        else:
            out[key] = parse_rates(value) if isinstance(value, dict) else Decimal(value)
    return out


def rates_json(rates: RateSet, kind: str) -> dict[str, Any]:
    """A rate set in the file's form and order; zero token rates only on text models."""
    def tokens(data: Mapping[str, Decimal]) -> dict[str, str]:
        return {k: money(data[k]) for k in TOKEN_FIELDS if k in data and
                (kind == "text" or data[k])}

    out: dict[str, Any] = tokens(rates)
    if rates.get("long_context"):
        out["long_context"] = [{"above": above, **tokens(lc)}
                               for above, lc in sorted(rates["long_context"].items())]
    out |= {tier: tokens(rates[tier]) for tier in TIERS if rates.get(tier)}
    if rates.get("image"):
        out["image"] = {k: money(v) for k, v in sorted(rates["image"].items())}
    return out | {unit: money(rates[unit]) for unit in UNITS if unit in rates}


def priced(value: Any) -> bool:
    """Whether a rendered structure holds a non-zero price."""
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return any(priced(v) for k, v in items if k != "above")
    return isinstance(value, str) and Decimal(value) != 0


def dist_version(dist: str, near: Path | None) -> str:
    """The installed version, or one read off a dist-info/wheel name beside an unpacked copy."""
    if near is None:
        return importlib.metadata.version(dist)
    stem = dist.replace("-", "_")
    for found in sorted([*near.glob(f"{stem}-*"), *near.parent.glob(f"{stem}-*")]):
        if match := re.match(rf"{stem}-(\d[\w.]*?)(?:\.dist-info|-py\d|-cp\d)", found.name):
            return match.group(1)
    return "(version unknown)"
