"""Content filters end to end: boto3 -> gateway over HTTP (configured from TOML) -> FakeBedrock."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from bedrock_gateway.testing import FakeBedrock

from ..conftest import ServeConfig, gateway_client, records

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
Start = Callable[[str], tuple[Any, Path]]


def say(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


@pytest.fixture
def start(configured: ServeConfig) -> Iterator[Start]:
    clients: list[Any] = []

    def start(filters: str) -> tuple[Any, Path]:
        server, log = configured(filters)
        clients.append(gateway_client(server.url))
        return clients[-1], log

    yield start
    for client in clients:
        client.close()


def test_a_prompt_with_an_email_is_blocked_and_nothing_is_forwarded(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    client, log = start('[[filters]]\ntype = "pii"\ncategories = ["email"]\naction = "block"\n')
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=HAIKU, messages=say("write to jane.doe@example.com today"))
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "'pii'" in error["Message"] and "email" in error["Message"]
    assert "jane.doe" not in error["Message"]
    assert not fake_bedrock.requests
    (record,) = records(log, 1)
    assert record["status"] == 400 and record["filters"] == ["pii:email:block"]


def test_a_redacted_prompt_reaches_bedrock_rewritten_and_re_signed(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    client, log = start('[[filters]]\ntype = "pii"\n')
    reply = client.converse(modelId=HAIKU, messages=say("mail jane.doe@example.com or call"
                                                         " +1 415 555 0132"))
    (sent,) = fake_bedrock.requests  # the fake verified the gateway's signature over this body
    text = json.loads(sent.body)["messages"][0]["content"][0]["text"]
    assert text == "mail [EMAIL] or call [PHONE]"
    assert "[EMAIL]" in reply["output"]["message"]["content"][0]["text"]  # the echo
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
            "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}
    answer = json.loads(client.invoke_model(modelId=HAIKU, body=json.dumps(body))["body"].read())
    assert "4111" not in json.dumps(answer)
    forwarded = json.loads(fake_bedrock.requests[1].body)["messages"][0]["content"]
    assert forwarded == "my card is [CREDIT_CARD]"
    assert sorted(r["filters"][0] for r in records(log, 2)) == [
        "pii:credit_card:redact", "pii:email:redact"]


def test_a_deny_listed_phrase_in_a_stream_ends_it_after_the_clean_events(start: Start) -> None:
    client, log = start('[[filters]]\ntype = "deny_terms"\nterms = ["project falcon"]\n'
                        'applies_to = ["output"]\n')
    # the fake echoes the prompt word by word: the phrase arrives split over two deltas
    stream = client.converse_stream(modelId=HAIKU, messages=say(
        "tell me everything about Project   Falcon and more"))["stream"]
    seen: list[str] = []
    with pytest.raises(EventStreamError) as caught:
        for event in stream:
            if "contentBlockDelta" in event:
                seen.append(event["contentBlockDelta"]["delta"]["text"])
    stream.close()
    assert caught.value.response["Error"]["Code"] == "validationException"
    assert "".join(seen).startswith("Echo: tell me everything about")
    assert "falcon" not in "".join(seen).lower()
    (record,) = records(log, 1)
    assert record["filters"] == ["deny_terms:term:block"] and not record["complete"]


def test_output_redaction_of_a_buffered_answer(start: Start) -> None:
    client, _ = start('[[filters]]\ntype = "regex"\npatterns = { ticket = "TCK-[0-9]{4}" }\n'
                      'action = "redact"\napplies_to = ["output"]\n')
    reply = client.converse(modelId=HAIKU, messages=say("see TCK-1234 now"))
    assert reply["output"]["message"]["content"][0]["text"] == "Echo: see [TICKET] now"


def test_guardrail_injection_reaches_bedrock(start: Start, fake_bedrock: FakeBedrock) -> None:
    client, log = start('[[filters]]\ntype = "guardrail"\nidentifier = "gr1abc"\nversion = "3"\n')
    client.converse(modelId=HAIKU, messages=say("hello"))
    client.invoke_model(modelId=HAIKU, body=json.dumps({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]}))
    converse, invoke = fake_bedrock.requests
    assert json.loads(converse.body)["guardrailConfig"] == {
        "guardrailIdentifier": "gr1abc", "guardrailVersion": "3"}
    assert invoke.headers["x-amzn-bedrock-guardrailidentifier"] == "gr1abc"
    assert invoke.headers["x-amzn-bedrock-guardrailversion"] == "3"
    reply = client.converse(modelId=HAIKU, messages=say("BLOCKME please"))
    assert reply["stopReason"] == "guardrail_intervened"
    assert sorted(r["guardrail"] for r in records(log, 3)) == ["intervened", "none", "none"]


def test_unknown_shapes_are_refused_unless_configured_to_pass(start: Start) -> None:
    body = json.dumps({"zork": "an unknown family", "max_tokens": 5})
    strict, _ = start('[[filters]]\ntype = "pii"\n')
    with pytest.raises(ClientError) as caught:
        strict.invoke_model(modelId="acme.mystery-v1", body=body)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "cannot read" in caught.value.response["Error"]["Message"]
    lenient, _ = start('[gateway]\non_unknown_shape = "pass"\n[[filters]]\ntype = "pii"\n')
    with pytest.raises(ClientError) as caught:  # forwarded: the fake does not know the model
        lenient.invoke_model(modelId="acme.mystery-v1", body=body)
    assert "cannot read" not in caught.value.response["Error"]["Message"]


def test_a_refused_prompt_reserves_no_quota(start: Start, fake_bedrock: FakeBedrock) -> None:
    client, _ = start('[[filters]]\ntype = "pii"\ncategories = ["email"]\naction = "block"\n'
                      '[[quota.limits]]\nscope = "global"\nrequests_per_minute = 1\n')
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=HAIKU, messages=say("jane.doe@example.com"))
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    client.converse(modelId=HAIKU, messages=say("hello"))  # the one request of the minute
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=HAIKU, messages=say("hello again"))
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"


def test_an_email_split_across_blocks_is_redacted_before_bedrock_sees_it(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    client, log = start('[[filters]]\ntype = "pii"\ncategories = { email = "redact" }\n')
    client.converse(modelId=HAIKU, system=[{"text": "Reply to jane.d"}], messages=[
        {"role": "user", "content": [{"text": "oe@exam"}, {"text": "ple.com please"}]}])
    sent = json.loads(fake_bedrock.requests[-1].body)
    assert sent["system"] == [{"text": "Reply to [EMAIL]"}]
    assert sent["messages"][0]["content"] == [{"text": "[EMAIL]"}, {"text": "[EMAIL] please"}]
    assert "jane" not in fake_bedrock.requests[-1].body.decode()
    (record,) = records(log, 1)
    assert record["filters"] == ["pii:email:redact"]


def test_text_in_tool_definitions_and_fullwidth_forms_is_filtered(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    client, _ = start('[[filters]]\ntype = "pii"\ncategories = { email = "redact",'
                      ' credit_card = "block" }\n')
    tool = {"toolSpec": {"name": "notify", "description": "mails bob\uff20example\uff0ecom",
                         "inputSchema": {"json": {"type": "object", "properties": {
                             "to": {"type": "string", "enum": ["jane@example.com"]}}}}}}
    client.converse(modelId=HAIKU, messages=say("hello"), toolConfig={"tools": [tool]})
    sent = json.loads(fake_bedrock.requests[-1].body)["toolConfig"]["tools"][0]["toolSpec"]
    assert sent["description"] == "mails [EMAIL]"
    assert sent["inputSchema"]["json"]["properties"]["to"]["enum"] == ["[EMAIL]"]
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=HAIKU, messages=say(
            "card \uff14\uff11\uff11\uff11" + " \uff11\uff11\uff11\uff11" * 3))
    assert "credit_card" in caught.value.response["Error"]["Message"]
    assert len(fake_bedrock.requests) == 1


def test_an_image_follows_on_unknown_shape_and_is_labelled(
        start: Start, fake_bedrock: FakeBedrock) -> None:
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG not really"}}}
    messages = [{"role": "user", "content": [{"text": "what is this?"}, image]}]
    strict, strict_log = start('[[filters]]\ntype = "pii"\n')
    with pytest.raises(ClientError) as caught:
        strict.converse(modelId=HAIKU, messages=messages)
    assert "cannot read messages/0/content/1/image" in caught.value.response["Error"]["Message"]
    assert not fake_bedrock.requests
    assert records(strict_log, 1)[0]["filters"] == ["pii:unreadable:block"]
    lenient, lenient_log = start('[gateway]\non_unknown_shape = "pass"\n[[filters]]\ntype = "pii"\n')
    lenient.converse(modelId=HAIKU, messages=messages)
    assert len(fake_bedrock.requests) == 1
    assert records(lenient_log, 1)[0]["filters"] == ["pii:unreadable:allowed"]
