"""Model-native InvokeModel / InvokeModelWithResponseStream answers, one builder per family.

Pure functions of (model id, request body): no server needed to test them. Request bodies are
validated the way Bedrock validates them (a missing required key is a 400 ValidationException),
responses carry each family's own field names (see ``bedrock-wire.md``), and streamed answers
are ``chunk`` event frames whose base64 ``bytes`` hold the family's streaming JSON, the last one
with ``amazon-bedrock-invocationMetrics``.

Billing convention (Bedrock's): input token counts exclude cached tokens everywhere — the
``X-Amzn-Bedrock-Input-Token-Count`` header, ``invocationMetrics.inputTokenCount`` and each
family's body; cache reads and writes are reported beside them (headers
``X-Amzn-Bedrock-Cache-Read/Write-Input-Token-Count``, metrics ``cacheRead/WriteInputTokenCount``)
when the prompt has a cache point. Image and rerank models (``fake_media``) report no tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.eventstream import event_frame
from bedrock_gateway.testing.fake_families import Anthropic, Family, Nova, Turn
from bedrock_gateway.testing.fake_media import MEDIA_FAMILIES
from bedrock_gateway.testing.fake_prompt_families import (
    CohereEmbed,
    Llama,
    Mistral,
    TitanEmbed,
    TitanText,
)
from bedrock_gateway.testing.fake_text import (
    PromptCache,
    check_model_id,
    latency_ms,
    load_json_object,
    make_reply,
    model_family,
    padding,
)

__all__ = [
    "FAMILIES",
    "Answer",
    "decode_blob",
    "family_for",
    "invoke_input_tokens",
    "invoke_model",
    "invoke_model_stream",
    "synthetic_text",
]

Segments = list[tuple[bytes, int]]

FAMILIES: dict[str, Family] = {
    "anthropic": Anthropic(),
    "nova": Nova(),
    "titan-text": TitanText(),
    "titan-embed": TitanEmbed(),
    "llama": Llama(),
    "mistral": Mistral(),
    "cohere-embed": CohereEmbed(),
    **MEDIA_FAMILIES,
}


@dataclass(slots=True)
class Answer:
    """A built answer: a JSON body or event-stream segments ``(frame, repeat)``, and its usage.

    ``input_tokens`` excludes the cache reads and writes, as Bedrock reports it; ``cached`` is
    whether the prompt had a cache point (the cache counts are then reported, even zeros);
    ``counted`` is whether Bedrock reports token counts at all (not for image / rerank models).
    """

    input_tokens: int
    output_tokens: int
    latency_ms: int
    body: bytes = b""
    segments: Segments = field(default_factory=list)
    cache_read: int = 0
    cache_write: int = 0
    cached: bool = False
    counted: bool = True

    def token_headers(self) -> list[tuple[str, str]]:
        """InvokeModel's usage headers."""
        latency = ("X-Amzn-Bedrock-Invocation-Latency", str(self.latency_ms))
        if not self.counted:
            return [latency]
        headers = [
            ("X-Amzn-Bedrock-Input-Token-Count", str(self.input_tokens)),
            ("X-Amzn-Bedrock-Output-Token-Count", str(self.output_tokens)),
            latency,
        ]
        if self.cached:
            headers.append(("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", str(self.cache_read)))
            headers.append(
                ("X-Amzn-Bedrock-Cache-Write-Input-Token-Count", str(self.cache_write)))
        return headers


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def synthetic_text(size: int) -> str:
    """``size`` characters of plain, JSON-safe filler text."""
    unit = "lorem ipsum dolor sit amet "
    return (unit * (size // len(unit) + 1))[:size]


def family_for(model_id: str) -> Family:
    """The builder for ``model_id``'s family, or Bedrock's ValidationException."""
    check_model_id(model_id)
    name = model_family(model_id)
    if name is None:
        raise ValidationError("The provided model identifier is invalid.")
    return FAMILIES[name]


def _turn(model_id: str, body: bytes, cache: PromptCache | None) -> tuple[Family, Turn]:
    family = family_for(model_id)
    request = load_json_object(body)
    prompt, max_tokens = family.parse(model_id, request)
    reply = make_reply(prompt.last_user, max_tokens) if family.generates else make_reply("", 0)
    turn = Turn(
        model_id=model_id,
        request=request,
        prompt=prompt,
        reply=reply,
        usage=prompt.split_usage(cache),
        latency=latency_ms(reply.output_tokens),
        digest=hashlib.sha256(body).hexdigest(),
    )
    return family, turn


def invoke_model(model_id: str, body: bytes, cache: PromptCache | None = None) -> Answer:
    """The InvokeModel answer: the family's JSON body and the usage for the token headers."""
    family, turn = _turn(model_id, body, cache)
    return Answer(
        input_tokens=turn.input_tokens,
        output_tokens=turn.reply.output_tokens,
        latency_ms=turn.latency,
        body=_dumps(family.response(turn)),
        cache_read=turn.cache_read,
        cache_write=turn.cache_write,
        cached=turn.cached,
        counted=family.counted,
    )


def _chunk(inner: dict[str, Any], seed: int) -> bytes:
    data = base64.b64encode(_dumps(inner)).decode()
    return event_frame("chunk", {"bytes": data, "p": padding(seed)})


def invoke_model_stream(
    model_id: str,
    body: bytes,
    cache: PromptCache | None = None,
    *,
    synthetic: tuple[int, int] | None = None,
) -> Answer:
    """The InvokeModelWithResponseStream answer as ``chunk`` frames.

    ``synthetic=(count, payload_size)`` replaces the reply with ``count`` identical deltas of
    ``payload_size`` characters each (one output token per delta), for load tests.
    """
    family, turn = _turn(model_id, body, cache)
    if not family.generates:
        raise ValidationError("The model is unsupported for streaming.")
    output_tokens = synthetic[0] if synthetic else turn.reply.output_tokens
    latency = latency_ms(output_tokens)
    metrics = {
        "inputTokenCount": turn.input_tokens,
        "outputTokenCount": output_tokens,
        "invocationLatency": latency,
        "firstByteLatency": min(latency, 20),
    }
    if turn.cached:
        metrics["cacheReadInputTokenCount"] = turn.cache_read
        metrics["cacheWriteInputTokenCount"] = turn.cache_write
    head = family.stream_head(turn)
    tail = family.stream_tail(turn, output_tokens)
    tail[-1]["amazon-bedrock-invocationMetrics"] = metrics
    seed = 0
    segments: Segments = []
    for inner in head:
        segments.append((_chunk(inner, seed), 1))
        seed += 1
    if synthetic:
        count, size = synthetic
        if count:
            segments.append((_chunk(family.stream_delta(turn, synthetic_text(size), 1), 1), count))
    else:
        for index, piece in enumerate(turn.reply.pieces):
            segments.append((_chunk(family.stream_delta(turn, piece, index), seed), 1))
            seed += 1
    for inner in tail:
        segments.append((_chunk(inner, seed), 1))
        seed += 1
    return Answer(
        input_tokens=turn.input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency,
        segments=segments,
        cache_read=turn.cache_read,
        cache_write=turn.cache_write,
        cached=turn.cached,
    )


def invoke_input_tokens(model_id: str, body: bytes) -> int:
    """What InvokeModel would report as input tokens for ``body`` (CountTokens)."""
    family = family_for(model_id)
    prompt, _ = family.parse(model_id, load_json_object(body))
    return prompt.tokens


def decode_blob(value: object) -> bytes:
    """A JSON blob member (base64, as botocore sends it) or a plain JSON string/object."""
    if isinstance(value, dict | list):
        return _dumps(value)
    if not isinstance(value, str):
        raise ValidationError("The invokeModel body is missing.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value.encode()
