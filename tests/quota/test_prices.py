"""The price model: every billed dimension, exact arithmetic, and reservation >= bill."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.quota.prices import Price, Terms, usd
from bedrock_gateway.quota.usage import Usage

D = Decimal
# Claude Sonnet 4.5 on a geo profile (us./eu./jp./au.), AWS's on-demand rates.
SONNET_45_GEO = Price.from_mapping({
    "input": "3.3", "output": "16.5", "cache_read": "0.33", "cache_write": "4.125",
    "cache_write_1h": "6.6",
    "long_context": [{"above": 200_000, "input": "6.6", "output": "24.75", "cache_read": "0.66",
                      "cache_write": "8.25", "cache_write_1h": "13.2"}]})
NOVA_PRO = Price.from_mapping({
    "input": "0.8", "output": "3.2", "cache_read": "0.2", "cache_write": "0",
    "priority": {"input": "1.4", "output": "5.6", "cache_read": "0.35"},
    "flex": {"input": "0.4", "output": "1.6", "cache_read": "0.1"},
    "latency_optimized": {"input": "1", "output": "4"}})
NOVA_CANVAS = Price.from_mapping({"image": {
    "1024x1024/standard": "0.04", "1024x1024/premium": "0.06",
    "2048x2048/standard": "0.06", "2048x2048/premium": "0.08"}})
NOVA_REEL = Price.from_mapping({"video_second": "0.08"})


def bill(price: Price, usage: Usage, terms: Terms | None = None) -> Decimal:
    return usd(price.compiled().bill(usage, terms or Terms()))


def test_cache_read_is_billed_at_the_cache_read_rate() -> None:
    # The example: 50 new input tokens, 100k read from the cache, 500 output.
    assert bill(SONNET_45_GEO, Usage(50, 500, cache_read_tokens=100_000)) == D("0.041415")


def test_cache_writes_by_ttl() -> None:
    five = Usage(0, 0, cache_write_tokens=100_000)
    assert bill(SONNET_45_GEO, five) == D("0.4125")  # 1.25x input
    hour = Usage(0, 0, cache_write_tokens=100_000, cache_write_1h_tokens=100_000)
    assert bill(SONNET_45_GEO, hour) == D("0.66")  # 2x input
    mixed = Usage(0, 0, cache_write_tokens=3_000, cache_write_1h_tokens=1_000)
    assert bill(SONNET_45_GEO, mixed) == D("0.00825") + D("0.0066")


def test_long_context_rates_apply_to_the_whole_request_past_the_threshold() -> None:
    at = Usage(200_000, 1_000)
    assert bill(SONNET_45_GEO, at) == D("0.66") + D("0.0165")
    over = Usage(150_000, 1_000, cache_read_tokens=50_001)  # prompt 200,001 tokens
    assert bill(SONNET_45_GEO, over) == D("0.99") + D("0.02475") + D("0.03300066")


def test_service_tiers_and_latency_optimized() -> None:
    usage = Usage(1_000_000, 1_000_000)
    assert bill(NOVA_PRO, usage) == D("4")
    assert bill(NOVA_PRO, usage, Terms(tier="priority")) == D("7")
    assert bill(NOVA_PRO, usage, Terms(tier="flex")) == D("2")
    assert bill(NOVA_PRO, usage, Terms(latency="optimized")) == D("5")
    # What Bedrock reports it served wins over what was asked.
    served = Usage(1_000_000, 1_000_000, service_tier="default")
    assert bill(NOVA_PRO, served, Terms(tier="priority")) == D("4")


def test_a_tier_missing_a_rate_uses_the_standard_one_and_long_context_scales() -> None:
    price = Price.from_mapping({
        "input": "2", "output": "10", "priority": {"input": "3.5"},
        "long_context": [{"above": 100, "input": "4", "output": "15"}]})
    assert bill(price, Usage(100, 1_000_000), Terms(tier="priority")) == D("10.00035")
    # Long context under a tier: the tier's rate x the long-context ratio (3.5 x 2, 10 x 1.5).
    assert bill(price, Usage(1_000_000, 1_000_000), Terms(tier="priority")) == D("22")
    assert bill(price, Usage(1_000_000, 0, cache_read_tokens=1)) == D("4.000004")


def test_images_by_size_and_quality() -> None:
    canvas = NOVA_CANVAS.compiled()
    one = Usage(images=1)
    assert usd(canvas.bill(one, Terms(image_key="1024x1024/standard"))) == D("0.04")
    assert usd(canvas.bill(Usage(images=3), Terms(image_key="1280x720/premium"))) == D("0.24")
    assert usd(canvas.bill(one, Terms(image_key="512x512/premium"))) == D("0.06")
    assert usd(canvas.bill(one, Terms(image_key="4096x4096/standard"))) == D("0.08")  # dearest


def test_video_is_billed_per_second() -> None:
    assert usd(NOVA_REEL.compiled().bill(Usage(), Terms(video_seconds=6))) == D("0.48")


def test_rates_are_exact_decimals_and_bad_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 12 decimal places"):
        Price.from_mapping({"input": "0.0000000000001", "output": "1"})
    with pytest.raises(ValueError, match=r"x\.input: a price must be a finite number"):
        Price.from_mapping({"input": "-1", "output": "1"}, "x")
    with pytest.raises(ValueError, match="unknown keys"):
        Price.from_mapping({"input": 1, "output": 1, "cache_write_2h": 1})
    with pytest.raises(ValueError, match="no price"):
        Price.from_mapping({})
    with pytest.raises(TypeError):
        Price(1.5, D(1))  # type: ignore[arg-type]


def test_legacy_cost_signature() -> None:
    assert SONNET_45_GEO.cost(1_000, 100) == D("0.00495")
    assert SONNET_45_GEO.cost(0, 0, 0, 1_000, cache_write_1h_tokens=1_000) == D("0.0066")


_RATE = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)


@st.composite
def prices(draw: st.DrawFn) -> Price:
    def rates() -> dict[str, str]:
        keys = draw(st.sets(st.sampled_from(
            ["input", "output", "cache_read", "cache_write", "cache_write_1h"])))
        return {k: str(draw(_RATE)) for k in keys}

    data: dict[str, object] = {"input": str(draw(_RATE)), "output": str(draw(_RATE)), **rates()}
    for tier in ("priority", "flex", "latency_optimized"):
        if draw(st.booleans()):
            data[tier] = rates()
    if draw(st.booleans()):
        data["long_context"] = [{"above": draw(st.integers(0, 5_000)), **rates()}]
    if draw(st.booleans()):
        data["image"] = {"*": str(draw(_RATE)), "1024x1024/premium": str(draw(_RATE))}
    return Price.from_mapping(data)


@settings(max_examples=400, deadline=None)
@given(price=prices(), data=st.data())
def test_the_reservation_is_never_below_the_bill(price: Price, data: st.DataObject) -> None:
    """For every usage a response can report within the request's bounds, reserved >= billed."""
    tier = data.draw(st.sampled_from([None, "priority", "flex"]))
    latency = data.draw(st.sampled_from([None, "optimized"]))
    cache_1h = data.draw(st.booleans())
    images = data.draw(st.integers(0, 5))
    terms = Terms(tier=tier, latency=latency, cache_1h=cache_1h, images=images,
                  image_key=data.draw(st.sampled_from([None, "1024x1024/premium", "9x9/x"])))
    input_bound = data.draw(st.integers(0, 10_000))
    output_bound = data.draw(st.integers(0, 10_000))
    prompt = data.draw(st.integers(0, input_bound))
    read = data.draw(st.integers(0, prompt))
    write = data.draw(st.integers(0, prompt - read))
    usage = Usage(
        input_tokens=prompt - read - write, output_tokens=data.draw(st.integers(0, output_bound)),
        cache_read_tokens=read, cache_write_tokens=write,
        cache_write_1h_tokens=data.draw(st.integers(0, write)) if cache_1h else 0,
        # Bedrock serves what was asked, or falls back to the standard tier.
        service_tier=data.draw(st.sampled_from([tier, None, "default"])),
        latency=data.draw(st.sampled_from([latency, None, "standard"])),
        images=data.draw(st.integers(0, images)))
    rates = price.compiled()
    assert rates.worst(input_bound, output_bound, terms) >= rates.bill(usage, terms)
