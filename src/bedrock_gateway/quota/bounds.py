"""The worst case of a call, known before it is forwarded: input tokens and output tokens.

**Input.** ``bytes`` (the default) bounds input tokens by the size of the request body in
bytes: tokenizers of the models on Bedrock emit at most one token per byte of text, and the
body is a superset of the prompt text (JSON syntax, field names and ``max_tokens`` only add).
Each image, document or video block adds ``media_tokens`` (their tokens follow the pixels or
pages, not the bytes), and every request adds ``overhead_tokens`` for what providers wrap
around a prompt (chat templates, tool-use system prompts). ``estimate`` is
``ceil(characters / 4 * factor)`` plus the same allowances: closer, and may under-estimate.
``count_tokens`` asks Bedrock's CountTokens API (:mod:`bedrock_gateway.quota.enforcer`).

**Output.** The request's own max-tokens field; when it has none, ``default_max_tokens`` is
written into the body (so Bedrock enforces the bound we reserved for). Embedding, image and
rerank models produce no output tokens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.auth.access import model_names
from bedrock_gateway.call import Call
from bedrock_gateway.errors import ValidationError
from bedrock_gateway.model_fields import ANY_MAX_TOKENS, GENERATING, family_fields
from bedrock_gateway.quota.terms import request_terms

__all__ = ["INPUT_BOUNDS", "InputBound", "output_bound"]

INPUT_BOUNDS = ("bytes", "estimate", "count_tokens")
_MEDIA = re.compile(rb'"(?:image|document|video)"')
_MEDIA_WORD = re.compile(rb"image|document|video")
_MEDIA_NAMES = frozenset({"image", "document", "video"})
_EMBED = re.compile(r"embed", re.IGNORECASE)


def media_blocks(call: Call) -> int:
    """Image, document and video blocks in the request, counted on the parsed body (a key
    spelled with a JSON escape, ``"\\u0069mage"``, is still an image): every object key or
    string value that is ``image``, ``document`` or ``video``."""
    body = call.body
    if b"\\u" not in body and not _MEDIA_WORD.search(body):
        return 0  # the common case: no media word can be there, escaped or not
    if not call.is_json:
        return len(_MEDIA.findall(body))
    count = 0
    stack: list[object] = [call.json()]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += sum(1 for key in node if key in _MEDIA_NAMES)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node in _MEDIA_NAMES:
            count += 1
    return count


def generates(call: Call) -> bool:
    """Whether the call runs a model and consumes tokens."""
    return call.operation.name in GENERATING


@dataclass(frozen=True, slots=True)
class InputBound:
    """``bytes`` or ``estimate`` bound of a call's input tokens (``count_tokens`` falls back
    to ``bytes`` when CountTokens cannot answer)."""

    strategy: str = "bytes"
    factor: float = 1.0
    media_tokens: int = 5_000
    overhead_tokens: int = 1_000

    def __call__(self, call: Call) -> int:
        body = call.body
        extra = self.overhead_tokens + self.media_tokens * media_blocks(call)
        if self.strategy == "estimate":
            chars = len(body.decode("utf-8", errors="replace"))
            return math.ceil(chars / 4 * self.factor) + extra
        return len(body) + extra


def _get(doc: dict[str, Any], *path: str) -> object:
    node: object = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _set(doc: dict[str, Any], path: tuple[str, ...], value: int) -> None:
    node = doc
    for key in path[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ValidationError(f"The request field {key} must be an object.")
        node = child
    node[path[-1]] = value


def _as_bound(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{where} must be a non-negative integer.")
    return value


def _spelled(doc: object) -> list[int]:
    """Every max-tokens value ``doc`` spells, in any family's spelling (validated)."""
    if not isinstance(doc, dict):
        return []
    return [_as_bound(value, ".".join(known)) for known in ANY_MAX_TOKENS
            if (value := _get(doc, *known)) is not None]


def output_bound(call: Call, default_max_tokens: int) -> int | None:
    """The most output tokens the call can produce, writing ``default_max_tokens`` into the
    body when it sets none. ``None``: no bound can be established (unknown model family).

    A body may spell the limit more than once (Nova: ``inferenceConfig.max_new_tokens`` and
    ``inferenceConfig.maxTokens``; Converse: ``inferenceConfig.maxTokens`` and a model field in
    ``additionalModelRequestFields``); the model honours one of them, so the bound is the
    largest."""
    if not generates(call):
        return 0
    if not call.is_json:
        return None
    body = call.json()
    if call.operation.name.startswith("Converse"):
        extra = _spelled(body.get("additionalModelRequestFields"))
        value = _get(body, "inferenceConfig", "maxTokens")
        if value is None:
            _set(body, ("inferenceConfig", "maxTokens"), default_max_tokens)
            call.set_json(body)
            return max([default_max_tokens, *extra])
        return max([_as_bound(value, "inferenceConfig.maxTokens"), *extra])
    spelled = _spelled(body)
    if spelled:
        return max(spelled)
    if any(_EMBED.search(name) for name in model_names(call.model_id or "")):
        return 0
    terms = request_terms(call)
    if terms.images or terms.queries:  # image generation and rerank produce no tokens
        return 0
    fields = family_fields(call.model_id, body)
    if fields is None:
        return None
    _set(body, fields[0], default_max_tokens)
    call.set_json(body)
    return default_max_tokens
