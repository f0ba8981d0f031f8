"""API keys, stored only as SHA-256 hashes.

``bedrock-gateway api-key`` prints a new key (give it to the client) and its hash (put that in
the config). A presented key is hashed and compared with every stored hash in constant time,
so neither the key nor which entry nearly matched leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from bedrock_gateway.auth.dispatch import Credential, CredentialKind
from bedrock_gateway.call import Call, Principal
from bedrock_gateway.errors import AuthenticationError

__all__ = ["APIKey", "APIKeyAuthorizer", "generate_api_key"]

KEY_PREFIX = "bgw_"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class APIKey:
    sha256: str  # hex digest of the key
    subject: str
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not _SHA256_HEX.match(self.sha256):
            raise ValueError("an API key entry needs the key's SHA-256 as 64 lower-case hex digits")


def generate_api_key() -> tuple[str, str]:
    """A new random key and its SHA-256 hex digest."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


class APIKeyAuthorizer:
    kind: CredentialKind = "api_key"

    def __init__(self, keys: Iterable[APIKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]
        if not self._keys:
            raise ValueError("APIKeyAuthorizer needs at least one key")

    def authenticate(self, credential: Credential, call: Call) -> Principal:
        digest = hashlib.sha256(credential.value.encode()).digest()
        found: APIKey | None = None
        for stored, entry in self._keys:  # no early exit: constant time in the match position
            if hmac.compare_digest(stored, digest):
                found = entry
        if found is None:
            raise AuthenticationError("The API key is not valid.")
        return Principal(subject=found.subject, tenant=found.tenant,
                         claims={"auth": "api_key"})
