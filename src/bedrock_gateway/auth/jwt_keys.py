"""Where a JWT's verification key comes from: a JWKS URL, a PEM file, or an HMAC secret.

Each source knows which algorithm families its keys can verify, so an allowlist that mixes
them (the classic "HS256 signed with the RSA public key" attack) is refused at construction.

:class:`JWKSKeys` caches the key set with a monotonic clock, refetches when the cache is stale,
and refetches once on an unknown ``kid`` — at most once per ``min_refetch_s``, so a flood of
made-up ``kid`` values cannot turn into a flood of fetches. Fetches are single-flight, bounded
in total time and size; while they fail the last good key set is served for ``max_stale_s``,
then the gateway fails closed (503).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import jwt

from bedrock_gateway.errors import AuthenticationError, ServiceUnavailableError

__all__ = ["HMACSecret", "JWKSKeys", "KeySource", "PEMKey", "family", "fetch_jwks", "parse_jwks"]

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


DEFAULT_JWKS_MAX_BYTES = 1024 * 1024  # real key sets are a few KiB
_WAIT_MARGIN_S = 1.0  # a waiter's patience beyond the fetch deadline (parsing the keys)


def fetch_jwks(url: str, timeout: float, *, max_bytes: int = DEFAULT_JWKS_MAX_BYTES) -> bytes:
    """GET ``url`` and return its body, all within ``timeout`` seconds *in total* and at most
    ``max_bytes`` long; raise ``OSError`` (``TimeoutError`` past the deadline) otherwise.

    A socket timeout bounds each read, not the download: a server dripping one byte a second
    would hold the fetch for as long as it likes. So a watchdog shuts the socket down at the
    deadline, which ends any read in progress (headers included). Redirects are not followed.
    """
    import http.client
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()
    connected: list[socket.socket] = []  # http.client drops conn.sock for read-to-close bodies

    def expire() -> None:
        expired.set()
        sock = connected[0] if connected else conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()  # bounded by the socket timeout; the watchdog covers everything after
        if conn.sock is not None:
            connected.append(conn.sock)
        if expired.is_set():
            raise TimeoutError
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers={"Accept": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            raise OSError(f"JWKS endpoint answered {response.status}")
        declared = response.getheader("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise OSError(f"JWKS document larger than {max_bytes} bytes ({declared})")
        chunks: list[bytes] = []
        size = 0
        while data := response.read1(64 * 1024):
            size += len(data)
            if size > max_bytes:
                raise OSError(f"JWKS document larger than {max_bytes} bytes")
            chunks.append(data)
        if expired.is_set():  # the watchdog's shutdown can look like a clean end of body
            raise TimeoutError
        return b"".join(chunks)
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise TimeoutError(f"JWKS fetch took longer than {timeout} s") from None
        if isinstance(exc, OSError):
            raise
        raise OSError(f"JWKS endpoint sent a malformed response ({type(exc).__name__})") from exc
    finally:
        watchdog.cancel()
        conn.close()


def parse_jwks(document: bytes) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document, by ``kid``.

    Entries that are not usable — not an object, no string ``kid``, ``use`` other than ``sig``,
    a key PyJWT cannot load — are skipped with one warning; one bad entry never costs the
    others. A document that is not a JWKS, or has no usable key, raises ``ValueError``.
    """
    data = json.loads(document)
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            skipped.append(f"#{index}: not an object")
            continue
        kid = entry.get("kid")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key: not for us, not a fault
        if not isinstance(kid, str) or not kid:
            skipped.append(f"#{index}: no kid")
            continue
        try:
            keys[kid] = jwt.PyJWK(entry)
        except Exception as exc:  # InvalidKeyError, PyJWKError, odd types inside the entry
            skipped.append(f"#{index} ({kid[:40]}): {type(exc).__name__}")
    if skipped:
        log.warning("JWKS: %d unusable key entr%s skipped: %s", len(skipped),
                    "y" if len(skipped) == 1 else "ies", "; ".join(skipped[:5]))
    if not keys:
        raise ValueError("the JWKS document has no usable signing key")
    return keys


class _Flight:
    """One fetch in progress; everyone who needs its result waits on ``done``."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class JWKSKeys:
    """Keys from a JWKS URL, cached ``ttl_s`` by a monotonic clock.

    - **One fetch at a time.** A refresh is single-flight: the caller that starts it fetches
      (outside the lock), callers that can be answered from the keys in hand are not held,
      and the others wait for that fetch's result instead of starting their own.
    - **Bounded fetches.** ``timeout_s`` is a deadline for the whole fetch (connect, headers,
      body), not per read; the document is read to at most ``max_bytes``.
    - **Stale keys while the IdP fails.** When a refresh fails, the last good key set is used
      for up to ``max_stale_s`` past its ``ttl_s`` (with a warning); after that the gateway
      fails closed (503). Failed fetches are retried at most every ``min(min_refetch_s, 5)``
      seconds; an unknown ``kid`` refetches at most every ``min_refetch_s``.
    - **Bad entries are skipped** (:func:`parse_jwks`), not fatal to the refresh.

    ``fetch(url, timeout_s)`` is injectable (tests); the default is :func:`fetch_jwks`.
    """

    key_types = frozenset({"RSA", "EC", "OKP"})

    def __init__(self, url: str, *, ttl_s: float = 300.0, timeout_s: float = 2.0,
                 min_refetch_s: float = 30.0, max_stale_s: float = 3600.0,
                 max_bytes: int = DEFAULT_JWKS_MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic,
                 fetch: Callable[[str, float], bytes] | None = None) -> None:
        if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
            raise ValueError("jwks_url must be https:// (plain http only for 127.0.0.1 tests)")
        if timeout_s <= 0 or max_bytes < 1 or max_stale_s < 0:
            raise ValueError("timeout_s and max_bytes must be positive, max_stale_s >= 0")
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.min_refetch_s = min_refetch_s
        self.max_stale_s = max_stale_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._fetch: Callable[[str, float], bytes] = fetch if fetch is not None else partial(
            fetch_jwks, max_bytes=max_bytes)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # start of the last fetch attempt
        self._flight: _Flight | None = None
        self._lock = threading.Lock()  # guards the fields above; never held during a fetch

    def _usable(self, now: float) -> bool:
        """Whether the cached keys may still be used (fresh, or stale within the grace)."""
        fetched = self._fetched_at
        return fetched is not None and now - fetched < self.ttl_s + self.max_stale_s

    def _keys_for(self, kid: str) -> dict[str, jwt.PyJWK]:
        with self._lock:
            now = self._clock()
            fetched, attempted = self._fetched_at, self._attempted_at
            fresh = fetched is not None and now - fetched < self.ttl_s
            if fresh and (kid in self._keys or (
                    attempted is not None and now - attempted < self.min_refetch_s)):
                return self._keys  # fresh; or an unknown kid refetched for recently
            usable = self._usable(now)
            flight = self._flight
            leader = flight is None
            if flight is None:
                failed_recently = (
                    attempted is not None and attempted > (fetched or float("-inf"))
                    and now - attempted < min(self.min_refetch_s, 5.0))
                if failed_recently:  # an outage: no new fetch yet; no queueing either
                    if usable:
                        return self._keys
                    raise ServiceUnavailableError(_UNAVAILABLE)
                flight = self._flight = _Flight()
                self._attempted_at = now
            elif usable and kid in self._keys:
                return self._keys  # a refresh is under way; these keys still do
        if leader:
            self._run(flight)
        elif not flight.done.wait(self.timeout_s + _WAIT_MARGIN_S):
            raise ServiceUnavailableError(_UNAVAILABLE)
        with self._lock:
            if flight.error is None or self._usable(self._clock()):
                return self._keys
        raise ServiceUnavailableError(_UNAVAILABLE) from flight.error

    def _run(self, flight: _Flight) -> None:
        """Fetch and parse (no lock held), publish the result, wake every waiter."""
        try:
            try:
                document = self._fetch(self.url, self.timeout_s)
                if len(document) > self.max_bytes:
                    raise OSError(f"JWKS document larger than {self.max_bytes} bytes")
                keys = parse_jwks(document)
            except Exception as exc:
                flight.error = exc
                with self._lock:
                    stale = self._usable(self._clock())
                log.warning("JWKS fetch from %s failed (%s)%s", self.url, _reason(exc),
                            "; serving the last key set" if stale else "")
            else:
                with self._lock:
                    self._keys = keys
                    self._fetched_at = self._clock()
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()

    def key_for(self, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("The bearer token is not valid.")
        jwk = self._keys_for(kid).get(kid)
        if jwk is None or jwk.key_type != _FAMILIES.get(str(header.get("alg", ""))[:2]):
            raise AuthenticationError("The bearer token is not valid.")
        return jwk.key


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for the log (no URL query, no document content)."""
    name = type(exc).__name__
    if isinstance(exc, (TimeoutError, ValueError)) or (
            isinstance(exc, OSError) and type(exc) is OSError):
        text = str(exc)
        return f"{name}: {text[:120]}" if text else name
    return name
