"""SizeFilter: prompt characters, messages and media, on bodies the fake accepts."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from bedrock_gateway.filters.base import Finding, RequestPolicy
from bedrock_gateway.filters.size import SizeFilter
from bedrock_gateway.testing.fake_converse import converse, count_tokens
from bedrock_gateway.testing.fake_models import invoke_model

ANTHROPIC = "us.anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"
PNG = base64.b64encode(b"\x89PNG" + b"\0" * 600).decode()  # long bytes, not text
IMAGE = {"image": {"format": "png", "source": {"bytes": PNG}}}

CONVERSE_BODY: dict[str, Any] = {
    "system": [{"text": "0123456789"}],  # 10
    "messages": [
        {"role": "user", "content": [
            {"text": "abcde"},  # 5
            IMAGE,
            {"document": {"format": "pdf", "name": "d", "source": {"bytes": PNG}}},  # 1
        ]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": "f", "input": {"q": "xyz"}}},  # 1 + 1 + 3
        ]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t", "content": [{"text": "12"}, IMAGE]}},  # 2
            {"video": {"format": "mp4", "source": {"bytes": PNG}}},
        ]},
    ],
}  # 23 prompt characters, 3 messages, 4 media blocks

ANTHROPIC_BODY: dict[str, Any] = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 20,
    "system": "sys",  # 3
    "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": PNG}},
            {"type": "text", "text": "hello"},  # 5
        ]},
        {"role": "assistant", "content": "hi"},  # 2
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}}]},
            {"type": "text", "text": "more"},  # 4
        ]},
    ],
}  # 14 prompt characters, 3 messages, 3 media blocks

NOVA_BODY: dict[str, Any] = {
    "messages": [{"role": "user", "content": [
        {"text": "look"}, IMAGE, {"video": {"format": "mp4", "source": {"bytes": PNG}}}]}],
    "inferenceConfig": {"maxTokens": 5},
}  # 4 characters, 1 message, 2 media blocks


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _categories(findings: list[Finding]) -> list[str]:
    return [f.category for f in findings]


def test_is_a_request_policy() -> None:
    flt = SizeFilter(max_prompt_chars=10)
    assert isinstance(flt, RequestPolicy)
    assert flt.name == "size"
    assert SizeFilter(name="tight").name == "tight"
    assert SizeFilter().apply("Converse", NOVA, copy.deepcopy(CONVERSE_BODY)) == []


@pytest.mark.parametrize(("operation", "model", "body", "sizes"), [
    ("Converse", NOVA, CONVERSE_BODY, (23, 3, 4)),
    ("ConverseStream", ANTHROPIC, CONVERSE_BODY, (23, 3, 4)),
    ("InvokeModel", ANTHROPIC, ANTHROPIC_BODY, (14, 3, 3)),
    ("InvokeModelWithResponseStream", "us." + NOVA, NOVA_BODY, (4, 1, 2)),
])
def test_limits_at_and_over(operation: str, model: str, body: dict[str, Any],
                            sizes: tuple[int, int, int]) -> None:
    chars, messages, media = sizes
    if operation.startswith("Converse"):
        converse(model, _dumps(body))  # bodies the fake (and Bedrock) accept
    else:
        invoke_model(model, _dumps(body))
    original = copy.deepcopy(body)
    at = SizeFilter(max_prompt_chars=chars, max_messages=messages, max_media=media)
    assert at.apply(operation, model, body) == []
    over = SizeFilter(max_prompt_chars=chars - 1, max_messages=messages - 1, max_media=media - 1,
                      name="limits")
    assert over.apply(operation, model, body) == [
        Finding("limits", "prompt_chars", 0, 0, "block"),
        Finding("limits", "messages", 0, 0, "block"),
        Finding("limits", "media", 0, 0, "block"),
    ]
    assert body == original  # never rewritten


def test_each_limit_alone() -> None:
    body = CONVERSE_BODY
    assert _categories(SizeFilter(max_prompt_chars=19).apply("Converse", NOVA, body)) == [
        "prompt_chars"]
    assert _categories(SizeFilter(max_messages=2).apply("Converse", NOVA, body)) == ["messages"]
    assert _categories(SizeFilter(max_media=3).apply("Converse", NOVA, body)) == ["media"]
    assert SizeFilter(max_media=0).apply("Converse", NOVA, {"messages": [
        {"role": "user", "content": [{"text": "no media"}]}]}) == []


def test_image_bytes_are_not_prompt_characters() -> None:
    assert len(PNG) > 100
    assert SizeFilter(max_prompt_chars=23).apply("Converse", NOVA, CONVERSE_BODY) == []


def test_count_tokens_converse_and_base64_invoke_body() -> None:
    converse_body = {"input": {"converse": {k: CONVERSE_BODY[k] for k in ("system", "messages")}}}
    count_tokens(NOVA, _dumps(converse_body))
    blob = base64.b64encode(_dumps(ANTHROPIC_BODY)).decode()
    invoke_body = {"input": {"invokeModel": {"body": blob}}}
    count_tokens(ANTHROPIC, _dumps(invoke_body))
    for body, (chars, messages, media) in ((converse_body, (23, 3, 4)), (invoke_body, (14, 3, 3))):
        at = SizeFilter(max_prompt_chars=chars, max_messages=messages, max_media=media)
        assert at.apply("CountTokens", ANTHROPIC, body) == []
        over = SizeFilter(max_prompt_chars=chars - 1, max_messages=messages - 1,
                          max_media=media - 1)
        assert _categories(over.apply("CountTokens", ANTHROPIC, body)) == [
            "prompt_chars", "messages", "media"]


@pytest.mark.parametrize(("model", "body", "messages"), [
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "one prompt"}, 1),
    ("amazon.titan-text-express-v1", {"inputText": "one prompt"}, 1),
    ("cohere.command-r-v1:0", {"message": "now", "chat_history": [
        {"role": "USER", "message": "a"}, {"role": "CHATBOT", "message": "b"}]}, 3),
    ("cohere.command-r-v1:0", {"message": "only"}, 1),
    ("mistral.mistral-large-2407-v1:0", {"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}, 2),
    ("cohere.embed-english-v3", {"texts": ["a", "b"], "input_type": "search_query"}, 0),
])
def test_message_counts_per_family(model: str, body: dict[str, Any], messages: int) -> None:
    assert SizeFilter(max_messages=messages).apply("InvokeModel", model, body) == []
    if messages:
        assert _categories(SizeFilter(max_messages=messages - 1).apply(
            "InvokeModel", model, body)) == ["messages"]


def test_media_in_openai_style_and_guard_content() -> None:
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
    ]}]}
    assert _categories(SizeFilter(max_media=0).apply("InvokeModel", "openai.gpt-oss-20b-1:0",
                                                     body)) == ["media"]
    guarded = {"messages": [{"role": "user", "content": [
        {"guardContent": {"image": {"format": "png", "source": {"bytes": PNG}}}}]}]}
    assert _categories(SizeFilter(max_media=0).apply("Converse", NOVA, guarded)) == ["media"]


def test_unknown_shape_is_measured_by_all_its_strings() -> None:
    body = {"novel_field": "x" * 30, "nested": [{"deep": "y" * 5}], "n": 3}
    assert _categories(SizeFilter(max_prompt_chars=34).apply("InvokeModel", "vendor.m-v1", body)
                       ) == ["prompt_chars"]
    assert SizeFilter(max_prompt_chars=35).apply("InvokeModel", "vendor.m-v1", body) == []
    assert SizeFilter(max_messages=0, max_media=0).apply("InvokeModel", "vendor.m-v1", body) == []


def test_operations_without_a_conversation() -> None:
    flt = SizeFilter(max_prompt_chars=0, max_messages=0, max_media=0)
    assert flt.apply("GetAsyncInvoke", None, {}) == []
    assert flt.apply("ListAsyncInvokes", None, {}) == []
    guard = {"source": "INPUT", "content": [{"text": {"text": "four"}}]}
    assert _categories(flt.apply("ApplyGuardrail", None, guard)) == ["prompt_chars"]
    reel = {"modelInput": {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "cat"}}}
    assert _categories(flt.apply("StartAsyncInvoke", "amazon.nova-reel-v1:0", reel)) == [
        "prompt_chars"]


@pytest.mark.parametrize("kwargs", [
    {"max_prompt_chars": -1}, {"max_messages": True}, {"max_media": 1.5}, {"max_media": "3"},
])
def test_invalid_limits(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SizeFilter(**kwargs)
