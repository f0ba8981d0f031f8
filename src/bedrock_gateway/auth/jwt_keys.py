"""Where a JWT's verification key comes from: a JWKS URL, a PEM file, or an HMAC secret.

Each source knows which algorithm families its keys can verify, so an allowlist that mixes
them (the classic "HS256 signed with the RSA public key" attack) is refused at construction.

:class:`JWKSKeys` caches the key set with a monotonic clock, refetches when the cache is stale,
and refetches once on an unknown ``kid`` — at most once per ``min_refetch_s``, so a flood of
made-up ``kid`` values cannot turn into a flood of fetches. A fetch that fails when no fresh
key set is cached fails closed (503).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jwt
from jwt.exceptions import InvalidKeyError, PyJWKError

from bedrock_gateway.errors import AuthenticationError, ServiceUnavailableError

__all__ = ["HMACSecret", "JWKSKeys", "KeySource", "PEMKey", "family"]

log = logging.getLogger("bedrock_gateway.auth")

_UNAVAILABLE = "The gateway cannot verify tokens right now (key set unavailable)."
_FAMILIES = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def family(algorithm: str) -> str:
    """The JWK key type an algorithm needs (``RS256`` -> ``RSA``); ``ValueError`` if unknown."""
    kty = _FAMILIES.get(algorithm[:2])
    if kty is None or algorithm.lower() == "none":
        raise ValueError(f"algorithm {algorithm!r} is not allowed")
    return kty


class KeySource(Protocol):
    key_types: frozenset[str]  # JWK kty values this source can hold

    def key_for(self, header: dict[str, Any]) -> Any: ...


class HMACSecret:
    """A shared secret read from an environment variable (HS256/384/512 only)."""

    key_types = frozenset({"oct"})

    def __init__(self, env: str) -> None:
        value = os.environ.get(env)
        if not value or len(value) < 32:
            raise ValueError(f"environment variable {env} must hold an HMAC secret of 32+ bytes")
        self._secret = value.encode()

    def key_for(self, header: dict[str, Any]) -> Any:
        return self._secret


class PEMKey:
    """One public key from a PEM file (RSA, EC or Ed25519)."""

    def __init__(self, path: str | Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        key = serialization.load_pem_public_key(Path(path).read_bytes())
        if isinstance(key, rsa.RSAPublicKey):
            self.key_types = frozenset({"RSA"})
        elif isinstance(key, ec.EllipticCurvePublicKey):
            self.key_types = frozenset({"EC"})
        elif isinstance(key, ed25519.Ed25519PublicKey):
            self.key_types = frozenset({"OKP"})
        else:
            raise ValueError(f"{path}: unsupported public key type")
        self._key = key

    def key_for(self, header: dict[str, Any]) -> Any:
        return self._key


def _fetch(url: str, timeout: float) -> bytes:
    import urllib3

    response = urllib3.request("GET", url, timeout=urllib3.Timeout(total=timeout), retries=False,
                               redirect=False, preload_content=True)
    if response.status != 200:
        raise OSError(f"JWKS endpoint answered {response.status}")
    return bytes(response.data[: 1024 * 1024])


class JWKSKeys:
    """Keys from a JWKS URL, cached ``ttl_s`` by a monotonic clock."""

    key_types = frozenset({"RSA", "EC", "OKP"})

    def __init__(self, url: str, *, ttl_s: float = 300.0, timeout_s: float = 2.0,
                 min_refetch_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 fetch: Callable[[str, float], bytes] = _fetch) -> None:
        if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
            raise ValueError("jwks_url must be https:// (plain http only for 127.0.0.1 tests)")
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.min_refetch_s = min_refetch_s
        self._clock = clock
        self._fetch = fetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch attempt (rate limit)
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            document = json.loads(self._fetch(self.url, self.timeout_s))
            keys: dict[str, jwt.PyJWK] = {}
            for data in document.get("keys", []):
                if data.get("use", "sig") != "sig" or "kid" not in data:
                    continue
                try:
                    keys[str(data["kid"])] = jwt.PyJWK(data)
                except (InvalidKeyError, PyJWKError):
                    log.warning("JWKS key %s skipped: unusable", data.get("kid"))
        except Exception as exc:
            log.warning("JWKS fetch from %s failed: %s", self.url, type(exc).__name__)
            fresh = self._fetched_at is not None and self._clock() - self._fetched_at < self.ttl_s
            if not fresh:
                raise ServiceUnavailableError(_UNAVAILABLE) from exc
            return
        self._keys = keys
        self._fetched_at = self._clock()

    def key_for(self, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("The bearer token is not valid.")
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self.ttl_s:
                failed_recently = (
                    self._attempted_at is not None
                    and self._attempted_at > (self._fetched_at or float("-inf"))
                    and now - self._attempted_at < min(self.min_refetch_s, 5.0)
                )
                if failed_recently:  # an outage: fail fast instead of queueing on the fetch
                    raise ServiceUnavailableError(_UNAVAILABLE)
                self._refresh()
            elif kid not in self._keys and now - (self._attempted_at or 0) >= self.min_refetch_s:
                self._refresh()  # a rotated key: refetch once (rate-limited, also when failing)
            jwk = self._keys.get(kid)
        if jwk is None or jwk.key_type != _FAMILIES.get(str(header.get("alg", ""))[:2]):
            raise AuthenticationError("The bearer token is not valid.")
        return jwk.key
