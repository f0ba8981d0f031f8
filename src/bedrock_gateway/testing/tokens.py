"""A token issuer for tests: an RSA key pair, its JWKS served on a loopback port, and JWTs.

    >>> with TokenIssuer() as issuer:
    ...     token = issuer.issue("alice", tenant="t1", groups=["dev"])
    ...     authorizer = JWTAuthorizer(JWKSKeys(issuer.jwks_url), issuer=issuer.issuer,
    ...                                audience=issuer.audience)
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["TokenIssuer"]


class TokenIssuer:
    """Issues RS256 JWTs; ``jwks_url`` serves the public key set (``kid`` = ``key_id``)."""

    def __init__(self, *, issuer: str = "https://issuer.test", audience: str = "bedrock-gateway",
                 key_id: str = "test-key-1") -> None:
        self.issuer = issuer
        self.audience = audience
        self.key_id = key_id
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.extra_keys: list[dict[str, Any]] = []  # more JWKS entries (key rotation tests)
        self.fetches = 0
        self._server: ThreadingHTTPServer | None = None

    # -- keys ------------------------------------------------------------------------------

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk, *self.extra_keys]}

    # -- tokens ----------------------------------------------------------------------------

    def issue(self, subject: str = "alice", *, ttl_s: float = 3600, key_id: str | None = None,
              headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject,
                                   "iat": now, "nbf": now, "exp": now + int(ttl_s)}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.private_key, algorithm="RS256",
                          headers={"kid": key_id or self.key_id, **(headers or {})})

    # -- the JWKS endpoint -----------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        if self._server is None:
            raise RuntimeError("TokenIssuer is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
