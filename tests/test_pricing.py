"""The price table: seed values, id resolution (prefixes, ARNs, profiles), overrides, money."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway.quota.pricing import Price, Pricing, load_packaged_table

D = Decimal
SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
APP_PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
LOGGER = "bedrock_gateway.quota"


@pytest.fixture(scope="module")
def pricing() -> Pricing:
    return Pricing()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize(("model", "rates"), [
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", ("3", "15", "0.3", "3.75")),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", ("3", "15", "0.3", "3.75")),
    (SONNET_37, ("3", "15", "0.3", "3.75")),
    ("anthropic.claude-sonnet-4-20250514-v1:0", ("3", "15", "0.3", "3.75")),
    (SONNET_45, ("3", "15", None, None)),
    (HAIKU_3, ("0.25", "1.25", None, None)),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", ("0.8", "4", None, None)),
    (HAIKU_45, ("1", "5", None, None)),
    ("anthropic.claude-opus-4-20250514-v1:0", ("15", "75", None, None)),
    ("anthropic.claude-opus-4-1-20250805-v1:0", ("15", "75", None, None)),
    ("amazon.nova-micro-v1:0", ("0.035", "0.14", None, None)),
    ("amazon.nova-lite-v1:0", ("0.06", "0.24", None, None)),
    ("amazon.nova-pro-v1:0", ("0.8", "3.2", None, None)),
    ("amazon.nova-premier-v1:0", ("2.5", "12.5", None, None)),
    ("meta.llama3-1-8b-instruct-v1:0", ("0.22", "0.22", None, None)),
    ("meta.llama3-1-70b-instruct-v1:0", ("0.72", "0.72", None, None)),
    ("meta.llama3-3-70b-instruct-v1:0", ("0.72", "0.72", None, None)),
    ("mistral.mistral-7b-instruct-v0:2", ("0.15", "0.2", None, None)),
    ("mistral.mixtral-8x7b-instruct-v0:1", ("0.45", "0.7", None, None)),
    ("mistral.mistral-large-2402-v1:0", ("4", "12", None, None)),
    ("amazon.titan-text-express-v1", ("0.2", "0.6", None, None)),
    ("amazon.titan-text-lite-v1", ("0.15", "0.2", None, None)),
])
def test_seed_prices(pricing: Pricing, model: str, rates: tuple[str | None, ...]) -> None:
    expected = Price(*(None if r is None else D(r) for r in rates))  # type: ignore[arg-type]
    assert pricing.price_for(model) == expected


def test_packaged_file_loads_from_the_installed_package() -> None:
    raw = resources.files("bedrock_gateway.quota").joinpath("pricing.json").read_text("utf-8")
    doc = json.loads(raw)
    assert doc["date"] == "2026-08"
    assert doc["unit"] == "USD per 1M tokens"
    assert "genai-prices" in doc["source"] and "aws.amazon.com/bedrock/pricing" in doc["source"]
    assert len(doc["models"]) == 22
    table = load_packaged_table()
    assert table["models"][HAIKU_3]["input"] == D("0.25")  # parsed as exact Decimal
    p = Pricing()
    assert (p.source, p.date) == (doc["source"], "2026-08")


def test_decimal_exactness(pricing: Pricing) -> None:
    assert pricing.cost(HAIKU_3, 1_000_000, 0) == D("0.25")
    assert pricing.cost("amazon.nova-micro-v1:0", 1, 1) == D("0.000000175")
    assert pricing.cost(HAIKU_3, 3, 7) == D("0.00000950")
    # a float sum would give 0.30000000000000004-style residue; Decimal does not
    assert sum((pricing.cost("amazon.titan-text-lite-v1", 0, 500_000) or D(0)
                for _ in range(3)), D(0)) == D("0.3")
    cost = pricing.cost(SONNET_37, 1234, 567, 8901, 2345)
    assert isinstance(cost, Decimal)
    assert cost == (1234 * D(3) + 567 * D(15) + 8901 * D("0.3") + 2345 * D("3.75")) / 10**6


@pytest.mark.parametrize("prefix", ["us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov."])
def test_regional_profiles_use_the_regional_rate(pricing: Pricing, prefix: str) -> None:
    assert pricing.price_for(prefix + SONNET_45) == Price(D("3.3"), D("16.5"))
    assert pricing.price_for(prefix + HAIKU_45) == Price(D("1.1"), D("5.5"))
    assert pricing.cost(prefix + HAIKU_45, 1_000_000, 1_000_000) == D("6.6")


def test_global_profile_uses_the_base_rate(pricing: Pricing) -> None:
    assert pricing.price_for("global." + SONNET_45) == Price(D(3), D(15))
    assert pricing.price_for("global." + HAIKU_45) == Price(D(1), D(5))
    assert pricing.cost("global." + HAIKU_45, 1_000_000, 1_000_000) == D(6)


def test_prefix_without_a_regional_rate_keeps_the_base_rate(pricing: Pricing) -> None:
    base = pricing.price_for(SONNET_37)
    assert base is not None and base.cache_read == D("0.3")
    for prefix in ("us.", "eu.", "apac.", "global."):
        assert pricing.price_for(prefix + SONNET_37) == base
    assert pricing.price_for("us.amazon.nova-pro-v1:0") == Price(D("0.8"), D("3.2"))


def test_arns(pricing: Pricing) -> None:
    fm = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_3}"
    assert pricing.cost(fm, 1_000_000, 0) == D("0.25")
    ip = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{SONNET_45}"
    assert pricing.price_for(ip) == Price(D("3.3"), D("16.5"))
    gp = f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/global.{HAIKU_45}"
    assert pricing.price_for(gp) == Price(D(1), D(5))
    gov = f"arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.{HAIKU_45}"
    assert pricing.price_for(gov) == Price(D("1.1"), D("5.5"))


def test_percent_encoded_ids(pricing: Pricing) -> None:
    encoded = "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2F" + HAIKU_3.replace(":", "%3A")
    assert pricing.price_for(encoded) == pricing.price_for(HAIKU_3)


def test_application_inference_profile_via_profiles(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing(profiles={APP_PROFILE: "eu." + HAIKU_45, "team-a": SONNET_37})
    assert p.price_for(APP_PROFILE) == Price(D("1.1"), D("5.5"))
    assert p.price_for("team-a") == Pricing().price_for(SONNET_37)
    assert warnings_of(caplog) == []
    assert Pricing().price_for(APP_PROFILE) is None  # hidden model, no mapping: unpriced


def test_profile_cycles_end_unpriced() -> None:
    p = Pricing(profiles={"a": "b", "b": "a"})
    assert p.price_for("a") is None


def test_overrides_beat_the_table() -> None:
    p = Pricing(overrides={
        HAIKU_3: Price(D(1), D(2)),
        "us." + SONNET_45: {"input": 9, "output": 9.5},
        HAIKU_45: {"input": "2", "output": "3", "regional": {"input": "4", "output": "5"}},
        "mistral.*": {"input": 0.1, "output": 0.1},
    })
    assert p.price_for(HAIKU_3) == Price(D(1), D(2))
    assert p.price_for(f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_3}") == Price(D(1), D(2))
    assert p.price_for("us." + SONNET_45) == Price(D(9), D("9.5"))  # exact prefixed id
    assert p.price_for("eu." + SONNET_45) == Price(D("3.3"), D("16.5"))  # table still applies
    assert p.price_for("us." + HAIKU_45) == Price(D(4), D(5))  # override on the base id
    assert p.price_for("global." + HAIKU_45) == Price(D(2), D(3))
    assert p.price_for("eu.mistral.mistral-7b-instruct-v0:2") == Price(D("0.1"), D("0.1"))
    assert p.cost("us." + SONNET_45, 1_000_000, 0) == D(9)


def test_glob_keys_longest_pattern_wins() -> None:
    p = Pricing({"models": {"acme.*": {"input": 1, "output": 1},
                            "acme.big-*": {"input": 5, "output": 5},
                            "acme.big-v1": {"input": 7, "output": 7}}})
    assert p.price_for("acme.small") == Price(D(1), D(1))
    assert p.price_for("acme.big-v2") == Price(D(5), D(5))
    assert p.price_for("acme.big-v1") == Price(D(7), D(7))


def test_default_rate_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing(default=Price(D(10), D(20)))
    for _ in range(3):
        assert p.cost("acme.unknown-v1", 1_000_000, 1_000_000) == D(30)
    assert p.price_for(HAIKU_3) == Price(D("0.25"), D("1.25"))
    msgs = warnings_of(caplog)
    assert len(msgs) == 1
    assert "unpriced model 'acme.unknown-v1'" in msgs[0] and "default rate" in msgs[0]
    p.price_for("acme.other")
    assert len(warnings_of(caplog)) == 2


def test_unpriced_is_none_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing()
    assert p.cost("acme.unknown-v1", 100, 100) is None
    assert p.price_for("us.acme.unknown-v1") is None
    assert p.price_for("acme.unknown-v1") is None
    msgs = warnings_of(caplog)
    assert len(msgs) == 2
    assert all(m.startswith("unpriced model") for m in msgs)


def test_warning_memory_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    p = Pricing()
    for i in range(1100):
        p.price_for(f"junk-{i}")
    assert len(p._warned) <= 1025
    assert "no further warnings" in warnings_of(caplog)[-1]


def test_cache_tokens(pricing: Pricing) -> None:
    # Sonnet family: cache rates from the seed
    assert pricing.cost(SONNET_37, 0, 0, 1_000_000, 0) == D("0.3")
    assert pricing.cost(SONNET_37, 0, 0, 0, 1_000_000) == D("3.75")
    # no cache rate in the seed: cache tokens at the input rate (never $0)
    assert pricing.cost(HAIKU_3, 0, 0, 1_000_000, 1_000_000) == D("0.5")
    assert pricing.cost("us." + HAIKU_45, 0, 0, 1_000_000, 0) == D("1.1")


def test_invalid_prices_and_counts() -> None:
    with pytest.raises(TypeError):
        Price(0.25, D(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Price(D(-1), D(1))
    with pytest.raises(ValueError, match="unknown keys"):
        Pricing(overrides={"x": {"input": 1, "ouput": 2}})
    with pytest.raises(ValueError, match="missing"):
        Pricing({"x": {"input": 1}})
    with pytest.raises(ValueError, match="finite"):
        Pricing({"x": {"input": "abc", "output": 1}})
    with pytest.raises(TypeError):
        Pricing({"x": {"input": True, "output": 1}})
    with pytest.raises(ValueError, match="integers"):
        Price(D(1), D(1)).cost(-1, 0)


def test_float_overrides_are_converted_exactly() -> None:
    p = Pricing(overrides={"x": {"input": 0.1, "output": 0.2}})
    assert p.price_for("x") == Price(D("0.1"), D("0.2"))
    assert p.cost("x", 3_000_000, 0) == D("0.3")


counts = st.integers(min_value=0, max_value=10**12)
rates = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
prices = st.builds(Price, rates, rates, st.none() | rates, st.none() | rates)
usage = st.tuples(counts, counts, counts, counts)


@given(prices, usage, usage)
def test_cost_is_additive(price: Price, a: tuple[int, ...], b: tuple[int, ...]) -> None:
    both = tuple(x + y for x, y in zip(a, b, strict=True))
    assert price.cost(*both) == price.cost(*a) + price.cost(*b)


@given(prices, usage, st.integers(min_value=0, max_value=3), st.integers(0, 10**9))
def test_cost_is_monotone(price: Price, u: tuple[int, ...], i: int, extra: int) -> None:
    more = list(u)
    more[i] += extra
    assert price.cost(*more) >= price.cost(*u) >= 0


@given(usage)
def test_packaged_cost_matches_the_formula(u: tuple[int, int, int, int]) -> None:
    cost = Pricing().cost("us." + SONNET_37, *u)
    assert cost == (u[0] * D(3) + u[1] * D(15) + u[2] * D("0.3") + u[3] * D("3.75")) / 10**6
