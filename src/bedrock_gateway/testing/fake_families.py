"""The model families the fake speaks natively: the base class, Anthropic and Nova.

Each :class:`Family` knows how its InvokeModel body names the prompt and the output cap, and
how its answer looks, whole (:meth:`Family.response`) and streamed (head events, one delta per
reply piece, tail events; the caller adds ``amazon-bedrock-invocationMetrics`` to the last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.testing.fake_billing import PromptUsage, anthropic_ttl
from bedrock_gateway.testing.fake_text import (
    PromptText,
    Reply,
    add_converse_prompt,
    base_model_id,
    required_key,
)

__all__ = ["JSON", "Anthropic", "Family", "Nova", "Turn", "positive_cap", "require_keys"]

_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)*$")

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """One parsed request and the fake model's reply to it."""

    model_id: str
    request: JSON
    prompt: PromptText
    reply: Reply
    usage: PromptUsage
    latency: int
    digest: str

    @property
    def input_tokens(self) -> int:
        """Prompt tokens neither read from nor written to the cache."""
        return self.usage.input

    @property
    def cache_read(self) -> int:
        return self.usage.cache_read

    @property
    def cache_write(self) -> int:
        return self.usage.cache_write

    @property
    def cached(self) -> bool:
        """The prompt had a cache point (the cache fields are reported)."""
        return self.usage.cached

    @property
    def stop(self) -> str:
        return "max_tokens" if self.reply.truncated else "end_turn"


def require_keys(request: JSON, *keys: str) -> None:
    for key in keys:
        if key not in request:
            raise required_key(key)


def positive_cap(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"Malformed input request: #/{name}: must be a positive integer.")
    return value


class Family:
    """Base: a text-generating family. Subclasses fill in the shapes."""

    generates = True  # produces text (streamable)
    counted = True  # Bedrock reports its token counts (headers, metrics)

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        raise NotImplementedError

    def response(self, turn: Turn) -> JSON:
        raise NotImplementedError

    def stream_head(self, turn: Turn) -> list[JSON]:
        return []

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        raise NotImplementedError

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        raise NotImplementedError


class Anthropic(Family):
    def _content(self, pt: PromptText, content: object) -> list[str]:
        if isinstance(content, str):
            pt.add(content)
            return [content]
        texts: list[str] = []
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
                pt.add(block["text"])
            elif kind == "tool_result":
                texts.extend(self._content(pt, block.get("content")))
            elif kind == "tool_use":
                pt.add_json(block.get("input"))
            if "cache_control" in block:
                pt.cache_point(anthropic_ttl(block["cache_control"]))
        return texts

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "anthropic_version", "max_tokens", "messages")
        max_tokens = positive_cap(request["max_tokens"], "max_tokens")
        messages = request["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValidationError("messages: at least one message is required")
        pt = PromptText(model_id)
        self._content(pt, request.get("system"))
        for message in messages:
            if not isinstance(message, dict):
                raise ValidationError("Malformed input request: #/messages: expected objects.")
            texts = self._content(pt, message.get("content"))
            if message.get("role") == "user":
                pt.last_user = " ".join(texts)
        return pt, max_tokens

    def _model(self, turn: Turn) -> str:
        base = base_model_id(turn.model_id)[0].removeprefix("anthropic.")
        return _VERSION_SUFFIX.sub("", base) if base.startswith("claude") else "claude"

    def _usage(self, turn: Turn, output_tokens: int) -> JSON:
        usage: JSON = {"input_tokens": turn.input_tokens, "output_tokens": output_tokens}
        if turn.cached:
            usage["cache_creation_input_tokens"] = turn.cache_write
            usage["cache_read_input_tokens"] = turn.cache_read
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": turn.usage.cache_write_5m,
                "ephemeral_1h_input_tokens": turn.usage.cache_write_1h,
            }
        return usage

    def response(self, turn: Turn) -> JSON:
        return {
            "id": f"msg_bdrk_{turn.digest[:24]}",
            "type": "message",
            "role": "assistant",
            "model": self._model(turn),
            "content": [{"type": "text", "text": turn.reply.text}],
            "stop_reason": turn.stop,
            "stop_sequence": None,
            "usage": self._usage(turn, turn.reply.output_tokens),
        }

    def stream_head(self, turn: Turn) -> list[JSON]:
        message = self.response(turn) | {"content": [], "stop_reason": None}
        message["usage"] = self._usage(turn, 1)
        return [
            {"type": "message_start", "message": message},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ]

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        delta = {"type": "text_delta", "text": piece}
        return {"type": "content_block_delta", "index": 0, "delta": delta}

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        return [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": turn.stop, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
            {"type": "message_stop"},
        ]


class Nova(Family):
    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "messages")
        config = request.get("inferenceConfig") or {}
        if not isinstance(config, dict):
            raise ValidationError("Malformed input request: #/inferenceConfig: expected an object.")
        cap = config.get("maxTokens", config.get("max_new_tokens"))
        pt = PromptText(model_id)
        add_converse_prompt(pt, request.get("system"), request["messages"])
        return pt, positive_cap(cap, "inferenceConfig/maxTokens")

    def response(self, turn: Turn) -> JSON:
        return {
            "output": {"message": {"content": [{"text": turn.reply.text}], "role": "assistant"}},
            "stopReason": turn.stop,
            "usage": self._usage(turn, turn.reply.output_tokens) | {
                "cacheReadInputTokenCount": turn.cache_read,
                "cacheWriteInputTokenCount": turn.cache_write,
            },
        }

    def _usage(self, turn: Turn, output_tokens: int) -> JSON:
        cached = turn.cache_read + turn.cache_write
        return {
            "inputTokens": turn.input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": turn.input_tokens + output_tokens + cached,
        }

    def stream_head(self, turn: Turn) -> list[JSON]:
        return [{"messageStart": {"role": "assistant"}}]

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        return {"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}}

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        usage = {"inputTokens": turn.input_tokens, "outputTokens": output_tokens}
        if turn.cached:
            usage["cacheReadInputTokenCount"] = turn.cache_read
            usage["cacheWriteInputTokenCount"] = turn.cache_write
        return [
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": turn.stop}},
            {"metadata": {"usage": usage, "metrics": {}, "trace": {}}},
        ]
