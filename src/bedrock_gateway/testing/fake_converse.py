"""Converse, ConverseStream, CountTokens and ApplyGuardrail answers (pure builders).

Converse works for any model id (Bedrock's Converse API is model-agnostic); the reply is
``"Echo: <last user text>"`` cut to ``inferenceConfig.maxTokens`` words. A request with a
``guardrailConfig`` whose prompt contains the word ``BLOCKME`` gets the guardrail's canned
answer and ``stopReason: guardrail_intervened``, like ApplyGuardrail does.

``usage`` follows Bedrock: ``inputTokens`` excludes cached tokens, ``totalTokens`` = input +
output + cache read + cache write, the cache fields appear when the prompt has a cache point and
``cacheDetails`` (1h before 5m) when something was written. ``serviceTier`` and
``performanceConfig`` are echoed (top level; the stream's ``metadata`` event) when requested.

The fake's guardrail has four policies — content, denied topics, sensitive information (PII,
billed, no free units) and word filters — and no contextual grounding or automated reasoning:
ApplyGuardrail bills ``ceil(characters / 1000)`` text units of all text blocks to each of the
four, and one ``contentPolicyImageUnits`` per image block.
"""

from __future__ import annotations

import json
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.eventstream import event_frame
from bedrock_gateway.testing.fake_billing import cache_details, converse_options
from bedrock_gateway.testing.fake_models import (
    Answer,
    Segments,
    decode_blob,
    invoke_input_tokens,
    synthetic_text,
)
from bedrock_gateway.testing.fake_text import (
    PromptCache,
    PromptText,
    Reply,
    add_converse_prompt,
    check_model_id,
    is_blocked,
    latency_ms,
    load_json_object,
    make_reply,
    padding,
)

__all__ = [
    "GUARDRAIL_TEXT_POLICIES",
    "apply_guardrail",
    "converse",
    "converse_stream",
    "count_tokens",
    "invoke_guardrail_checks",
]

BLOCKED_TEXT = "Blocked by guardrail."
# The fake guardrail's policies billed per text unit (see the module docstring).
GUARDRAIL_TEXT_POLICIES = (
    "topicPolicyUnits",
    "contentPolicyUnits",
    "wordPolicyUnits",
    "sensitiveInformationPolicyUnits",
)


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _prompt(model_id: str, request: dict[str, Any]) -> PromptText:
    messages = request.get("messages")
    if messages is not None and not isinstance(messages, list):
        raise ValidationError("Malformed input request, please reformat your input and try again.")
    if not messages or not isinstance(messages[0], dict) or messages[0].get("role") != "user":
        raise ValidationError(
            "A conversation must start with a user message. Try again with a conversation that"
            " starts with a user message."
        )
    pt = PromptText(model_id)
    add_converse_prompt(pt, request.get("system"), messages)
    return pt


class _Plan:
    """Everything one Converse(Stream) answer needs."""

    __slots__ = ("latency", "options", "prompt", "reply", "stop", "usage")

    def __init__(self, model_id: str, body: bytes, cache: PromptCache | None, outputs: int | None):
        check_model_id(model_id)
        request = load_json_object(body)
        pt = _prompt(model_id, request)
        config = request.get("inferenceConfig") or {}
        cap = config.get("maxTokens") if isinstance(config, dict) else None
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            raise ValidationError("inferenceConfig.maxTokens must be a positive integer.")
        self.reply: Reply = make_reply(pt.last_user, cap)
        self.stop = "max_tokens" if self.reply.truncated else "end_turn"
        if pt.blocked and request.get("guardrailConfig"):
            self.reply = make_reply(BLOCKED_TEXT, None, prefix="")
            self.stop = "guardrail_intervened"
        self.options = converse_options(request)
        out = self.reply.output_tokens if outputs is None else outputs
        self.prompt = split = pt.split_usage(cache)
        self.usage: dict[str, Any] = {
            "inputTokens": split.input,
            "outputTokens": out,
            "totalTokens": split.input + out + split.cache_read + split.cache_write,
        }
        if split.cached:
            self.usage["cacheReadInputTokens"] = split.cache_read
            self.usage["cacheWriteInputTokens"] = split.cache_write
            if split.cache_write:
                self.usage["cacheDetails"] = cache_details(split)
        self.latency = latency_ms(out)

    def answer(self, **kw: Any) -> Answer:
        split = self.prompt
        return Answer(
            split.input,
            self.usage["outputTokens"],
            self.latency,
            cache_read=split.cache_read,
            cache_write=split.cache_write,
            cached=split.cached,
            **kw,
        )


def converse(model_id: str, body: bytes, cache: PromptCache | None = None) -> Answer:
    plan = _Plan(model_id, body, cache, None)
    response = {
        "output": {"message": {"role": "assistant", "content": [{"text": plan.reply.text}]}},
        "stopReason": plan.stop,
        "usage": plan.usage,
        "metrics": {"latencyMs": plan.latency},
        **plan.options,
    }
    return plan.answer(body=_dumps(response))


def converse_stream(
    model_id: str,
    body: bytes,
    cache: PromptCache | None = None,
    *,
    synthetic: tuple[int, int] | None = None,
) -> Answer:
    """ConverseStream frames: messageStart, a contentBlockDelta per piece, contentBlockStop,
    messageStop, metadata. ``synthetic=(count, size)`` sends ``count`` identical deltas of
    ``size`` characters instead of the reply (one output token each)."""
    plan = _Plan(model_id, body, cache, synthetic[0] if synthetic else None)
    segments: Segments = [(event_frame("messageStart", {"p": padding(0), "role": "assistant"}), 1)]
    if synthetic:
        text = synthetic_text(synthetic[1])
        delta = {"contentBlockIndex": 0, "delta": {"text": text}, "p": padding(1)}
        if synthetic[0]:
            segments.append((event_frame("contentBlockDelta", delta), synthetic[0]))
    else:
        for seed, piece in enumerate(plan.reply.pieces, start=1):
            delta = {"contentBlockIndex": 0, "delta": {"text": piece}, "p": padding(seed)}
            segments.append((event_frame("contentBlockDelta", delta), 1))
    tail = [
        ("contentBlockStop", {"contentBlockIndex": 0, "p": padding(2)}),
        ("messageStop", {"p": padding(3), "stopReason": plan.stop}),
        (
            "metadata",
            {"metrics": {"latencyMs": plan.latency}, "p": padding(4), "usage": plan.usage}
            | plan.options,
        ),
    ]
    segments.extend((event_frame(name, payload), 1) for name, payload in tail)
    return plan.answer(segments=segments)


def count_tokens(model_id: str, body: bytes) -> dict[str, int]:
    """``{"inputTokens": n}`` for ``input.converse`` or ``input.invokeModel.body``."""
    check_model_id(model_id)
    request = load_json_object(body)
    given = request.get("input")
    if not isinstance(given, dict) or len(given) != 1:
        raise ValidationError("input must hold exactly one of converse or invokeModel.")
    if isinstance(given.get("converse"), dict):
        converse_input = given["converse"]
        pt = PromptText(model_id)
        add_converse_prompt(pt, converse_input.get("system"), converse_input.get("messages"))
        return {"inputTokens": pt.tokens}
    invoke = given.get("invokeModel")
    if not isinstance(invoke, dict):
        raise ValidationError("input must hold exactly one of converse or invokeModel.")
    return {"inputTokens": invoke_input_tokens(model_id, decode_blob(invoke.get("body")))}


def apply_guardrail(body: bytes) -> dict[str, Any]:
    """ApplyGuardrail: ``GUARDRAIL_INTERVENED`` when any text block contains ``BLOCKME``."""
    request = load_json_object(body)
    content = request.get("content")
    if request.get("source") not in ("INPUT", "OUTPUT") or not isinstance(content, list):
        raise ValidationError("source and content are required.")
    blocked, chars, images = False, 0, 0
    for block in content:
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, dict):
            chars += len(str(text.get("text", "")))
            blocked = blocked or is_blocked(str(text.get("text", "")))
        images += isinstance(block, dict) and "image" in block
    units = -(-chars // 1000)
    usage = dict.fromkeys(GUARDRAIL_TEXT_POLICIES, units) | {
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
        "contentPolicyImageUnits": images,
        "automatedReasoningPolicyUnits": 0,
        "automatedReasoningPolicies": 0,
    }
    return {
        "usage": usage,
        "action": "GUARDRAIL_INTERVENED" if blocked else "NONE",
        "outputs": [{"text": BLOCKED_TEXT}] if blocked else [],
        "assessments": [{}],
    }


def invoke_guardrail_checks(body: bytes) -> dict[str, Any]:
    """InvokeGuardrailChecks: every requested check scores 0, or 0.99 when a text has BLOCKME;
    one text unit per started 1,000 characters, per check."""
    request = load_json_object(body)
    messages, checks = request.get("messages"), request.get("checks")
    if not isinstance(messages, list) or not isinstance(checks, dict):
        raise ValidationError("messages and checks are required.")
    texts = [
        block["text"]
        for message in messages if isinstance(message, dict)
        for block in message.get("content", []) if isinstance(block, dict)
        and isinstance(block.get("text"), str)
    ]
    score = 0.99 if any(is_blocked(t) for t in texts) else 0.0
    units = sum(-(-len(t) // 1000) for t in texts)
    results: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    for check, key in (("contentFilter", "categories"), ("promptAttack", "categories")):
        if isinstance(checks.get(check), dict):
            results[check] = {"results": [
                {"category": c.get("category"), "severityScore": score}
                for c in checks[check].get(key, []) if isinstance(c, dict)]}
            usage[check] = {"textUnits": units}
    if isinstance(checks.get("sensitiveInformation"), dict):
        results["sensitiveInformation"] = {"results": [], "truncated": False}
        usage["sensitiveInformation"] = {"textUnits": units}
    return {"results": results, "usage": usage}
