"""Where requests keep their inference parameters: max tokens, temperature, top-p.

Converse keeps them in ``inferenceConfig``; InvokeModel bodies in each family's own spelling.
Shared by the quota bounds (which read and inject max tokens) and the parameter policy (which
clamps them), so the two can never disagree about a family.
"""

from __future__ import annotations

from typing import Any

from bedrock_gateway.auth.access import model_names

__all__ = ["ANY_MAX_TOKENS", "ANY_TEMPERATURE", "ANY_TOP_P", "CONVERSE_FIELDS", "GENERATING",
           "Field", "Fields", "family_fields"]

# Operations that run a model and produce tokens.
GENERATING = frozenset({"Converse", "ConverseStream", "InvokeModel",
                        "InvokeModelWithResponseStream"})

Field = tuple[str, ...]
Fields = tuple[Field, Field, Field]  # (max tokens, temperature, top-p)

CONVERSE_FIELDS: Fields = (
    ("inferenceConfig", "maxTokens"), ("inferenceConfig", "temperature"),
    ("inferenceConfig", "topP"))
_SIMPLE: Fields = (("max_tokens",), ("temperature",), ("top_p",))
_TITAN: Fields = (("textGenerationConfig", "maxTokenCount"),
                  ("textGenerationConfig", "temperature"), ("textGenerationConfig", "topP"))
# InvokeModel, by base model prefix.
_FAMILIES: tuple[tuple[str, Fields], ...] = (
    ("anthropic.", _SIMPLE),
    ("amazon.nova-", (("inferenceConfig", "max_new_tokens"), ("inferenceConfig", "temperature"),
                      ("inferenceConfig", "top_p"))),
    ("amazon.titan-text-", _TITAN),
    ("amazon.titan-tg1", _TITAN),
    ("meta.llama", (("max_gen_len",), ("temperature",), ("top_p",))),
    ("cohere.command", (("max_tokens",), ("temperature",), ("p",))),
    *((prefix, _SIMPLE)
      for prefix in ("mistral.", "ai21.", "deepseek.", "openai.", "qwen.", "writer.")),
)
# Any of these, in any InvokeModel body, whatever the model (application profiles hide it).
ANY_MAX_TOKENS: tuple[Field, ...] = (
    ("max_tokens",), ("max_gen_len",), ("inferenceConfig", "max_new_tokens"),
    ("inferenceConfig", "maxTokens"), ("textGenerationConfig", "maxTokenCount"),
    ("max_completion_tokens",))
ANY_TEMPERATURE: tuple[Field, ...] = (
    ("temperature",), ("inferenceConfig", "temperature"), ("textGenerationConfig", "temperature"))
ANY_TOP_P: tuple[Field, ...] = (
    ("top_p",), ("inferenceConfig", "top_p"), ("inferenceConfig", "topP"),
    ("textGenerationConfig", "topP"))


def family_fields(model_id: str | None, body: dict[str, Any]) -> Fields | None:
    """The InvokeModel fields of the model's family, by body (``anthropic_version``) or by
    model id (ARNs and cross-region profiles resolved); ``None`` when unknown."""
    if "anthropic_version" in body:
        return _SIMPLE
    for name in model_names(model_id or ""):
        for prefix, fields in _FAMILIES:
            if name.startswith(prefix):
                return fields
    return None
