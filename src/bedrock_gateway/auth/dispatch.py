"""Credential dispatch: find the credential a client sent and hand it to the right authorizer.

What an unmodified boto3 can send, and who gets it:

- ``Authorization: Bearer <token>`` (``AWS_BEARER_TOKEN_BEDROCK``): a JWT when the token has a
  JWT's shape — three base64url segments — else an API key. The shape decides; a token is never
  tried against a second authorizer kind.
- ``x-api-key: <key>``: an API key.
- ``Authorization: AWS4-HMAC-SHA256 ...``: a gateway-issued SigV4 access key.

Failures are 403s shaped like Bedrock's (``UnrecognizedClientException``, or
``ExpiredTokenException``) with a short reason; the credential itself is never logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from bedrock_gateway.call import Call, Principal, Response
from bedrock_gateway.errors import AuthenticationError, GatewayError

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Next

__all__ = ["AuthMiddleware", "Authorizer", "Credential", "CredentialKind", "read_credential"]

log = logging.getLogger("bedrock_gateway.auth")

CredentialKind = Literal["jwt", "api_key", "sigv4"]
MAX_CREDENTIAL_BYTES = 16 * 1024  # checked before any parsing


@dataclass(frozen=True, slots=True)
class Credential:
    kind: CredentialKind
    value: str  # the token, key, or the whole SigV4 Authorization header


class Authorizer(Protocol):
    """Turns one kind of credential into a :class:`Principal`, or raises an
    :class:`AuthenticationError` (or a 5xx :class:`GatewayError` when it cannot decide)."""

    kind: CredentialKind

    def authenticate(self, credential: Credential, call: Call) -> Principal: ...


_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def _looks_like_jwt(token: str) -> bool:
    """A JWT by its shape alone — three base64url segments — so a JWT with a corrupted header
    still goes to the JWT authorizer (and is refused) rather than being taken for an API key.
    Gateway API keys (``bgw_...``) never contain dots."""
    return _JWT_SHAPE.match(token) is not None


def read_credential(headers: dict[str, str]) -> Credential | None:
    """The credential in these (lower-cased) headers, classified; ``None`` if there is none."""
    auth = headers.get("authorization")
    api_key = headers.get("x-api-key")
    if auth is not None and api_key is not None:
        raise AuthenticationError("Send one credential, not both Authorization and x-api-key.")
    value = auth if auth is not None else api_key
    if value is None:
        return None
    if len(value) > MAX_CREDENTIAL_BYTES:
        raise AuthenticationError("The credential is too large.")
    if api_key is not None:
        return Credential("api_key", api_key.strip())
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        token = rest.strip()
        return Credential("jwt" if _looks_like_jwt(token) else "api_key", token)
    if scheme == "AWS4-HMAC-SHA256":
        return Credential("sigv4", value)
    raise AuthenticationError("The Authorization header uses an unsupported scheme.")


class AuthMiddleware:
    """Authenticate every call; set ``call.principal``.

    A call that arrives with ``principal`` already set was vouched for by its adapter
    (``Gateway.handle(..., principal=)``: an API Gateway authorizer's context) and is not
    authenticated again.

    With ``anonymous=True`` a call without a credential — or with a SigV4 signature when no
    SigV4 keys are configured (a boto3 signing with its own AWS keys) — runs as
    :meth:`Principal.anonymous`. Any other credential is verified or refused, never
    downgraded to anonymous.
    """

    def __init__(self, authorizers: Sequence[Authorizer], *, anonymous: bool = False) -> None:
        self.by_kind: dict[str, Authorizer] = {}
        for authorizer in authorizers:
            if authorizer.kind in self.by_kind:
                raise ValueError(f"two authorizers for {authorizer.kind} credentials")
            self.by_kind[authorizer.kind] = authorizer
        self.anonymous = anonymous

    def __call__(self, call: Call, next_: Next) -> Response:
        if call.principal is None:  # else vouched for by the adapter (a Lambda authorizer)
            call.principal = self._authenticate(call, early=False)
        return next_(call)

    def precheck(self, call: Call) -> None:
        """Refuse, from the headers alone, what :meth:`__call__` would refuse whatever the body:
        no credential, a kind this gateway does not accept, an invalid JWT or API key. A SigV4
        signature covers the body, so here only what its authorizer can check without it
        (``precheck(credential, call)``, when it has one: the header's form and the key id)."""
        if call.principal is None:
            self._authenticate(call, early=True)

    def _authenticate(self, call: Call, *, early: bool) -> Principal | None:
        credential = read_credential(call.headers)
        authorizer = self.by_kind.get(credential.kind) if credential is not None else None
        if authorizer is None or credential is None:
            # Anonymous callers: no credential, or a SigV4 signature made with whatever AWS keys
            # the client's boto3 happened to have. A bearer token or API key is never ignored.
            if self.anonymous and (credential is None or credential.kind == "sigv4"):
                return Principal.anonymous()
            if credential is None:
                raise AuthenticationError(
                    "Missing credentials: this gateway requires a token or key.")
            raise AuthenticationError(f"This gateway does not accept {_NAMES[credential.kind]}.")
        try:
            if early and credential.kind == "sigv4":
                check = getattr(authorizer, "precheck", None)
                if check is not None:
                    check(credential, call)
                return None
            return authorizer.authenticate(credential, call)
        except AuthenticationError as exc:
            log.info("authentication failed (%s): %s", credential.kind, exc.message)
            raise
        except GatewayError:
            raise
        except Exception as exc:  # an authorizer bug must not let a call through
            log.exception("authorizer %s failed", type(authorizer).__name__)
            raise GatewayError() from exc


_NAMES = {"jwt": "JWT bearer tokens", "api_key": "API keys", "sigv4": "SigV4-signed requests"}
