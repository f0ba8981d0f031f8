"""The table itself: each model's entry in schema 2, the whole document, the report, and the
command line that writes ``pricing.json`` or checks it is current."""

from __future__ import annotations

import argparse
import difflib
import json
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .core import Model, Report, priced, rates_json
from .genai import genai_bases, genai_variants, load_genai
from .litellm import LITELLM_JSON, collect_litellm, load_litellm
from .merge import apply_supplement, derive, guardrails, merge_model

SCRIPTS = Path(__file__).resolve().parent.parent
TABLE = SCRIPTS.parent / "src" / "bedrock_gateway" / "quota" / "pricing.json"
SUPPLEMENT = SCRIPTS / "pricing_supplement.json"
UNPLACED = "not representable in schema 2 (USD; token prices per 1M tokens):"


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
