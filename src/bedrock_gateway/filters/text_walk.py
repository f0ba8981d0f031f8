"""The pieces the text walkers are made of: paths, refs, typed access, writing back.

A :class:`TextRef` is one string of a parsed JSON document and its path. Path steps are object
keys and list indexes, and two markers: :class:`Key` (the *name* of a key — property names of
a tool's input schema reach the model too) and :data:`BASE64` (the text is the UTF-8 decoding
of the base64 string before it: a plain-text document sent as bytes). :func:`set_text` writes a
replacement back at any such path (renaming a key, re-encoding base64 and JSON blobs).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BASE64", "Encoded", "Key", "Path", "Refs", "TextRef", "UnknownShapeError",
           "apart", "apart_at", "decode_blob", "set_text"]


@dataclass(frozen=True, slots=True)
class Key:
    """A path step: the name of a key of the object the path leads to."""

    name: str

    def __str__(self) -> str:
        return f"{self.name}(key)"


@dataclass(frozen=True, slots=True)
class Encoded:
    """A path step: the text is the decoded form of the string the path leads to."""

    encoding: str = "base64"

    def __str__(self) -> str:
        return f"({self.encoding})"


BASE64 = Encoded()
Step = str | int | Key | Encoded
Path = tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class TextRef:
    """One string of a document: ``document[path[0]][path[1]]... == text``. ``joined``: the
    model reads it as running text with its neighbours (message and system text, prompts);
    not names, titles, JSON values and keys, which JSON syntax or a field of their own sets
    apart (``filters/joined.py``)."""

    path: Path
    text: str
    joined: bool = True


class Refs(list[TextRef]):
    """The texts found, in reading order, and the paths of content no filter can read (images,
    video, audio, binary documents)."""

    def __init__(self) -> None:
        super().__init__()
        self.unreadable: list[Path] = []


class UnknownShapeError(ValueError):
    """The body's shape is not one we can read (the message never contains its text)."""


def where(path: Path) -> str:
    return "/".join(map(str, path)) or "the body"


def as_list(value: object, path: Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnknownShapeError(f"expected a list at {where(path)}")
    return value


def as_dict(value: object, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnknownShapeError(f"expected an object at {where(path)}")
    return value


def get(node: object, path: Path, *keys: str) -> tuple[Any, Path]:
    """``node[keys[0]][keys[1]]...`` through objects (``None`` if absent) and its path."""
    for key in keys:
        node = as_dict(node, path).get(key)
        path = (*path, key)
    return node, path


Walker = Callable[[Refs, Any, Path], None]


def string(out: Refs, value: object, path: Path) -> None:
    if isinstance(value, str):
        out.append(TextRef(path, value))
    elif value is not None:
        raise UnknownShapeError(f"expected a string at {where(path)}")


def string_at(out: Refs, node: object, path: Path, *keys: str) -> None:
    string(out, *get(node, path, *keys))


def apart(out: Refs, value: object, path: Path) -> None:
    """A string the model reads as a field of its own (a name, a title): not joined."""
    if isinstance(value, str):
        out.append(TextRef(path, value, joined=False))
    elif value is not None:
        raise UnknownShapeError(f"expected a string at {where(path)}")


def apart_at(out: Refs, node: object, path: Path, *keys: str) -> None:
    apart(out, *get(node, path, *keys))


def each(walk: Walker) -> Walker:
    """``walk`` applied to every item of a list."""

    def walk_all(out: Refs, items: object, path: Path) -> None:
        for i, item in enumerate(as_list(items, path)):
            walk(out, item, (*path, i))

    return walk_all


def field(*keys: str) -> Walker:
    """The string at ``keys`` inside an object."""
    return lambda out, node, path: string_at(out, node, path, *keys)


_BLOB = re.compile(r"[A-Za-z0-9+/_-]{256,}={0,2}")


def is_data_url(value: str) -> bool:
    """``data:<media type>;base64,…``, or a long run of base64 (an image sent as a field of
    its own: ``init_image``, ``mediaSource.base64String``): content a filter cannot read."""
    return (value.startswith("data:") and ";base64," in value[:100]) or (
        len(value) >= 256 and _BLOB.fullmatch(value) is not None)


def json_value(out: Refs, value: object, path: Path, keys: bool = True) -> None:
    """Every string of a JSON value — keys too (``keys``) — in document order: tool inputs and
    results, schemas, free-form model fields. A data URL or a base64 blob is unreadable."""
    stack: list[tuple[Path, object]] = [(path, value)]
    while stack:
        at, node = stack.pop()
        if isinstance(node, str):
            if is_data_url(node):
                out.unreadable.append(at)
            else:
                out.append(TextRef(at, node, joined=False))
        elif isinstance(node, dict):
            for k, v in reversed(node.items()):
                stack.append(((*at, k), v))
                if keys:
                    stack.append(((*at, Key(k)), k))
        elif isinstance(node, list):
            stack.extend(((*at, i), v) for i, v in reversed(list(enumerate(node))))


def json_values(out: Refs, value: object, path: Path) -> None:
    """:func:`json_value` without keys."""
    json_value(out, value, path, keys=False)


def decode_text(out: Refs, value: object, path: Path) -> None:
    """A base64 string holding UTF-8 text (a plain-text document): its text, else unreadable."""
    try:
        text = base64.b64decode(value, validate=True).decode() if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        text = None
    if text is None:
        out.unreadable.append(path)
    else:
        out.append(TextRef((*path, BASE64), text))


def decode_blob(value: str, path: Path = ()) -> tuple[dict[str, Any], bool]:
    """A JSON object sent as a blob (CountTokens ``input.invokeModel.body``) and whether it was
    base64 (as botocore sends it) rather than plain JSON text."""
    try:
        raw, encoded = base64.b64decode(value, validate=True), True
    except (binascii.Error, ValueError):
        raw, encoded = value.encode(), False
    try:
        return as_dict(json.loads(raw), path), encoded
    except (ValueError, UnicodeDecodeError):
        raise UnknownShapeError(f"expected a JSON object blob at {where(path)}") from None


def _encode_blob(document: dict[str, Any], encoded: bool) -> str:
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode()).decode() if encoded else text


def _rename(node: dict[str, Any], old: str, new: str) -> None:
    """Rename key ``old`` to ``new`` in place, keeping the order (``new 2``… if taken)."""
    taken, suffix = set(node) - {old}, 1
    name = new
    while name in taken:
        suffix += 1
        name = f"{new} {suffix}"
    items = [(name if k == old else k, v) for k, v in node.items()]
    node.clear()
    node.update(items)


def set_text(document: dict[str, Any], path: Path, text: str) -> None:
    """Replace the string at ``path`` with ``text`` (inside a JSON blob, re-encoding it; at a
    :class:`Key`, renaming the key; at :data:`BASE64`, encoding ``text``).

    Raises ``ValueError`` if ``path`` does not lead to a string.
    """
    if path and isinstance(path[-1], Encoded):
        set_text(document, path[:-1], base64.b64encode(text.encode()).decode())
        return
    node: Any = document
    try:
        for i, step in enumerate(path[:-1]):
            if isinstance(step, Key | Encoded):
                raise TypeError
            child = node[step]
            if isinstance(child, str):  # a JSON document inside a blob (CountTokens)
                inner, encoded = decode_blob(child, path[: i + 1])
                set_text(inner, path[i + 1 :], text)
                node[step] = _encode_blob(inner, encoded)
                return
            node = child
        last = path[-1] if path else None
        if isinstance(last, Key) and isinstance(node, dict) and last.name in node:
            _rename(node, last.name, text)
            return
        if last is None or isinstance(last, Key) or not isinstance(node[last], str):
            raise ValueError(f"no string at {where(path)}")
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"no string at {where(path)}") from None
    node[last] = text
