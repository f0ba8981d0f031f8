"""Where the text a model reads is in a request: Converse and every InvokeModel family.

Texts come in **reading order** — tool definitions, then the system prompt, then the
conversation — whatever the order of the body's keys, so that text split across neighbouring
fields is read joined (``filters/joined.py``). See ``filters/text.py`` for the shapes.
"""

from __future__ import annotations

from typing import Any

from bedrock_gateway.filters.text_walk import (
    Path,
    Refs,
    TextRef,
    UnknownShapeError,
    Walker,
    apart,
    apart_at,
    as_dict,
    as_list,
    decode_text,
    each,
    field,
    get,
    json_value,
    json_values,
    string,
    string_at,
    where,
)

__all__ = ["blocks", "converse", "invoke", "messages"]

# Converse document formats that are text (the others — pdf, doc, xls... — are binary).
_TEXT_FORMATS = frozenset({"txt", "md", "csv", "html", "json", "xml"})
_MEDIA = ("image", "video", "audio")  # Converse / Nova members, typed-block types
_MEDIA_TYPES = frozenset({"image", "image_url", "input_image", "video", "audio", "input_audio",
                          "file"})


def _content(out: Refs, content: object, path: Path, prompt: bool) -> None:
    """A string, or a list of content blocks."""
    if isinstance(content, str):
        out.append(TextRef(path, content))
    else:
        blocks(out, content, path, prompt)


def blocks(out: Refs, items: object, path: Path, prompt: bool) -> None:
    for i, block in enumerate(as_list(items, path)):
        _block(out, block, (*path, i), prompt)


def _source(out: Refs, source: object, p: Path, prompt: bool, text_format: bool) -> None:
    """A Converse / Nova document source: text, content blocks, or bytes (text formats are
    decoded; others, and S3 locations, are unreadable)."""
    src = as_dict(source, p)
    string_at(out, src, p, "text")
    blocks(out, src.get("content"), (*p, "content"), prompt)
    if "bytes" in src:
        if text_format:
            decode_text(out, src["bytes"], (*p, "bytes"))
        else:
            out.unreadable.append((*p, "bytes"))
    if "s3Location" in src:
        out.unreadable.append((*p, "s3Location"))


def _document(out: Refs, document: object, p: Path, prompt: bool) -> None:
    doc = as_dict(document, p)
    apart_at(out, doc, p, "name")
    apart_at(out, doc, p, "context")
    _source(out, doc.get("source"), (*p, "source"), prompt,
            str(doc.get("format", "")).lower() in _TEXT_FORMATS)


def _search_result(out: Refs, result: object, p: Path, prompt: bool) -> None:
    apart_at(out, result, p, "source")
    apart_at(out, result, p, "title")
    blocks(out, *get(result, p, "content"), prompt)


def _citations(out: Refs, value: object, p: Path, prompt: bool) -> None:
    blocks(out, *get(value, p, "content"), prompt)
    json_values(out, *get(value, p, "citations"))


def _unreadable(out: Refs, value: object, p: Path, prompt: bool) -> None:
    out.unreadable.append(p)


def _guard(out: Refs, value: object, p: Path, prompt: bool) -> None:
    string_at(out, value, p, "text", "text")
    if as_dict(value, p).get("image") is not None:
        out.unreadable.append((*p, "image"))


def _tool_use(out: Refs, value: object, p: Path, prompt: bool) -> None:
    apart_at(out, value, p, "name")
    json_value(out, *get(value, p, "input"))


_BlockWalker = Any
# Converse / Nova content-block members that hold text; media members are unreadable.
_MEMBERS: dict[str, _BlockWalker] = {
    "text": lambda out, v, p, prompt: string(out, v, p),
    "reasoningContent": lambda out, v, p, prompt: string_at(out, v, p, "reasoningText", "text"),
    "guardContent": _guard,
    "document": _document,
    "citationsContent": _citations,
    "searchResult": _search_result,
    **dict.fromkeys(_MEDIA, _unreadable),
}
# Members only a prompt's blocks carry: tool results, tool inputs, JSON tool-result parts.
_PROMPT_MEMBERS: dict[str, _BlockWalker] = _MEMBERS | {
    "toolResult": lambda out, v, p, prompt: blocks(out, *get(v, p, "content"), prompt),
    "toolUse": _tool_use,
    "json": lambda out, v, p, prompt: json_value(out, v, p),
}
# Anthropic / OpenAI typed blocks: keys that never hold text the model reads.
_STRUCTURE = frozenset({"type", "id", "tool_use_id", "cache_control", "signature"})


def _anthropic_document(out: Refs, block: dict[str, Any], p: Path, prompt: bool) -> None:
    source, at = get(block, p, "source")
    src = as_dict(source, at)
    kind = src.get("type")
    if kind == "text":
        string_at(out, src, at, "data")
    elif kind == "content":
        _content(out, src.get("content"), (*at, "content"), prompt)
    elif kind == "base64" and str(src.get("media_type", "")).startswith("text/"):
        decode_text(out, src.get("data"), (*at, "data"))
    elif src:
        out.unreadable.append(at)  # a PDF, a URL, an uploaded file
    apart_at(out, block, p, "title")
    apart_at(out, block, p, "context")


def _typed(out: Refs, block: dict[str, Any], kind: object, p: Path, prompt: bool) -> None:
    """An Anthropic / OpenAI block (``type``)."""
    if kind == "text":
        string_at(out, block, p, "text")
        json_values(out, *get(block, p, "citations"))
    elif kind == "thinking":
        string_at(out, block, p, "thinking")
    elif kind == "document":
        _anthropic_document(out, block, p, prompt)
    elif kind in _MEDIA_TYPES:
        out.unreadable.append(p)
    elif kind == "redacted_thinking" or not prompt:
        return  # encrypted by the provider; answers: only the kinds above
    elif kind == "tool_result":
        _content(out, block.get("content"), (*p, "content"), prompt)
    elif kind == "tool_use":
        _tool_use(out, block, p, prompt)
    elif kind == "search_result":
        _search_result(out, block, p, prompt)
    else:  # server tool calls and results, new kinds: every string but the structure
        for key, value in block.items():
            if key not in _STRUCTURE:
                json_values(out, value, (*p, key))


def _block(out: Refs, block: object, p: Path, prompt: bool) -> None:
    """One content block, Converse / Nova (keyed by member) or Anthropic / OpenAI (``type``)."""
    if not isinstance(block, dict):
        raise UnknownShapeError(f"expected a content block at {where(p)}")
    kind = block.get("type")
    if kind is not None:
        _typed(out, block, kind, p, prompt)
        return
    members = _PROMPT_MEMBERS if prompt else _MEMBERS
    for key, value in block.items():
        walk = members.get(key)
        if walk is not None:
            walk(out, value, (*p, key), prompt)


def _tool_call(out: Refs, call: object, p: Path) -> None:
    """OpenAI ``{"function": {"name", "arguments"}}`` or Cohere ``{"name", "parameters"}``."""
    function, at = get(call, p, "function")
    if function is not None:
        apart_at(out, function, at, "name")
        apart_at(out, function, at, "arguments")  # JSON text
    else:
        apart_at(out, call, p, "name")
        json_value(out, *get(call, p, "parameters"))


def _message(out: Refs, message: object, p: Path) -> None:
    """A chat message: ``content`` (string or blocks), Cohere's ``message``, tool calls."""
    content, at = get(message, p, "content")
    _content(out, content, at, True)
    string_at(out, message, p, "message")
    string_at(out, message, p, "reasoning_content")
    each(_tool_call)(out, *get(message, p, "tool_calls"))


messages = each(_message)


def _tool_config(out: Refs, config: object, p: Path) -> None:
    """Converse / Nova ``toolConfig``: every string of the tool specs and the tool choice."""
    json_value(out, *get(config, p, "tools"))
    json_value(out, *get(config, p, "toolChoice"))


def converse(out: Refs, body: object, path: Path) -> None:
    _tool_config(out, *get(body, path, "toolConfig"))
    blocks(out, *get(body, path, "system"), True)
    messages(out, *get(body, path, "messages"))
    variables, at = get(body, path, "promptVariables")
    for name, value in as_dict(variables, at).items():
        string_at(out, value, (*at, name), "text")
    json_value(out, *get(body, path, "additionalModelRequestFields"))


def _params(out: Refs, params: object, path: Path) -> None:
    """Titan / Nova image, Nova Reel and Nova embedding ``*Params`` objects: their texts;
    images, video and audio in them are unreadable."""
    for key, value in as_dict(params, path).items():
        at = (*path, key)
        if key == "text" and isinstance(value, dict):  # Nova embeddings: {"text": {"value"}}
            string_at(out, value, at, "value")
        elif key in ("text", "negativeText", "maskPrompt"):
            string(out, value, at)
        elif key == "shots":
            for i, shot in enumerate(as_list(value, at)):
                string_at(out, shot, (*at, i), "text")
                if as_dict(shot, (*at, i)).get("image") is not None:
                    out.unreadable.append((*at, i, "image"))
        elif "image" in key.lower() or key in ("video", "audio"):
            out.unreadable.append(at)


def _unreadable_key(out: Refs, value: object, path: Path) -> None:
    out.unreadable.append(path)


# Reading order: tool definitions, system prompt, conversation, documents, anything else.
_INVOKE_KEYS: dict[str, Walker] = {
    "tools": json_value,  # Anthropic, OpenAI-style, Cohere: every string, property names too
    "toolConfig": _tool_config,  # Nova
    **dict.fromkeys(("tool_choice", "response_format"), json_value),
    "system": lambda out, v, p: _content(out, v, p, True),
    "preamble": string,
    **dict.fromkeys(("chat_history", "messages"), messages),
    **dict.fromkeys(("message", "prompt", "inputText", "inputPrompt", "query", "negative_prompt"),
                    string),
    "texts": each(apart),  # texts to embed, each on its own
    "text_prompts": each(field("text")),
    **dict.fromkeys(("documents", "tool_results"), json_value),
    **dict.fromkeys(("inputImage", "images", "image", "video", "audio"), _unreadable_key),
}
_ORDER = {key: i for i, key in enumerate(_INVOKE_KEYS)}


def _names(s: str) -> list[str]:
    return s.split()


_NO_TEXT_KEYS = frozenset({"taskType"})  # image tasks name their kind; their *Params follow
# Keys of recognised bodies that hold no text a model reads; any other key is read whole.
_PARAMETERS = frozenset(_names(
    "anthropic_version anthropic_beta max_tokens max_tokens_to_sample max_gen_len temperature "
    "top_p top_k stop_sequences stop seed stream n metadata thinking inferenceConfig "
    "textGenerationConfig imageGenerationConfig videoGenerationConfig schemaVersion taskType "
    "input_type embedding_types embeddingTypes dimensions normalize truncate api_version top_n "
    "return_documents max_chunks_per_doc frequency_penalty presence_penalty "
    "return_likelihoods num_generations k p cfg_scale steps style_preset sampler samples width "
    "height aspect_ratio mode output_format strength"))


def invoke(out: Refs, body: object, path: Path, model: str) -> None:
    """A model-native body (recognised by its keys); no known key at all: an unknown shape
    (``model`` names the model in the error)."""
    node = as_dict(body, path)
    recognised = False
    for key in sorted(node, key=lambda k: _ORDER.get(k, len(_ORDER))):
        value = node[key]
        walker = _INVOKE_KEYS.get(key)
        if walker is None and key.endswith("Params") and isinstance(value, dict):
            walker = _params
        if walker is not None:
            walker(out, value, (*path, key))
        recognised = recognised or walker is not None or key in _NO_TEXT_KEYS
    if not recognised:
        raise UnknownShapeError(f"unrecognised InvokeModel body for {model} at {where(path)}")
    for key, value in node.items():  # other fields of a known family: read whole
        if key not in _INVOKE_KEYS and key not in _PARAMETERS and not key.endswith("Params"):
            json_value(out, value, (*path, key))
