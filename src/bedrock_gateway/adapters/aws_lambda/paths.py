"""From the path and query an AWS event hands over to the raw request target the router wants.

Bedrock paths carry model ids percent-encoded (``:`` as ``%3A``, ``/`` inside ARNs as ``%2F``),
and the gateway routes on the *raw* path so that ``%2F`` is never a separator. Some event
types hand the function a path that AWS already decoded (see :mod:`.events` for which, with
sources). A decoded path is ambiguous in general, but not for Bedrock: every operation has a
fixed template, so the parameter is whatever lies between the fixed segments (for example,
everything between ``/model/`` and the last segment is the model id).
:func:`canonical_path` rebuilds the raw path from the operation table
(:func:`~bedrock_gateway.operations.rebuild_decoded`) with botocore's own encoding, so a boto3
client's path comes back byte for byte. Nothing is
validated here: the router still decodes and checks every parameter, so a dot segment, a
CR/LF or an odd escape in a decoded path is refused there exactly as over plain HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, unquote

from bedrock_gateway.operations import rebuild_decoded

__all__ = ["canonical_path", "encode_query", "query_pairs", "split_prefix"]

_PCHAR_SAFE = "/-._~!$&'()*+,;=:@"  # what may stay literal in a path (RFC 3986 pchar + "/")
_BOTO_SAFE = "-._~"  # botocore's encoding of a path parameter / query component


def _q(value: str) -> str:
    return quote(value, safe=_BOTO_SAFE)


def canonical_path(path: str, *, decoded: bool) -> str:
    """The raw path to route on, from a path the event presents ``decoded`` or not.

    A raw path that holds an escape is returned unchanged (the router reads it as any HTTP
    adapter would). A raw path without one is the same string decoded, so it gets the same
    template rebuild as a decoded path — but only when a parameter would contain ``/``
    (otherwise the path is returned as sent, so a signature over it still matches). That keeps
    an ARN working even if an event type turns out to decode a path we believe it keeps raw.
    """
    if not path.startswith("/"):
        return path  # the router answers UnknownOperation
    if not decoded and "%" in path:
        return path
    segments = path[1:].split("/")
    rebuilt = rebuild_decoded(segments)
    if rebuilt is None:
        return path if not decoded else quote(path, safe=_PCHAR_SAFE)
    if not decoded and len(rebuilt[1:].split("/")) == len(segments):
        return path  # no parameter held a "/": keep the client's own spelling
    return rebuilt


def split_prefix(segments: Sequence[str], tail: str, decode: bool) -> int | None:
    """Index of the first of ``segments`` (raw path segments) that, decoded when ``decode``
    and joined with ``/``, spell exactly ``tail`` (a decoded greedy path parameter such as
    ``pathParameters.proxy``); ``None`` when no suffix does. The segments before it are the
    prefix the integration added (stage, base path mapping, resource prefix)."""
    for start in range(len(segments)):
        parts = segments[start:]
        joined = "/".join(unquote(p) for p in parts) if decode else "/".join(parts)
        if joined == tail:
            return start
    return None


def encode_query(pairs: Iterable[tuple[str, str]]) -> str:
    """A query string from decoded ``(name, value)`` pairs, encoded the way botocore does."""
    return "&".join(f"{_q(k)}={_q(v)}" for k, v in pairs)


def query_pairs(multi: object, single: object) -> list[tuple[str, str]]:
    """``(name, value)`` pairs from an event's multi-value query map, else its single map."""
    pairs: list[tuple[str, str]] = []
    if isinstance(multi, Mapping) and multi:
        for name, values in multi.items():
            for value in values if isinstance(values, list) else ():
                if isinstance(value, str):
                    pairs.append((str(name), value))
    elif isinstance(single, Mapping):
        pairs = [(str(k), v) for k, v in single.items() if isinstance(v, str)]
    return pairs
