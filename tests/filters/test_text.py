"""Where the text is (bedrock_gateway.filters.text / stream_text), on FakeBedrock's real shapes.

Request bodies are checked against the fake's own parsers (which validate them the way Bedrock
does and count the prompt characters they read); responses and stream frames come from the
fake's builders, or from a running FakeBedrock through boto3.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import EventStream
from botocore.parsers import EventStreamJSONParser
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.eventstream import (
    EventStreamDecoder,
    Frame,
    encode_frame,
    event_frame,
    exception_frame,
    iter_frames,
)
from bedrock_gateway.filters.text import (
    TextRef,
    UnknownShapeError,
    base_model_id,
    frame_text,
    request_fields,
    request_texts,
    response_texts,
    set_text,
    with_text,
)
from bedrock_gateway.filters.text_walk import Key
from bedrock_gateway.testing.fake_converse import (
    apply_guardrail,
    converse,
    converse_stream,
    count_tokens,
    invoke_guardrail_checks,
)
from bedrock_gateway.testing.fake_models import family_for, invoke_model, invoke_model_stream
from bedrock_gateway.testing.fake_text import PromptText, add_converse_prompt

ANTHROPIC = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
STREAM = "InvokeModelWithResponseStream"
PNG = base64.b64encode(b"\x89PNG fake image bytes").decode()

# family -> (model id, InvokeModel body, the texts it holds as (path, text)); every body is
# accepted by the fake, which also counts exactly these characters as the prompt.
FAMILIES: dict[str, tuple[str, dict[str, Any], list[tuple[tuple[str | int, ...], str]]]] = {
    "anthropic": (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us." + ANTHROPIC,
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1",
                     "content": [{"type": "text", "text": "tool output"}]},
                    {"type": "image",
                     "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "text", "text": "second question"},
                ]},
            ],
        },
        [
            (("system", 0, "text"), "Be brief."),
            (("messages", 0, "content"), "first question"),
            (("messages", 1, "content", 0, "text"), "first answer"),
            (("messages", 2, "content", 0, "content", 0, "text"), "tool output"),
            (("messages", 2, "content", 2, "text"), "second question"),
        ],
    ),
    "nova": (
        NOVA,
        {
            "schemaVersion": "messages-v1",
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [
                    {"text": "hi nova"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ]},
                {"role": "assistant", "content": [{"text": "hello"}]},
                {"role": "user", "content": [{"text": "again please"}]},
            ],
            "inferenceConfig": {"maxTokens": 20},
        },
        [
            (("system", 0, "text"), "Be brief."),
            (("messages", 0, "content", 0, "text"), "hi nova"),
            (("messages", 1, "content", 0, "text"), "hello"),
            (("messages", 2, "content", 0, "text"), "again please"),
        ],
    ),
    "titan-text": (
        "amazon.titan-text-express-v1",
        {"inputText": "hello titan world", "textGenerationConfig": {"maxTokenCount": 10}},
        [(("inputText",), "hello titan world")],
    ),
    "titan-embed": (
        "amazon.titan-embed-text-v2:0",
        {"inputText": "embed me please", "dimensions": 256},
        [(("inputText",), "embed me please")],
    ),
    "llama": (
        "meta.llama3-8b-instruct-v1:0",
        {"prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>hello llama"
                   "<|eot_id|>", "max_gen_len": 9},
        [(("prompt",), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>hello llama"
                       "<|eot_id|>")],
    ),
    "mistral": (
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] hi mistral [/INST]", "max_tokens": 10},
        [(("prompt",), "<s>[INST] hi mistral [/INST]")],
    ),
    "cohere-embed": (
        "cohere.embed-english-v3",
        {"texts": ["a first text", "another"], "input_type": "search_document"},
        [(("texts", 0), "a first text"), (("texts", 1), "another")],
    ),
}
GENERATING = ["anthropic", "nova", "titan-text", "llama", "mistral"]
RESPONSE_PATHS = {
    "anthropic": ("content", 0, "text"),
    "nova": ("output", "message", "content", 0, "text"),
    "titan-text": ("results", 0, "outputText"),
    "llama": ("generation",),
    "mistral": ("outputs", 0, "text"),
}

CONVERSE_BODY: dict[str, Any] = {
    "system": [{"text": "You are terse."}, {"cachePoint": {"type": "default"}},
               {"guardContent": {"text": {"text": "system guard"}}}],
    "messages": [
        {"role": "user", "content": [
            {"text": "look this up"},
            {"image": {"format": "png", "source": {"bytes": PNG}}},
            {"document": {"format": "pdf", "name": "doc", "source": {"bytes": PNG}}},
            {"guardContent": {"text": {"text": "guarded words", "qualifiers": ["query"]}}},
        ]},
        {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "I should call", "signature": "s"}}},
            {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "weather", "n": 3}}},
        ]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [
                {"text": "sunny"},
                {"json": {"temp": 21, "sky": ["clear", {"wind": "calm"}]}},
                {"image": {"format": "png", "source": {"bytes": PNG}}},
            ]}},
            {"text": "thanks"},
        ]},
    ],
}
CONVERSE_TEXTS = [
    (("system", 0, "text"), "You are terse."),
    (("system", 2, "guardContent", "text", "text"), "system guard"),
    (("messages", 0, "content", 0, "text"), "look this up"),
    (("messages", 0, "content", 2, "document", "name"), "doc"),
    (("messages", 0, "content", 3, "guardContent", "text", "text"), "guarded words"),
    (("messages", 1, "content", 0, "reasoningContent", "reasoningText", "text"), "I should call"),
    (("messages", 1, "content", 1, "toolUse", "name"), "lookup"),
    (("messages", 1, "content", 1, "toolUse", "input", Key("q")), "q"),
    (("messages", 1, "content", 1, "toolUse", "input", "q"), "weather"),
    (("messages", 1, "content", 1, "toolUse", "input", Key("n")), "n"),
    (("messages", 2, "content", 0, "toolResult", "content", 0, "text"), "sunny"),
    (("messages", 2, "content", 0, "toolResult", "content", 1, "json", Key("temp")), "temp"),
    (("messages", 2, "content", 0, "toolResult", "content", 1, "json", Key("sky")), "sky"),
    (("messages", 2, "content", 0, "toolResult", "content", 1, "json", "sky", 0), "clear"),
    (("messages", 2, "content", 0, "toolResult", "content", 1, "json", "sky", 1, Key("wind")),
     "wind"),
    (("messages", 2, "content", 0, "toolResult", "content", 1, "json", "sky", 1, "wind"), "calm"),
    (("messages", 2, "content", 1, "text"), "thanks"),
]
CONVERSE_UNREADABLE = [
    ("messages", 0, "content", 1, "image"),
    ("messages", 0, "content", 2, "document", "source", "bytes"),  # a PDF
    ("messages", 2, "content", 0, "toolResult", "content", 2, "image"),
]


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _at(body: Any, path: tuple[Any, ...]) -> Any:
    """What ``path`` leads to (a :class:`Key` step: the key's own name)."""
    for step in path:
        body = step.name if isinstance(step, Key) and step.name in body else body[step]
    return body


def _pairs(refs: list[TextRef]) -> list[tuple[tuple[str | int, ...], str]]:
    return [(ref.path, ref.text) for ref in refs]


def _frames(segments: list[tuple[bytes, int]]) -> list[Frame]:
    return list(iter_frames(frame * repeat for frame, repeat in segments))


def _chunk(inner: dict[str, Any]) -> Frame:
    data = base64.b64encode(json.dumps(inner).encode()).decode()
    return Frame(event_frame("chunk", {"bytes": data, "p": "abcdef"}))


def _decoded(frame: Frame) -> tuple[bytes, Any, Any]:
    """A frame's raw header block, payload JSON and (for a chunk) its model JSON (decoded from
    the payload's ``bytes``, which are left out of the payload)."""
    hlen = int.from_bytes(frame.raw[4:8], "big")
    payload: Any = frame.json()
    inner = json.loads(base64.b64decode(payload.pop("bytes"))) if "bytes" in payload else None
    return frame.raw[12 : 12 + hlen], payload, inner


# -- model ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_id", "base"), [
    ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("us-gov.meta.llama3-8b-instruct-v1:0", "meta.llama3-8b-instruct-v1:0"),
    ("global.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    ("apac.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-pro-v1:0",
     "amazon.nova-pro-v1:0"),
    ("arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3",
     "cohere.embed-english-v3"),
    (None, ""),
])
def test_base_model_id(model_id: str | None, base: str) -> None:
    assert base_model_id(model_id) == base


# -- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_invoke_request_texts(family: str) -> None:
    model, body, expected = FAMILIES[family]
    invoke_model(model, _dumps(body))  # the fake accepts the body as Bedrock would
    refs = request_texts("InvokeModel", model, body)
    assert _pairs(refs) == expected
    assert _pairs(request_texts(STREAM, model, body)) == expected
    prompt, _ = family_for(model).parse(model, body)
    assert sum(len(ref.text) for ref in refs) == prompt.chars  # the fake reads the same text


def test_converse_request_texts() -> None:
    converse(ANTHROPIC, _dumps(CONVERSE_BODY))  # a valid Converse body
    for operation in ("Converse", "ConverseStream"):
        assert _pairs(request_texts(operation, ANTHROPIC, CONVERSE_BODY)) == CONVERSE_TEXTS
        assert request_fields(operation, ANTHROPIC, CONVERSE_BODY).unreadable == \
            CONVERSE_UNREADABLE


def test_converse_text_only_body_counts_like_the_fake() -> None:
    body = {"system": [{"text": "sys"}],
            "messages": [{"role": "user", "content": [{"text": "hello"}, {"guardContent": {
                "text": {"text": "guarded"}}}, {"toolResult": {"toolUseId": "t", "content": [
                    {"text": "result"}]}}]}]}
    prompt = PromptText(NOVA)
    add_converse_prompt(prompt, body["system"], body["messages"])
    assert sum(len(r.text) for r in request_texts("Converse", NOVA, body)) == prompt.chars


def test_converse_documents_search_results_and_prompt_variables() -> None:
    body = {
        "messages": [{"role": "user", "content": [
            {"document": {"format": "txt", "name": "a", "source": {"text": "doc text"}}},
            {"document": {"format": "txt", "name": "b",
                          "source": {"content": [{"text": "part one"}]}}},
            {"searchResult": {"source": "s", "title": "t", "content": [{"text": "found"}]}},
            {"video": {"format": "mp4", "source": {"bytes": PNG}}},
            {"audio": {"format": "mp3", "source": {"bytes": PNG}}},
            {"cachePoint": {"type": "default"}},
        ]}],
        "promptVariables": {"topic": {"text": "volcanoes"}},
    }
    fields = request_fields("Converse", "arn:aws:bedrock:us-east-1:1:prompt/P1", body)
    assert _pairs(fields) == [
        (("messages", 0, "content", 0, "document", "name"), "a"),
        (("messages", 0, "content", 0, "document", "source", "text"), "doc text"),
        (("messages", 0, "content", 1, "document", "name"), "b"),
        (("messages", 0, "content", 1, "document", "source", "content", 0, "text"), "part one"),
        (("messages", 0, "content", 2, "searchResult", "source"), "s"),
        (("messages", 0, "content", 2, "searchResult", "title"), "t"),
        (("messages", 0, "content", 2, "searchResult", "content", 0, "text"), "found"),
        (("promptVariables", "topic", "text"), "volcanoes"),
    ]
    assert fields.unreadable == [("messages", 0, "content", 3, "video"),
                                 ("messages", 0, "content", 4, "audio")]


def test_count_tokens_converse_and_nested_invoke_model() -> None:
    body = {"input": {"converse": {k: CONVERSE_BODY[k] for k in ("system", "messages")}}}
    count_tokens(ANTHROPIC, _dumps(body))
    expected = [(("input", "converse", *path), text) for path, text in CONVERSE_TEXTS]
    assert _pairs(request_texts("CountTokens", ANTHROPIC, body)) == expected

    model, inner, inner_texts = FAMILIES["anthropic"]
    blob = base64.b64encode(_dumps(inner)).decode()  # what botocore sends for the blob
    body = {"input": {"invokeModel": {"body": blob}}}
    count_tokens(model, _dumps(body))
    refs = request_texts("CountTokens", model, body)
    assert _pairs(refs) == [(("input", "invokeModel", "body", *p), t) for p, t in inner_texts]
    set_text(body, refs[-1].path, "REPLACED")  # writes through the base64 blob
    decoded = json.loads(base64.b64decode(body["input"]["invokeModel"]["body"]))
    assert decoded["messages"][2]["content"][2]["text"] == "REPLACED"
    assert decoded["messages"][:2] == inner["messages"][:2]


def test_guardrail_async_and_textless_operations() -> None:
    body = {"source": "INPUT", "content": [{"text": {"text": "check me"}},
                                           {"image": {"format": "png", "source": {"bytes": PNG}}},
                                           {"text": {"text": "and me", "qualifiers": ["query"]}}]}
    apply_guardrail(_dumps(body))
    assert _pairs(request_texts("ApplyGuardrail", None, body)) == [
        (("content", 0, "text", "text"), "check me"), (("content", 2, "text", "text"), "and me")]
    checks = {"messages": [{"role": "user", "content": [{"text": "is this ok"}]}],
              "checks": {"contentFilter": {"categories": [{"category": "HATE"}]}}}
    invoke_guardrail_checks(_dumps(checks))
    assert _pairs(request_texts("InvokeGuardrailChecks", None, checks)) == [
        (("messages", 0, "content", 0, "text"), "is this ok")]
    reel = {"modelId": "amazon.nova-reel-v1:0", "outputDataConfig": {"s3OutputDataConfig": {
        "s3Uri": "s3://b/k"}}, "modelInput": {"taskType": "TEXT_VIDEO", "textToVideoParams": {
            "text": "a cat surfing"}, "videoGenerationConfig": {"durationSeconds": 6}}}
    assert _pairs(request_texts("StartAsyncInvoke", reel["modelId"], reel)) == [
        (("modelInput", "textToVideoParams", "text"), "a cat surfing")]
    assert request_texts("GetAsyncInvoke", None, {}) == []
    assert request_texts("ListAsyncInvokes", None, {}) == []


DEEPSEEK_PROMPT = "<\uff5cUser\uff5c>why?<\uff5cAssistant\uff5c>"  # its full-width bars
# Families FakeBedrock does not speak: bodies as the Bedrock model pages document them.
OTHER_REQUESTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("cohere.command-r-plus-v1:0", {
        "message": "and now?", "preamble": "be nice",
        "chat_history": [{"role": "USER", "message": "hi"}, {"role": "CHATBOT", "message": "yo"}],
        "documents": [{"title": "t", "snippet": "snip"}], "max_tokens": 10,
    }, ["be nice", "hi", "yo", "and now?", "title", "t", "snippet", "snip"]),
    ("cohere.command-text-v14", {"prompt": "write a haiku", "max_tokens": 20}, ["write a haiku"]),
    ("mistral.mistral-large-2407-v1:0", {"messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "question"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "function": {"name": "f", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "result"}]},
     ["sys", "question", "f", "{\"city\": \"Paris\"}", "result"]),
    ("us.deepseek.r1-v1:0", {"prompt": DEEPSEEK_PROMPT, "max_tokens": 9}, [DEEPSEEK_PROMPT]),
    ("openai.gpt-oss-120b-1:0", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}]},
     ["describe"]),
    ("anthropic.claude-v2", {"prompt": "\n\nHuman: hi\n\nAssistant:",
                             "max_tokens_to_sample": 9}, ["\n\nHuman: hi\n\nAssistant:"]),
    ("amazon.titan-image-generator-v2:0", {"taskType": "TEXT_IMAGE", "textToImageParams": {
        "text": "a red fox", "negativeText": "blurry"}}, ["a red fox", "blurry"]),
    ("stability.stable-diffusion-xl-v1", {"text_prompts": [{"text": "castle", "weight": 1}]},
     ["castle"]),
    ("stability.sd3-5-large-v1:0", {"prompt": "a lake", "negative_prompt": "people"},
     ["a lake", "people"]),
    ("amazon.titan-embed-image-v1", {"inputImage": PNG}, []),
    ("amazon.nova-2-multimodal-embeddings-v1:0", {"taskType": "SINGLE_EMBEDDING",
     "singleEmbeddingParams": {"text": {"value": "embed this"}}}, ["embed this"]),
    ("cohere.rerank-v3-5:0", {"query": "best", "documents": ["a", "b"], "api_version": 2},
     ["best", "a", "b"]),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 9, "system": "plain system",
        "messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"k": "v"}}]},
            {"role": "user", "content": [{"type": "document", "source": {
                "type": "text", "media_type": "text/plain", "data": "doc body"}}]}]},
     ["plain system", "hmm", "f", "k", "v", "doc body"]),
]


@pytest.mark.parametrize(("model", "body", "texts"), OTHER_REQUESTS,
                         ids=[m for m, _, _ in OTHER_REQUESTS])
def test_other_family_requests(model: str, body: dict[str, Any], texts: list[str]) -> None:
    refs = request_texts("InvokeModel", model, body)
    assert [ref.text for ref in refs] == texts
    for ref in refs:  # every path leads to its text
        assert _at(body, ref.path) == ref.text


@pytest.mark.parametrize("body", [
    {"foo": "bar"},
    {},
    {"inferenceConfig": {"maxTokens": 5}},
    {"messages": "not a list"},
    {"messages": [{"role": "user", "content": 7}]},
    {"prompt": 5},
    {"messages": [{"role": "user", "content": [{"text": {"nested": "no"}}]}]},
])
def test_unknown_invoke_body_raises(body: dict[str, Any]) -> None:
    with pytest.raises(UnknownShapeError):
        request_texts("InvokeModel", "vendor.some-model-v1:0", body)


def test_unknown_shape_messages_never_hold_text() -> None:
    with pytest.raises(UnknownShapeError) as info:
        request_texts("InvokeModel", "us.vendor.new-model-v1:0", {"secret": "TOPSECRET"})
    assert "TOPSECRET" not in str(info.value)
    assert "vendor.new-model-v1:0" in str(info.value)


@pytest.mark.parametrize(("operation", "body"), [
    ("CountTokens", {"input": {}}),
    ("CountTokens", {"input": {"invokeModel": {"body": base64.b64encode(b"[1]").decode()}}}),
    ("CountTokens", {"input": {"invokeModel": {"body": base64.b64encode(b"{nope").decode()}}}),
    ("InvokeModelWithBidirectionalStream", {}),
    ("Converse", {"messages": [{"role": "user", "content": [["not a block"]]}]}),
    ("Converse", {"system": "a string is not Converse"}),
    ("ApplyGuardrail", {"content": [{"text": "not an object"}]}),
])
def test_other_unknown_shapes(operation: str, body: dict[str, Any]) -> None:
    with pytest.raises(UnknownShapeError):
        request_texts(operation, ANTHROPIC, body)


# -- responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_invoke_response_texts(family: str) -> None:
    model, body, _ = FAMILIES[family]
    answer = json.loads(invoke_model(model, _dumps(body)).body)
    refs = response_texts("InvokeModel", model, answer)
    if family not in GENERATING:
        assert refs == []  # embeddings: no text, and not an unknown shape
        return
    assert len(refs) == 1 and refs[0].path == RESPONSE_PATHS[family]
    assert refs[0].text.startswith("Echo: ")


def test_converse_response_texts() -> None:
    answer = json.loads(converse(NOVA, _dumps(CONVERSE_BODY)).body)
    assert _pairs(response_texts("Converse", NOVA, answer)) == [
        (("output", "message", "content", 0, "text"), "Echo: sunny thanks")]
    answer["output"]["message"]["content"].insert(0, {"reasoningContent": {"reasoningText": {
        "text": "let me think", "signature": "sig"}}})
    assert [r.text for r in response_texts("Converse", NOVA, answer)] == [
        "let me think", "Echo: sunny thanks"]
    guard = json.loads(json.dumps(apply_guardrail(_dumps({"source": "OUTPUT", "content": [
        {"text": {"text": "BLOCKME now"}}]}))))
    assert _pairs(response_texts("ApplyGuardrail", None, guard)) == [
        (("outputs", 0, "text"), "Blocked by guardrail.")]
    assert response_texts("CountTokens", ANTHROPIC, {"inputTokens": 3}) == []


OTHER_RESPONSES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("cohere.command-r-v1:0", {"response_id": "r", "text": "cohere says", "generation_id": "g",
                               "chat_history": [{"role": "USER", "message": "hi"}],
                               "finish_reason": "COMPLETE"}, ["cohere says"]),
    ("cohere.command-text-v14", {"generations": [{"id": "1", "text": "legacy", "finish_reason":
                                 "COMPLETE"}], "id": "x", "prompt": "p"}, ["legacy"]),
    ("mistral.mistral-large-2407-v1:0", {"choices": [{"index": 0, "message": {
        "role": "assistant", "content": "large says"}, "stop_reason": "stop"}]}, ["large says"]),
    ("deepseek.r1-v1:0", {"choices": [{"text": "deep says", "stop_reason": "stop"}]},
     ["deep says"]),
    ("openai.gpt-oss-20b-1:0", {"choices": [{"message": {"content": "oss says",
                                "reasoning_content": "why"}}]}, ["oss says", "why"]),
    ("anthropic.claude-v2", {"completion": " old claude", "stop_reason": "stop_sequence"},
     [" old claude"]),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", {"content": [
        {"type": "thinking", "thinking": "pondering", "signature": "s"},
        {"type": "text", "text": "answer"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"k": "v"}}]}, ["pondering", "answer"]),
    ("amazon.titan-image-generator-v2:0", {"images": [PNG], "error": None}, []),
    ("twelvelabs.marengo-embed-2-7-v1:0", {"data": [{"embedding": [0.1]}]}, []),
]


@pytest.mark.parametrize(("model", "body", "texts"), OTHER_RESPONSES,
                         ids=[m for m, _, _ in OTHER_RESPONSES])
def test_other_family_responses(model: str, body: dict[str, Any], texts: list[str]) -> None:
    assert [r.text for r in response_texts("InvokeModel", model, body)] == texts


def test_unknown_response_raises() -> None:
    with pytest.raises(UnknownShapeError):
        response_texts("InvokeModel", "vendor.chat-v1:0", {"answer": "hidden"})
    with pytest.raises(UnknownShapeError):
        response_texts("InvokeModel", ANTHROPIC, {"content": 12})
    with pytest.raises(UnknownShapeError):
        response_texts("ConverseStream", ANTHROPIC, {})


# -- set_text -----------------------------------------------------------------------------------


def test_set_text_rejects_paths_without_a_string() -> None:
    body = copy.deepcopy(CONVERSE_BODY)
    for path in [(), ("messages",), ("messages", 0, "content", 9, "text"), ("nope",),
                 ("messages", "x"), ("messages", 1, "content", 1, "toolUse", "input", "n")]:
        with pytest.raises(ValueError):
            set_text(body, path, "x")
    assert body == CONVERSE_BODY


# -- streams ------------------------------------------------------------------------------------


def _stream_frames(family: str) -> tuple[list[Frame], str]:
    model, body, _ = FAMILIES[family]
    reply = json.loads(invoke_model(model, _dumps(body)).body)
    text = response_texts("InvokeModel", model, reply)[0].text
    return _frames(invoke_model_stream(model, _dumps(body)).segments), text


@pytest.mark.parametrize("family", GENERATING)
def test_invoke_stream_frame_text(family: str) -> None:
    frames, reply = _stream_frames(family)
    texts = [frame_text(STREAM, f) for f in frames]
    assert "".join(t for t in texts if t) == reply
    pieces = [t for t in texts if t]
    assert len(pieces) == len(reply.split())  # one delta per word, nothing else has text
    assert all(frame_text("ConverseStream", f) is None for f in frames)


def test_converse_stream_frame_text() -> None:
    frames = _frames(converse_stream(ANTHROPIC, _dumps(CONVERSE_BODY)).segments)
    texts = [frame_text("ConverseStream", f) for f in frames]
    assert "".join(t for t in texts if t) == "Echo: sunny thanks"
    assert [f.event_type for f, t in zip(frames, texts, strict=True) if t is None] == [
        "messageStart", "contentBlockStop", "messageStop", "metadata"]
    assert all(frame_text(STREAM, f) is None for f in frames)
    assert all(frame_text("Converse", f) is None for f in frames)


def _delta(delta: dict[str, Any]) -> Frame:
    return Frame(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta,
                                                   "p": "abcd"}))


CONVERSE_DELTAS: list[tuple[dict[str, Any], str | None]] = [
    ({"text": "plain"}, "plain"),
    ({"text": "quote \" slash \\ newline \n é 🙂"}, "quote \" slash \\ newline \n é 🙂"),
    ({"reasoningContent": {"text": "thinking aloud"}}, "thinking aloud"),
    ({"reasoningContent": {"signature": "sig"}}, None),
    ({"reasoningContent": {"redactedContent": "AAAA"}}, None),
    ({"toolUse": {"input": "{\"q\": \"text\"}"}}, None),
    ({"citation": {"title": "t", "sourceContent": [{"text": "cited"}]}}, None),
    ({"toolResult": [{"json": {"delta": {"text": "a trap"}}}]}, None),  # not the top-level delta
    ({"toolResult": [{"text": "tool says"}]}, None),
    ({"image": {"source": {"bytes": PNG}}}, None),
]


@pytest.mark.parametrize(("delta", "text"), CONVERSE_DELTAS)
def test_converse_deltas(delta: dict[str, Any], text: str | None) -> None:
    assert frame_text("ConverseStream", _delta(delta)) == text


def test_converse_delta_with_unusual_layout() -> None:
    # text not first, extra fields, spaces, headers in another order: the slow path reads it
    payload = b'{ "delta" : {"extra": 1, "text": "late"}, "contentBlockIndex": 0 }'
    headers = {":message-type": "event", ":content-type": "application/json",
               ":event-type": "contentBlockDelta"}
    frame = Frame(encode_frame(headers, payload))
    assert frame_text("ConverseStream", frame) == "late"
    other = {":message-type": "event", ":event-type": "messageStop"}
    assert frame_text("ConverseStream", Frame(encode_frame(other, payload))) is None
    # a text delta followed by another delta member is read through the JSON parser
    assert frame_text("ConverseStream", _delta({"text": "a", "more": {"text": "b"}})) == "a"


def test_non_text_frames() -> None:
    bad_json = Frame(encode_frame({":event-type": "contentBlockDelta"}, b"{not json"))
    frames = [
        Frame(exception_frame("throttlingException", "slow down, text")),
        Frame(encode_frame({":message-type": "error", ":error-code": "x",
                            ":error-message": "text"})),
        bad_json,
        Frame(encode_frame({}, b'{"delta": {"text": "no headers"}}')),
    ]
    for frame in frames:
        assert frame_text("ConverseStream", frame) is None
        assert frame_text(STREAM, frame) is None
    with pytest.raises(ValueError):
        with_text("ConverseStream", bad_json, "x")
    metrics = _chunk({"amazon-bedrock-invocationMetrics": {"inputTokenCount": 1}})
    assert frame_text(STREAM, metrics) is None
    no_bytes = Frame(event_frame("chunk", {"p": "abc", "text": "not inside bytes"}))
    assert frame_text(STREAM, no_bytes) is None
    text_delta = _delta({"text": "fine"})
    for operation, frame in ((STREAM, no_bytes), ("InvokeModel", text_delta),
                             (STREAM, text_delta), ("ConverseStream", _chunk({"text": "x"}))):
        with pytest.raises(ValueError):
            with_text(operation, frame, "x")


OTHER_CHUNKS: list[tuple[dict[str, Any], str | None]] = [
    ({"is_finished": False, "event_type": "text-generation", "text": "cohere"}, "cohere"),
    ({"is_finished": True, "event_type": "stream-end", "response": {"text": "all of it"}}, None),
    ({"choices": [{"index": 0, "message": {"role": "assistant", "content": "mistral chat"},
                   "stop_reason": None}]}, "mistral chat"),
    ({"choices": [{"index": 0, "delta": {"content": "oss"}}]}, "oss"),
    ({"choices": [{"text": "deepseek", "stop_reason": None}]}, "deepseek"),
    ({"type": "content_block_delta", "index": 1,
      "delta": {"type": "thinking_delta", "thinking": "ponder"}}, "ponder"),
    ({"type": "content_block_delta", "index": 1,
      "delta": {"type": "input_json_delta", "partial_json": "{\"text\":"}}, None),
    ({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
     None),
    ({"contentBlockDelta": {"delta": {"reasoningContent": {"text": "nova thinks"}},
                            "contentBlockIndex": 0}}, "nova thinks"),
    ({"contentBlockDelta": {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 1}}, None),
]


@pytest.mark.parametrize(("inner", "text"), OTHER_CHUNKS)
def test_other_chunks(inner: dict[str, Any], text: str | None) -> None:
    assert frame_text(STREAM, _chunk(inner)) == text


def _all_stream_frames() -> Iterator[tuple[str, Frame]]:
    for family in GENERATING:
        for frame in _stream_frames(family)[0]:
            yield STREAM, frame
    for inner, _ in OTHER_CHUNKS:
        yield STREAM, _chunk(inner)
    for frame in _frames(converse_stream(NOVA, _dumps(CONVERSE_BODY)).segments):
        yield "ConverseStream", frame
    for delta, _ in CONVERSE_DELTAS:
        yield "ConverseStream", _delta(delta)


def test_with_text_round_trip_and_replacement() -> None:
    seen = 0
    for operation, frame in _all_stream_frames():
        text = frame_text(operation, frame)
        if text is None:
            with pytest.raises(ValueError):
                with_text(operation, frame, "x")
            continue
        seen += 1
        headers, payload, inner = _decoded(frame)
        same = Frame(with_text(operation, frame, text))
        assert _decoded(same) == (headers, payload, inner)
        assert next(iter_frames([same.raw])) == same  # lengths and CRCs are valid
        new = "NEW \"text\" ünïcode 🙂\n"
        changed = Frame(with_text(operation, frame, new))
        assert frame_text(operation, changed) == new
        new_headers, new_payload, new_inner = _decoded(changed)
        assert new_headers == headers
        if inner is not None:
            assert new_payload == payload  # "p" and anything else beside "bytes"
        before, after = (inner, new_inner) if inner is not None else (payload, new_payload)
        assert _without_text(after, new) == _without_text(before, text)
    assert seen > 25


def _without_text(value: Any, text: str) -> Any:
    """``value`` with the one string equal to ``text`` blanked out (to compare the rest)."""
    if value == text:
        return "<TEXT>"
    if isinstance(value, dict):
        return {k: _without_text(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_text(v, text) for v in value]
    return value


@settings(max_examples=150)
@given(text=st.text(), ascii_escapes=st.booleans())
def test_frame_text_reads_any_text(text: str, ascii_escapes: bool) -> None:
    payload = {"contentBlockIndex": 0, "delta": {"text": text}, "p": "ab"}
    body = json.dumps(payload, ensure_ascii=ascii_escapes, separators=(",", ":")).encode()
    headers = {":event-type": "contentBlockDelta", ":content-type": "application/json",
               ":message-type": "event"}
    frame = Frame(encode_frame(headers, body))
    assert frame_text("ConverseStream", frame) == text
    assert frame_text("ConverseStream", Frame(with_text("ConverseStream", frame, text))) == text
    for inner in ({"outputText": text, "index": 0}, {"type": "content_block_delta", "index": 0,
                  "delta": {"type": "text_delta", "text": text}}):
        chunk = _chunk(inner)
        assert frame_text(STREAM, chunk) == text
        assert frame_text(STREAM, Frame(with_text(STREAM, chunk, text + "!"))) == text + "!"


# -- botocore reads re-encoded frames -----------------------------------------------------------


class _RawStream:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self) -> Iterator[bytes]:
        yield from (self._data[i : i + 97] for i in range(0, len(self._data), 97))

    def close(self) -> None:
        pass


def _botocore_events(operation: str, data: bytes) -> list[dict[str, Any]]:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model(operation).output_shape
    member = "stream" if operation == "ConverseStream" else "body"
    stream = EventStream(_RawStream(data), shape.members[member], EventStreamJSONParser(),
                         operation)
    return list(stream)


def _upper(operation: str, data: bytes) -> bytes:
    decoder = EventStreamDecoder()
    out = []
    for frame in decoder.feed(data):
        text = frame_text(operation, frame)
        out.append(frame.raw if text is None else with_text(operation, frame, text.upper()))
    decoder.finish()
    return b"".join(out)


def test_botocore_parses_re_encoded_converse_stream(fake_bedrock: Any,
                                                    bedrock_client_factory: Any) -> None:
    client = bedrock_client_factory(fake_bedrock.endpoint_url)
    reply = client.converse_stream(modelId=NOVA, messages=[
        {"role": "user", "content": [{"text": "tell me \"something\" nice 🙂"}]}])
    direct = list(reply["stream"])
    wire = fake_bedrock.last_stream_body
    assert wire
    original = _botocore_events("ConverseStream", wire)
    assert original == direct
    changed = _botocore_events("ConverseStream", _upper("ConverseStream", wire))
    assert len(changed) == len(original)
    for before, after in zip(original, changed, strict=True):
        if "contentBlockDelta" in before:
            text = before["contentBlockDelta"]["delta"]["text"]
            before["contentBlockDelta"]["delta"]["text"] = text.upper()
        assert after == before
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in changed if "contentBlockDelta" in e]
    assert "".join(texts) == "ECHO: TELL ME \"SOMETHING\" NICE 🙂"


def test_botocore_parses_re_encoded_invoke_stream(fake_bedrock: Any,
                                                  bedrock_client_factory: Any) -> None:
    client = bedrock_client_factory(fake_bedrock.endpoint_url)
    model, body, _ = FAMILIES["anthropic"]
    reply = client.invoke_model_with_response_stream(modelId=model, body=_dumps(body))
    direct = [json.loads(e["chunk"]["bytes"]) for e in reply["body"]]
    wire = fake_bedrock.last_stream_body
    assert wire
    changed = [json.loads(e["chunk"]["bytes"])
               for e in _botocore_events(STREAM, _upper(STREAM, wire))]
    assert len(changed) == len(direct)
    for before, after in zip(direct, changed, strict=True):
        if before["type"] == "content_block_delta":
            before["delta"]["text"] = before["delta"]["text"].upper()
        assert after == before


# -- property: set_text writes exactly where request_texts reads --------------------------------

_texts = st.text(max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6,
)
_image = st.just({"image": {"format": "png", "source": {"bytes": PNG}}})
_text_block = st.builds(lambda t: {"text": t}, _texts)
_tool_part = st.one_of(_text_block, _image, st.builds(lambda j: {"json": j}, _json))
_converse_block = st.one_of(
    _text_block,
    _image,
    st.builds(lambda t: {"guardContent": {"text": {"text": t}}}, _texts),
    st.builds(lambda t: {"reasoningContent": {"reasoningText": {"text": t, "signature": "s"}}},
              _texts),
    st.builds(lambda j: {"toolUse": {"toolUseId": "t", "name": "n", "input": j}}, _json),
    st.builds(lambda parts: {"toolResult": {"toolUseId": "t", "content": parts}},
              st.lists(_tool_part, max_size=3)),
    st.builds(lambda t: {"document": {"format": "txt", "name": "d", "source": {"text": t}}},
              _texts),
)
_role = st.sampled_from(["user", "assistant"])
_converse_body = st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries({"role": _role, "content": st.lists(
        _converse_block, max_size=4)}), max_size=4)},
    optional={"system": st.lists(_text_block, max_size=2)},
)
_typed_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _texts),
    st.just({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}),
    st.builds(lambda c: {"type": "tool_result", "tool_use_id": "t", "content": c},
              _texts | st.lists(st.builds(lambda t: {"type": "text", "text": t}, _texts),
                                max_size=2)),
)
_anthropic_body = st.fixed_dictionaries(
    {"anthropic_version": st.just("bedrock-2023-05-31"), "max_tokens": st.just(10),
     "messages": st.lists(st.fixed_dictionaries({"role": _role, "content": _texts | st.lists(
         _typed_block, max_size=3)}), min_size=1, max_size=3)},
    optional={"system": _texts | st.lists(st.builds(lambda t: {"type": "text", "text": t},
                                                    _texts), max_size=2)},
)
_requests = st.one_of(
    st.tuples(st.sampled_from(["Converse", "ConverseStream"]), _converse_body),
    st.tuples(st.just("InvokeModel"), _anthropic_body | _converse_body),
    st.tuples(st.just("CountTokens"), _converse_body.map(lambda b: {"input": {"converse": b}})),
    st.tuples(st.just("CountTokens"), _anthropic_body.map(lambda b: {"input": {"invokeModel": {
        "body": base64.b64encode(json.dumps(b).encode()).decode()}}})),
)


@settings(max_examples=300)
@given(request=_requests)
def test_set_text_then_request_texts_round_trip(request: tuple[str, dict[str, Any]]) -> None:
    operation, body = request
    refs = request_texts(operation, ANTHROPIC, body)
    for i in reversed(range(len(refs))):  # a key is renamed after the values under it
        set_text(body, refs[i].path, f"<marker {i}>")
    again = request_texts(operation, ANTHROPIC, body)
    assert [ref.text for ref in again] == [f"<marker {i}>" for i in range(len(refs))]
    assert [len(ref.path) for ref in again] == [len(ref.path) for ref in refs]
