"""Prompt-string and embedding families: Titan Text, Llama, Mistral, Titan Embed, Cohere Embed."""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.testing.fake_families import (
    JSON,
    Family,
    Turn,
    positive_cap,
    require_keys,
)
from bedrock_gateway.testing.fake_text import PromptText, base_model_id

__all__ = ["CohereEmbed", "Llama", "Mistral", "TitanEmbed", "TitanText"]

_SPECIAL = re.compile(r"<\|[^|>]*\|>|<</?SYS>>|</?s>|\[/?INST\]")
_LLAMA3_USER = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>(.*?)(?:<\|eot_id\|>|$)", re.S
)
_INST = re.compile(r"\[INST\](.*?)(?:\[/INST\]|$)", re.S)


def _last_turn_text(prompt: str) -> str:
    found = _LLAMA3_USER.findall(prompt) or _INST.findall(prompt)
    text = found[-1] if found else prompt
    return " ".join(_SPECIAL.sub(" ", text).split())


def _embedding(text: str, dims: int) -> list[float]:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


class _PromptFamily(Family):
    """Families whose body is a single prompt string (Titan text, Llama, Mistral)."""

    prompt_key = "prompt"

    def cap(self, request: JSON) -> int | None:
        raise NotImplementedError

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, self.prompt_key)
        prompt = request[self.prompt_key]
        if not isinstance(prompt, str):
            message = f"Malformed input request: #/{self.prompt_key}: expected a string."
            raise ValidationError(message)
        pt = PromptText(model_id)
        pt.add(prompt)
        pt.last_user = _last_turn_text(prompt)
        return pt, self.cap(request)


class TitanText(_PromptFamily):
    prompt_key = "inputText"

    def cap(self, request: JSON) -> int | None:
        config = request.get("textGenerationConfig") or {}
        return positive_cap(config.get("maxTokenCount", 512), "textGenerationConfig/maxTokenCount")

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


class Llama(_PromptFamily):
    def cap(self, request: JSON) -> int | None:
        return positive_cap(request.get("max_gen_len", 512), "max_gen_len")

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


class Mistral(_PromptFamily):
    def cap(self, request: JSON) -> int | None:
        return positive_cap(request.get("max_tokens", 512), "max_tokens")

    def response(self, turn: Turn) -> JSON:
        reason = "length" if turn.reply.truncated else "stop"
        return {"outputs": [{"text": turn.reply.text, "stop_reason": reason}]}

    def stream_delta(self, turn: Turn, piece: str, index: int) -> JSON:
        return {"outputs": [{"text": piece, "stop_reason": None}]}

    def stream_tail(self, turn: Turn, output_tokens: int) -> list[JSON]:
        reason = "length" if turn.reply.truncated else "stop"
        return [{"outputs": [{"text": "", "stop_reason": reason}]}]


class TitanEmbed(Family):
    generates = False

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "inputText")
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


class CohereEmbed(Family):
    generates = False

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "texts", "input_type")
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
