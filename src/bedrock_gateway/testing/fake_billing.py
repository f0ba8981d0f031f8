"""What the fake bills, and how it reports it: prompt-cache points and their TTLs, service
tiers and latency-optimized inference.

Prompt caching (deterministic, shared by Converse and the native Anthropic / Nova bodies):

- A cache point (Converse ``cachePoint: {"type": "default", "ttl"?}``, Anthropic
  ``cache_control: {"type": "ephemeral", "ttl"?}``) closes a prefix of the prompt. Everything up
  to the *last* cache point is the cached part; the tokens after it are plain input.
- The longest prefix (ending at a cache point) that an earlier request wrote since the last
  reset — same base model, same text — is *read*; the tokens from there to the last cache
  point are *written*. Every prefix of the request counts as written afterwards. TTLs do not
  expire in the fake.
- TTL ``"5m"`` (the default) or ``"1h"``; anything else is a ValidationException. Written
  tokens are split between TTLs **by prefix position**: the tokens between the previous cache
  point (or the read prefix) and a cache point take that point's TTL. As Anthropic requires, a
  ``"1h"`` point may not follow a ``"5m"`` point (ValidationException).
- Token boundaries are ``ceil(chars / 4)`` of each prefix, so the parts always add up:
  ``input + cache_read + cache_write`` = the prompt's tokens.

Service tier (``serviceTier.type`` / ``X-Amzn-Bedrock-Service-Tier``) and latency
(``performanceConfig.latency`` / ``X-Amzn-Bedrock-PerformanceConfig-Latency``) are validated
against botocore's enums and echoed in the answer only when the request sets them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from bedrock_gateway.errors import ValidationError

__all__ = [
    "LATENCIES",
    "SERVICE_TIERS",
    "TTLS",
    "CachePoint",
    "PromptCache",
    "PromptUsage",
    "anthropic_ttl",
    "cache_details",
    "check_order",
    "converse_options",
    "converse_ttl",
    "enum_error",
    "invoke_options",
    "split_prompt",
]

TTLS = ("5m", "1h")
SERVICE_TIERS = ("priority", "default", "flex", "reserved")
LATENCIES = ("standard", "optimized")
TIER_HEADER = "X-Amzn-Bedrock-Service-Tier"
LATENCY_HEADER = "X-Amzn-Bedrock-PerformanceConfig-Latency"


def enum_error(value: object, where: str, allowed: Iterable[str]) -> ValidationError:
    """Bedrock's (Coral's) message for a value outside a modelled enum."""
    return ValidationError(
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy"
        f" constraint: Member must satisfy enum value set: [{', '.join(allowed)}]"
    )


class CachePoint(NamedTuple):
    """A cache point: the prompt's tokens before it, the hash of that prefix, its TTL."""

    tokens: int
    key: str
    ttl: str


class PromptUsage(NamedTuple):
    """How a prompt's tokens are billed. ``input`` excludes the cached tokens."""

    input: int
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    cached: bool = False  # the prompt had a cache point (cache fields are reported)

    @property
    def cache_write_5m(self) -> int:
        return self.cache_write - self.cache_write_1h


def _ttl(value: object, where: str) -> str:
    if value is None:
        return "5m"
    if value not in TTLS:
        raise enum_error(value, where, TTLS)
    return str(value)


def converse_ttl(block: object) -> str:
    """The TTL of a Converse ``cachePoint`` block (validated like Bedrock)."""
    if not isinstance(block, dict) or block.get("type") is None:
        raise ValidationError("1 validation error detected: Value null at 'cachePoint.type'"
                              " failed to satisfy constraint: Member must not be null")
    if block["type"] != "default":
        raise enum_error(block["type"], "cachePoint.type", ("default",))
    return _ttl(block.get("ttl"), "cachePoint.ttl")


def anthropic_ttl(control: object) -> str:
    """The TTL of an Anthropic ``cache_control`` object."""
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise ValidationError("cache_control.type: Input should be 'ephemeral'")
    ttl = control.get("ttl")
    if ttl is not None and ttl not in TTLS:
        raise ValidationError("cache_control.ttl: Input should be '5m' or '1h'")
    return "5m" if ttl is None else str(ttl)


def check_order(points: Sequence[CachePoint], ttl: str) -> None:
    """A 1h cache point after a 5m one is refused (longer TTLs must come first)."""
    if ttl == "1h" and any(p.ttl == "5m" for p in points):
        raise ValidationError(
            "A cache point with ttl '1h' must not come after a cache point with ttl '5m'."
        )


class PromptCache:
    """Which cache-point prefixes were already written (first use writes, later uses read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[str] = set()

    def longest_seen(self, keys: Sequence[str]) -> int:
        """Index of the last of ``keys`` already written (-1: none); all are written now."""
        with self._lock:
            hit = next((i for i in range(len(keys) - 1, -1, -1) if keys[i] in self._keys), -1)
            self._keys.update(keys)
            return hit

    def seen(self, key: str) -> bool:
        return self.longest_seen([key]) == 0

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


def split_prompt(
    total: int, points: Sequence[CachePoint], cache: PromptCache | None
) -> PromptUsage:
    """Split a prompt of ``total`` tokens with these cache points (see the module docstring).
    Without a ``cache`` every prefix is written."""
    if not points:
        return PromptUsage(total)
    hit = cache.longest_seen([p.key for p in points]) if cache is not None else -1
    read = points[hit].tokens if hit >= 0 else 0
    start, one_hour = read, 0
    for point in points[hit + 1 :]:
        if point.ttl == "1h":
            one_hour += max(0, point.tokens - start)
        start = max(start, point.tokens)
    cached = points[-1].tokens
    return PromptUsage(total - cached, read, cached - read, one_hour, cached=True)


def cache_details(usage: PromptUsage) -> list[dict[str, Any]]:
    """Converse ``usage.cacheDetails``: one entry per TTL written, 1h before 5m."""
    entries = (("1h", usage.cache_write_1h), ("5m", usage.cache_write_5m))
    return [{"ttl": ttl, "inputTokens": n} for ttl, n in entries if n > 0]


def converse_options(request: Mapping[str, Any]) -> dict[str, Any]:
    """The ``serviceTier`` / ``performanceConfig`` a Converse answer echoes (validated)."""
    echoed: dict[str, Any] = {}
    tier = request.get("serviceTier")
    if tier is not None:
        value = tier.get("type") if isinstance(tier, dict) else tier
        if value not in SERVICE_TIERS:
            raise enum_error(value, "serviceTier.type", SERVICE_TIERS)
        echoed["serviceTier"] = {"type": value}
    config = request.get("performanceConfig")
    if config is not None:
        value = config.get("latency", "standard") if isinstance(config, dict) else config
        if value not in LATENCIES:
            raise enum_error(value, "performanceConfig.latency", LATENCIES)
        echoed["performanceConfig"] = {"latency": value}
    return echoed


def invoke_options(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The tier / latency response headers InvokeModel(WithResponseStream) echoes, from the
    request headers (lower-cased names), validated."""
    echoed: list[tuple[str, str]] = []
    for name, allowed, where in (
        (TIER_HEADER, SERVICE_TIERS, "serviceTier"),
        (LATENCY_HEADER, LATENCIES, "performanceConfigLatency"),
    ):
        value = headers.get(name.lower())
        if value is None:
            continue
        if value not in allowed:
            raise enum_error(value, where, allowed)
        echoed.append((name, value))
    return echoed
