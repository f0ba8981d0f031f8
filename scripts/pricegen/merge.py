"""Merging the datasets into per-model records: genai-prices over LiteLLM (conflicts
reported, LiteLLM's tier rates rescaled), geo prefixes, the curated supplement, guardrails,
and AWS's derived cache prices (the rules: ``scripts/gen_pricing.py``'s docstring)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .core import (
    TOKEN_FIELDS,
    Model,
    RateSet,
    Report,
    differs,
    money,
    overlay,
    parse_rates,
    reporter,
    set_label,
    sub_sets,
    where,
)
from .genai import Genai, describe

CONFLICTS = "Conflicts genai-prices vs LiteLLM (genai-prices kept)"
RULES = ((re.compile(r"anthropic\.claude-(?:(?:sonnet|opus|haiku|fable|mythos)-|3-5-haiku"
                     r"|3-5-sonnet-20241022|3-7-sonnet)"),  # Claude models that cache prompts
          {"cache_write": "1.25", "cache_read": "0.1", "cache_write_1h": "2"}),
         (re.compile(r"amazon\.nova-(?:micro|lite|pro|premier)-v1"),  # Nova 1
          {"cache_read": "0.25", "cache_write": "0"}))


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
    out, tokens = copy.deepcopy(lite), {k: v for k, v in genai.items() if k in TOKEN_FIELDS}
    overlay(copy.deepcopy(out), tokens, conflict=reporter(
        report["Geo prefixes: LiteLLM's own entry kept over genai-prices' regional rate"],
        label, "LiteLLM", "genai-prices regional"))
    if "input" in lite and not differs(genai.get("input", Decimal(0)), lite["input"]):
        overlay(out, tokens)
    return out


def merge_model(base: str, model: Model, lite: dict[str, RateSet], genai: Genai,
                urls: list[str], *, report: Report) -> None:
    """One model's variants from both datasets."""
    model.dataset = True
    for variant in sorted(lite.keys() | genai.keys()):  # the bare id ("") first
        label, theirs = set_label(base, variant), lite.get(variant)
        if variant not in genai:
            model.variants[variant] = copy.deepcopy(lite[variant])
            continue
        rates = describe(model, variant, genai, urls)
        if theirs is not None and variant.startswith("geo:") and variant != "geo:global":
            model.variants[variant] = prefer_litellm_geo(label, rates, theirs, report)
        elif theirs is not None:
            model.variants[variant] = merge_variant(label, rates, theirs, report)
        elif variant and "" in genai and genai[""][1] is genai[variant][1]:  # bare id's rate
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
                                      set_label(base, variant), "supplement", "dataset"))
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
