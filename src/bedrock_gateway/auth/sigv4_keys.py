"""Gateway-issued SigV4 access keys: an unmodified boto3 configured with
``aws_access_key_id``/``aws_secret_access_key`` set to such a pair calls the gateway as it
would call Bedrock. The signature is verified over what the client actually sent — its
``Host``, its signed headers, the hash of the body — with at most 5 minutes of clock skew, and
``host`` and ``x-amz-date`` must be among the signed headers. Secrets come from environment
variables, never from the config file.

Sign or drop: once the signature checks out, every header the client did not sign is removed
from the call (except the few no SigV4 signer signs: ``Authorization``, ``User-Agent``,
hop-by-hop and tracing headers), so nothing a party without the secret added to a captured
request — an ``X-Amzn-Bedrock-*`` header above all — reaches a policy or Bedrock. Headers the
gateway's own policies add later (an injected guardrail) are not affected.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bedrock_gateway.auth.dispatch import Credential, CredentialKind
from bedrock_gateway.call import Call, Principal
from bedrock_gateway.errors import AuthenticationError
from bedrock_gateway.sigv4 import SigV4Error, signing_key_id, verify_sigv4

log = logging.getLogger("bedrock_gateway.auth")

__all__ = ["UNSIGNABLE_HEADERS", "AccessKey", "SigV4Authorizer", "drop_unsigned"]

# Headers a signer leaves out (the signature itself; botocore's SIGNED_HEADERS_BLACKLIST; what
# botocore and urllib3 add after signing; framing). The gateway neither forwards nor reads them
# for their meaning, so they are kept.
UNSIGNABLE_HEADERS = frozenset({
    "authorization", "content-length", "user-agent", "expect", "transfer-encoding",
    "accept-encoding", "amz-sdk-invocation-id", "amz-sdk-request",
    "connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authenticate",
    "proxy-authorization", "x-amzn-trace-id", "traceparent", "tracestate", "baggage",
})


def drop_unsigned(headers: dict[str, str], signed: Iterable[str]) -> list[str]:
    """Remove from ``headers`` (lower-case names) every header not in ``signed`` and not in
    :data:`UNSIGNABLE_HEADERS`; return the names removed."""
    keep = UNSIGNABLE_HEADERS.union(signed)
    dropped = [name for name in headers if name not in keep]
    for name in dropped:
        del headers[name]
    return dropped


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

    def precheck(self, credential: Credential, call: Call) -> None:
        """Before the body is read: the header's form and whether the key id is one of ours.
        The signature itself covers the body hash, so it is verified by :meth:`authenticate`.
        (Key ids are identifiers, not secrets; refusing an unknown one early tells a caller no
        more than AWS's own ``InvalidClientTokenId`` does.)"""
        key_id = signing_key_id(credential.value, service="bedrock")
        if key_id is None or key_id not in self._keys:
            raise AuthenticationError("The request signature is not valid.")

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
        dropped = drop_unsigned(call.headers, signed.signed_headers)
        if dropped:
            log.info("SigV4 request from %s: unsigned headers dropped: %s",
                     signed.access_key, ", ".join(sorted(dropped)[:10]))
        key = self._keys[signed.access_key][1]
        return Principal(subject=key.subject or key.access_key_id, tenant=key.tenant,
                         claims={"auth": "sigv4", "access_key_id": key.access_key_id})
