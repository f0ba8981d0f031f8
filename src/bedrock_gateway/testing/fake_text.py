"""Deterministic text, token, id and model-family helpers for the fake Bedrock.

Everything here is a pure function of its input (the prompt cache aside), so the fake's answers
can be asserted exactly:

- **tokens**: ``ceil(characters / 4)`` over every piece of prompt text (:func:`tokens_for`);
- **reply**: ``"Echo: " + <last user text>``, split into words; each word (with its leading
  space) is one output token and one streamed delta, capped at the request's max tokens
  (:func:`make_reply`);
- **latency**: ``25 + 3 * output_tokens`` milliseconds, reported but never slept;
- **cache points** split the prompt into read, written (per TTL) and plain input tokens by
  the rules in ``fake_billing``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.testing.fake_billing import (
    CachePoint,
    PromptCache,
    PromptUsage,
    check_order,
    converse_ttl,
    split_prompt,
)

__all__ = [
    "CROSS_REGION_PREFIXES",
    "PromptCache",
    "PromptText",
    "Reply",
    "add_converse_prompt",
    "base_model_id",
    "check_model_id",
    "is_blocked",
    "latency_ms",
    "load_json_object",
    "make_reply",
    "model_family",
    "padding",
    "required_key",
    "tokens_for",
]

CROSS_REGION_PREFIXES = frozenset({"us", "eu", "apac", "jp", "au", "global", "us-gov", "ca"})

# (prefix of the base model id, family), first match wins.
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("anthropic.", "anthropic"),
    ("amazon.nova-canvas-", "nova-canvas"),
    ("amazon.nova-reel-", "nova-reel"),
    ("amazon.nova-", "nova"),
    ("amazon.titan-image-generator-", "titan-image"),
    ("stability.", "stability"),
    ("cohere.rerank-", "rerank"),
    ("amazon.rerank-", "rerank"),
    ("amazon.titan-text-", "titan-text"),
    ("amazon.titan-tg1", "titan-text"),
    ("amazon.titan-embed-", "titan-embed"),
    ("meta.llama", "llama"),
    ("mistral.", "mistral"),
    ("cohere.embed-", "cohere-embed"),
)
_PAD_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_BLOCK_WORD = re.compile(r"\bBLOCKME\b")
_MALFORMED = "Malformed input request, please reformat your input and try again."


def base_model_id(model_id: str) -> tuple[str, bool]:
    """The foundation-model id inside ``model_id`` and whether it came from an application profile.

    ARNs give the part after the last ``/``; a cross-region prefix (``us.``, ``eu.``, ...) is
    stripped.
    """
    app_profile = False
    base = model_id
    if base.startswith("arn:"):
        resource = base.split(":", 5)[-1]
        app_profile = resource.startswith("application-inference-profile/")
        base = resource.rsplit("/", 1)[-1]
    head, dot, rest = base.partition(".")
    if dot and head in CROSS_REGION_PREFIXES:
        base = rest
    return base, app_profile


def model_family(model_id: str) -> str | None:
    """``anthropic``, ``nova``, ``titan-text``, ``titan-embed``, ``llama``, ``mistral``,
    ``cohere-embed``, the media families ``nova-canvas``, ``titan-image``, ``stability``,
    ``rerank``, ``nova-reel`` (async only), or ``None`` for a family the fake does not know."""
    base, app_profile = base_model_id(model_id)
    for prefix, family in _FAMILIES:
        if base.startswith(prefix):
            return family
    return "anthropic" if app_profile else None


def check_model_id(model_id: str) -> None:
    """Bedrock's answer to an id naming no model (here: any id containing ``nonexistent``)."""
    if "nonexistent" in model_id:
        raise ValidationError("The provided model identifier is invalid.")


def load_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object request body or raise Bedrock's ValidationException."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(_MALFORMED) from None
    if not isinstance(value, dict):
        raise ValidationError(_MALFORMED)
    return value


def required_key(key: str) -> ValidationError:
    """The error Bedrock gives a model-native body that lacks ``key``."""
    return ValidationError(
        f"Malformed input request: #: required key [{key}] not found, please reformat your"
        " input and try again."
    )


def is_blocked(text: str) -> bool:
    """Whether the fake guardrail intervenes on ``text`` (it contains the word ``BLOCKME``)."""
    return _BLOCK_WORD.search(text) is not None


def tokens_for(chars: int) -> int:
    """Token count of ``chars`` characters of text: ``ceil(chars / 4)``."""
    return -(-chars // 4)


def latency_ms(output_tokens: int) -> int:
    return 25 + 3 * output_tokens


def padding(seed: int) -> str:
    """The ``"p"`` padding Bedrock puts in event payloads (deterministic length 1..62)."""
    return _PAD_ALPHABET[: 1 + (seed * 7) % len(_PAD_ALPHABET)]


@dataclass(frozen=True, slots=True)
class Reply:
    """The fake model's answer: its streamed pieces and why it stopped."""

    pieces: tuple[str, ...]
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return len(self.pieces)


def make_reply(prompt: str, max_tokens: int | None, prefix: str = "Echo: ") -> Reply:
    """``prefix + prompt`` as word pieces (leading space kept), at most ``max_tokens`` of them."""
    words = (prefix + prompt).split()
    pieces = [words[0], *(" " + w for w in words[1:])] if words else []
    truncated = max_tokens is not None and len(pieces) > max_tokens
    if max_tokens is not None:
        pieces = pieces[:max_tokens]
    return Reply(tuple(pieces), truncated)


class PromptText:
    """Accumulates prompt text in order, remembering its cache points (see ``fake_billing``)."""

    __slots__ = ("_hash", "blocked", "cache_chars", "chars", "last_user", "points")

    def __init__(self, model_id: str) -> None:
        self._hash = hashlib.sha256(base_model_id(model_id)[0].encode())
        self.chars = 0
        self.cache_chars = 0  # characters before the last cache point
        self.points: list[CachePoint] = []
        self.last_user = ""
        self.blocked = False  # the text contains the word BLOCKME (guardrail trigger)

    def add(self, text: str) -> None:
        if not self.blocked and _BLOCK_WORD.search(text):
            self.blocked = True
        self.chars += len(text)
        self._hash.update(text.encode())
        self._hash.update(b"\x00")

    def add_json(self, value: object) -> None:
        self.add(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def cache_point(self, ttl: str = "5m") -> None:
        """Close a cached prefix here, written with ``ttl`` ("5m" or "1h")."""
        check_order(self.points, ttl)
        key = self._hash.copy().hexdigest()
        self.points.append(CachePoint(tokens_for(self.chars), key, ttl))
        self.cache_chars = self.chars

    @property
    def tokens(self) -> int:
        return tokens_for(self.chars)

    def split_usage(self, cache: PromptCache | None) -> PromptUsage:
        """How the prompt's tokens are billed; input excludes the cached prefix."""
        return split_prompt(self.tokens, self.points, cache)


def add_converse_prompt(pt: PromptText, system: object, messages: object) -> None:
    """Walk Converse-shaped ``system`` blocks and ``messages`` (also Nova's native body).

    Counts text, tool results and tool-use inputs; ``cachePoint`` blocks mark the cached prefix;
    ``pt.last_user`` becomes the text of the last user message.
    """
    for block in system if isinstance(system, list) else ():
        if not isinstance(block, dict):
            raise ValidationError(_MALFORMED)
        if "cachePoint" in block:
            pt.cache_point(converse_ttl(block["cachePoint"]))
        elif isinstance(block.get("text"), str):
            pt.add(block["text"])
        elif isinstance(block.get("guardContent"), dict):
            pt.add(str(block["guardContent"].get("text", {}).get("text", "")))
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise ValidationError(_MALFORMED)
        texts: list[str] = []
        for block in content:
            if not isinstance(block, dict):
                raise ValidationError(_MALFORMED)
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
                pt.add(block["text"])
            elif "cachePoint" in block:
                pt.cache_point(converse_ttl(block["cachePoint"]))
            elif isinstance(block.get("toolResult"), dict):
                for part in block["toolResult"].get("content") or ():
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                        pt.add(part["text"])
                    elif isinstance(part, dict) and "json" in part:
                        pt.add_json(part["json"])
            elif isinstance(block.get("toolUse"), dict):
                pt.add_json(block["toolUse"].get("input"))
            elif isinstance(block.get("guardContent"), dict):
                text = str(block["guardContent"].get("text", {}).get("text", ""))
                texts.append(text)
                pt.add(text)
        if message.get("role") == "user":
            pt.last_user = " ".join(texts)
