"""The generated text in event-stream frames, read cheaply and written back.

:func:`frame_text` answers "what text does this frame carry?" (``None`` for none) and
:func:`with_text` re-encodes a frame carrying other text: the header block is copied byte for
byte and only the one text value of the payload changes, so botocore parses it as before.

- **ConverseStream**: ``contentBlockDelta`` events, payload
  ``{"contentBlockIndex": n, "delta": {"text": …}, "p": …}`` (or
  ``"delta": {"reasoningContent": {"text": …}}``). Tool-use, tool-result, citation, image and
  signature deltas and every other event carry no text.
- **InvokeModelWithResponseStream**: ``chunk`` events, payload
  ``{"bytes": base64(model JSON), "p": padding}``; the model JSON's text is Anthropic
  ``content_block_delta`` ``delta.text`` (``delta.thinking``), Nova
  ``contentBlockDelta.delta.text`` (``.reasoningContent.text``), Titan ``outputText``, Llama
  ``generation``, Cohere ``text``, Mistral ``outputs[0].text``, chat completions
  ``choices[0].message.content`` / ``.delta.content`` / ``.text``. A closing chunk's
  ``outputText: ""`` or ``generation: ""`` is reported as ``""``.

- **InvokeAgent**: ``chunk`` events, payload ``{"bytes": base64(the reply's raw text), ...}``.
- **RetrieveAndGenerateStream**: ``output`` events, payload ``{"text": …}`` (its ``citation``
  events are judged whole by the content filter, not here).

Cost: Bedrock writes ``:event-type`` as the first header, so one byte comparison at offset 12
rejects every other frame (the header block is searched when it comes later; headers are never
decoded). A ConverseStream text delta decodes only its JSON string (``"delta":{"text":"…"}``,
else the payload). A chunk's base64 is decoded (not parsed) and parsed as JSON only when it
names a key that can hold text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from bedrock_gateway.eventstream import Frame

__all__ = ["frame_text", "with_payload", "with_text"]

_STREAM = "InvokeModelWithResponseStream"
_U32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">II")


def _event_type_header(name: str) -> bytes:
    # How ``:event-type: <name>`` is encoded in a frame's header block (string header, type 7).
    value = name.encode()
    return _EVENT_TYPE + len(value).to_bytes(2, "big") + value


_EVENT_TYPE = b"\x0b:event-type\x07"
_DELTA_HEADER = _event_type_header("contentBlockDelta")
_CHUNK_HEADER = _event_type_header("chunk")
_OUTPUT_HEADER = _event_type_header("output")
_AGENT = "InvokeAgent"
_RAG_STREAM = "RetrieveAndGenerateStream"
_DELTA_TEXT = b'"delta":{"text":"'  # a compact contentBlockDelta with a text delta
_BYTES_KEY = b'"bytes":"'
_BYTES_MEMBER = re.compile(rb'"bytes"\s*:\s*"([A-Za-z0-9+/=]*)"')
# A key under which a chunk's model JSON can hold text ("text": Anthropic, Nova, Mistral, Cohere).
_TEXT_KEY = re.compile(rb'"(?:text|outputText|generation|content|thinking)"')

_Slot = tuple[dict[str, Any], str]  # the object holding the text, and its key


def _str_slot(node: object, key: str) -> _Slot | None:
    if isinstance(node, dict) and isinstance(node.get(key), str):
        return node, key
    return None


def _first(items: object) -> dict[str, Any]:
    first = items[0] if isinstance(items, list) and items else None
    return first if isinstance(first, dict) else {}


def _delta_slot(delta: object) -> _Slot | None:
    """A Converse / Nova ``delta``: ``text`` or ``reasoningContent.text``."""
    if not isinstance(delta, dict):
        return None
    return _str_slot(delta, "text") or _str_slot(delta.get("reasoningContent"), "text")


def _converse_slot(data: object) -> _Slot | None:
    """A ConverseStream ``contentBlockDelta`` payload's text."""
    return _delta_slot(data.get("delta")) if isinstance(data, dict) else None


def _model_slot(data: object) -> _Slot | None:
    """Where a chunk's model-native JSON holds its generated text."""
    if not isinstance(data, dict):
        return None
    if data.get("type") == "content_block_delta":  # Anthropic
        delta = data.get("delta")
        return _str_slot(delta, "text") or _str_slot(delta, "thinking")
    block = data.get("contentBlockDelta")  # Nova
    if isinstance(block, dict):
        return _delta_slot(block.get("delta"))
    for key in ("outputText", "generation", "text"):  # Titan, Llama, Cohere
        if isinstance(data.get(key), str):
            return data, key
    choice = _first(data.get("choices"))  # chat completions
    return (
        _str_slot(_first(data.get("outputs")), "text")  # Mistral text
        or _str_slot(choice.get("message"), "content")
        or _str_slot(choice.get("delta"), "content")
        or _str_slot(choice, "text")
    )


def _payload_start(raw: bytes, header: bytes) -> int:
    """The payload offset if the frame's ``:event-type`` header is ``header``, else 0."""
    if raw.startswith(header, 12):
        hlen: int = _U32.unpack_from(raw, 4)[0]
        return 12 + hlen if hlen >= len(header) else 0
    if raw.startswith(_EVENT_TYPE, 12):
        return 0  # the first header names another event
    end = 12 + _U32.unpack_from(raw, 4)[0]
    return end if raw.find(header, 12, end) >= 0 else 0


def _converse_text(raw: bytes, start: int) -> str | None:
    end = len(raw) - 4
    at = raw.find(_DELTA_TEXT, start, end)  # cannot match inside a JSON string (quotes)
    if at >= 0 and raw.find(b"{", start + 1, at) < 0:  # fast path: the top-level delta
        rest = raw[at + len(_DELTA_TEXT) : end].decode()
        text: str
        text, after = scanstring(rest, 0)
        if rest.startswith("}", after):  # the delta holds nothing else
            return text
    slot = _converse_slot(json.loads(raw[start:end]))
    return None if slot is None else str(slot[0][slot[1]])


def _chunk_inner(raw: bytes, start: int) -> bytes | None:
    """A chunk's decoded ``bytes``, or ``None`` when they name no key that can hold text."""
    end = len(raw) - 4
    at = raw.find(_BYTES_KEY, start, end)
    if at >= 0:
        at += len(_BYTES_KEY)
        encoded = raw[at : raw.find(b'"', at, end)]
    else:
        match = _BYTES_MEMBER.search(raw, start, end)
        encoded = match.group(1) if match else b""
    inner = binascii.a2b_base64(encoded)
    return inner if _TEXT_KEY.search(inner) else None


def frame_text(operation: str, frame: Frame) -> str | None:
    """The generated text ``frame`` carries, or ``None`` (also for a malformed payload)."""
    raw = frame.raw
    try:
        if operation == "ConverseStream":
            start = _payload_start(raw, _DELTA_HEADER)
            return _converse_text(raw, start) if start else None
        if operation == _STREAM:
            start = _payload_start(raw, _CHUNK_HEADER)
            inner = _chunk_inner(raw, start) if start else None
            slot = None if inner is None else _model_slot(json.loads(inner))
            return None if slot is None else str(slot[0][slot[1]])
        if operation == _AGENT:
            start = _payload_start(raw, _CHUNK_HEADER)
            payload = json.loads(raw[start:-4]) if start else None
            encoded = payload.get("bytes") if isinstance(payload, dict) else None
            return base64.b64decode(encoded, validate=True).decode() if isinstance(
                encoded, str) else None
        if operation == _RAG_STREAM:
            start = _payload_start(raw, _OUTPUT_HEADER)
            payload = json.loads(raw[start:-4]) if start else None
            slot = _str_slot(payload, "text")
            return None if slot is None else str(slot[0][slot[1]])
    except (ValueError, RecursionError, struct.error, binascii.Error):
        return None
    return None


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _reframe(raw: bytes, payload: bytes) -> bytes:
    """``raw``'s exact header block with a new payload; lengths and CRCs recomputed."""
    hlen = _U32.unpack_from(raw, 4)[0]
    headers = raw[12 : 12 + hlen]
    prelude = _PRELUDE.pack(16 + hlen + len(payload), hlen)
    head = prelude + _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(headers, zlib.crc32(head)))
    return head + headers + payload + _U32.pack(crc)


def with_payload(frame: Frame, payload: dict[str, Any]) -> Frame:
    """``frame`` with a new JSON payload: its header block copied, lengths and CRCs redone."""
    return Frame(_reframe(frame.raw, _dumps(payload)))


def with_text(operation: str, frame: Frame, text: str) -> bytes:
    """``frame`` re-encoded with ``text`` in place of the text it carries: the same headers and
    every other payload field unchanged. ``ValueError`` if the frame carries no text."""
    if operation in (_AGENT, _RAG_STREAM):
        return _agent_with_text(operation, frame, text)
    converse = operation == "ConverseStream"
    header = _DELTA_HEADER if converse else _CHUNK_HEADER
    if operation not in ("ConverseStream", _STREAM) or not _payload_start(frame.raw, header):
        raise ValueError("the frame carries no text")
    try:
        payload = json.loads(frame.payload)
        data = payload if converse else json.loads(base64.b64decode(payload["bytes"]))
    except (KeyError, TypeError):
        data = None
    slot = _converse_slot(data) if converse else _model_slot(data)
    if slot is None:
        raise ValueError("the frame carries no text")
    slot[0][slot[1]] = text
    if not converse:
        payload["bytes"] = base64.b64encode(_dumps(data)).decode()
    return _reframe(frame.raw, _dumps(payload))


def _agent_with_text(operation: str, frame: Frame, text: str) -> bytes:
    agent = operation == _AGENT
    if not _payload_start(frame.raw, _CHUNK_HEADER if agent else _OUTPUT_HEADER):
        raise ValueError("the frame carries no text")
    payload = json.loads(frame.payload)
    key = "bytes" if agent else "text"
    if not isinstance(payload, dict) or not isinstance(payload.get(key), str):
        raise ValueError("the frame carries no text")
    payload[key] = base64.b64encode(text.encode()).decode() if agent else text
    return _reframe(frame.raw, _dumps(payload))
