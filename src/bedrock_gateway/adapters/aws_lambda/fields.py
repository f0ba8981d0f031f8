"""Reading headers and bodies out of an event, and choosing the response headers.

Headers: names are lower-cased and repeated values joined with ", ", except for headers that
must have one value (credentials, ``content-type``, ``host``, Bedrock's ``x-amzn-bedrock-*``):
two *different* values there are refused instead of joined, so a duplicate cannot smuggle a
second credential or a second guardrail past the first. (HTTP API and function URL events
arrive with duplicates already comma-joined by AWS; those are judged by the gateway as one
value.) Values holding CR, LF or NUL are refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bedrock_gateway.errors import AuthenticationError, PayloadTooLargeError, ValidationError

__all__ = ["client_headers", "collect_headers", "decode_body", "header_pairs"]

_CREDENTIALS = frozenset({"authorization", "x-api-key", "x-amz-security-token"})
_SINGLE = _CREDENTIALS | {"x-amz-date", "x-amz-content-sha256", "content-type",
                          "content-length", "content-encoding", "host", "accept"}
_DROP_IN_RESPONSE = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding"})
_BAD_CHARS = re.compile(r"[\r\n\x00]")


def client_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Response headers to hand to the integration: Bedrock's own, minus framing headers the
    integration sets itself."""
    return {k: v for k, v in headers.items() if k.lower() not in _DROP_IN_RESPONSE}


def collect_headers(items: Iterable[tuple[object, object]]) -> dict[str, str]:
    """Lower-cased headers; repeated values joined, except where one value is required."""
    values: dict[str, list[str]] = {}
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        if _BAD_CHARS.search(name) or _BAD_CHARS.search(value):
            raise ValidationError("A request header is not valid.")
        key = name.lower()
        bucket = values.setdefault(key, [])
        if key in _SINGLE or key.startswith("x-amzn-bedrock-"):
            if bucket and value != bucket[0]:
                if key in _CREDENTIALS:
                    raise AuthenticationError("Send one credential, not several.")
                raise ValidationError(f"The {key} header was sent more than once.")
            if not bucket:
                bucket.append(value)
        else:
            bucket.append(value)
    return {key: ", ".join(vals) for key, vals in values.items()}


def header_pairs(event: Mapping[str, Any], multi_key: str, single_key: str
           ) -> list[tuple[object, object]]:
    multi = event.get(multi_key)
    if isinstance(multi, Mapping) and multi:
        return [(k, v) for k, vs in multi.items() for v in (vs if isinstance(vs, list) else ())]
    single = event.get(single_key)
    return list(single.items()) if isinstance(single, Mapping) else []


def decode_body(event: Mapping[str, Any], limit: int) -> bytes:
    """The body bytes: base64-decoded when ``isBase64Encoded``, else the string's UTF-8."""
    body = event.get("body")
    if body is None or body == "":
        return b""
    if not isinstance(body, str):
        raise ValidationError("The request body is not valid.")
    if event.get("isBase64Encoded") is True:
        if len(body) > (limit // 3 + 2) * 4:  # refuse before decoding a huge body
            raise PayloadTooLargeError.over(limit)
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("The request body is not valid base64.") from None
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("The request body is not valid UTF-8.") from None
