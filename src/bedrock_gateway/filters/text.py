"""Where the text is in every Bedrock request and buffered response body.

:func:`request_texts` / :func:`response_texts` give each string a content filter must see as a
:class:`TextRef` (its path in the parsed JSON and the text), in document order; :func:`set_text`
writes a replacement back. Stream frames: ``stream_text.py`` (:func:`frame_text`,
:func:`with_text`, re-exported here). Shapes read (``[]`` = each item):

- **Converse(Stream)** ``system[]``, ``messages[].content[]`` blocks: ``text``,
  ``guardContent.text.text``, ``reasoningContent.reasoningText.text``, ``toolResult.content[]``
  (``text``, string leaves of ``json``), ``toolUse.input`` string leaves, ``document.source``
  ``text`` / ``content[].text``, ``searchResult`` / ``citationsContent`` ``content[].text``;
  ``promptVariables.*.text``. Image, video, audio and document bytes are not text.
- **InvokeModel(WithResponseStream)**: the model-native body, recognised by its keys (an
  application-inference-profile ARN does not name its family): ``system`` (string or blocks),
  ``messages[].content`` (a string; Anthropic / OpenAI typed blocks incl. ``tool_result``,
  ``tool_use``, ``thinking``, text documents; or Nova blocks as Converse) and OpenAI-style
  ``tool_calls[].function.arguments``, ``prompt`` (Llama, Mistral, DeepSeek,
  Cohere command, Anthropic completions), ``inputText`` (Titan), ``message``,
  ``chat_history[].message``, ``preamble``, ``documents`` (Cohere command R), ``texts[]`` (Cohere
  embed), ``query`` (rerank), ``text_prompts[].text`` and ``*Params`` ``text`` / ``negativeText``
  (image and video models). None of these (nor an image-only input) raises
  :class:`UnknownShapeError`, as does a known key holding the wrong JSON type. The base model id
  (:func:`base_model_id`) names the model in errors; an ``*embed*`` model's answer is ``[]``.
- **CountTokens** ``input.converse`` as Converse, ``input.invokeModel.body`` (a base64 blob) as
  InvokeModel: paths continue inside the blob and :func:`set_text` re-encodes it;
  **StartAsyncInvoke** ``modelInput``; **ApplyGuardrail** ``content[].text.text``;
  **InvokeGuardrailChecks** ``messages[].content[].text``; Get/ListAsyncInvokes: none.

Responses: Converse and Nova ``output.message.content[]`` (``text``, reasoning text, citations'
text); Anthropic ``content[].text`` / ``thinking``, ``completion``; Titan
``results[].outputText``; Llama ``generation``; Mistral ``outputs[].text``; chat completions
``choices[]`` (``message.content``, ``message.reasoning_content``, ``text``); Cohere ``text``,
``generations[].text``; ApplyGuardrail ``outputs[].text``. Embeddings and images: ``[]``.
Tool-use input the model generates is not returned (streams deliver it as partial JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.filters.stream_text import frame_text, with_text

__all__ = ["TextRef", "UnknownShapeError", "base_model_id", "decode_blob", "frame_text",
           "request_texts", "response_texts", "set_text", "with_text"]

Path = tuple[str | int, ...]
# bedrock-agent-runtime shapes live in agent_text.py (which builds on the walkers here).
_AGENT_OPERATIONS = frozenset({"Retrieve", "RetrieveAndGenerate", "RetrieveAndGenerateStream",
                               "InvokeAgent"})
_GEO_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")


@dataclass(frozen=True, slots=True)
class TextRef:
    """One string of a document: ``document[path[0]][path[1]]... == text``."""

    path: Path
    text: str


class UnknownShapeError(ValueError):
    """The body's shape is not one we can read (the message never contains its text)."""


def base_model_id(model_id: str | None) -> str:
    """``model_id`` without an ARN's ``arn:…/`` and a cross-region prefix (``us.`` …)."""
    base = model_id or ""
    if base.startswith("arn:"):
        base = base.rsplit("/", 1)[-1]
    prefix = next((p for p in _GEO_PREFIXES if base.startswith(p)), "")
    return base[len(prefix):]


def _where(path: Path) -> str:
    return "/".join(map(str, path)) or "the body"


def _list(value: object, path: Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnknownShapeError(f"expected a list at {_where(path)}")
    return value


def _dict(value: object, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnknownShapeError(f"expected an object at {_where(path)}")
    return value


def _get(node: object, path: Path, *keys: str) -> tuple[Any, Path]:
    """``node[keys[0]][keys[1]]...`` through objects (``None`` if absent) and its path."""
    for key in keys:
        node = _dict(node, path).get(key)
        path = (*path, key)
    return node, path


Refs = list[TextRef]
_Walker = Callable[[Refs, Any, Path], None]


def _str(out: Refs, value: object, path: Path) -> None:
    if isinstance(value, str):
        out.append(TextRef(path, value))
    elif value is not None:
        raise UnknownShapeError(f"expected a string at {_where(path)}")


def _str_at(out: Refs, node: object, path: Path, *keys: str) -> None:
    _str(out, *_get(node, path, *keys))


def _leaves(out: Refs, value: object, path: Path) -> None:
    """Every string leaf of a JSON value (tool inputs and results, documents)."""
    stack: list[tuple[Path, object]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            out.append(TextRef(where, node))
        elif isinstance(node, dict):
            stack.extend(((*where, k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(node))))


def _each(walk: _Walker) -> _Walker:
    """``walk`` applied to every item of a list."""

    def walk_all(out: Refs, items: object, path: Path) -> None:
        for i, item in enumerate(_list(items, path)):
            walk(out, item, (*path, i))

    return walk_all


def _field(*keys: str) -> _Walker:
    """The string at ``keys`` inside an object."""
    return lambda out, node, path: _str_at(out, node, path, *keys)


def _blocks(out: Refs, blocks: object, path: Path, prompt: bool) -> None:
    for i, block in enumerate(_list(blocks, path)):
        _block(out, block, (*path, i), prompt)


def _content(out: Refs, content: object, path: Path, prompt: bool) -> None:
    """A string, or a list of content blocks."""
    if isinstance(content, str):
        out.append(TextRef(path, content))
    else:
        _blocks(out, content, path, prompt)


def _document(out: Refs, document: object, p: Path, prompt: bool) -> None:
    source, where = _get(document, p, "source")
    _str_at(out, source, where, "text")
    _blocks(out, *_get(source, where, "content"), prompt)


_BlockWalker = Callable[[Refs, Any, Path, bool], None]
# Converse / Nova content-block members that hold text (the others: image, video, audio, ...).
_MEMBERS: dict[str, _BlockWalker] = {
    "text": lambda out, v, p, prompt: _str(out, v, p),
    "reasoningContent": lambda out, v, p, prompt: _str_at(out, v, p, "reasoningText", "text"),
    "guardContent": lambda out, v, p, prompt: _str_at(out, v, p, "text", "text"),
    "document": _document,
    "citationsContent": lambda out, v, p, prompt: _blocks(out, *_get(v, p, "content"), prompt),
    "searchResult": lambda out, v, p, prompt: _blocks(out, *_get(v, p, "content"), prompt),
}
# Members only a prompt's blocks carry: tool results, tool inputs, JSON tool-result parts.
_PROMPT_MEMBERS: dict[str, _BlockWalker] = _MEMBERS | {
    "toolResult": lambda out, v, p, prompt: _blocks(out, *_get(v, p, "content"), prompt),
    "toolUse": lambda out, v, p, prompt: _leaves(out, *_get(v, p, "input")),
    "json": lambda out, v, p, prompt: _leaves(out, v, p),
}


def _block(out: Refs, block: object, p: Path, prompt: bool) -> None:
    """One content block, Converse / Nova (keyed by member) or Anthropic / OpenAI (``type``)."""
    if not isinstance(block, dict):
        raise UnknownShapeError(f"expected a content block at {_where(p)}")
    members = _PROMPT_MEMBERS if prompt else _MEMBERS
    for key, value in block.items():
        walk = members.get(key)
        if walk is not None:
            walk(out, value, (*p, key), prompt)
    kind = block.get("type")
    if kind == "thinking":
        _str_at(out, block, p, "thinking")
    elif kind == "tool_result" and prompt:
        _content(out, block.get("content"), (*p, "content"), prompt)
    elif kind == "tool_use" and prompt:
        _leaves(out, block.get("input"), (*p, "input"))
    elif kind == "document":  # Anthropic: plain-text and content-block document sources
        source, where = _get(block, p, "source")
        if _dict(source, where).get("type") == "text":
            _str_at(out, source, where, "data")
        elif source.get("type") == "content":
            _content(out, source.get("content"), (*where, "content"), prompt)


def _message(out: Refs, message: object, p: Path) -> None:
    """A chat message: ``content`` (string or blocks), Cohere's ``message``, OpenAI tool calls."""
    content, where = _get(message, p, "content")
    _content(out, content, where, True)
    _str_at(out, message, p, "message")
    _each(_field("function", "arguments"))(out, *_get(message, p, "tool_calls"))


_messages = _each(_message)


def _converse(out: Refs, body: object, path: Path) -> None:
    _blocks(out, *_get(body, path, "system"), True)
    _messages(out, *_get(body, path, "messages"))
    variables, where = _get(body, path, "promptVariables")
    for name, value in _dict(variables, where).items():
        _str_at(out, value, (*where, name), "text")


def _params(out: Refs, params: object, path: Path) -> None:
    """Titan / Nova image, Nova Reel and Nova embedding ``*Params`` objects."""
    text, where = _get(params, path, "text")
    if isinstance(text, dict):  # Nova multimodal embeddings: {"text": {"value": ...}}
        _str_at(out, text, where, "value")
    else:
        _str(out, text, where)
    _str_at(out, params, path, "negativeText")
    _str_at(out, params, path, "maskPrompt")
    _each(_field("text"))(out, *_get(params, path, "shots"))


_INVOKE_KEYS: dict[str, _Walker] = {
    **dict.fromkeys(("prompt", "inputText", "inputPrompt", "message", "preamble", "query",
                     "negative_prompt"), _str),
    "system": lambda out, v, p: _content(out, v, p, True),
    **dict.fromkeys(("messages", "chat_history"), _messages),
    **dict.fromkeys(("documents", "tool_results"), _leaves),
    "texts": _each(_str),
    "text_prompts": _each(_field("text")),
}
_NO_TEXT_KEYS = frozenset({"inputImage", "images", "image", "taskType"})  # image-only inputs


def _by_key(out: Refs, body: object, path: Path, model_id: str | None, answer: bool) -> None:
    """Walk each key a family puts its text under; no known key at all: an unknown shape."""
    table, no_text = (_RESPONSE_KEYS, _NO_TEXT_ANSWERS) if answer else (_INVOKE_KEYS, _NO_TEXT_KEYS)
    recognised = False
    for key, value in _dict(body, path).items():
        walker = table.get(key)
        if walker is None and not answer and key.endswith("Params") and isinstance(value, dict):
            walker = _params
        if walker is not None:
            walker(out, value, (*path, key))
        recognised = recognised or walker is not None or key in no_text
    if not recognised:
        what = "response" if answer else "body"
        model = base_model_id(model_id) or "an unnamed model"
        raise UnknownShapeError(f"unrecognised InvokeModel {what} for {model} at {_where(path)}")


def _invoke(out: Refs, body: object, path: Path, model_id: str | None) -> None:
    _by_key(out, body, path, model_id, answer=False)


def decode_blob(value: str, path: Path = ()) -> tuple[dict[str, Any], bool]:
    """A JSON object sent as a blob (CountTokens ``input.invokeModel.body``) and whether it was
    base64 (as botocore sends it) rather than plain JSON text."""
    try:
        raw, encoded = base64.b64decode(value, validate=True), True
    except (binascii.Error, ValueError):
        raw, encoded = value.encode(), False
    try:
        return _dict(json.loads(raw), path), encoded
    except (ValueError, UnicodeDecodeError):
        raise UnknownShapeError(f"expected a JSON object blob at {_where(path)}") from None


def _encode_blob(document: dict[str, Any], encoded: bool) -> str:
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode()).decode() if encoded else text


def _count_tokens(out: Refs, body: dict[str, Any], model_id: str | None) -> None:
    converse, where = _get(body, (), "input", "converse")
    blob, path = _get(body, (), "input", "invokeModel", "body")
    if isinstance(converse, dict):
        _converse(out, converse, where)
    elif isinstance(blob, str):
        _invoke(out, decode_blob(blob, path)[0], path, model_id)
    elif isinstance(blob, dict):
        _invoke(out, blob, path, model_id)
    else:
        raise UnknownShapeError("CountTokens needs input.converse or input.invokeModel.body")


def request_texts(operation: str, model_id: str | None, body: dict[str, Any]) -> list[TextRef]:
    """Every prompt string of a request body, in document order."""
    out: Refs = []
    if operation in ("Converse", "ConverseStream"):
        _converse(out, body, ())
    elif operation in ("InvokeModel", "InvokeModelWithResponseStream"):
        _invoke(out, body, (), model_id)
    elif operation == "CountTokens":
        _count_tokens(out, body, model_id)
    elif operation == "StartAsyncInvoke":
        _invoke(out, body.get("modelInput"), ("modelInput",), model_id)
    elif operation == "ApplyGuardrail":
        _each(_field("text", "text"))(out, body.get("content"), ("content",))
    elif operation == "InvokeGuardrailChecks":
        _messages(out, body.get("messages"), ("messages",))
    elif operation in _AGENT_OPERATIONS:
        from bedrock_gateway.filters.agent_text import agent_request_texts

        return agent_request_texts(operation, body)
    elif operation not in ("GetAsyncInvoke", "ListAsyncInvokes"):
        raise UnknownShapeError(f"no known request shape for {operation}")
    return out


def _choice(out: Refs, choice: object, p: Path) -> None:
    _str_at(out, choice, p, "text")
    _content(out, *_get(choice, p, "message", "content"), False)
    _str_at(out, choice, p, "message", "reasoning_content")


def _output(out: Refs, output: object, path: Path) -> None:
    _blocks(out, *_get(output, path, "message", "content"), False)


_RESPONSE_KEYS: dict[str, _Walker] = {
    "output": _output,  # Converse, Nova
    "content": lambda out, v, p: _content(out, v, p, False),  # Anthropic Messages
    "completion": _str,  # Anthropic text completions
    "results": _each(_field("outputText")),  # Titan text (rerank results carry none)
    "generation": _str,  # Llama
    "outputs": _each(_field("text")),  # Mistral text
    "choices": _each(_choice),  # Mistral chat, DeepSeek, OpenAI-style
    "text": _str,  # Cohere command R
    "generations": _each(_field("text")),  # Cohere command
    "completions": _each(_field("data", "text")),  # AI21 Jurassic
}
_NO_TEXT_ANSWERS = frozenset({"embedding", "embeddings", "images", "artifacts"})


def response_texts(operation: str, model_id: str | None, body: dict[str, Any]) -> list[TextRef]:
    """Every generated string of a buffered response body, in document order."""
    out: Refs = []
    if operation == "Converse":
        _output(out, body.get("output"), ("output",))
    elif operation == "InvokeModel":
        if "embed" in base_model_id(model_id):
            return out  # embeddings carry no generated text, whatever their shape
        _by_key(out, body, (), model_id, answer=True)
    elif operation == "ApplyGuardrail":
        _each(_field("text"))(out, body.get("outputs"), ("outputs",))
    elif operation in _AGENT_OPERATIONS:
        from bedrock_gateway.filters.agent_text import agent_response_texts

        return agent_response_texts(operation, body)
    elif operation in ("ConverseStream", "InvokeModelWithResponseStream"):
        raise UnknownShapeError(f"{operation} answers are event streams: use frame_text")
    return out


def set_text(document: dict[str, Any], path: tuple[str | int, ...], text: str) -> None:
    """Replace the string at ``path`` with ``text`` (inside a JSON blob, re-encoding it).

    Raises ``ValueError`` if ``path`` does not lead to a string.
    """
    node: Any = document
    try:
        for i, step in enumerate(path[:-1]):
            child = node[step]
            if isinstance(child, str):  # a JSON document inside a blob (CountTokens)
                inner, encoded = decode_blob(child, path[: i + 1])
                set_text(inner, path[i + 1 :], text)
                node[step] = _encode_blob(inner, encoded)
                return
            node = child
        if not path or not isinstance(node[path[-1]], str):
            raise ValueError(f"no string at {_where(path)}")
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"no string at {_where(path)}") from None
    node[path[-1]] = text
