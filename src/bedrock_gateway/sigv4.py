"""Verification of AWS Signature Version 4 over the request a client actually sent.

Used by :class:`bedrock_gateway.testing.FakeBedrock` (which checks every request the gateway
forwards) and by gateway-issued SigV4 keys. The canonical request is rebuilt from what was
received — method, raw path, raw query, the headers the client listed in ``SignedHeaders``
with the values it sent, and the hash of the body it sent — following the rules botocore signs
with (``SigV4Auth.canonical_request``), so any request boto3 signs verifies here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

__all__ = ["SigV4Error", "SignedRequest", "signing_key_id", "verify_sigv4"]

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SigV4Error(Exception):
    """The signature is missing, malformed, stale or wrong. ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a verified signature proved."""

    access_key: str
    region: str
    service: str
    signed_headers: tuple[str, ...]


def _canonical_uri(raw_path: str) -> str:
    # botocore: quote(remove_dot_segments(path), safe='/~') — the raw path is encoded again.
    out: list[str] = []
    for seg in raw_path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    path = "/" + "/".join(out) + ("/" if raw_path.endswith("/") and out else "")
    return quote(path, safe="/~")


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = [pair.partition("=")[::2] for pair in query.split("&")]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signing_key_id(authorization: str, service: str | None = None) -> str | None:
    """The access key id of a well-formed SigV4 ``Authorization`` header (for ``service``, when
    given), or ``None``. Checks the form only: the signature covers the body."""
    match = _AUTH.match(authorization)
    if match is None or (service is not None and match["service"] != service):
        return None
    return match["akid"]


def verify_sigv4(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=5),
    service: str | None = None,
    required_headers: tuple[str, ...] = ("host", "x-amz-date"),
) -> SignedRequest:
    """Check the ``Authorization`` header of a received request; raise :class:`SigV4Error`.

    ``headers`` must have lower-case names. ``secret_for`` maps an access key id to its
    secret (``None`` for unknown keys). ``service``, when given, must match the credential
    scope. The comparison is constant-time.
    """
    match = _AUTH.match(headers.get("authorization", ""))
    if match is None:
        raise SigV4Error("missing or malformed SigV4 Authorization header")
    signed = tuple(match["signed"].split(";"))
    for name in required_headers:
        if name not in signed:
            raise SigV4Error(f"the {name} header must be signed")
    if service is not None and match["service"] != service:
        raise SigV4Error("credential scope names another service")
    amz_date = headers.get("x-amz-date", "")
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SigV4Error("missing or malformed X-Amz-Date") from None
    if amz_date[:8] != match["date"]:
        raise SigV4Error("credential scope date does not match X-Amz-Date")
    current = now or datetime.now(UTC)
    if abs(current - stamp) > max_skew:
        raise SigV4Error("request time is too far from the server time")
    secret = secret_for(match["akid"])
    unknown = secret is None  # still compute a signature: no timing difference to probe
    if secret is None:
        secret = "unknown-access-key"  # noqa: S105 - a decoy, never a valid secret
    canonical_headers = []
    for name in signed:
        if name not in headers:
            raise SigV4Error(f"signed header {name} is missing")
        canonical_headers.append(f"{name}:{' '.join(headers[name].split())}\n")
    payload_hash = headers.get("x-amz-content-sha256")
    body_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    if payload_hash is not None and payload_hash != body_hash:
        raise SigV4Error("x-amz-content-sha256 does not match the body")
    canonical = "\n".join(
        [
            method.upper(),
            _canonical_uri(raw_path),
            _canonical_query(query),
            "".join(canonical_headers),
            ";".join(signed),
            body_hash,
        ]
    )
    scope = f"{match['date']}/{match['region']}/{match['service']}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _signing_key(secret, match["date"], match["region"], match["service"])
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if unknown:
        raise SigV4Error("unknown access key")
    if not hmac.compare_digest(expected, match["sig"]):
        raise SigV4Error("signature does not match")
    return SignedRequest(match["akid"], match["region"], match["service"], signed)
