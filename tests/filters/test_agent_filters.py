"""Content filters cover bedrock-agent-runtime too (boto3 -> gateway -> FakeBedrock): a
knowledge-base query, an agent's input, what comes back — buffered, streamed, and the texts
inside citations, which would otherwise repeat what a redaction removed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from bedrock_gateway.eventstream import event_frame, iter_frames
from bedrock_gateway.filters.agent_text import agent_response_texts
from bedrock_gateway.filters.text import frame_text, with_text
from bedrock_gateway.testing import FakeBedrock

from ..conftest import ServeConfig, records
from ..routing.test_agent_runtime import HAIKU_ARN, KB, agents_client, kb_config, upstream

Start = Callable[[str], tuple[Any, Path]]
EMAIL = "jane.doe@example.com"


@pytest.fixture
def agent_fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def start(configured: ServeConfig, agent_fake: FakeBedrock) -> Iterator[Start]:
    clients: list[Any] = []

    def start(filters: str) -> tuple[Any, Path]:
        server, log = configured(filters, upstream=upstream(agent_fake))
        clients.append(agents_client(server.url))
        return clients[-1], log

    yield start
    for client in clients:
        client.close()


def test_queries_and_agent_input_are_filtered_before_they_leave(
        start: Start, agent_fake: FakeBedrock) -> None:
    client, log = start('[[filters]]\ntype = "pii"\ncategories = ["email"]\n'
                        '[[filters]]\ntype = "deny_terms"\nterms = ["project falcon"]\n')
    client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": f"tickets from {EMAIL}"})
    assert json.loads(agent_fake.requests[-1].body)["retrievalQuery"]["text"] == \
        "tickets from [EMAIL]"  # redacted, and the fake verified the signature over it
    with pytest.raises(ClientError) as caught:
        client.invoke_agent(agentId="AGENT12345", agentAliasId="TSTALIASID", sessionId="s1",
                            inputText="status of Project  Falcon?")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert len(agent_fake.requests) == 1
    assert sorted(r["filters"][0] for r in records(log, 2)) == [
        "deny_terms:term:block", "pii:email:redact"]


def test_buffered_answers_are_redacted_in_the_text_and_in_every_citation(start: Start) -> None:
    client, _ = start('[[filters]]\ntype = "pii"\ncategories = ["email"]\n'
                      'applies_to = ["output"]\n')
    answer = client.retrieve_and_generate(
        input={"text": f"who is {EMAIL}"}, retrieveAndGenerateConfiguration=kb_config(KB, HAIKU_ARN))
    assert answer["output"]["text"] == "Echo: who is [EMAIL]"
    assert EMAIL not in json.dumps(answer["citations"])
    found = client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": EMAIL})
    assert found["retrievalResults"][0]["content"]["text"].endswith("[EMAIL]")


def test_streamed_answers_are_redacted_or_cut(start: Start, agent_fake: FakeBedrock) -> None:
    client, _ = start('[[filters]]\ntype = "pii"\ncategories = ["email"]\n'
                      'applies_to = ["output"]\n'
                      '[[filters]]\ntype = "deny_terms"\nterms = ["project falcon"]\n'
                      'applies_to = ["output"]\n')
    streamed = client.retrieve_and_generate_stream(
        input={"text": f"mail {EMAIL} now"}, retrieveAndGenerateConfiguration=kb_config(KB, HAIKU_ARN))
    events = list(streamed["stream"])
    assert "".join(e["output"]["text"] for e in events if "output" in e) == \
        "Echo: mail [EMAIL] now"
    assert EMAIL not in json.dumps([e for e in events if "citation" in e])  # the citation too
    agent = client.invoke_agent(agentId="AGENT12345", agentAliasId="TSTALIASID", sessionId="s1",
                                inputText=f"write to {EMAIL}")
    assert b"".join(e["chunk"]["bytes"] for e in agent["completion"]) == \
        b"Agent AGENT12345: write to [EMAIL]"
    cut = client.invoke_agent(agentId="AGENT12345", agentAliasId="TSTALIASID", sessionId="s1",
                              inputText="about Project Falcon and more")
    with pytest.raises(EventStreamError) as caught:
        list(cut["completion"])
    cut["completion"].close()  # botocore leaves the connection open after an EventStreamError
    assert caught.value.response["Error"]["Code"] == "validationException"


def test_agent_frames_give_and_take_their_text() -> None:
    chunk = next(iter_frames([event_frame("chunk", {"bytes": base64.b64encode(
        "héllo".encode()).decode(), "attribution": {"citations": []}})]))
    assert frame_text("InvokeAgent", chunk) == "héllo"
    rewritten = next(iter_frames([with_text("InvokeAgent", chunk, "bye")]))
    assert frame_text("InvokeAgent", rewritten) == "bye"
    assert json.loads(rewritten.payload)["attribution"] == {"citations": []}
    output = next(iter_frames([event_frame("output", {"text": "abc"})]))
    assert frame_text("RetrieveAndGenerateStream", output) == "abc"
    assert frame_text("RetrieveAndGenerateStream", chunk) is None
    assert frame_text("InvokeAgent", output) is None
    with pytest.raises(ValueError):
        with_text("InvokeAgent", output, "x")
    texts = agent_response_texts("RetrieveAndGenerate", {
        "output": {"text": "a"}, "citations": [{"generatedResponsePart": {"textResponsePart": {
            "text": "b"}}, "retrievedReferences": [{"content": {"text": "c"}}]}]})
    assert [t.text for t in texts] == ["a", "b", "c"]
