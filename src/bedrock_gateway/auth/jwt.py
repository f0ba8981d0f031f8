"""JWT bearer tokens from any OIDC issuer (Cognito, Entra ID, Okta, Auth0, Keycloak...).

Checks, in order: size (before any parsing), header shape, algorithm in the explicit
allowlist and of the key source's family, signature, then ``exp``/``nbf``/``iat`` (with
``leeway_s``), ``iss``, ``aud`` and the required claims. Verified tokens are cached until
their ``exp`` (bounded), so a repeated token costs a dictionary lookup.

Claims become the :class:`Principal`: ``sub`` (or ``subject_claim``) the subject,
``tenant_claim`` the tenant, ``groups_claim`` the groups (a list, or a space-separated string;
``cognito:groups`` works), ``scopes_claim`` the scopes (``scope`` is space-separated in OAuth,
``scp`` a list in Entra ID — both are read).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from bedrock_gateway.auth.dispatch import Credential, CredentialKind
from bedrock_gateway.auth.jwt_keys import KeySource, family
from bedrock_gateway.call import Call, Principal
from bedrock_gateway.errors import AuthenticationError, ExpiredTokenError

__all__ = ["JWTAuthorizer"]

_INVALID = "The bearer token is not valid."


def _names(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value)
    return frozenset()


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed without PyJWT (which parses the whole token again in ``decode``;
    doing it here once saves a third of a first verification)."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise AuthenticationError(_INVALID) from None
    if not isinstance(header, dict):
        raise AuthenticationError(_INVALID)
    return header


class JWTAuthorizer:
    kind: CredentialKind = "jwt"

    def __init__(
        self,
        keys: KeySource,
        *,
        algorithms: Sequence[str] = ("RS256",),
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        leeway_s: float = 30.0,
        required_claims: Sequence[str] = ("exp", "sub"),
        subject_claim: str = "sub",
        tenant_claim: str = "tenant",
        groups_claim: str = "groups",
        scopes_claim: str = "scope",
        max_token_bytes: int = 8192,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not algorithms:
            raise ValueError("an explicit algorithm allowlist is required")
        for alg in algorithms:
            if family(alg) not in keys.key_types:  # also refuses "none"
                raise ValueError(f"algorithm {alg} cannot be verified with this key source")
        self.keys = keys
        self.algorithms = tuple(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.required_claims = list(required_claims)
        self.subject_claim = subject_claim
        self.tenant_claim = tenant_claim
        self.groups_claim = groups_claim
        self.scopes_claim = scopes_claim
        self.max_token_bytes = max_token_bytes
        self.cache_size = cache_size
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def authenticate(self, credential: Credential, call: Call) -> Principal:
        token = credential.value
        hit = self._cache.get(token)
        if hit is not None and hit[1] > self._clock():
            return hit[0]
        principal, expires = self._verify(token)
        with self._lock:
            if len(self._cache) >= self.cache_size:
                now = self._clock()
                for key in [k for k, (_, exp) in self._cache.items() if exp <= now]:
                    del self._cache[key]
                while len(self._cache) >= self.cache_size:
                    del self._cache[next(iter(self._cache))]
            self._cache[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        if len(token) > self.max_token_bytes:
            raise AuthenticationError("The bearer token is too large.")
        header = _header(token)
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthenticationError(_INVALID)
        key = self.keys.key_for(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": self.required_claims, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredTokenError(
                "The security token included in the request is expired.") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("The bearer token is not valid yet.") from None
        except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):
            raise AuthenticationError(_INVALID) from None
        subject = claims.get(self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(_INVALID)
        tenant = claims.get(self.tenant_claim)
        scopes = _names(claims.get(self.scopes_claim))
        if self.scopes_claim == "scope" and not scopes:
            scopes = _names(claims.get("scp"))
        principal = Principal(
            subject=subject,
            tenant=str(tenant) if tenant is not None else None,
            groups=_names(claims.get(self.groups_claim)),
            scopes=scopes,
            claims=claims,
        )
        exp = claims.get("exp")
        expires = float(exp) + self.leeway_s if isinstance(exp, int | float) else self._clock() + 60
        return principal, expires
