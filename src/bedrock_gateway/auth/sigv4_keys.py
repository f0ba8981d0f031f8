"""Gateway-issued SigV4 access keys: an unmodified boto3 configured with
``aws_access_key_id``/``aws_secret_access_key`` set to such a pair calls the gateway as it
would call Bedrock. The signature is verified over what the client actually sent — its
``Host``, its signed headers, the hash of the body — with at most 5 minutes of clock skew, and
``host`` and ``x-amz-date`` must be among the signed headers. Secrets come from environment
variables, never from the config file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bedrock_gateway.auth.dispatch import Credential, CredentialKind
from bedrock_gateway.call import Call, Principal
from bedrock_gateway.errors import AuthenticationError
from bedrock_gateway.sigv4 import SigV4Error, verify_sigv4

__all__ = ["AccessKey", "SigV4Authorizer"]


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret: str = ""  # the secret itself; or name an environment variable with secret_env
    subject: str = ""
    tenant: str | None = None
    secret_env: str | None = None

    def resolved_secret(self) -> str:
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if not value:
                raise ValueError(f"environment variable {self.secret_env} is not set")
            return value
        if not self.secret:
            raise ValueError(f"access key {self.access_key_id} has no secret")
        return self.secret


class SigV4Authorizer:
    kind: CredentialKind = "sigv4"

    def __init__(self, keys: Iterable[AccessKey], *, max_skew: timedelta = timedelta(minutes=5),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._keys = {k.access_key_id: (k.resolved_secret(), k) for k in keys}
        if not self._keys:
            raise ValueError("SigV4Authorizer needs at least one access key")
        self.max_skew = max_skew
        self.clock = clock

    def _secret(self, access_key_id: str) -> str | None:
        entry = self._keys.get(access_key_id)
        return entry[0] if entry else None

    def authenticate(self, credential: Credential, call: Call) -> Principal:
        try:
            signed = verify_sigv4(
                method=call.method, raw_path=call.attrs.get("mount", "") + call.raw_path,
                query=call.query,
                headers=call.headers, body=call.body, secret_for=self._secret,
                now=self.clock(), max_skew=self.max_skew, service="bedrock",
            )
        except SigV4Error as exc:
            if "too far" in exc.reason:  # worth telling: the client's clock is off
                raise AuthenticationError(
                    "Signature expired: the request time is more than 5 minutes from the"
                    " gateway's time.") from None
            raise AuthenticationError("The request signature is not valid.") from None
        key = self._keys[signed.access_key][1]
        return Principal(subject=key.subject or key.access_key_id, tenant=key.tenant,
                         claims={"auth": "sigv4", "access_key_id": key.access_key_id})
