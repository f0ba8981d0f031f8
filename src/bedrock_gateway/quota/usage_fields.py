"""Where each Bedrock response keeps its usage: the readers :mod:`bedrock_gateway.quota.usage`
applies to parsed bodies, headers and invocation metrics, and the :class:`Usage` they build.

Pure functions of already-parsed JSON; the conventions are in ``usage``'s docstring. They may
raise on odd input: their callers catch everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "Usage",
    "converse_usage",
    "count",
    "guardrail_usage",
    "header_count",
    "header_text",
    "merge_counts",
    "native_usage",
    "with_options",
]

# ApplyGuardrail usage members that are not billed units
_NOT_BILLED = frozenset({"sensitiveInformationPolicyFreeUnits", "automatedReasoningPolicies"})


@dataclass(slots=True)
class Usage:
    """What one call consumed. A value: treat it as read-only (not frozen, because a frozen
    dataclass of ten fields costs 1.3 µs more to build, once per call)."""

    input_tokens: int = 0  # prompt tokens not read from or written to the cache
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # every cache write, whatever its TTL
    guardrail_units: int = 0  # ApplyGuardrail / InvokeGuardrailChecks: policy or text units
    cache_write_1h_tokens: int = 0  # of ``cache_write_tokens``, those written with a 1h TTL
    service_tier: str | None = None  # as Bedrock reported it: "priority", "default", "flex"
    latency: str | None = None  # "optimized" when Bedrock served the latency-optimized model
    images: int = 0  # images generated (image models)
    # ApplyGuardrail: billed units per policy, e.g. (("contentPolicyUnits", 3), ...), sorted by
    # key; policies that billed nothing (0 units, free units) are left out
    guardrail_policy_units: tuple[tuple[str, int], ...] = ()

    @property
    def total_tokens(self) -> int:
        cached = self.cache_read_tokens + self.cache_write_tokens
        return self.input_tokens + self.output_tokens + cached


def count(value: object) -> int | None:
    """A JSON count: a non-negative int (not a bool), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def header_count(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    value = value.strip() if isinstance(value, str) else ""
    return int(value) if value.isascii() and value.isdigit() else None


def header_text(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return (value.strip() or None) if isinstance(value, str) else None


def _member(value: object, key: str) -> str | None:
    """``value[key]`` when ``value`` is an object and that member a non-empty string."""
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None


def _usage(
    fields: Mapping[str, Any], inp: str, out: str, read: str = "", write: str = ""
) -> Usage | None:
    """``Usage`` from the named fields of ``fields``; ``None`` if neither token count is there."""
    i, o = count(fields.get(inp)), count(fields.get(out))
    if i is None and o is None:
        return None
    cache = (count(fields.get(read)) or 0) if read else 0, count(fields.get(write)) or 0
    return Usage(i or 0, o or 0, cache[0], cache[1] if write else 0)


def converse_usage(data: object) -> Usage | None:
    """Usage of a Converse answer or ConverseStream ``metadata`` event (``data`` is either)."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    i, o = count(usage.get("inputTokens")), count(usage.get("outputTokens"))
    if i is None and o is None:
        return None
    write = count(usage.get("cacheWriteInputTokens"))
    details = usage.get("cacheDetails")
    one_hour = 0
    if isinstance(details, list):  # only answers that wrote to the cache carry it
        entries = [d for d in details if isinstance(d, dict)]
        if write is None:
            write = sum(count(d.get("inputTokens")) or 0 for d in entries)
        one_hour = sum(count(d.get("inputTokens")) or 0 for d in entries
                       if d.get("ttl") == "1h")
    write = write or 0
    tier = data.get("serviceTier")
    performance = data.get("performanceConfig")
    return Usage(i or 0, o or 0, count(usage.get("cacheReadInputTokens")) or 0, write,
                 cache_write_1h_tokens=min(one_hour, write),
                 service_tier=_member(tier, "type") if tier is not None else None,
                 latency=_member(performance, "latency") if performance is not None else None)


def _anthropic_usage(usage: Mapping[str, Any]) -> Usage | None:
    found = _usage(usage, "input_tokens", "output_tokens", "cache_read_input_tokens",
                   "cache_creation_input_tokens")
    creation = usage.get("cache_creation")
    if found is None or not isinstance(creation, dict):
        return found
    one_hour = count(creation.get("ephemeral_1h_input_tokens")) or 0
    return replace(found, cache_write_1h_tokens=min(one_hour, found.cache_write_tokens))


def native_usage(body: object) -> Usage | None:
    """Usage in a model-native InvokeModel body (or one streamed chunk), found by its shape."""
    if not isinstance(body, dict):
        return None
    message = body.get("message")
    if body.get("type") == "message_start" and isinstance(message, dict):
        body = message  # Anthropic stream head: the message carries the prompt's usage
    metadata = body.get("metadata")
    usage = body.get("usage")
    if not isinstance(usage, dict) and isinstance(metadata, dict):
        usage = metadata.get("usage")  # Nova stream tail
    if isinstance(usage, dict):
        if "input_tokens" in usage or "output_tokens" in usage:  # Anthropic Messages
            return _anthropic_usage(usage)
        found = _usage(  # Nova (and Converse-shaped bodies)
            usage, "inputTokens", "outputTokens", "cacheReadInputTokenCount",
            "cacheWriteInputTokenCount",
        )
        return found or converse_usage({"usage": usage})
    if "prompt_token_count" in body or "generation_token_count" in body:  # Llama
        return _usage(body, "prompt_token_count", "generation_token_count")
    if "inputTextTokenCount" in body:  # Titan text (results[].tokenCount) or Titan embed
        results = body.get("results")
        outputs = [
            count(r.get("tokenCount")) or 0
            for r in (results if isinstance(results, list) else ())
            if isinstance(r, dict)
        ]
        inputs = count(body.get("inputTextTokenCount")) or 0
        return Usage(input_tokens=inputs, output_tokens=sum(outputs))
    images = body.get("images")
    if isinstance(images, list):  # Titan Image Generator, Nova Canvas, Stability
        return Usage(images=len(images))
    return None


def merge_counts(native: Usage | None, counts: tuple[int | None, ...]) -> Usage | None:
    """Combine model-native usage with Bedrock's own ``(input, output, cache read, cache write)``
    counts (headers or invocation metrics): each count Bedrock gives wins."""
    if all(count is None for count in counts):
        return native
    billed_in, billed_out, read, write = counts
    base = native or Usage()
    cache_write = base.cache_write_tokens if write is None else write
    return replace(
        base,
        input_tokens=base.input_tokens if billed_in is None else billed_in,
        output_tokens=base.output_tokens if billed_out is None else billed_out,
        cache_read_tokens=base.cache_read_tokens if read is None else read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(base.cache_write_1h_tokens, cache_write),
    )


def with_options(usage: Usage | None, tier: str | None, latency: str | None) -> Usage | None:
    if usage is None or (tier is None and latency is None):
        return usage
    return replace(usage, service_tier=tier or usage.service_tier,
                   latency=latency or usage.latency)


def guardrail_usage(usage: object, checks: bool) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    if checks:  # InvokeGuardrailChecks: {check: {"textUnits": n}}, by check name
        by_check = sorted((name, n) for name, value in usage.items()
                          if isinstance(name, str) and isinstance(value, dict)
                          and (n := count(value.get("textUnits"))))
        return Usage(guardrail_units=sum(n for _, n in by_check),
                     guardrail_policy_units=tuple(by_check))
    # ApplyGuardrail: {"topicPolicyUnits": n, ...}
    units = sorted(
        (key, n) for key, value in usage.items()
        if key not in _NOT_BILLED and isinstance(key, str) and (n := count(value))
    )
    return Usage(guardrail_units=sum(n for _, n in units), guardrail_policy_units=tuple(units))
