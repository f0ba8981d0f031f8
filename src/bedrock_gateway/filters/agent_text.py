"""Where bedrock-agent-runtime calls carry text, for the content filters.

Requests: Retrieve ``retrievalQuery.text``; RetrieveAndGenerate(Stream) ``input.text``;
InvokeAgent ``inputText``. Answers: Retrieve's ``retrievalResults[].content.text`` (knowledge
base passages reach the client too); RetrieveAndGenerate's ``output.text`` and every text inside
its ``citations`` — the generated part each cites and the passages it cites — because a
redaction of ``output.text`` alone would leave the same words in a citation. Streams:
InvokeAgent ``chunk`` events carry the reply as raw text in base64 ``bytes`` (not model JSON);
RetrieveAndGenerateStream ``output`` events carry ``{"text"}`` and its ``citation`` events are
judged whole, frame by frame (:func:`citation_texts`).
"""

from __future__ import annotations

from typing import Any

from bedrock_gateway.filters.text_walk import Path, Refs, TextRef, each, field, get, string_at

__all__ = ["agent_request_texts", "agent_response_texts", "citation_texts"]
_REQUEST_TEXT = {
    "Retrieve": ("retrievalQuery", "text"),
    "RetrieveAndGenerate": ("input", "text"),
    "RetrieveAndGenerateStream": ("input", "text"),
    "InvokeAgent": ("inputText",),
}
_PASSAGES = each(field("content", "text"))


def agent_request_texts(operation: str, body: dict[str, Any]) -> list[TextRef]:
    """The prompt text of an agent-runtime request."""
    out = Refs()
    string_at(out, body, (), *_REQUEST_TEXT[operation])
    return out


def _citation(out: Refs, citation: object, path: Path) -> None:
    string_at(out, citation, path, "generatedResponsePart", "textResponsePart", "text")
    _PASSAGES(out, *get(citation, path, "retrievedReferences"))


def agent_response_texts(operation: str, body: dict[str, Any]) -> list[TextRef]:
    """Every text of a buffered agent-runtime answer that reaches the client."""
    out = Refs()
    if operation == "Retrieve":
        _PASSAGES(out, body.get("retrievalResults"), ("retrievalResults",))
    elif operation == "RetrieveAndGenerate":
        string_at(out, body, (), "output", "text")
        each(_citation)(out, body.get("citations"), ("citations",))
    return out


def citation_texts(payload: dict[str, Any]) -> list[TextRef]:
    """The texts of one RetrieveAndGenerateStream ``citation`` event payload."""
    out = Refs()
    _citation(out, payload.get("citation"), ("citation",))
    return out
