"""Where the text is in every Bedrock request and buffered response body.

:func:`request_fields` gives every string a model will read as a :class:`TextRef` (its path in
the parsed JSON and the text) **in reading order** — tool definitions, system prompt,
conversation, then other fields — and the paths of content no filter can read (images, video,
audio, binary documents); :func:`request_texts` gives the texts alone, :func:`response_texts`
an answer's. Names, titles, and the strings of JSON values (tool schemas, tool inputs, free-form
fields) are marked not ``joined``: the model does not read them as running text with their
neighbours (``filters/joined.py``). :func:`set_text` writes a replacement back. Stream frames:
``stream_text.py`` (:func:`frame_text`, :func:`with_text`, re-exported here). Walkers:
``text_walk.py`` (paths), ``text_prompt.py`` (requests). Shapes read (``[]`` = each item):

- **Converse(Stream)** ``toolConfig`` (every string of ``tools[].toolSpec`` — name,
  description, ``inputSchema.json`` descriptions, enums, property names — and ``toolChoice``),
  ``system[]``, ``messages[].content[]`` blocks: ``text``, ``guardContent.text.text``,
  ``reasoningContent.reasoningText.text``, ``toolUse`` name and input (keys too),
  ``toolResult.content[]`` (``text``, ``json``, …), ``document`` name, context and source
  (``text``, ``content[].text``, and ``bytes`` of the text formats — txt, md, csv, html —
  decoded), ``searchResult`` source, title and content, ``citationsContent``;
  ``promptVariables.*.text``; every string (and key) of ``additionalModelRequestFields``.
  Unreadable: ``image``, ``video``, ``audio``, ``guardContent.image``, binary document bytes
  and S3 locations.
- **InvokeModel(WithResponseStream)**: the model-native body, recognised by its keys (an
  application-inference-profile ARN does not name its family): ``tools`` (Anthropic,
  OpenAI-style, Cohere: every string), ``toolConfig`` (Nova), ``tool_choice``,
  ``response_format``, ``system`` (string or blocks), ``preamble``, ``chat_history[]``,
  ``messages[]`` (``content`` as a string, Anthropic / OpenAI typed blocks — text, thinking,
  tool use and results, documents, search results — or Nova blocks as Converse; ``message``,
  ``reasoning_content``, ``tool_calls``), ``message``, ``prompt`` (Llama, Mistral, DeepSeek,
  Cohere command, Anthropic completions), ``inputText`` (Titan), ``inputPrompt``, ``query``,
  ``texts[]``, ``text_prompts[].text``, ``negative_prompt``, ``documents``,
  ``tool_results``, ``*Params`` texts (image and video models); any other key of a recognised
  body except known parameters (``max_tokens``, ``temperature``, ``metadata`` …) is read whole.
  Unreadable: typed ``image``, ``image_url``, ``video``, ``audio`` blocks, non-text documents,
  ``inputImage``, ``images``, images in ``*Params``, data URLs. No known key at all (nor an
  image-only input) raises :class:`UnknownShapeError`, as does a known key holding the wrong
  JSON type. The base model id (:func:`base_model_id`) names the model in errors.
- **CountTokens** ``input.converse`` as Converse, ``input.invokeModel.body`` (a base64 blob) as
  InvokeModel: paths continue inside the blob and :func:`set_text` re-encodes it;
  **StartAsyncInvoke** ``modelInput``; **ApplyGuardrail** ``content[].text.text``;
  **InvokeGuardrailChecks** ``messages[].content[].text``; Get/ListAsyncInvokes: none.

Responses: Converse and Nova ``output.message.content[]`` (``text``, reasoning text, citations'
text); Anthropic ``content[].text`` / ``thinking``, ``completion``; Titan
``results[].outputText``; Llama ``generation``; Mistral ``outputs[].text``; chat completions
``choices[]`` (``message.content``, ``message.reasoning_content``, ``text``); Cohere ``text``,
``generations[].text``; ApplyGuardrail ``outputs[].text``. Embeddings and images: ``[]``; an
``*embed*`` model's answer is ``[]``. Tool-use input the model generates is not returned
(streams deliver it as partial JSON).
"""

from __future__ import annotations

from typing import Any

from bedrock_gateway.filters.stream_text import frame_text, with_text
from bedrock_gateway.filters.text_prompt import blocks, converse, invoke, messages
from bedrock_gateway.filters.text_walk import (
    Path,
    Refs,
    TextRef,
    UnknownShapeError,
    Walker,
    as_dict,
    decode_blob,
    each,
    field,
    get,
    set_text,
    string,
    where,
)

__all__ = ["Refs", "TextRef", "UnknownShapeError", "base_model_id", "decode_blob", "frame_text",
           "request_fields", "request_texts", "response_texts", "set_text", "with_text"]

# bedrock-agent-runtime shapes live in agent_text.py (which builds on the walkers here).
_AGENT_OPERATIONS = frozenset({"Retrieve", "RetrieveAndGenerate", "RetrieveAndGenerateStream",
                               "InvokeAgent"})
_GEO_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")


def base_model_id(model_id: str | None) -> str:
    """``model_id`` without an ARN's ``arn:…/`` and a cross-region prefix (``us.`` …)."""
    base = model_id or ""
    if base.startswith("arn:"):
        base = base.rsplit("/", 1)[-1]
    prefix = next((p for p in _GEO_PREFIXES if base.startswith(p)), "")
    return base[len(prefix):]


def _invoke(out: Refs, body: object, path: Path, model_id: str | None) -> None:
    invoke(out, body, path, base_model_id(model_id) or "an unnamed model")


def _count_tokens(out: Refs, body: dict[str, Any], model_id: str | None) -> None:
    conversation, at = get(body, (), "input", "converse")
    blob, path = get(body, (), "input", "invokeModel", "body")
    if isinstance(conversation, dict):
        converse(out, conversation, at)
    elif isinstance(blob, str):
        _invoke(out, decode_blob(blob, path)[0], path, model_id)
    elif isinstance(blob, dict):
        _invoke(out, blob, path, model_id)
    else:
        raise UnknownShapeError("CountTokens needs input.converse or input.invokeModel.body")


def request_fields(operation: str, model_id: str | None, body: dict[str, Any]) -> Refs:
    """Every string of a request body a model reads, in reading order, and (``.unreadable``)
    the paths of content no filter can read."""
    out = Refs()
    if operation in ("Converse", "ConverseStream"):
        converse(out, body, ())
    elif operation in ("InvokeModel", "InvokeModelWithResponseStream"):
        _invoke(out, body, (), model_id)
    elif operation == "CountTokens":
        _count_tokens(out, body, model_id)
    elif operation == "StartAsyncInvoke":
        _invoke(out, body.get("modelInput"), ("modelInput",), model_id)
    elif operation == "ApplyGuardrail":
        each(field("text", "text"))(out, body.get("content"), ("content",))
    elif operation == "InvokeGuardrailChecks":
        messages(out, body.get("messages"), ("messages",))
        out.unreadable.clear()  # like ApplyGuardrail: checked by the guardrail, no model reads it
    elif operation in _AGENT_OPERATIONS:
        from bedrock_gateway.filters.agent_text import agent_request_texts

        out.extend(agent_request_texts(operation, body))
    elif operation not in ("GetAsyncInvoke", "ListAsyncInvokes"):
        raise UnknownShapeError(f"no known request shape for {operation}")
    return out


def request_texts(operation: str, model_id: str | None, body: dict[str, Any]) -> list[TextRef]:
    """Every string of a request body a model reads, in reading order."""
    return list(request_fields(operation, model_id, body))


def _choice(out: Refs, choice: object, p: Path) -> None:
    string(out, *get(choice, p, "text"))
    _answer_content(out, *get(choice, p, "message", "content"))
    string(out, *get(choice, p, "message", "reasoning_content"))


def _output(out: Refs, output: object, path: Path) -> None:
    blocks(out, *get(output, path, "message", "content"), False)


def _answer_content(out: Refs, content: object, path: Path) -> None:
    if isinstance(content, str):
        out.append(TextRef(path, content))
    else:
        blocks(out, content, path, False)


_RESPONSE_KEYS: dict[str, Walker] = {
    "output": _output,  # Converse, Nova
    "content": _answer_content,  # Anthropic Messages
    "completion": string,  # Anthropic text completions
    "results": each(field("outputText")),  # Titan text (rerank results carry none)
    "generation": string,  # Llama
    "outputs": each(field("text")),  # Mistral text
    "choices": each(_choice),  # Mistral chat, DeepSeek, OpenAI-style
    "text": string,  # Cohere command R
    "generations": each(field("text")),  # Cohere command
    "completions": each(field("data", "text")),  # AI21 Jurassic
}
_NO_TEXT_ANSWERS = frozenset({"embedding", "embeddings", "images", "artifacts"})


def _answer(out: Refs, body: dict[str, Any], model_id: str | None) -> None:
    recognised = False
    for key, value in as_dict(body, ()).items():
        walker = _RESPONSE_KEYS.get(key)
        if walker is not None:
            walker(out, value, (key,))
        recognised = recognised or walker is not None or key in _NO_TEXT_ANSWERS
    if not recognised:
        model = base_model_id(model_id) or "an unnamed model"
        raise UnknownShapeError(f"unrecognised InvokeModel response for {model} at {where(())}")


def response_texts(operation: str, model_id: str | None, body: dict[str, Any]) -> list[TextRef]:
    """Every generated string of a buffered response body, in document order."""
    out = Refs()
    if operation == "Converse":
        _output(out, body.get("output"), ("output",))
    elif operation == "InvokeModel":
        if "embed" in base_model_id(model_id):
            return []  # embeddings carry no generated text, whatever their shape
        _answer(out, body, model_id)
    elif operation == "ApplyGuardrail":
        each(field("text"))(out, body.get("outputs"), ("outputs",))
    elif operation in _AGENT_OPERATIONS:
        from bedrock_gateway.filters.agent_text import agent_response_texts

        return agent_response_texts(operation, body)
    elif operation in ("ConverseStream", "InvokeModelWithResponseStream"):
        raise UnknownShapeError(f"{operation} answers are event streams: use frame_text")
    return list(out)
