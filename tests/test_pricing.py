"""The price table: AWS's on-demand rates for current models, id resolution (geography,
prefixes, ARNs, profiles, regions), overrides, user tables, money."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest

from bedrock_gateway.config import ConfigError, load_config
from bedrock_gateway.quota.prices import Price
from bedrock_gateway.quota.pricing import Pricing, geography_of, load_packaged_table

D = Decimal
SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
APP_PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
LOGGER = "bedrock_gateway.quota"


@pytest.fixture(scope="module")
def pricing() -> Pricing:
    return Pricing(region="us-east-1")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def rates(pricing: Pricing, model: str) -> tuple[Decimal, Decimal]:
    price = pricing.price_for(model)
    assert price is not None, model
    return price.input, price.output


# AWS Bedrock on-demand list prices (USD per 1M input / output tokens), as AWS's pricing page
# gives them for each model id as a client sends it (us-east-1 for bare ids).
AWS_TEXT = [
    (HAIKU_3, "0.25", "1.25"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "0.8", "4"),
    ("us." + SONNET_37, "3", "15"),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "3", "15"),
    ("us." + SONNET_45, "3.3", "16.5"),
    (SONNET_45, "3.3", "16.5"),
    ("global." + SONNET_45, "3", "15"),
    ("us." + HAIKU_45, "1.1", "5.5"),
    ("global." + HAIKU_45, "1", "5"),
    ("us.anthropic.claude-opus-4-1-20250805-v1:0", "15", "75"),
    ("amazon.nova-micro-v1:0", "0.035", "0.14"),
    ("amazon.nova-lite-v1:0", "0.06", "0.24"),
    ("us.amazon.nova-pro-v1:0", "0.8", "3.2"),
    ("us.amazon.nova-premier-v1:0", "2.5", "12.5"),
    ("global.amazon.nova-2-lite-v1:0", "0.3", "2.5"),
    ("meta.llama3-1-8b-instruct-v1:0", "0.22", "0.22"),
    ("us.meta.llama3-1-70b-instruct-v1:0", "0.72", "0.72"),
    ("us.meta.llama3-3-70b-instruct-v1:0", "0.72", "0.72"),
    ("us.meta.llama3-2-11b-instruct-v1:0", "0.16", "0.16"),
    ("us.meta.llama4-maverick-17b-instruct-v1:0", "0.24", "0.97"),
    ("us.meta.llama4-scout-17b-instruct-v1:0", "0.17", "0.66"),
    ("mistral.mistral-7b-instruct-v0:2", "0.15", "0.2"),
    ("mistral.mixtral-8x7b-instruct-v0:1", "0.45", "0.7"),
    ("mistral.mistral-large-2402-v1:0", "4", "12"),
    ("us.mistral.pixtral-large-2502-v1:0", "2", "6"),
    ("us.deepseek.r1-v1:0", "1.35", "5.4"),
    ("openai.gpt-oss-120b-1:0", "0.15", "0.6"),
    ("openai.gpt-oss-20b-1:0", "0.07", "0.3"),
    ("qwen.qwen3-32b-v1:0", "0.15", "0.6"),
    ("qwen.qwen3-coder-480b-a35b-v1:0", "0.45", "1.8"),
    ("us.writer.palmyra-x5-v1:0", "0.6", "6"),
    ("us.writer.palmyra-x4-v1:0", "2.5", "10"),
    ("ai21.jamba-1-5-large-v1:0", "2", "8"),
    ("ai21.jamba-1-5-mini-v1:0", "0.2", "0.4"),
    ("cohere.command-r-plus-v1:0", "3", "15"),
    ("cohere.command-r-v1:0", "0.5", "1.5"),
    ("amazon.titan-text-express-v1", "0.2", "0.6"),
]


@pytest.mark.parametrize(("model", "inp", "out"), AWS_TEXT)
def test_current_text_models_at_aws_rates(pricing: Pricing, model: str, inp: str,
                                          out: str) -> None:
    assert rates(pricing, model) == (D(inp), D(out))


def test_caching_models_have_cache_rates(pricing: Pricing) -> None:
    for model in ("us." + SONNET_45, "global." + SONNET_45, "us." + HAIKU_45, "us." + SONNET_37):
        price = pricing.price_for(model)
        assert price is not None and price.cache_read == price.input / 10
        assert price.cache_write == price.input * D("1.25")
        if "3-7" not in model:
            assert price.cache_write_1h == price.input * 2
    for model in ("amazon.nova-micro-v1:0", "us.amazon.nova-pro-v1:0"):
        price = pricing.price_for(model)
        assert price is not None and price.cache_read == price.input / 4


def test_the_packaged_table_is_dated_and_sourced() -> None:
    doc = load_packaged_table()
    assert doc["schema"] == 2 and doc["generated"]
    assert "genai-prices" in json.dumps(doc["sources"]) and "litellm" in json.dumps(doc["sources"])
    for model, entry in doc["models"].items():
        assert entry["source"] and entry["date"], model
    p = Pricing()
    assert p.date == doc["generated"] and p.source and len(p) >= 150


def test_geography(pricing: Pricing) -> None:
    assert geography_of("us." + SONNET_45) == "us"
    assert geography_of("us-gov." + SONNET_45) == "us-gov"
    assert geography_of(SONNET_45) == "in-region"
    assert geography_of(APP_PROFILE) == "profile"
    assert geography_of(f"arn:aws:bedrock:us-east-1:1:inference-profile/eu.{HAIKU_45}") == "eu"
    assert rates(pricing, "eu." + SONNET_45) == (D("3.3"), D("16.5"))
    assert rates(pricing, "jp." + SONNET_45) == (D("3.3"), D("16.5"))
    gov = pricing.price_for("us-gov." + SONNET_45)
    assert gov is not None and gov.input > D("3.3")  # GovCloud is dearer
    in_gov = pricing.price_for(SONNET_45, region="us-gov-west-1")
    assert in_gov is not None and in_gov.input == gov.input


def test_arns_and_percent_encoding(pricing: Pricing) -> None:
    fm = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_3}"
    assert pricing.cost(fm, 1_000_000, 0) == D("0.25")
    ip = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{SONNET_45}"
    assert rates(pricing, ip) == (D("3.3"), D("16.5"))
    gp = f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/global.{HAIKU_45}"
    assert rates(pricing, gp) == (D(1), D(5))
    encoded = "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2F" + HAIKU_3.replace(":", "%3A")
    assert pricing.price_for(encoded) == pricing.price_for(HAIKU_3)


def test_decimal_exactness(pricing: Pricing) -> None:
    assert pricing.cost("amazon.nova-micro-v1:0", 1, 1) == D("0.000000175")
    assert sum((pricing.cost("amazon.titan-text-lite-v1", 0, 500_000) or D(0)
                for _ in range(3)), D(0)) == D("0.3")
    cost = pricing.cost("us." + SONNET_37, 1234, 567, 8901, 2345)
    assert cost == (1234 * D(3) + 567 * D(15) + 8901 * D("0.3") + 2345 * D("3.75")) / 10**6


def test_application_inference_profile_via_profiles(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing(profiles={APP_PROFILE: "eu." + HAIKU_45, "team-a": SONNET_37})
    assert rates(p, APP_PROFILE) == (D("1.1"), D("5.5"))
    assert p.price_for("team-a") == Pricing().price_for(SONNET_37)
    assert warnings_of(caplog) == []
    assert Pricing().price_for(APP_PROFILE) is None  # hidden model, no mapping: unpriced
    assert Pricing(profiles={"a": "b", "b": "a"}).price_for("a") is None  # cycles end


def test_overrides_beat_the_table() -> None:
    p = Pricing(overrides={
        HAIKU_3: Price(D(1), D(2)),
        "us." + SONNET_45: {"input": 9, "output": 9.5},
        HAIKU_45: {"rates": {"input": "2", "output": "3"},
                   "geo": {"us": {"input": "4", "output": "5"}}},
        "mistral.*": {"input": 0.1, "output": 0.1},
    })
    assert p.price_for(HAIKU_3) == Price(D(1), D(2))
    assert p.price_for(f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_3}") == Price(D(1), D(2))
    assert rates(p, "us." + SONNET_45) == (D(9), D("9.5"))  # exact prefixed id
    assert rates(p, "eu." + SONNET_45) == (D("3.3"), D("16.5"))  # the table still applies
    assert rates(p, "us." + HAIKU_45) == (D(4), D(5))  # override on the base id, by geography
    assert rates(p, "global." + HAIKU_45) == (D(2), D(3))
    assert rates(p, "eu.mistral.mistral-7b-instruct-v0:2") == (D("0.1"), D("0.1"))


def test_glob_keys_longest_pattern_wins() -> None:
    p = Pricing({"models": {"acme.*": {"input": 1, "output": 1},
                            "acme.big-*": {"input": 5, "output": 5},
                            "acme.big-v1": {"input": 7, "output": 7}}})
    assert p.price_for("acme.small") == Price(D(1), D(1))
    assert p.price_for("acme.big-v2") == Price(D(5), D(5))
    assert p.price_for("acme.big-v1") == Price(D(7), D(7))


def test_default_rate_warns_once_and_unpriced_is_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing(default=Price(D(10), D(20)))
    for _ in range(3):
        assert p.cost("acme.unknown-v1", 1_000_000, 1_000_000) == D(30)
    assert len(warnings_of(caplog)) == 1 and "default rate" in warnings_of(caplog)[0]
    assert Pricing().cost("acme.unknown-v1", 100, 100) is None
    assert "no price in the table" in warnings_of(caplog)[-1]


def test_warning_memory_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing()
    for i in range(1100):
        p.price_for(f"junk-{i}")
    assert len(p._warned) <= 1025
    assert "no further warnings" in warnings_of(caplog)[-1]


def test_bad_entries_are_refused_naming_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"pricing table\['acme.x'\]\.rates\.input"):
        Pricing({"models": {"acme.x": {"rates": {"input": "-1", "output": 1}}}})
    with pytest.raises(ValueError, match=r"acme.x'\]\.geo: unknown prefix 'mars'"):
        Pricing({"models": {"acme.x": {"rates": {"input": 1, "output": 1},
                                       "geo": {"mars": {"input": 1}}}}})
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"models": {"acme.y": {"input": "abc", "output": 1}}}))
    config = tmp_path / "gw.toml"
    config.write_text(f'[auth]\nanonymous = true\n[pricing]\ntable = "{table}"\n'
                      '[pricing.overrides."acme.z"]\ninput = 1\noutput = 2\ncache_write_2h = 3\n')
    with pytest.raises(ConfigError) as bad:
        load_config(config)
    text = str(bad.value)
    assert "acme.y" in text and "input" in text
    assert "acme.z" in text and "cache_write_2h" in text


def test_a_user_table_replaces_the_packaged_one(tmp_path: Path) -> None:
    from bedrock_gateway.config import build_pricing, load_config

    table = tmp_path / "negotiated.json"
    table.write_text(json.dumps({"models": {SONNET_45: {
        "rates": {"input": "2.7", "output": "13.5"}, "geo": {"us": {"input": "2.9",
                                                                   "output": "14"}}}}}))
    config = tmp_path / "gw.toml"
    config.write_text(f'[auth]\nanonymous = true\n[pricing]\ntable = "{table}"\n'
                      '[pricing.operations]\nRetrieve = 0.002\n')
    p = build_pricing(load_config(config).pricing, "us-east-1")
    assert rates(p, SONNET_45) == (D("2.7"), D("13.5"))
    assert rates(p, "us." + SONNET_45) == (D("2.9"), D(14))
    assert p.price_for(HAIKU_3) is None  # only the user's table
    assert p.operations == {"Retrieve": D("0.002")}
    assert p.guardrails["contentPolicyUnits"] == D("0.15")  # packaged guardrail prices kept
