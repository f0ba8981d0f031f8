# ruff: noqa: RUF001  (lookalike characters are what these tests are about)
"""Texts judged joined (filters/joined.py): a value split across blocks, roles and fields of a
request is found as if whole, in every family with several fields; redaction reaches every
part; neighbours are not swallowed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway import Gateway, Response
from bedrock_gateway.call import Call
from bedrock_gateway.filters import ContentFilter, DenyTermsFilter, FilterRule, PIIFilter
from bedrock_gateway.filters.joined import redact_texts, scan_joined
from bedrock_gateway.filters.text import request_fields

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PII = PIIFilter({"email": "block", "credit_card": "block", "us_ssn": "block",
                 "aws_secret_key": "block"})
REDACT = PIIFilter({"email": "redact", "credit_card": "redact"})
TERMS = DenyTermsFilter(["project falcon", "internal only"])
BLOCKED = ["please write to jane.doe@example.com today", "card 4111 1111 1111 1111 exp",
           "ssn 123-45-6789 ok", f"key {SECRET} ok", "all about Project Falcon now",
           "this is INTERNAL only data", "pay ４１１１\u00a01111-1111.1111 now",
           "mail bob＠exam\u200bple．com now"]


def _found(texts: list[str], filters: list[Any], joined: list[bool] | None = None
           ) -> list[tuple[str, tuple[Any, ...]]]:
    return [(loc.finding.label, loc.parts) for loc in scan_joined(texts, filters, joined)]


@pytest.mark.parametrize(("texts", "expected"), [
    (["mail jane@exa", "mple.com today"], [("pii:email", ((0, 5, 13), (1, 0, 8)))]),
    (["jane", "@exam", "ple.com"], [("pii:email", ((0, 0, 4), (1, 0, 5), (2, 0, 7)))]),
    (["remember project", "falcon is secret"], [("deny_terms:term", ((0, 9, 16), (1, 0, 6)))]),
    (["ok", "proj", "ect falcon"], [("deny_terms:term", ((1, 0, 4), (2, 0, 10)))]),
    (["call", "4111 11", "11 1111 1111"], [("pii:credit_card", ((1, 0, 7), (2, 0, 12)))]),
    (["Reply to jane.d", "oe@exam", "ple.com please"],  # one finding, not two
     [("pii:email", ((0, 9, 15), (1, 0, 7), (2, 0, 7)))]),
    (["to jane.d", "oe@example.com"], [("pii:email", ((0, 3, 9), (1, 0, 14)))]),
    # found whole in one text, not grown into its neighbours
    (["mail jane@example.com", "thanks"], [("pii:email", ((0, 5, 21),))]),
    (["write to jane@exa", "mple.com", "Thanks"], [("pii:email", ((0, 9, 17), (1, 0, 8)))]),
    # nothing: words that only meet at a boundary, numbers side by side
    (["a project", "fal", "con"], []), (["2024-01-15", "4111"], []),
    (["order 4111 1111", "tomorrow 1111 1111"], []), (["", "x", ""], []),
])
def test_values_across_texts(texts: list[str], expected: list[Any]) -> None:
    assert _found(texts, [REDACT, TERMS]) == expected


def test_texts_read_apart_are_not_glued() -> None:
    # a JSON key and its value, a name and a body: spaced reading only
    texts, joined = ["enum", "jane@example.com", "proj", "ect falcon"], [False] * 4
    assert _found(texts, [REDACT, TERMS], joined) == [("pii:email", ((1, 0, 16),))]
    assert _found(texts, [REDACT, TERMS]) == [("pii:email", ((0, 0, 4), (1, 0, 16))),
                                              ("deny_terms:term", ((2, 0, 4), (3, 0, 10)))]
    assert _found(["jane@exa", "mple.com"], [REDACT], [True, False]) == []


def test_ordinary_conversations_have_no_findings() -> None:
    texts = ["You are a helpful assistant. Today is 2024-01-15.", "Prices: $1,299.99 and",
             "€ 1.299,00.", "Order 2024/000123", "4567 ships on 15.01.2024", "Version 2.4.1",
             "10.0.19041.1 is the build.", "Call me at", "5:30.", "The project", "Falcons won.",
             "and @john", ".example is not a domain"]
    assert _found(texts, [PII, TERMS]) == []
    texts = ["reach me at jane@example.com.", "Thanks!", "Or jane@example.com", "Tomorrow."]
    assert _found(texts, [REDACT]) == [("pii:email", ((0, 12, 28),)), ("pii:email", ((2, 3, 19),))]


def test_one_text_is_scanned_as_is() -> None:
    text = "jane@example.com and project falcon"
    assert [loc.finding for loc in scan_joined([text], [REDACT, TERMS])] == \
        REDACT.scan(text) + TERMS.scan(text)
    assert scan_joined([], [REDACT]) == []


def test_redaction_replaces_each_part() -> None:
    texts = ["mail jane@exa", "mple.com today", "and card 4111 1111", " 1111 1111 ok"]
    assert redact_texts(texts, scan_joined(texts, [REDACT])) == {
        0: "mail [EMAIL]", 1: "[EMAIL] today", 2: "and card [CREDIT_CARD]", 3: "[CREDIT_CARD] ok"}


# -- property: any split of a blocked text across the fields of a request --------------------

Build = Callable[[list[str]], dict[str, Any]]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def _converse(texts: list[str]) -> dict[str, Any]:
    t = texts
    return {
        "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": SCHEMA},
                                               "description": t[0]}}]},
        "system": [{"text": t[1]}, {"text": t[2]}],
        "messages": [{"role": "user", "content": [{"text": t[3]}, {"text": t[4]}]},
                     {"role": "assistant", "content": [{"text": t[5]}]},
                     {"role": "user", "content": [{"text": t[6]}]}]}


def _anthropic(texts: list[str]) -> dict[str, Any]:
    t = texts
    return {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
        "tools": [{"name": "lookup", "input_schema": SCHEMA, "description": t[0]}],
        "system": [{"type": "text", "text": t[1]}, {"type": "text", "text": t[2]}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": t[3]},
                                                  {"type": "text", "text": t[4]}]},
                     {"role": "assistant", "content": t[5]},
                     {"role": "user", "content": [{"type": "text", "text": t[6]}]}]}


def _nova(texts: list[str]) -> dict[str, Any]:
    body = _converse(texts)
    return {"schemaVersion": "messages-v1", **body, "inferenceConfig": {"maxTokens": 10}}


def _mistral(texts: list[str]) -> dict[str, Any]:
    t = texts
    return {"tools": [{"type": "function", "function": {
                "name": "lookup", "parameters": SCHEMA, "description": t[0]}}],
            "messages": [{"role": "system", "content": t[1]}, {"role": "user", "content": t[2]},
                         {"role": "assistant", "content": t[3]}, {"role": "user", "content": t[4]}],
            "max_tokens": 10}


def _cohere(texts: list[str]) -> dict[str, Any]:
    t = texts
    return {"tools": [{"name": "lookup", "parameter_definitions": {"city": {"type": "str"}},
                       "description": t[0]}],
            "preamble": t[1],
            "chat_history": [{"role": "USER", "message": t[2]}, {"role": "CHATBOT", "message": t[3]}],
            "message": t[4], "max_tokens": 10}


# (operation, model, slots in reading order, body builder)
FAMILIES: list[tuple[str, str, int, Build]] = [
    ("converse", "anthropic.claude-3-haiku-20240307-v1:0", 7, _converse),
    ("invoke", "anthropic.claude-3-haiku-20240307-v1:0", 7, _anthropic),
    ("invoke", "amazon.nova-lite-v1:0", 7, _nova),
    ("invoke", "mistral.mistral-large-2407-v1:0", 5, _mistral),
    ("invoke", "cohere.command-r-plus-v1:0", 5, _cohere),
]


def _gateway(filters: list[Any]) -> tuple[Gateway, list[Call]]:
    calls: list[Call] = []

    def upstream(call: Call) -> Response:
        calls.append(call)
        return Response(200, {"content-type": "application/json"}, b"{}")

    rules = [FilterRule(f) for f in filters]
    return Gateway(upstream, [ContentFilter(rules)], anonymous=True), calls


def _send(gateway: Gateway, family: tuple[str, str, int, Build], texts: list[str]) -> Response:
    operation, model, _, build = family
    return gateway.handle("POST", f"/model/{model}/{operation}", "",
                          {"content-type": "application/json"}, json.dumps(build(texts)).encode())


@st.composite
def _split(draw: st.DrawFn, text: str, slots: int) -> list[str]:
    """``text`` cut into 1-4 parts put in consecutive slots of running text (1 on: slot 0 is a
    tool description, read on its own); the other slots hold filler."""
    k = draw(st.integers(1, min(4, slots - 1)))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), min_size=k - 1, max_size=k - 1)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    first = draw(st.integers(1, slots - k))
    filler = draw(st.lists(st.sampled_from(["hello", "ok", "Sure.", "2024-01-15", "see:", ""]),
                           min_size=slots, max_size=slots))
    return filler[:first] + parts + filler[first + k:]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FAMILIES), st.sampled_from(BLOCKED), st.data())
def test_any_split_of_a_blocked_text_is_still_blocked(
        family: tuple[str, str, int, Build], text: str, data: st.DataObject) -> None:
    gateway, calls = _gateway([PII, TERMS])
    texts = data.draw(_split(text, family[2]))
    response = _send(gateway, family, texts)
    assert response.status == 400, texts
    assert b"content filter" in response.body and not calls


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FAMILIES), st.sampled_from(
    ["please write to jane.doe@example.com today", "pay 4111 1111 1111 1111 now",
     "mail ｊａｎｅ＠example\u00ad.com now"]), st.data())
def test_any_split_of_a_redacted_value_is_redacted_in_every_part(
        family: tuple[str, str, int, Build], text: str, data: st.DataObject) -> None:
    gateway, calls = _gateway([REDACT])
    texts = data.draw(_split(text, family[2]))
    assert _send(gateway, family, texts).status == 200
    (call,) = calls
    operation = "InvokeModel" if family[0] == "invoke" else "Converse"
    before = request_fields(operation, family[1], family[3](texts))
    sent = [ref.text for ref in request_fields(operation, family[1], call.json())]
    assert scan_joined(sent, [REDACT]) == []  # nothing left, in any reading
    assert "[EMAIL]" in "".join(sent) or "[CREDIT_CARD]" in "".join(sent)
    assert len(sent) == len(before)
    assert all(new for new, ref in zip(sent, before, strict=True) if ref.text)  # none emptied
