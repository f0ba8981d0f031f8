"""Reading LiteLLM's price map (PyPI ``litellm``, ``model_prices_and_context_window_backup
.json``): its Bedrock entries as rate sets per base id and variant, and its guardrail prices."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from .core import (
    PREFIXES,
    Model,
    RateSet,
    Report,
    dist_version,
    money,
    overlay,
    per_mtok,
    reporter,
    set_label,
    usd,
)

LITELLM_JSON = "model_prices_and_context_window_backup.json"
KINDS = {"chat": "text", "embedding": "embedding", "image_generation": "image",
         "image_edit": "image", "rerank": "rerank", "realtime": "audio",
         "video_generation": "video"}
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
            rates["image"] = {image or "*": usd(value)}
        elif key == "input_cost_per_image" and value:
            rates["image_input"] = usd(value)
        elif key == "input_cost_per_query" and entry.get("mode") == "rerank":
            rates["query"] = usd(value)
        elif "cost" in key and value and not (found and found["tier"] == "batches") and not (
                key.endswith("_token") and value == entry.get("input_cost_per_token")):
            unplaced[f"LiteLLM {key}"] = money(per_mtok(value) if per_token else usd(value))
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
            guardrails = {k: usd(v) * 1000 for k, v in entry["guardrail_cost_per_unit"].items()}
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
                report["LiteLLM disagrees with itself (first kept)"], set_label(base, variant),
                "kept", f"{key} says"))
        out[base][variant] = merged
    return out, guardrails
