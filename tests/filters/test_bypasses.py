# ruff: noqa: RUF001  (lookalike characters are what these tests are about)
"""The red-team corpus (issue 13 §2): every request family, every field that reaches the model,
every obfuscation — each value is blocked, or redacted before the upstream sees it. And what
the filters cannot read (images, video, binary documents) follows ``on_unknown_shape``, with a
label in the usage record."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from bedrock_gateway import Gateway, Response
from bedrock_gateway.call import Call
from bedrock_gateway.filters import ContentFilter, DenyTermsFilter, FilterRule, PIIFilter
from bedrock_gateway.filters.joined import scan_joined
from bedrock_gateway.filters.middleware import FINDINGS
from bedrock_gateway.filters.text import request_fields

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PII = PIIFilter({"email": "redact", "credit_card": "block", "us_ssn": "block",
                 "aws_secret_key": "block"})
TERMS = DenyTermsFilter(["project falcon", "internal only"])
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PNG = base64.b64encode(b"\x89PNG fake").decode()
BLOB = base64.b64encode(bytes(range(256)) * 2).decode()  # a long run of base64: media

REDACTED = ["bob＠example．com", "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ja\u200bne.doe@example.com",
            "jane.doe@exam\u00adple.com", "jane\u2060@\u2060example.com", "jane.doe@exämple.de",
            "иван@пример.рф", "jane@example。com", "jane.doe@example.com"]
BLOCKED = ["4111\u00a01111\u00a01111\u00a01111", "４１１１ １１１１ １１１１ １１１１",
           "4111.1111.1111.1111", "4111/1111/1111/1111", "4111 1111-1111.1111",
           "4111\u200b1111\u200b1111\u200b1111", "4111 \u2013 1111 \u2013 1111 \u2013 1111",
           "123 45 6789", "123\u201345\u20136789", "123.45.6789", "１２３－４５－６７８９",
           SECRET[:20] + "\u200b" + SECRET[20:], "Project\u200b Falcon", "ＰＲＯＪＥＣＴ—falcon",
           "internal\u00a0only", "Ｉｎｔｅｒｎａｌ ｏｎｌｙ"]

Place = Callable[[str], tuple[str, str, dict[str, Any]]]  # text -> (operation, model, body)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _say(*content: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": "hi"}, *content]}]


def _converse(**body: Any) -> dict[str, Any]:
    return {"messages": _say(), **body}


def _tool(description: str = "look up", prop: str = "city", enum: str = "x") -> dict[str, Any]:
    return {"toolSpec": {"name": "lookup", "description": description, "inputSchema": {"json": {
        "type": "object", "properties": {prop: {"type": "string", "description": "where",
                                                "enum": [enum]}}}}}}


def _anthropic(**body: Any) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}], **body}


def _a_tool(description: str = "look up", enum: str = "x") -> dict[str, Any]:
    return {"name": "lookup", "description": description, "input_schema": {
        "type": "object", "properties": {"city": {"type": "string", "enum": [enum]}}}}


# Every field of every family that reaches the model: where a test text is put.
PLACES: dict[str, Place] = {
    "converse text": lambda t: ("Converse", HAIKU, {"messages": _say({"text": t})}),
    "converse-stream system": lambda t: ("ConverseStream", HAIKU, _converse(system=[{"text": t}])),
    "converse tool description": lambda t: ("Converse", HAIKU, _converse(
        toolConfig={"tools": [_tool(description=t)]})),
    "converse schema enum": lambda t: ("Converse", HAIKU, _converse(
        toolConfig={"tools": [_tool(enum=t)]})),
    "converse schema property name": lambda t: ("Converse", HAIKU, _converse(
        toolConfig={"tools": [_tool(prop=t)]})),
    "converse document name": lambda t: ("Converse", HAIKU, {"messages": _say({"document": {
        "format": "txt", "name": t, "source": {"text": "doc"}}})}),
    "converse txt document bytes": lambda t: ("Converse", HAIKU, {"messages": _say({"document": {
        "format": "txt", "name": "notes", "source": {"bytes": _b64(f"see {t} here")}}})}),
    "converse additionalModelRequestFields": lambda t: ("Converse", HAIKU, _converse(
        additionalModelRequestFields={"extra": {"nested": [f"x {t}"]}})),
    "converse tool use input": lambda t: ("Converse", HAIKU, {"messages": [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "1", "name": "f",
                                                       "input": {"q": t}}}]}]}),
    "converse tool result json": lambda t: ("Converse", HAIKU, {"messages": [
        {"role": "user", "content": [{"toolResult": {"toolUseId": "1", "content": [
            {"json": {"rows": [{"v": t}]}}]}}]}]}),
    "converse guard content": lambda t: ("Converse", HAIKU, {"messages": _say(
        {"guardContent": {"text": {"text": t}}})}),
    "count-tokens converse": lambda t: ("CountTokens", HAIKU, {"input": {"converse": {
        "messages": _say({"text": t})}}}),
    "count-tokens invoke blob": lambda t: ("CountTokens", HAIKU, {"input": {"invokeModel": {
        "body": _b64(json.dumps(_anthropic(system=t)))}}}),
    "anthropic message": lambda t: ("InvokeModel", HAIKU, _anthropic(
        messages=[{"role": "user", "content": t}])),
    "anthropic system": lambda t: ("InvokeModel", HAIKU, _anthropic(system=t)),
    "anthropic tool description": lambda t: ("InvokeModel", HAIKU, _anthropic(
        tools=[_a_tool(description=t)])),
    "anthropic schema enum": lambda t: ("InvokeModel", HAIKU, _anthropic(tools=[_a_tool(enum=t)])),
    "anthropic tool_use input": lambda t: ("InvokeModel", HAIKU, _anthropic(messages=[
        {"role": "assistant", "content": [{"type": "tool_use", "id": "1", "name": "f",
                                           "input": {"q": [t]}}]}])),
    "anthropic text/plain document": lambda t: ("InvokeModel", HAIKU, _anthropic(messages=[
        {"role": "user", "content": [{"type": "document", "title": "notes", "source": {
            "type": "base64", "media_type": "text/plain", "data": _b64(t)}}]}])),
    "anthropic document title": lambda t: ("InvokeModel", HAIKU, _anthropic(messages=[
        {"role": "user", "content": [{"type": "document", "title": t, "source": {
            "type": "text", "media_type": "text/plain", "data": "body"}}]}])),
    "anthropic unknown field": lambda t: ("InvokeModel", HAIKU, _anthropic(
        mcp_servers=[{"name": "s", "instructions": t}])),
    "nova tool description": lambda t: ("InvokeModel", "amazon.nova-lite-v1:0", {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "toolConfig": {"tools": [_tool(description=t)]}}),
    "nova system": lambda t: ("InvokeModel", "amazon.nova-lite-v1:0", {
        "system": [{"text": t}], "messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
    "titan text": lambda t: ("InvokeModel", "amazon.titan-text-express-v1", {"inputText": t}),
    "titan embed": lambda t: ("InvokeModel", "amazon.titan-embed-text-v2:0", {"inputText": t}),
    "llama prompt": lambda t: ("InvokeModel", "meta.llama3-8b-instruct-v1:0", {"prompt": t}),
    "mistral prompt": lambda t: ("InvokeModel", "mistral.mistral-7b-instruct-v0:2", {
        "prompt": f"<s>[INST] {t} [/INST]"}),
    "mistral chat tool": lambda t: ("InvokeModel", "mistral.mistral-large-2407-v1:0", {
        "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function",
            "function": {"name": "f", "description": t, "parameters": {}}}]}),
    "mistral tool call arguments": lambda t: ("InvokeModel", "mistral.mistral-large-2407-v1:0", {
        "messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {
            "name": "f", "arguments": json.dumps({"q": t}, ensure_ascii=False)}}]}]}),
    "openai typed text": lambda t: ("InvokeModel", "openai.gpt-oss-120b-1:0", {
        "messages": [{"role": "user", "content": [{"type": "text", "text": t}]}]}),
    "openai response_format": lambda t: ("InvokeModel", "openai.gpt-oss-120b-1:0", {
        "messages": [{"role": "user", "content": "hi"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "a", "schema": {"description": t}}}}),
    "deepseek prompt": lambda t: ("InvokeModel", "us.deepseek.r1-v1:0", {"prompt": t}),
    "cohere message": lambda t: ("InvokeModel", "cohere.command-r-plus-v1:0", {"message": t}),
    "cohere preamble": lambda t: ("InvokeModel", "cohere.command-r-plus-v1:0", {
        "message": "hi", "preamble": t}),
    "cohere document": lambda t: ("InvokeModel", "cohere.command-r-plus-v1:0", {
        "message": "hi", "documents": [{"title": "a", "snippet": t}]}),
    "cohere tool": lambda t: ("InvokeModel", "cohere.command-r-plus-v1:0", {
        "message": "hi", "tools": [{"name": "f", "description": "d", "parameter_definitions": {
            "q": {"description": t, "type": "str"}}}]}),
    "cohere command": lambda t: ("InvokeModel", "cohere.command-text-v14", {"prompt": t}),
    "cohere embed": lambda t: ("InvokeModel", "cohere.embed-english-v3", {
        "texts": ["a", t], "input_type": "search_document"}),
    "cohere rerank": lambda t: ("InvokeModel", "cohere.rerank-v3-5:0", {
        "query": "q", "documents": ["a", t], "api_version": 2}),
    "titan image": lambda t: ("InvokeModel", "amazon.titan-image-generator-v2:0", {
        "taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a fox", "negativeText": t}}),
    "stability": lambda t: ("InvokeModel", "stability.stable-diffusion-xl-v1", {
        "text_prompts": [{"text": t}]}),
    "nova reel async": lambda t: ("StartAsyncInvoke", "amazon.nova-reel-v1:0", {
        "modelId": "amazon.nova-reel-v1:0", "modelInput": {"taskType": "TEXT_VIDEO",
        "textToVideoParams": {"text": t}}, "outputDataConfig": {"s3OutputDataConfig": {
            "s3Uri": "s3://b/k"}}}),
}
_PATHS = {"Converse": "converse", "ConverseStream": "converse-stream", "InvokeModel": "invoke",
          "CountTokens": "count-tokens"}


class Recorder:
    """The gateway under test: content filters in front of an upstream that records calls;
    the labels of each call are kept."""

    def __init__(self, on_unknown_shape: str = "block") -> None:
        self.calls: list[Call] = []
        self.labels: list[str] = []

        def outer(call: Call, next_: Any) -> Response:
            try:
                return next_(call)
            finally:
                self.labels = list(call.attrs.get(FINDINGS, []))

        def upstream(call: Call) -> Response:
            self.calls.append(call)
            return Response(200, {"content-type": "application/json"}, b"{}")

        rules = [FilterRule(PII), FilterRule(TERMS)]
        self.gateway = Gateway(upstream, [outer, ContentFilter(rules, on_unknown_shape=(
            on_unknown_shape))], anonymous=True)

    def send(self, operation: str, model: str, body: dict[str, Any]) -> Response:
        path = ("/async-invoke" if operation == "StartAsyncInvoke"
                else f"/model/{model}/{_PATHS[operation]}")
        return self.gateway.handle("POST", path, "", {"content-type": "application/json"},
                                   json.dumps(body, ensure_ascii=False).encode())


def _cases(values: list[str]) -> list[Any]:
    out = []
    for place in PLACES:
        for value in values:
            out.append(pytest.param(place, value, id=f"{place}-{value.encode('unicode_escape')!r}"))
    return out


@pytest.mark.parametrize(("place", "value"), _cases(BLOCKED))
def test_obfuscated_values_in_every_field_are_blocked(place: str, value: str) -> None:
    gateway = Recorder()
    response = gateway.send(*PLACES[place](f"note {value} end"))
    assert response.status == 400, response.body
    assert b"content filter" in response.body and not gateway.calls


@pytest.mark.parametrize(("place", "value"), _cases(REDACTED))
def test_obfuscated_addresses_in_every_field_are_redacted(place: str, value: str) -> None:
    gateway = Recorder()
    operation, model, body = PLACES[place](f"note {value} end")
    assert gateway.send(operation, model, body).status == 200
    (call,) = gateway.calls
    texts = [ref.text for ref in request_fields(operation, model, call.json())]
    assert any("[EMAIL]" in t for t in texts)
    assert scan_joined(texts, [PII, TERMS]) == []
    assert "pii:email:redact" in gateway.labels


# -- what no filter can read -------------------------------------------------------------------

MEDIA: dict[str, tuple[str, str, dict[str, Any]]] = {
    "converse image": ("Converse", HAIKU, {"messages": _say(
        {"image": {"format": "png", "source": {"bytes": PNG}}})}),
    "converse video in s3": ("Converse", "amazon.nova-lite-v1:0", {"messages": _say(
        {"video": {"format": "mp4", "source": {"s3Location": {"uri": "s3://b/v.mp4"}}}})}),
    "converse pdf": ("Converse", HAIKU, {"messages": _say({"document": {
        "format": "pdf", "name": "report", "source": {"bytes": PNG}}})}),
    "converse tool result image": ("Converse", HAIKU, {"messages": [{"role": "user", "content": [
        {"toolResult": {"toolUseId": "1", "content": [{"image": {
            "format": "png", "source": {"bytes": PNG}}}]}}]}]}),
    "anthropic image": ("InvokeModel", HAIKU, _anthropic(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this?"}]}])),
    "anthropic pdf": ("InvokeModel", HAIKU, _anthropic(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": PNG}}]}])),
    "openai image url": ("InvokeModel", "openai.gpt-oss-120b-1:0", {"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + PNG}}]}]}),
    "llama images": ("InvokeModel", "meta.llama3-2-11b-instruct-v1:0", {
        "prompt": "describe", "images": [PNG]}),
    "titan image variation": ("InvokeModel", "amazon.titan-image-generator-v2:0", {
        "taskType": "IMAGE_VARIATION", "imageVariationParams": {"text": "a", "images": [PNG]}}),
    "titan embed image": ("InvokeModel", "amazon.titan-embed-image-v1", {"inputImage": PNG}),
    "data url in extra fields": ("Converse", HAIKU, _converse(
        additionalModelRequestFields={"picture": "data:image/png;base64," + PNG})),
    "stability init_image": ("InvokeModel", "stability.stable-diffusion-xl-v1", {
        "text_prompts": [{"text": "a castle"}], "init_image": BLOB}),
}


@pytest.mark.parametrize("case", sorted(MEDIA))
def test_unreadable_content_is_refused_by_default(case: str) -> None:
    gateway = Recorder()
    response = gateway.send(*MEDIA[case])
    assert response.status == 400 and not gateway.calls
    assert b"cannot read" in response.body and b"unreadable content is refused" in response.body
    assert gateway.labels == ["pii:unreadable:block", "deny_terms:unreadable:block"]


@pytest.mark.parametrize("case", sorted(MEDIA))
def test_unreadable_content_passes_labelled_when_configured(case: str) -> None:
    gateway = Recorder("pass")
    assert gateway.send(*MEDIA[case]).status == 200 and len(gateway.calls) == 1
    assert gateway.labels == ["pii:unreadable:allowed", "deny_terms:unreadable:allowed"]


def test_text_findings_still_act_next_to_unreadable_content() -> None:
    operation, model, body = MEDIA["anthropic image"]
    body["messages"][0]["content"][1]["text"] = "card 4111 1111 1111 1111"
    gateway = Recorder("pass")
    response = gateway.send(operation, model, body)
    assert response.status == 400 and b"credit_card" in response.body
    assert gateway.labels == ["pii:credit_card:block"]
    gateway.send(*PLACES["converse text"]("mail jane@example.com"))
    assert gateway.labels == ["pii:email:redact"]
    body["messages"][0]["content"][1]["text"] = "mail jane@example.com"
    assert gateway.send(operation, model, body).status == 200
    assert gateway.labels == ["pii:email:redact", "pii:unreadable:allowed",
                              "deny_terms:unreadable:allowed"]


def test_long_text_in_a_free_form_field_is_read_not_taken_for_media() -> None:
    prose = "word " * 100 + "jane@example.com"
    gateway = Recorder()
    assert gateway.send(*PLACES["converse additionalModelRequestFields"](prose)).status == 200
    assert gateway.labels == ["pii:email:redact"]


def test_unknown_shapes_are_labelled_too() -> None:
    body = {"zork": "an unknown family"}
    strict, lenient = Recorder(), Recorder("pass")
    assert strict.send("InvokeModel", "acme.mystery-v1", body).status == 400
    assert strict.labels == ["pii:unreadable:block", "deny_terms:unreadable:block"]
    assert lenient.send("InvokeModel", "acme.mystery-v1", body).status == 200
    assert lenient.labels == ["pii:unreadable:allowed", "deny_terms:unreadable:allowed"]
