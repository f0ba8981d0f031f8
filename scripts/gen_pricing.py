#!/usr/bin/env python3
"""Generate the shipped price table ``src/bedrock_gateway/quota/pricing.json`` (schema 2).

Sources (the gateway never imports them): genai-prices (PyPI ``genai-prices``, provider
``aws``); LiteLLM's ``model_prices_and_context_window_backup.json`` (PyPI ``litellm``,
``litellm_provider`` starting with ``bedrock``); ``scripts/pricing_supplement.json``, curated
by hand from the AWS Bedrock pricing page for what neither has. After ``pip install
genai-prices litellm`` both are found with importlib; or point at unpacked wheels::

    python scripts/gen_pricing.py [--report FILE]   # rewrite pricing.json, print the report
    python scripts/gen_pricing.py --check           # exit 1 if pricing.json is stale
    python scripts/gen_pricing.py --genai-prices DIR --litellm DIR_OR_JSON [--date YYYY-MM-DD]

``--date`` (default today; ``--check`` reuses the table's ``generated``) picks the
genai-prices price list in force and dates dataset entries: same inputs, same bytes.

Merging:

* genai-prices first for what it has (token, cache read/write/1h rates, long-context tiers,
  global vs regional): it is curated and cites the AWS price list. LiteLLM for the rest:
  models genai-prices lacks, priority/flex tiers, per-geo-prefix and per-region entries,
  embeddings, images, rerank, guardrails, long-context tiers genai-prices has none of.
* Ids: the bare Bedrock id. A genai-prices model takes the LiteLLM id its ``match`` clause
  matches (LiteLLM spells real ids, e.g. ``-v1:0``), else its id minus ``regional.``/
  ``global.``. ``regional.X`` prices ``rates`` and the geo prefixes its clause names;
  ``global.X`` prices ``geo.global``.
* Same model, variant and field in both, more than 0.5% apart: genai-prices is kept and the
  conflict reported; LiteLLM's tier and long-context rates for that field are rescaled to
  genai-prices' base. A geo prefix with its own LiteLLM entry is more specific than
  genai-prices' shared regional rate, so LiteLLM's is kept there (also reported).
* The supplement wins for the fields it lists (differences reported); its guardrail prices
  only fill policies LiteLLM lacks.
* Derived fills, AWS's documented rules, only where no source has the number (named in the
  entry's source): caching Claude models (3.5 Haiku, 3.5 Sonnet v2, 3.7 Sonnet, 4.x, 5.x)
  cache_write 1.25x, cache_read 0.1x, cache_write_1h 2x input; Nova 1 (micro, lite, pro,
  premier) cache_read 0.25x input, cache_write 0.
* Skipped: provisioned throughput, batch prices, ``bedrock_mantle`` (another endpoint),
  ``claude_platform``, aliases that are not Bedrock ids, entries without a usable price.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib.metadata
import importlib.util
import json
import re
import sys
import types
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "src" / "bedrock_gateway" / "quota" / "pricing.json"
SUPPLEMENT = Path(__file__).resolve().parent / "pricing_supplement.json"
LITELLM_JSON = "model_prices_and_context_window_backup.json"
TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
TIERS = ("priority", "flex", "latency_optimized")
UNITS = ("video_second", "query", "image_input")
PREFIXES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca", "in", "global")
KINDS = {"chat": "text", "embedding": "embedding", "image_generation": "image",
         "image_edit": "image", "rerank": "rerank", "realtime": "audio",
         "video_generation": "video"}
GENAI_FIELDS = {"input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cache_read",
                "cache_write_mtok": "cache_write", "cache_write_1h_mtok": "cache_write_1h"}
LITELLM_BASE = {"input_cost_per_token": "input", "output_cost_per_token": "output",
                "cache_read_input_token_cost": "cache_read",
                "cache_creation_input_token_cost": "cache_write"}
LITELLM_FIELD = re.compile(r"(?P<f>" + "|".join(LITELLM_BASE) + r")(?P<h1>_above_1hr)?"
                           r"(?:_above_(?P<k>\d+)k_tokens)?(?:_(?P<tier>[a-z]+))?")
IMAGE_KEY = re.compile(r"(?P<w>\d+|max)-x-(?P<h>\d+|max)/(?P<steps>\w+)-steps/(?P<rest>.+)")
MAX_SIZE = "1024x1024"  # LiteLLM's "max-x-max" (SDXL 0.8: larger than 512x512, at most 1024)
REGION = re.compile(r"[a-z]{2}(?:-gov)?-[a-z]+-\d")
BEDROCK_ID = re.compile(r"[a-z0-9-]+\.[a-z0-9][\w.:-]*")
HOME_REGION = "us-east-1"  # the region ``rates`` are quoted for
RULES = ((re.compile(r"anthropic\.claude-(?:(?:sonnet|opus|haiku|fable|mythos)-|3-5-haiku"
                     r"|3-5-sonnet-20241022|3-7-sonnet)"),  # Claude models that cache prompts
          {"cache_write": "1.25", "cache_read": "0.1", "cache_write_1h": "2"}),
         (re.compile(r"amazon\.nova-(?:micro|lite|pro|premier)-v1"),  # Nova 1
          {"cache_read": "0.25", "cache_write": "0"}))
TOLERANCE = Decimal("0.005")
CONFLICTS = "Conflicts genai-prices vs LiteLLM (genai-prices kept)"
UNPLACED = "not representable in schema 2 (USD; token prices per 1M tokens):"

# A rate set: token fields -> Decimal; long_context -> {above: {field: Decimal}}; tiers ->
# {field: Decimal}; image -> {key: Decimal}; units -> Decimal.
RateSet = dict[str, Any]
Report = defaultdict[str, list[str]]  # section -> lines
Genai = dict[str, tuple[RateSet, Any, dict[str, str]]]  # variant -> rates, model, unplaced


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


def per_mtok(value: float) -> Decimal:
    return (Decimal(repr(value)) * 1_000_000).normalize()


def differs(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) > TOLERANCE * max(abs(a), abs(b))


def where(variant: str) -> str:
    return variant.replace(":", ".").replace("region.", "regions.") if variant else "rates"


def sub_sets(rates: RateSet, tiers: bool = True) -> Iterator[tuple[str, dict[str, Decimal]]]:
    """The long-context (and tier) rate dicts of a rate set, named."""
    for above, lc in sorted(rates.get("long_context", {}).items()):
        yield f"long_context>{above}.", lc
    yield from ((f"{t}.", rates[t]) for t in TIERS if t in rates and tiers)


def overlay(dst: dict[str, Any], src: Mapping[str, Any], path: str = "",
            conflict: Callable[[str, Decimal, Decimal], None] | None = None) -> None:
    """Fill ``dst`` with what ``src`` has and it lacks (recursively); ``conflict(path, kept,
    other)`` is called for leaves more than the tolerance apart."""
    for key, value in src.items():
        if isinstance(value, dict):
            overlay(dst.setdefault(key, {}), value, f"{path}{key}.", conflict)
        elif key not in dst:
            dst[key] = value
        elif conflict is not None and differs(dst[key], value):
            conflict(f"{path}{key}", dst[key], value)


def reporter(lines: list[str], label: str, kept: str, other: str
             ) -> Callable[[str, Decimal, Decimal], None]:
    """A conflict callback appending "<label> <path>: <kept> $a, <other> $b" to ``lines``."""
    def add(path: str, a: Decimal, b: Decimal) -> None:
        lines.append(f"{label} {path}: {kept} {money(a)}, {other} {money(b)}")
    return add


def dist_version(dist: str, near: Path | None) -> str:
    """The installed version, or one read off a dist-info/wheel name beside an unpacked copy."""
    if near is None:
        return importlib.metadata.version(dist)
    stem = dist.replace("-", "_")
    for found in sorted([*near.glob(f"{stem}-*"), *near.parent.glob(f"{stem}-*")]):
        if match := re.match(rf"{stem}-(\d[\w.]*?)(?:\.dist-info|-py\d|-cp\d)", found.name):
            return match.group(1)
    return "(version unknown)"


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


def load_litellm(location: str | None) -> tuple[dict[str, Any], str]:
    """LiteLLM's price map: a JSON file, a folder holding it, or the installed package's."""
    if location is None:
        spec = importlib.util.find_spec("litellm")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("litellm not found: pip install litellm, or pass --litellm DIR_OR_JSON")
        path, version = Path(spec.submodule_search_locations[0]) / LITELLM_JSON, None
    else:
        path = Path(location)
        if not path.is_file():
            path = next((p for p in (path / LITELLM_JSON, path / "litellm" / LITELLM_JSON)
                         if p.exists()), path / LITELLM_JSON)
        version = dist_version("litellm", path.parent.parent)
    data = json.loads(path.read_text(encoding="utf-8"))
    return data, version or dist_version("litellm", None)


# --- genai-prices --------------------------------------------------------------------------

def genai_rates(prices: Any, unplaced: dict[str, str]) -> RateSet:
    """A genai-prices ModelPrice as a rate set; tiered prices become long-context sets."""
    from genai_prices.types import TieredPrices

    rates: RateSet = {}
    long: dict[int, dict[str, Decimal]] = {}
    for key, value in vars(prices).items():
        tiered, name = isinstance(value, TieredPrices), GENAI_FIELDS.get(key)
        if value is None or key.startswith("_"):
            continue
        if name is None:
            unplaced[f"genai-prices {key}"] = money(value.base if tiered else value)
            continue
        rates[name] = value.base if tiered else value
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
        hits = sorted(b for b in litellm_ids
                      if any(model.is_match(f"{p}.{b}" if p else b) for p in ("", *PREFIXES)))
        own = re.sub(r"^(regional|global)\.", "", model.id)
        out.add(own if own in hits or not hits else hits[0])
    return out


def genai_variants(provider: Any, base: str, when: datetime) -> Genai:
    """Each variant priced by the first model whose clause names it; a clause that also
    matches an unknown prefix is generic and prices the bare id only."""
    out = {}
    for prefix in ("", *PREFIXES):
        ref = f"{prefix}.{base}" if prefix else base
        model = next((m for m in provider.models if m.is_match(ref)
                      and not (prefix and m.is_match(f"xx.{base}"))), None)
        if model is not None:
            unplaced: dict[str, str] = {}
            rates = genai_rates(model.get_prices(when), unplaced)
            out[f"geo:{prefix}" if prefix else ""] = (rates, model, unplaced)
    return out


# --- LiteLLM -------------------------------------------------------------------------------

def litellm_key(key: str) -> tuple[str, str, str | None] | str:
    """(base id, variant, image key) of a LiteLLM key, or why it is skipped."""
    image = None
    if found := IMAGE_KEY.fullmatch(key):
        size = MAX_SIZE if "max" in (found["w"], found["h"]) else f"{found['w']}x{found['h']}"
        image = f"{size}/{'premium' if found['steps'] == 'max' else 'standard'}"
        key = found["rest"]
    parts, variant = key.split("/"), ""
    if parts[0] == "bedrock" and len(parts) > 1:
        parts = parts[1:]
        if parts[0] == "claude_platform":
            return "claude_platform (Claude Platform on AWS, not a Bedrock model id)"
        if parts[0] in ("invoke", "converse"):
            parts = parts[1:]
        elif REGION.fullmatch(parts[0]) or parts[0] == "*":
            variant, parts = f"region:{parts[0]}", parts[1:]
    if len(parts) != 1:
        return "provisioned throughput" if "-month-commitment" in key else "unrecognised key"
    model_id = parts[0]
    prefix = next((p for p in PREFIXES if model_id.startswith(p + ".")), None)
    if prefix is not None and not variant:
        variant, model_id = f"geo:{prefix}", model_id.removeprefix(prefix + ".")
    if not BEDROCK_ID.fullmatch(model_id):
        return "not a Bedrock model id (an alias of another entry)"
    return model_id, "" if variant == f"region:{HOME_REGION}" else variant, image


def litellm_rates(entry: Mapping[str, Any], image: str | None, unplaced: dict[str, str]
                  ) -> RateSet:
    """One LiteLLM entry as a rate set (per-token floats -> exact USD per 1M tokens)."""
    rates: RateSet = {}
    for key, value in sorted(entry.items()):
        if isinstance(value, bool) or not isinstance(value, int | float):
            if "cost" in key and key != "search_context_cost_per_query":
                unplaced[f"LiteLLM {key}"] = "(structured)"
            continue
        found = LITELLM_FIELD.fullmatch(key)
        per_token = key.endswith("_token") or bool(found)
        if found and found["tier"] in (None, "priority", "flex") and not (
                found["tier"] and found["k"]):
            target = rates.setdefault(found["tier"], {}) if found["tier"] else rates
            if found["k"]:
                target = rates.setdefault("long_context", {}).setdefault(
                    int(found["k"]) * 1000, {})
            name = "cache_write_1h" if found["h1"] else LITELLM_BASE[found["f"]]
            target[name] = per_mtok(value)
        elif key == "output_cost_per_image":
            rates["image"] = {image or "*": Decimal(repr(value))}
        elif key == "input_cost_per_image" and value:
            rates["image_input"] = Decimal(repr(value))
        elif key == "input_cost_per_query" and entry.get("mode") == "rerank":
            rates["query"] = Decimal(repr(value))
        elif "cost" in key and value and not (found and found["tier"] == "batches") and not (
                key.endswith("_token") and value == entry.get("input_cost_per_token")):
            unplaced[f"LiteLLM {key}"] = money(per_mtok(value) if per_token
                                               else Decimal(repr(value)))
    return rates


def collect_litellm(data: Mapping[str, Any], models: dict[str, Model], report: Report
                    ) -> tuple[dict[str, dict[str, RateSet]], dict[str, Decimal]]:
    """LiteLLM's Bedrock entries (base id -> variant -> rates) and its guardrail prices."""
    found: dict[tuple[str, str], list[tuple[int, str, RateSet]]] = defaultdict(list)
    guardrails: dict[str, Decimal] = {}
    for key, entry in sorted(data.items()):
        provider = entry.get("litellm_provider", "") if isinstance(entry, dict) else ""
        if not provider.startswith("bedrock") or provider == "bedrock_mantle":
            continue
        if key == "bedrock/guardrails":
            guardrails = {k: Decimal(repr(v)) * 1000
                          for k, v in entry["guardrail_cost_per_unit"].items()}
            continue
        parsed = litellm_key(key)
        if isinstance(parsed, str) or "input_cost_per_second" in entry:
            reason = parsed if isinstance(parsed, str) else "provisioned throughput"
            report["LiteLLM keys skipped"].append(f"{key}: {reason}")
            continue
        base, variant, image = parsed
        model, unplaced = models.setdefault(base, Model()), dict[str, str]()
        rates = litellm_rates(entry, image, unplaced)
        model.unplace(variant, unplaced)
        model.kind = model.kind or KINDS.get(entry.get("mode", ""), "text")
        model.sources.add(f"litellm:{entry['source']}" if entry.get("source") else "litellm")
        plain = f"{variant[4:]}.{base}" if variant.startswith("geo:") else base
        rank = (key != plain) + (key.count("/") > 1 and image is None)  # plain keys first
        found[base, variant].append((rank, key, rates))
    out: dict[str, dict[str, RateSet]] = defaultdict(dict)
    for (base, variant), entries in sorted(found.items()):
        merged: RateSet = {}
        for _, key, rates in sorted(entries):
            overlay(merged, rates, conflict=reporter(
                report["LiteLLM disagrees with itself (first kept)"], f"{base} {where(variant)}",
                "kept", f"{key} says"))
        out[base][variant] = merged
    return out, guardrails


# --- merging -------------------------------------------------------------------------------

def merge_variant(label: str, genai: RateSet, lite: RateSet, report: Report) -> RateSet:
    """genai-prices' rates, LiteLLM filling the gaps; conflicts keep genai-prices'."""
    out, scaled, factors = copy.deepcopy(genai), copy.deepcopy(lite), {}
    conflict = reporter(report[CONFLICTS], label, "genai-prices", "LiteLLM")
    for name in TOKEN_FIELDS:
        if name in genai and name in lite and differs(genai[name], lite[name]):
            factors[name] = genai[name] / lite[name]
            conflict(name, genai[name], lite[name])
        overlay(out, {name: scaled.pop(name)} if name in scaled else {})  # reported above
    for path, rates in sub_sets(scaled):
        for name in sorted(rates.keys() & factors.keys()):
            old = rates[name]
            rates[name] = (old * factors[name]).quantize(Decimal("1e-12")).normalize()
            report["LiteLLM tier/long-context rates rescaled to genai-prices' base"].append(
                f"{label} {path}{name}: {money(old)} -> {money(rates[name])}")
    overlay(out, scaled, conflict=conflict)
    return out


def prefer_litellm_geo(label: str, genai: RateSet, lite: RateSet, report: Report) -> RateSet:
    """A geo prefix with its own LiteLLM entry, more specific than genai-prices' regional
    rate; genai-prices fills missing token fields only when both agree on the input rate."""
    out = copy.deepcopy(lite)
    overlay(copy.deepcopy(out), {k: v for k, v in genai.items() if k in TOKEN_FIELDS},
            conflict=reporter(report["Geo prefixes: LiteLLM's own entry kept over "
                                     "genai-prices' regional rate"], label, "LiteLLM",
                              "genai-prices regional"))
    if "input" in lite and not differs(genai.get("input", Decimal(0)), lite["input"]):
        overlay(out, {k: v for k, v in genai.items() if k in TOKEN_FIELDS})
    return out


def merge_model(base: str, model: Model, lite: dict[str, RateSet], genai: Genai,
                urls: list[str], *, report: Report) -> None:
    """One model's variants from both datasets (see the module docstring)."""
    model.dataset = True
    for variant in sorted(lite.keys() | genai.keys()):  # the bare id ("") first
        label, theirs = f"{base} {where(variant)}", lite.get(variant)
        if variant not in genai:
            model.variants[variant] = copy.deepcopy(lite[variant])
            continue
        rates, info, unplaced = genai[variant]
        model.unplace(variant, unplaced)
        model.name = model.name or re.sub(r" \((global|regional)\)$", "", info.name or "") or None
        cited = re.findall(r"https?://[^\s,)]+", info.price_comments or "")
        model.sources |= {f"genai-prices:{u.rstrip('.')}" for u in [*urls, *cited]}
        if theirs is not None and variant.startswith("geo:") and variant != "geo:global":
            model.variants[variant] = prefer_litellm_geo(label, rates, theirs, report)
        elif theirs is not None:
            model.variants[variant] = merge_variant(label, rates, theirs, report)
        elif variant and "" in genai and genai[""][1] is info:  # the bare id's regional rate
            model.variants[variant] = copy.deepcopy(model.variants[""])
        else:
            model.variants[variant] = copy.deepcopy(rates)
    bare = model.variants.get("")
    if bare is None and model.variants:
        first = next(v for v in ("geo:us", "geo:global", *sorted(model.variants))
                     if v in model.variants)
        model.variants[""] = bare = copy.deepcopy(model.variants[first])
        model.notes.add(f"no in-region price in the sources: rates copy {where(first)}")
    if model.kind is None and bare is not None:
        model.kind = ("audio" if any("audio" in n for n in model.unplaced)
                      else "text" if "output" in bare else "embedding")


def derive(base: str, model: Model, report: Report) -> None:
    """AWS's documented cache-price rules, only where no source gives the number."""
    multiples = next((m for pattern, m in RULES if pattern.match(base)), {})
    for variant, rates in model.variants.items() if multiples else ():
        for path, target in [("", rates), *sub_sets(rates, tiers=False)]:
            for name in sorted(multiples.keys() - target.keys()) if "input" in target else ():
                target[name] = (target["input"] * Decimal(multiples[name])).normalize()
                rule = f"{name} = " + (f"{multiples[name]} x input" if target[name] else "0")
                model.derived.setdefault(rule, set()).add(where(variant) + (
                    "." + path.rstrip(".") if path else ""))
    if model.derived:
        report["Derived fills (AWS rules)"].append(f"{base}: " + "; ".join(
            f"{r} ({len(w)} rate sets)" for r, w in sorted(model.derived.items())))


# --- supplement and guardrails -------------------------------------------------------------

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


def apply_supplement(models: dict[str, Model], supplement: Mapping[str, Any],
                     report: Report) -> None:
    """The curated entries win for the fields they list (differences reported)."""
    for base, entry in sorted(supplement["models"].items()):
        model = models.setdefault(base, Model())
        model.kind = entry.get("kind", model.kind)
        model.name = model.name or entry.get("name")
        model.sources.add(f"supplement:{entry['source']}")
        model.supplement_date = entry["date"]
        model.notes |= {entry["note"]} if entry.get("note") else set()
        wanted = {"": entry.get("rates", {})} | {
            f"geo:{p}": r for p, r in entry.get("geo", {}).items()}
        for variant, data in wanted.items():
            new = parse_rates(data)  # a new geo set starts as a copy of the bare rates
            overlay(new, model.variants.get(variant) or copy.deepcopy(model.variants.get("", {})),
                    conflict=reporter(report["Supplement overrides the datasets"],
                                      f"{base} {where(variant)}", "supplement", "dataset"))
            model.variants[variant] = new


def guardrails(lite: dict[str, Decimal], supplement: Mapping[str, Any], when: str,
               report: Report) -> dict[str, Any]:
    """LiteLLM's guardrail prices per 1,000 units, the supplement filling missing policies."""
    fallback, prices = supplement["guardrails"], dict(lite)
    for policy, value in fallback["per_1000_units"].items():
        if policy in prices and differs(prices[policy], Decimal(value)):
            report["Guardrails: LiteLLM kept over the supplement"].append(
                f"{policy}: LiteLLM {money(prices[policy])}, supplement {value}")
        prices.setdefault(policy, Decimal(value))
    filled = sorted(prices.keys() - lite.keys())
    source = "; ".join(
        ([f"litellm bedrock/guardrails ({fallback['source'].split()[0]})"] if lite else [])
        + ([f"supplement for {', '.join(filled)}: {fallback['source']}"] if filled else []))
    return {"source": source, "date": when if lite else fallback["date"],
            "per_1000_units": {k: money(v) for k, v in sorted(prices.items())}}


# --- output --------------------------------------------------------------------------------

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


def source_text(model: Model) -> str:
    parts = []
    for dataset in ("genai-prices", "litellm", "supplement"):
        urls = sorted(s.split(":", 1)[1] for s in model.sources if s.startswith(f"{dataset}:"))
        if urls or dataset in model.sources:
            parts.append(f"{dataset} ({', '.join(urls)})" if urls else dataset)
    return "; ".join(parts + [f"derived by AWS rule: {rule} in {', '.join(sorted(places))}"
                              for rule, places in sorted(model.derived.items())])


def entry_json(base: str, model: Model, when: str, report: Report) -> dict[str, Any] | None:
    """One model's entry, or None (reported) when it has no usable price."""
    kind = model.kind or "text"
    variants = {v: rates_json(r, kind) for v, r in sorted(model.variants.items())}
    bare = variants.get("", {})
    unplaced = "; ".join(
        f"{price}: " + ", ".join(f"{v} ({w})" for w, v in sorted(places.items()))
        for price, places in sorted(model.unplaced.items()))
    missing = kind == "text" and not {"input", "output"} <= bare.keys()
    if missing or not priced(variants):
        why = "no input and output token rates" if missing else "no usable price"
        report["Could not place"].append(f"{base}: {why}" + f" ({unplaced})" * bool(unplaced))
        return None
    if unplaced:
        report["Not representable in schema 2 (kept in the entry's note)"].append(
            f"{base}: {unplaced}")
    notes = sorted(model.notes) + [f"{UNPLACED} {unplaced}"] * bool(unplaced)
    out: dict[str, Any] = ({"name": model.name} if model.name else {}) | {
        "kind": kind, "source": source_text(model),
        "date": when if model.dataset else model.supplement_date}
    out |= ({"note": "; ".join(notes)} if notes else {}) | {"rates": bare}
    for section, prefix in (("geo", "geo:"), ("regions", "region:")):
        if found := {v.removeprefix(prefix): r for v, r in variants.items()
                     if v.startswith(prefix)}:
            out[section] = found
    return out


def build(args: argparse.Namespace, when: date) -> tuple[dict[str, Any], Report]:
    """The whole table and the report."""
    report: Report = defaultdict(list)
    provider, genai_version = load_genai(args.genai_prices)
    litellm, litellm_version = load_litellm(args.litellm)
    supplement = json.loads(Path(args.supplement).read_text(encoding="utf-8"))
    models: dict[str, Model] = {}
    lite, lite_guardrails = collect_litellm(litellm, models, report)
    moment = datetime.combine(when, datetime.min.time(), UTC)
    for base in sorted(set(lite) | genai_bases(provider, set(lite))):
        merge_model(base, models.setdefault(base, Model()), lite.get(base, {}),
                    genai_variants(provider, base, moment), provider.pricing_urls or [],
                    report=report)
    apply_supplement(models, supplement, report)
    for base in sorted(models):
        derive(base, models[base], report)
    entries = {base: entry for base in sorted(models)
               if (entry := entry_json(base, models[base], when.isoformat(), report))}
    report["Models per kind"] = [f"{k}: {sum(e['kind'] == k for e in entries.values())}"
                                 for k in sorted({e["kind"] for e in entries.values()})]
    return {
        "schema": 2, "generated": when.isoformat(), "generator": "scripts/gen_pricing.py",
        "sources": {
            "genai-prices": f"genai-prices {genai_version} (PyPI), provider 'aws' (AWS Bedrock)",
            "litellm": f"litellm {litellm_version} (PyPI), {LITELLM_JSON}",
            "supplement": "scripts/pricing_supplement.json (curated from the AWS Bedrock "
                          "pricing page)"},
        "units": {"tokens": "USD per 1M tokens", "image": "USD per image",
                  "video_second": "USD per second of video", "query": "USD per query",
                  "image_input": "USD per input image", "guardrails": "USD per 1,000 units"},
        "guardrails": guardrails(lite_guardrails, supplement, when.isoformat(), report),
        "models": entries,
    }, report


def report_text(report: Report) -> str:
    first = "Models per kind"
    order = [first, *sorted(k for k, lines in report.items() if lines and k != first)]
    return "\n".join(f"== {k} ({len(report[k])})\n" + "\n".join(report[k]) + "\n"
                     for k in order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate pricing.json (see the docstring).")
    parser.add_argument("--genai-prices", metavar="DIR",
                        help="folder holding the genai_prices package (default: installed)")
    parser.add_argument("--litellm", metavar="DIR_OR_JSON",
                        help="LiteLLM's price JSON or a folder holding it (default: installed)")
    parser.add_argument("--supplement", default=str(SUPPLEMENT))
    parser.add_argument("--output", default=str(TABLE))
    parser.add_argument("--date", type=date.fromisoformat,
                        help="generation date (default: today; with --check: the table's)")
    parser.add_argument("--report", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed table differs from a regenerated one")
    args = parser.parse_args(argv)
    output = Path(args.output)
    current = output.read_text(encoding="utf-8") if output.exists() else ""
    when = args.date
    if when is None and args.check and '"generated"' in current:
        when = date.fromisoformat(json.loads(current)["generated"])
    document, report = build(args, when or datetime.now(UTC).date())
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if args.report:
        Path(args.report).write_text(report_text(report), encoding="utf-8")
    if args.check:
        if text == current:
            print(f"{output} is up to date ({len(document['models'])} models)")
            return 0
        diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                         "committed", "regenerated", lineterm="", n=1))
        print(f"{output} is stale ({len(diff)} diff lines); regenerate it. First lines:")
        print("\n".join(diff[:60]))
        return 1
    print(report_text(report))
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}: {len(document['models'])} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
