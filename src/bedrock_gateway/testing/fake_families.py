"""The model families the fake speaks natively: request parsing and response shapes.

Each :class:`Family` knows how its InvokeModel body names the prompt and the output cap, and
how its answer looks, whole (:meth:`Family.response`) and streamed (head events, one delta per
reply piece, tail events; the caller adds ``amazon-bedrock-invocationMetrics`` to the last).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.testing.fake_text import (
    PromptText,
    Reply,
    add_converse_prompt,
    base_model_id,
    required_key,
)

__all__ = ["FAMILIES", "Family", "Turn"]

_SPECIAL = re.compile(r"<\|[^|>]*\|>|<</?SYS>>|</?s>|\[/?INST\]")
_LLAMA3_USER = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>(.*?)(?:<\|eot_id\|>|$)", re.S
)
_INST = re.compile(r"\[INST\](.*?)(?:\[/INST\]|$)", re.S)
_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)*$")

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """One parsed request and the fake model's reply to it."""

    model_id: str
    request: JSON
    prompt: PromptText
    reply: Reply
    input_tokens: int
    cache_read: int
    cache_write: int
    cached: bool
    latency: int
    digest: str

    @property
    def stop(self) -> str:
        return "max_tokens" if self.reply.truncated else "end_turn"


def _require(request: JSON, *keys: str) -> None:
    for key in keys:
        if key not in request:
            raise required_key(key)


def _max_tokens(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"Malformed input request: #/{name}: must be a positive integer.")
    return value


def _last_turn_text(prompt: str) -> str:
    found = _LLAMA3_USER.findall(prompt) or _INST.findall(prompt)
    text = found[-1] if found else prompt
    return " ".join(_SPECIAL.sub(" ", text).split())


def _embedding(text: str, dims: int) -> list[float]:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


class Family:
    """Base: a text-generating family. Subclasses fill in the shapes."""

    generates = True

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


class _Anthropic(Family):
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
                pt.cache_point()
        return texts

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        _require(request, "anthropic_version", "max_tokens", "messages")
        max_tokens = _max_tokens(request["max_tokens"], "max_tokens")
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


class _Nova(Family):
    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        _require(request, "messages")
        config = request.get("inferenceConfig") or {}
        if not isinstance(config, dict):
            raise ValidationError("Malformed input request: #/inferenceConfig: expected an object.")
        cap = config.get("maxTokens", config.get("max_new_tokens"))
        pt = PromptText(model_id)
        add_converse_prompt(pt, request.get("system"), request["messages"])
        return pt, _max_tokens(cap, "inferenceConfig/maxTokens")

    def response(self, turn: Turn) -> JSON:
        return {
            "output": {"message": {"content": [{"text": turn.reply.text}], "role": "assistant"}},
            "stopReason": turn.stop,
            "usage": {
                "inputTokens": turn.input_tokens,
                "outputTokens": turn.reply.output_tokens,
                "totalTokens": turn.input_tokens + turn.reply.output_tokens,
                "cacheReadInputTokenCount": turn.cache_read,
                "cacheWriteInputTokenCount": turn.cache_write,
            },
        }

    def stream_head(self, turn: Turn) -> list[JSON]:
        return [{"messageStart": {"role": "assistant"}}]

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        return {"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}}

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        usage = {"inputTokens": turn.input_tokens, "outputTokens": output_tokens}
        return [
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": turn.stop}},
            {"metadata": {"usage": usage, "metrics": {}, "trace": {}}},
        ]


class _PromptFamily(Family):
    """Families whose body is a single prompt string (Titan text, Llama, Mistral)."""

    prompt_key = "prompt"

    def cap(self, request: JSON) -> int | None:
        raise NotImplementedError

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        _require(request, self.prompt_key)
        prompt = request[self.prompt_key]
        if not isinstance(prompt, str):
            message = f"Malformed input request: #/{self.prompt_key}: expected a string."
            raise ValidationError(message)
        pt = PromptText(model_id)
        pt.add(prompt)
        pt.last_user = _last_turn_text(prompt)
        return pt, self.cap(request)


class _TitanText(_PromptFamily):
    prompt_key = "inputText"

    def cap(self, request: JSON) -> int | None:
        config = request.get("textGenerationConfig") or {}
        return _max_tokens(config.get("maxTokenCount", 512), "textGenerationConfig/maxTokenCount")

    def _reason(self, turn: Turn) -> str:
        return "LENGTH" if turn.reply.truncated else "FINISH"

    def response(self, turn: Turn) -> JSON:
        result = {
            "tokenCount": turn.reply.output_tokens,
            "outputText": turn.reply.text,
            "completionReason": self._reason(turn),
        }
        return {"inputTextTokenCount": turn.input_tokens, "results": [result]}

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        return {
            "outputText": piece,
            "index": 0,
            "totalOutputTextTokenCount": index + 1,
            "completionReason": None,
            "inputTextTokenCount": turn.input_tokens if index == 0 else None,
        }

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        return [
            {
                "outputText": "",
                "index": 0,
                "totalOutputTextTokenCount": output_tokens,
                "completionReason": self._reason(turn),
                "inputTextTokenCount": None,
            }
        ]


class _Llama(_PromptFamily):
    def cap(self, request: JSON) -> int | None:
        return _max_tokens(request.get("max_gen_len", 512), "max_gen_len")

    def _reason(self, turn: Turn) -> str:
        return "length" if turn.reply.truncated else "stop"

    def response(self, turn: Turn) -> JSON:
        return {
            "generation": turn.reply.text,
            "prompt_token_count": turn.input_tokens,
            "generation_token_count": turn.reply.output_tokens,
            "stop_reason": self._reason(turn),
        }

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        return {
            "generation": piece,
            "prompt_token_count": turn.input_tokens if index == 0 else None,
            "generation_token_count": index + 1,
            "stop_reason": None,
        }

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        return [
            {
                "generation": "",
                "prompt_token_count": None,
                "generation_token_count": output_tokens,
                "stop_reason": self._reason(turn),
            }
        ]


class _Mistral(_PromptFamily):
    def cap(self, request: JSON) -> int | None:
        return _max_tokens(request.get("max_tokens", 512), "max_tokens")

    def response(self, turn: Turn) -> JSON:
        reason = "length" if turn.reply.truncated else "stop"
        return {"outputs": [{"text": turn.reply.text, "stop_reason": reason}]}

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        return {"outputs": [{"text": piece, "stop_reason": None}]}

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        reason = "length" if turn.reply.truncated else "stop"
        return [{"outputs": [{"text": "", "stop_reason": reason}]}]


class _TitanEmbed(Family):
    generates = False

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        _require(request, "inputText")
        if not isinstance(request["inputText"], str):
            raise ValidationError("Malformed input request: #/inputText: expected a string.")
        pt = PromptText(model_id)
        pt.add(request["inputText"])
        return pt, 0

    def response(self, turn: Turn) -> JSON:
        base = base_model_id(turn.model_id)[0]
        default = 1536 if base.startswith("amazon.titan-embed-text-v1") else 1024
        dims = turn.request.get("dimensions", default)
        if dims not in (256, 384, 512, 1024, 1536):
            raise ValidationError("Malformed input request: #/dimensions: unsupported value.")
        vector = _embedding(turn.request["inputText"], dims)
        return {"embedding": vector, "inputTextTokenCount": turn.input_tokens}


class _CohereEmbed(Family):
    generates = False

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        _require(request, "texts", "input_type")
        texts = request["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValidationError("Malformed input request: #/texts: expected a list of strings.")
        pt = PromptText(model_id)
        for text in texts:
            pt.add(text)
        return pt, 0

    def response(self, turn: Turn) -> JSON:
        texts: list[str] = turn.request["texts"]
        floats = [_embedding(text, 1024) for text in texts]
        answer: JSON = {"id": str(uuid.UUID(turn.digest[:32])), "texts": texts}
        types = turn.request.get("embedding_types")
        if types:
            by_type = {
                kind: floats if kind == "float" else [[round(x * 127) for x in v] for v in floats]
                for kind in types
            }
            return answer | {"embeddings": by_type, "response_type": "embeddings_by_type"}
        return answer | {"embeddings": floats, "response_type": "embeddings_floats"}


FAMILIES: dict[str, Family] = {
    "anthropic": _Anthropic(),
    "nova": _Nova(),
    "titan-text": _TitanText(),
    "titan-embed": _TitanEmbed(),
    "llama": _Llama(),
    "mistral": _Mistral(),
    "cohere-embed": _CohereEmbed(),
}
