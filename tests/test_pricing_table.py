"""Checks over the shipped price table (``src/bedrock_gateway/quota/pricing.json``, schema 2).

The table is made by ``scripts/gen_pricing.py`` from genai-prices and LiteLLM; these tests
read only the shipped file, so CI needs neither package (the last test runs the generator's
``--check`` when both are available).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
KINDS = {"text", "embedding", "image", "video", "rerank", "audio"}
# Claude models Bedrock caches prompts for: 3.5 Haiku, 3.5 Sonnet v2, 3.7 Sonnet, 4.x, 5.x.
CACHING_CLAUDE = re.compile(r"anthropic\.claude-(?:(?:sonnet|opus|haiku|fable|mythos)-"
                            r"|3-5-haiku|3-5-sonnet-20241022|3-7-sonnet)")
NOVA_1 = re.compile(r"amazon\.nova-(?:micro|lite|pro|premier)-v1")
# Cache reads below the usual 0.1 x input, as the AWS price list has them (genai-prices
# cites it): Fable/Mythos 5.1 and 5.2 at 0.025 x, Sonnet/Opus 5.5 at 0.05 x.
CACHE_READ_RATIO = {"anthropic.claude-fable-5-1": "0.025", "anthropic.claude-fable-5-2": "0.025",
                    "anthropic.claude-mythos-5-1": "0.025",
                    "anthropic.claude-mythos-5-2": "0.025",
                    "anthropic.claude-sonnet-5-5": "0.05", "anthropic.claude-opus-5-5": "0.05"}
SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    text = resources.files("bedrock_gateway.quota").joinpath("pricing.json")
    data: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def models(table: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = table["models"]
    return found


def rate_sets(entry: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every rate set of an entry: rates, each geo prefix, each region."""
    yield "rates", entry["rates"]
    for section in ("geo", "regions"):
        for key, rates in entry.get(section, {}).items():
            yield f"{section}.{key}", rates


def token_sets(rates: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The standard token rates of a rate set and each of its long-context sets."""
    yield "", rates
    for lc in rates.get("long_context", []):
        yield f".long_context>{lc['above']}", lc


def money_values(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "above":
                yield from money_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from money_values(item, f"{path}[{i}]")
    else:
        yield path, value


def d(value: str) -> Decimal:
    return Decimal(value)


def test_schema_and_metadata(table: dict[str, Any], models: dict[str, Any]) -> None:
    assert table["schema"] == 2
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["generated"])
    assert table["generator"] == "scripts/gen_pricing.py"
    assert set(table["sources"]) == {"genai-prices", "litellm", "supplement"}
    assert list(models) == sorted(models)
    for model_id, entry in models.items():
        assert entry["kind"] in KINDS, model_id
        assert entry["source"], model_id
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["date"]), model_id
        assert set(entry) <= {"name", "kind", "source", "date", "note", "rates", "geo",
                              "regions"}, model_id


def test_every_money_value_is_an_exact_decimal_string(table: dict[str, Any],
                                                       models: dict[str, Any]) -> None:
    found = list(money_values(table["guardrails"]["per_1000_units"], "guardrails"))
    for model_id, entry in models.items():
        for where, rates in rate_sets(entry):
            found += money_values(rates, f"{model_id}.{where}")
    assert len(found) > 1000
    for path, value in found:
        assert isinstance(value, str), path
        amount = Decimal(value)
        assert amount.is_finite() and amount >= 0, path


def test_text_models_have_input_and_output(models: dict[str, Any]) -> None:
    text = {k: e for k, e in models.items() if e["kind"] == "text"}
    assert len(text) >= 120
    for model_id, entry in text.items():
        for where, rates in rate_sets(entry):
            assert "input" in rates and "output" in rates, f"{model_id} {where}"


def test_caching_claude_models_have_every_cache_rate(models: dict[str, Any]) -> None:
    caching = [k for k in models if CACHING_CLAUDE.match(k)]
    assert len(caching) >= 25
    for model_id in caching:
        read_ratio = d(CACHE_READ_RATIO.get(model_id, "0.1"))
        for where, rates in rate_sets(models[model_id]):
            for sub, tokens in token_sets(rates):
                at, inp = f"{model_id} {where}{sub}", d(tokens["input"])
                assert d(tokens["cache_write"]) == inp * d("1.25"), at
                assert d(tokens["cache_write_1h"]) == inp * 2, at
                assert d(tokens["cache_read"]) == inp * read_ratio, at


def test_nova_1_cache_reads_are_a_quarter_of_input(models: dict[str, Any]) -> None:
    nova = [k for k in models if NOVA_1.match(k)]
    assert len(nova) == 4
    for model_id in nova:
        for where, rates in rate_sets(models[model_id]):
            assert d(rates["cache_read"]) == d(rates["input"]) * d("0.25"), f"{model_id} {where}"
            assert d(rates["cache_write"]) == 0, f"{model_id} {where}"


def test_non_token_kinds(models: dict[str, Any]) -> None:
    kinds = {e["kind"] for e in models.values()}
    assert {"embedding", "image", "video", "rerank"} <= kinds
    for reel in ("amazon.nova-reel-v1:0", "amazon.nova-reel-v1:1"):
        assert models[reel]["kind"] == "video"
        assert models[reel]["rates"]["video_second"] == "0.08"
    assert models["amazon.titan-embed-text-v2:0"]["rates"]["input"] == "0.02"
    assert models["cohere.rerank-v3-5:0"]["rates"]["query"] == "0.002"
    canvas = models["amazon.nova-canvas-v1:0"]["rates"]["image"]
    assert canvas["1024x1024/standard"] == "0.04" and canvas["2048x2048/premium"] == "0.08"


def test_claude_sonnet_4_5(models: dict[str, Any]) -> None:
    entry = models[SONNET_45]
    rates, geo = entry["rates"], entry["geo"]
    assert (rates["input"], rates["output"]) == ("3.3", "16.5")
    assert (geo["us"]["input"], geo["us"]["output"]) == ("3.3", "16.5")
    assert (geo["global"]["input"], geo["global"]["output"]) == ("3", "15")
    assert geo["eu"]["input"] == "3.3"
    for where, rates_ in rate_sets(entry):
        [long] = [lc for lc in rates_.get("long_context", []) if lc["above"] == 200000] or [None]
        if where in ("rates", "geo.us", "geo.eu", "geo.global"):
            assert long is not None, where
        if long is not None:
            assert d(long["input"]) == d(rates_["input"]) * 2, where
            assert d(long["output"]) == d(rates_["output"]) * d("1.5"), where


def test_nova_pro_service_tiers(models: dict[str, Any]) -> None:
    rates = models["amazon.nova-pro-v1:0"]["rates"]
    assert (rates["priority"]["input"], rates["priority"]["output"]) == ("1.4", "5.6")
    assert (rates["flex"]["input"], rates["flex"]["output"]) == ("0.4", "1.6")
    assert (rates["latency_optimized"]["input"], rates["latency_optimized"]["output"]) \
        == ("1", "4")


def test_guardrails(table: dict[str, Any]) -> None:
    per_1000 = table["guardrails"]["per_1000_units"]
    assert per_1000["contentPolicyUnits"] == "0.15"
    assert per_1000["contentPolicyImageUnits"] == "0.75"
    assert per_1000["wordPolicyUnits"] == "0"


def test_the_runtime_loads_the_table(table: dict[str, Any], models: dict[str, Any]) -> None:
    from bedrock_gateway.quota.pricing import Pricing

    pricing = Pricing(table)
    assert len(pricing) == len(models)
    price = pricing.price_for(f"global.{SONNET_45}")
    assert price is not None and price.input == 3


def _source_args() -> list[str] | None:
    """Where the generator finds its sources: the installed packages, else the folders in
    GENAI_PRICES_SRC and LITELLM_SRC (unpacked wheels), else None."""
    env = os.environ.get("GENAI_PRICES_SRC"), os.environ.get("LITELLM_SRC")
    if all(env):
        return ["--genai-prices", str(env[0]), "--litellm", str(env[1])]
    if importlib.util.find_spec("genai_prices") and importlib.util.find_spec("litellm"):
        return []
    return None


def test_generator_check_passes(table: dict[str, Any]) -> None:
    args = _source_args()
    if args is None:
        pytest.skip("genai-prices and litellm not available (pip install them, or set "
                    "GENAI_PRICES_SRC and LITELLM_SRC)")
    if not args:  # installed: only meaningful with the versions the table was made from
        for dist, key in (("genai-prices", "genai-prices"), ("litellm", "litellm")):
            version = importlib.metadata.version(dist)
            if f"{dist} {version} " not in table["sources"][key]:
                pytest.skip(f"installed {dist} {version} is not the table's source version")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_pricing.py"),
                             "--check", *args], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
