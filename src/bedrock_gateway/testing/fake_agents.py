"""bedrock-agent-runtime answers (pure builders): Retrieve, RetrieveAndGenerate(Stream),
InvokeAgent, shaped as botocore's service model describes them.

The fake's knowledge base holds one document per knowledge base id; answers echo the query
(``"Echo: <text>"``) so tests can see what reached the upstream. InvokeAgent answers with
``chunk`` events whose ``bytes`` carry the reply in pieces, and the session (and memory) ids in
the response headers, as Bedrock does.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.eventstream import event_frame
from bedrock_gateway.testing.fake_models import Segments
from bedrock_gateway.testing.fake_text import load_json_object

__all__ = ["invoke_agent", "retrieve", "retrieve_and_generate", "retrieve_and_generate_stream"]

_JSON = "application/json"
_EVENTSTREAM = "application/vnd.amazon.eventstream"


def _text(request: dict[str, Any], *path: str) -> str:
    node: Any = request
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, str) or not node:
        raise ValidationError(f"{'.'.join(path)} is required and must be a non-empty string.")
    return node


def _reference(kb_id: str, text: str) -> dict[str, Any]:
    return {"content": {"type": "TEXT", "text": f"Document of {kb_id} about: {text}"},
            "location": {"type": "S3", "s3Location": {"uri": f"s3://fake-kb-{kb_id.lower()}/doc-1.txt"}},
            "metadata": {"x-amz-bedrock-kb-chunk-id": "1"}}


def _session_id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def retrieve(kb_id: str, body: bytes) -> dict[str, Any]:
    """``{"retrievalResults": [...]}`` for ``retrievalQuery.text``."""
    text = _text(load_json_object(body), "retrievalQuery", "text")
    return {"retrievalResults": [{**_reference(kb_id, text), "score": 0.87}]}


def _generation(body: bytes) -> tuple[dict[str, Any], str, str]:
    request = load_json_object(body)
    text = _text(request, "input", "text")
    config = request.get("retrieveAndGenerateConfiguration")
    if not isinstance(config, dict) or config.get("type") not in (
            "KNOWLEDGE_BASE", "EXTERNAL_SOURCES"):
        raise ValidationError("retrieveAndGenerateConfiguration.type must be KNOWLEDGE_BASE or"
                              " EXTERNAL_SOURCES.")
    source = ("knowledgeBaseConfiguration" if config["type"] == "KNOWLEDGE_BASE"
              else "externalSourcesConfiguration")
    _text(config, source, "modelArn")
    if source == "knowledgeBaseConfiguration":
        _text(config, source, "knowledgeBaseId")
    session = request.get("sessionId")
    if session is not None and not isinstance(session, str):
        raise ValidationError("sessionId must be a string.")
    return request, text, session or _session_id(text)


def retrieve_and_generate(body: bytes) -> dict[str, Any]:
    """The generated answer with its citation and the session id."""
    request, text, session = _generation(body)
    answer = f"Echo: {text}"
    kb_id = request["retrieveAndGenerateConfiguration"].get(
        "knowledgeBaseConfiguration", {}).get("knowledgeBaseId", "ext")
    return {"sessionId": session, "output": {"text": answer},
            "citations": [{"generatedResponsePart": {"textResponsePart": {
                "text": answer, "span": {"start": 0, "end": len(answer) - 1}}},
                "retrievedReferences": [_reference(kb_id, text)]}]}


def retrieve_and_generate_stream(body: bytes) -> tuple[list[tuple[str, str]], Segments]:
    """Headers (the session id) and ``output`` events, one per word, then a ``citation``."""
    _, text, session = _generation(body)
    words = f"Echo: {text}".split(" ")
    segments: Segments = [
        (event_frame("output", {"text": w if i == 0 else " " + w}), 1)
        for i, w in enumerate(words)]
    segments.append((event_frame("citation", {"citation": {"retrievedReferences": [
        _reference("stream", text)]}}), 1))
    headers = [("Content-Type", _EVENTSTREAM),
               ("x-amzn-bedrock-knowledge-base-session-id", session)]
    return headers, segments


def invoke_agent(params: dict[str, str], body: bytes) -> tuple[list[tuple[str, str]], Segments]:
    """``chunk`` events carrying the reply (base64 ``bytes``), one per word; the session, content
    type and memory id in headers."""
    request = load_json_object(body)
    text = _text(request, "inputText")
    words = f"Agent {params['agentId']}: {text}".split(" ")
    segments: Segments = [
        (event_frame("chunk", {"bytes": base64.b64encode(
            (w if i == 0 else " " + w).encode()).decode()}), 1)
        for i, w in enumerate(words)]
    headers = [("Content-Type", _EVENTSTREAM), ("x-amzn-bedrock-agent-content-type", _JSON),
               ("x-amz-bedrock-agent-session-id", params["sessionId"])]
    memory = request.get("memoryId")
    if isinstance(memory, str):
        headers.append(("x-amz-bedrock-agent-memory-id", memory))
    return headers, segments
