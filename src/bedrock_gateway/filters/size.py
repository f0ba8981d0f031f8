"""Size limits on a request: prompt characters, conversation messages and media blocks.

:class:`SizeFilter` is a :class:`~bedrock_gateway.filters.base.RequestPolicy`. It never rewrites
the body; each limit exceeded gives one ``block`` finding (``start = end = 0``) whose category
names the limit:

- ``prompt_chars``: the characters of every prompt string the shape holds
  (:func:`~bedrock_gateway.filters.text.request_texts`; image, document and video bytes are not
  text). A body whose shape is not recognised is measured by every string in it, so an unknown
  shape cannot slip past the limit (it can only be over-counted).
- ``messages``: the conversation's messages: ``messages[]`` (Converse, Nova, Anthropic, Mistral
  chat, OpenAI-style, InvokeGuardrailChecks); else Cohere ``chat_history[]`` plus 1 for the
  prompt string (``message``, ``prompt``, ``inputText``, ``inputPrompt``) if there is one.
- ``media``: image, document, video and audio blocks in ``system`` and ``messages[].content``,
  tool results included: Converse / Nova members (``{"image": …}``, ``{"document": …}``,
  ``{"video": …}``, ``{"audio": …}``, ``guardContent.image``) and typed blocks
  (``{"type": "image" | "document"}``, OpenAI-style ``image_url``).

CountTokens is measured on ``input.converse`` or the decoded ``input.invokeModel.body``,
StartAsyncInvoke on ``modelInput``; operations without a conversation count 0 messages and media.
"""

from __future__ import annotations

from typing import Any

from bedrock_gateway.filters.base import Finding
from bedrock_gateway.filters.text import UnknownShapeError, decode_blob, request_texts

__all__ = ["SizeFilter"]

_MEDIA_MEMBERS = ("image", "document", "video", "audio")  # Converse / Nova content blocks
_MEDIA_TYPES = frozenset({"image", "document", "image_url", "video", "audio"})  # typed blocks
_PROMPT_KEYS = ("message", "prompt", "inputText", "inputPrompt")  # one prompt string


def _limit(value: int | None, name: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be a non-negative integer or None")
    return value


def _string_chars(value: object) -> int:
    """Characters in every string of a JSON value (the measure of an unknown shape)."""
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            total += len(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return total


def _conversation(operation: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The object holding the conversation (``messages`` etc.) for this operation."""
    found: object = None
    if operation in ("Converse", "ConverseStream", "InvokeModel",
                     "InvokeModelWithResponseStream", "InvokeGuardrailChecks"):
        found = body
    elif operation == "StartAsyncInvoke":
        found = body.get("modelInput")
    elif operation == "CountTokens":
        given = body.get("input")
        given = given if isinstance(given, dict) else {}
        invoke = given.get("invokeModel")
        found = given.get("converse")
        if not isinstance(found, dict) and isinstance(invoke, dict):
            found = invoke.get("body")
            if isinstance(found, str):
                try:
                    found = decode_blob(found)[0]
                except UnknownShapeError:
                    found = None
    return found if isinstance(found, dict) else None


def _message_count(doc: dict[str, Any]) -> int:
    messages, history = doc.get("messages"), doc.get("chat_history")
    if isinstance(messages, list):
        return len(messages)
    count = len(history) if isinstance(history, list) else 0  # Cohere command R history
    return count + any(isinstance(doc.get(key), str) for key in _PROMPT_KEYS)


def _media_count(blocks: object) -> int:
    """Media blocks in a list of content blocks, nested tool results included."""
    count = 0
    stack = [blocks]
    while stack:
        items = stack.pop()
        for block in items if isinstance(items, list) else ():
            if not isinstance(block, dict):
                continue
            count += sum(1 for key in _MEDIA_MEMBERS if key in block)
            count += block.get("type") in _MEDIA_TYPES
            guard = block.get("guardContent")
            count += isinstance(guard, dict) and "image" in guard
            result = block.get("toolResult")
            stack.append(result.get("content") if isinstance(result, dict) else None)
            if block.get("type") == "tool_result":
                stack.append(block.get("content"))
    return count


class SizeFilter:
    """Blocks requests over a prompt-character, message-count or media-count limit."""

    def __init__(
        self,
        *,
        max_prompt_chars: int | None = None,
        max_messages: int | None = None,
        max_media: int | None = None,
        name: str = "size",
    ) -> None:
        self.max_prompt_chars = _limit(max_prompt_chars, "max_prompt_chars")
        self.max_messages = _limit(max_messages, "max_messages")
        self.max_media = _limit(max_media, "max_media")
        self.name = name

    def __repr__(self) -> str:
        return (f"SizeFilter(max_prompt_chars={self.max_prompt_chars},"
                f" max_messages={self.max_messages}, max_media={self.max_media},"
                f" name={self.name!r})")

    def prompt_chars(self, operation: str, model_id: str | None, body: dict[str, Any]) -> int:
        try:
            return sum(len(ref.text) for ref in request_texts(operation, model_id, body))
        except UnknownShapeError:
            return _string_chars(body)

    def apply(self, operation: str, model_id: str | None, body: dict[str, Any]
              ) -> list[Finding]:
        over: list[str] = []
        limit = self.max_prompt_chars
        if limit is not None and self.prompt_chars(operation, model_id, body) > limit:
            over.append("prompt_chars")
        doc = _conversation(operation, body)
        if doc is not None:
            if self.max_messages is not None and _message_count(doc) > self.max_messages:
                over.append("messages")
            if self.max_media is not None:
                media = _media_count(doc.get("system")) + sum(
                    _media_count(m.get("content"))
                    for m in doc.get("messages") or () if isinstance(m, dict))
                if media > self.max_media:
                    over.append("media")
        return [Finding(self.name, category, 0, 0, "block") for category in over]
