"""Token and guardrail-unit usage read from Bedrock responses, buffered or streamed.

:func:`usage_from_response` reads a whole (non-stream) successful answer; :class:`StreamUsage`
watches event-stream frames go by and parses only the few that can carry usage. Neither ever
raises: usage extraction must not break a response, so malformed input gives ``None`` (or what
was seen so far).

Conventions (Bedrock's billing convention, which every operation and family follows):

- ``input_tokens`` excludes cached prompt tokens everywhere — Converse ``inputTokens``, the
  ``X-Amzn-Bedrock-Input-Token-Count`` header, stream ``invocationMetrics.inputTokenCount``,
  Anthropic ``input_tokens`` — so :attr:`Usage.total_tokens` = input + output + cache read +
  cache write counts each token once. ``cache_write_1h_tokens`` is the part of
  ``cache_write_tokens`` written with a 1h TTL (Converse ``cacheDetails``, Anthropic
  ``cache_creation.ephemeral_1h_input_tokens``).
- ``service_tier`` / ``latency`` are what Bedrock reported: Converse(Stream) ``serviceTier.type``
  and ``performanceConfig.latency``; InvokeModel(WithResponseStream) the
  ``X-Amzn-Bedrock-Service-Tier`` and ``X-Amzn-Bedrock-PerformanceConfig-Latency`` response
  headers. ``None`` when not reported.
- InvokeModel: the family is recognised by the *shape* of the body, not the model id (an
  application-inference-profile ARN does not name its family). The token-count headers
  (input, output, cache read, cache write) are Bedrock's billing numbers and each wins over the
  body's count; the body gives what the headers lack. Image models' bodies give ``images``
  (the length of ``images``) and no tokens.
- InvokeModelWithResponseStream: ``amazon-bedrock-invocationMetrics`` (last chunk) is merged with
  the model-native usage seen in the stream (Anthropic ``message_start``, Nova ``metadata``) by
  the same rule; without metrics the native usage seen so far is the partial answer.
- ApplyGuardrail: ``guardrail_policy_units`` holds every positive numeric ``usage`` member but
  ``sensitiveInformationPolicyFreeUnits`` (free) and ``automatedReasoningPolicies`` (a count of
  policies, not units), sorted by key; ``guardrail_units`` is their total.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from bedrock_gateway.eventstream import Frame
from bedrock_gateway.quota.usage_fields import (
    Usage,
    converse_usage,
    count,
    guardrail_usage,
    header_count,
    header_text,
    merge_counts,
    native_usage,
    with_options,
)

__all__ = ["StreamUsage", "Usage", "usage_from_response"]

# (input, output, cache read, cache write): InvokeModel headers and stream invocation metrics
_COUNT_HEADERS = (
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
)
_METRIC_COUNTS = (
    "inputTokenCount",
    "outputTokenCount",
    "cacheReadInputTokenCount",
    "cacheWriteInputTokenCount",
)
_TIER = "x-amzn-bedrock-service-tier"
_LATENCY = "x-amzn-bedrock-performanceconfig-latency"
_METRICS = "amazon-bedrock-invocationMetrics"
_METRICS_BYTES = _METRICS.encode()
_ASYNC = frozenset({"StartAsyncInvoke", "GetAsyncInvoke", "ListAsyncInvokes"})


def _event_type_header(name: str) -> bytes:
    # How ``:event-type: <name>`` is encoded in a frame's header block (string header, type 7).
    value = name.encode()
    return b"\x0b:event-type\x07" + len(value).to_bytes(2, "big") + value


_METADATA_HEADER = _event_type_header("metadata")
_CHUNK_HEADER = _event_type_header("chunk")
# The base64 text of a chunk's ``bytes`` member (base64 never contains a quote or a backslash).
_BYTES_MEMBER = re.compile(rb'"bytes"\s*:\s*"([A-Za-z0-9+/=]*)"')


def _base64_needles(text: bytes) -> tuple[bytes, ...]:
    """What the base64 of any data containing ``text`` must contain, for each of the three
    alignments of ``text`` against base64's 3-byte groups (the characters that mix in
    neighbouring bytes are cut off). Finding none proves ``text`` is not in the data."""
    needles = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + text)
        needles.append(encoded[(0, 2, 3)[shift] : 4 * ((shift + len(text)) // 3)])
    return tuple(needles)


# Chunks worth decoding: the invocation metrics, or an Anthropic ``message_start``.
_CHUNK_NEEDLES = _base64_needles(_METRICS_BYTES) + _base64_needles(b'"message_start"')


def _from_response(operation: str, headers: Mapping[str, str], body: bytes) -> Usage | None:
    if operation == "CountTokens":
        return Usage()
    if operation in _ASYNC:
        return None
    if operation == "InvokeModel":
        counts = tuple(header_count(headers, name) for name in _COUNT_HEADERS)
        native = None
        # The body only matters when a header is missing or it may hold cache counts ("cache_",
        # "Cache") or images: large bodies (embeddings) whose numbers the headers all give are
        # not parsed.
        if counts[0] is None or counts[1] is None or b"ache" in body or b'"images"' in body:
            native = native_usage(json.loads(body))
        usage = merge_counts(native, counts)
        tier, latency = header_text(headers, _TIER), header_text(headers, _LATENCY)
        return with_options(usage, tier, latency)
    if operation not in ("Converse", "ApplyGuardrail", "InvokeGuardrailChecks"):
        return None
    data = json.loads(body)
    if not isinstance(data, dict):
        return None
    if operation == "Converse":
        return converse_usage(data)
    return guardrail_usage(data.get("usage"), operation == "InvokeGuardrailChecks")


def usage_from_response(
    operation: str, model_id: str | None, headers: Mapping[str, str], body: bytes
) -> Usage | None:
    """Usage of a buffered (non-stream) successful response; None if none can be found.

    ``headers`` are the response headers with lower-cased names. ``model_id`` is not needed to
    read usage (families are recognised by body shape) and is accepted for the callers' sake.
    """
    try:
        return _from_response(operation, headers, body)
    except Exception:  # malformed JSON, deep nesting, odd types: never break the response
        return None


class StreamUsage:
    """Reads usage from event-stream frames as they pass (never buffers the stream).

    Only frames that can carry usage are parsed: ConverseStream ``metadata`` events, and for
    InvokeModelWithResponseStream the ``chunk`` events whose decoded bytes mention
    ``amazon-bedrock-invocationMetrics`` or are an Anthropic ``message_start``. The event type
    is matched on the raw header block, and a chunk is base64-decoded only when its base64 text
    holds one of the encodings of those strings: other frames cost a few byte searches.

    ``headers`` are the stream response's headers (any case): InvokeModelWithResponseStream
    reports the service tier and latency there.
    """

    __slots__ = ("_converse", "_latency", "_metrics", "_native", "_tier", "operation")

    def __init__(
        self, operation: str, model_id: str | None, headers: Mapping[str, str] | None = None
    ) -> None:
        self.operation = operation
        self._converse: Usage | None = None
        self._native: Usage | None = None
        self._metrics: dict[str, Any] | None = None
        self._tier: str | None = None
        self._latency: str | None = None
        try:
            if headers:
                lowered = {str(k).lower(): v for k, v in headers.items()}
                self._tier = header_text(lowered, _TIER)
                self._latency = header_text(lowered, _LATENCY)
        except Exception:  # odd header values never break the stream
            pass

    def observe(self, frame: Frame) -> None:
        try:
            if self.operation == "ConverseStream":
                self._observe_converse(frame)
            elif self.operation == "InvokeModelWithResponseStream":
                self._observe_chunk(frame)
        except Exception:  # a malformed frame never breaks the stream
            pass

    def _observe_converse(self, frame: Frame) -> None:
        raw = frame.raw
        hlen = int.from_bytes(raw[4:8], "big")
        if raw.find(_METADATA_HEADER, 12, 12 + hlen) < 0:
            return
        found = converse_usage(frame.json())
        if found is not None:
            self._converse = found

    def _observe_chunk(self, frame: Frame) -> None:
        raw = frame.raw
        hlen = int.from_bytes(raw[4:8], "big")
        if raw.find(_CHUNK_HEADER, 12, 12 + hlen) < 0:
            return
        start, end = 12 + hlen, len(raw) - 4
        for needle in _CHUNK_NEEDLES:
            if raw.find(needle, start, end) >= 0:
                break
        else:
            return  # cannot hold usage: skip without decoding
        match = _BYTES_MEMBER.search(raw, start, end)
        inner = binascii.a2b_base64(match.group(1)) if match else b""
        if _METRICS_BYTES not in inner and b'"message_start"' not in inner:
            return
        data = json.loads(inner)
        if not isinstance(data, dict):
            return
        native = native_usage(data)
        if native is not None:
            self._native = native
        metrics = data.get(_METRICS)
        if isinstance(metrics, dict):
            self._metrics = metrics

    @property
    def usage(self) -> Usage | None:
        """What was seen so far (None until any usage appears)."""
        if self.operation == "ConverseStream":
            found = self._converse
            if found is None:
                return None
            return with_options(found, found.service_tier or self._tier,
                                 found.latency or self._latency)
        get = (self._metrics or {}).get
        counts = tuple(count(get(name)) for name in _METRIC_COUNTS)
        return with_options(merge_counts(self._native, counts), self._tier, self._latency)
