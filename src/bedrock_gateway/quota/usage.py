"""Token and guardrail-unit usage read from Bedrock responses, buffered or streamed.

:func:`usage_from_response` reads a whole (non-stream) successful answer; :class:`StreamUsage`
watches event-stream frames go by and parses only the few that can carry usage. Neither ever
raises: usage extraction must not break a response, so malformed input gives ``None`` (or what
was seen so far).

Conventions:

- ``input_tokens`` excludes cached prompt tokens (as Converse reports it), so
  :attr:`Usage.total_tokens` = input + output + cache read + cache write counts each token once.
- InvokeModel: the family is recognised by the *shape* of the body, not the model id (an
  application-inference-profile ARN does not name its family). The token-count headers are
  Bedrock's billing numbers and win over the body for input/output. When the body reports cache
  tokens but there are no cache headers and ``header input == body input + cache read + cache
  write``, the header counted the cached prefix as input: the body's split is kept (same total).
  Cache headers, when present, win over the body's cache fields.
- InvokeModelWithResponseStream: ``amazon-bedrock-invocationMetrics`` (last chunk) is merged with
  the model-native usage seen in the stream (Anthropic ``message_start``, Nova ``metadata``) by
  the same rule; without metrics the native usage seen so far is the partial answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.eventstream import Frame

__all__ = ["StreamUsage", "Usage", "usage_from_response"]

_IN_HEADER = "x-amzn-bedrock-input-token-count"
_OUT_HEADER = "x-amzn-bedrock-output-token-count"
_READ_HEADER = "x-amzn-bedrock-cache-read-input-token-count"
_WRITE_HEADER = "x-amzn-bedrock-cache-write-input-token-count"
_METRICS = "amazon-bedrock-invocationMetrics"
_METRICS_BYTES = _METRICS.encode()
_FREE_UNITS = "sensitiveInformationPolicyFreeUnits"
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


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call consumed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    guardrail_units: int = 0  # ApplyGuardrail / InvokeGuardrailChecks: policy or text units

    @property
    def total_tokens(self) -> int:
        cached = self.cache_read_tokens + self.cache_write_tokens
        return self.input_tokens + self.output_tokens + cached


def _int(value: object) -> int | None:
    """A JSON count: a non-negative int (not a bool), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    value = value.strip() if isinstance(value, str) else ""
    return int(value) if value.isascii() and value.isdigit() else None


def _usage(
    fields: Mapping[str, Any], inp: str, out: str, read: str = "", write: str = ""
) -> Usage | None:
    """``Usage`` from the named fields of ``fields``; ``None`` if neither token count is there."""
    i, o = _int(fields.get(inp)), _int(fields.get(out))
    if i is None and o is None:
        return None
    cache = (_int(fields.get(read)) or 0) if read else 0, _int(fields.get(write)) or 0
    return Usage(i or 0, o or 0, cache[0], cache[1] if write else 0)


def _converse_usage(usage: object) -> Usage | None:
    names = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
    return _usage(usage, *names) if isinstance(usage, dict) else None


def _native_usage(body: object) -> Usage | None:
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
            return _usage(usage, "input_tokens", "output_tokens", "cache_read_input_tokens",
                          "cache_creation_input_tokens")
        found = _usage(  # Nova (and Converse-shaped bodies)
            usage, "inputTokens", "outputTokens", "cacheReadInputTokenCount",
            "cacheWriteInputTokenCount",
        )
        return found or _converse_usage(usage)
    if "prompt_token_count" in body or "generation_token_count" in body:  # Llama
        return _usage(body, "prompt_token_count", "generation_token_count")
    if "inputTextTokenCount" in body:  # Titan text (results[].tokenCount) or Titan embed
        results = body.get("results")
        outputs = [
            _int(r.get("tokenCount")) or 0
            for r in (results if isinstance(results, list) else ())
            if isinstance(r, dict)
        ]
        inputs = _int(body.get("inputTextTokenCount")) or 0
        return Usage(input_tokens=inputs, output_tokens=sum(outputs))
    return None


def _merge(
    native: Usage | None, billed_in: int | None, billed_out: int | None, read: int | None,
    write: int | None,
) -> Usage | None:
    """Combine model-native usage with Bedrock's own counts (headers or invocation metrics)."""
    if billed_in is None and billed_out is None and read is None and write is None:
        return native
    base = native or Usage()
    cache_read = base.cache_read_tokens if read is None else read
    cache_write = base.cache_write_tokens if write is None else write
    if billed_in is None:
        input_tokens = base.input_tokens
    elif (
        read is None
        and write is None
        and native is not None
        and billed_in - cache_read - cache_write == native.input_tokens
    ):
        input_tokens = native.input_tokens  # the billed count included the cached prefix
    else:
        input_tokens = billed_in
    output_tokens = base.output_tokens if billed_out is None else billed_out
    return Usage(input_tokens, output_tokens, cache_read, cache_write)


def _guardrail_units(usage: object, checks: bool) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    if checks:  # InvokeGuardrailChecks: {check: {"textUnits": n}}
        values = [v.get("textUnits") if isinstance(v, dict) else None for v in usage.values()]
    else:  # ApplyGuardrail: {"topicPolicyUnits": n, ...}; free units are not billed
        values = [v for k, v in usage.items() if k != _FREE_UNITS]
    return Usage(guardrail_units=sum(_int(v) or 0 for v in values))


def _from_response(operation: str, headers: Mapping[str, str], body: bytes) -> Usage | None:
    if operation == "CountTokens":
        return Usage()
    if operation in _ASYNC:
        return None
    if operation == "InvokeModel":
        billed_in = _header_int(headers, _IN_HEADER)
        billed_out = _header_int(headers, _OUT_HEADER)
        read, write = _header_int(headers, _READ_HEADER), _header_int(headers, _WRITE_HEADER)
        native = None
        # The body only matters when a header is missing or it may hold cache counts ("cache_",
        # "Cache"): large bodies (embeddings) whose numbers the headers all give are not parsed.
        if billed_in is None or billed_out is None or b"ache" in body:
            native = _native_usage(json.loads(body))
        return _merge(native, billed_in, billed_out, read, write)
    if operation not in ("Converse", "ApplyGuardrail", "InvokeGuardrailChecks"):
        return None
    data = json.loads(body)
    if not isinstance(data, dict):
        return None
    if operation == "Converse":
        return _converse_usage(data.get("usage"))
    return _guardrail_units(data.get("usage"), operation == "InvokeGuardrailChecks")


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
    """

    __slots__ = ("_converse", "_metrics", "_native", "operation")

    def __init__(self, operation: str, model_id: str | None) -> None:
        self.operation = operation
        self._converse: Usage | None = None
        self._native: Usage | None = None
        self._metrics: dict[str, Any] | None = None

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
        data = frame.json()
        if isinstance(data, dict):
            found = _converse_usage(data.get("usage"))
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
        native = _native_usage(data)
        if native is not None:
            self._native = native
        metrics = data.get(_METRICS)
        if isinstance(metrics, dict):
            self._metrics = metrics

    @property
    def usage(self) -> Usage | None:
        """What was seen so far (None until any usage appears)."""
        if self.operation == "ConverseStream":
            return self._converse
        get = (self._metrics or {}).get
        counts = ("inputTokenCount", "outputTokenCount", "cacheReadInputTokenCount",
                  "cacheWriteInputTokenCount")
        return _merge(self._native, *(_int(get(name)) for name in counts))
