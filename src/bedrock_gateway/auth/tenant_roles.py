"""Upstream identity per tenant: sign a tenant's Bedrock calls with its own IAM role.

:class:`TenantRoleCredentials` is a ``credentials_for`` hook for :class:`SigV4Forwarder`. For a
call whose principal belongs to a tenant with a configured role, it assumes that role with STS
(session tags ``tenant`` and ``subject``, ``SourceIdentity`` = the subject), so each Bedrock
call is attributable in CloudTrail to the tenant and the end user. Other calls get ``None``
and are signed with the gateway's default identity.

The role's trust policy must allow the gateway's identity ``sts:AssumeRole``,
``sts:TagSession`` and ``sts:SetSourceIdentity``. Credentials are cached per
(tenant, subject) until ``refresh_margin_s`` before they expire; concurrent callers for one key
share one STS call (and, if it fails, its failure). A tenant with a role never falls back to
the default identity: an STS failure is a ``503 ServiceUnavailableException``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from bedrock_gateway.call import Call
from bedrock_gateway.errors import ServiceUnavailableError

__all__ = ["TenantRoleCredentials"]

log = logging.getLogger("bedrock_gateway.auth")

_MESSAGE = "The gateway could not obtain upstream credentials for this tenant."
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$", re.ASCII)
_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]", re.ASCII)  # RoleSessionName, SourceIdentity
_TAG_EXTRA = frozenset("_.:/=+-@")
_TAG_MAX = 256
_NAME_MAX = 64


def _identifier(value: str, limit: int) -> str:
    """``value`` as a session name / source identity; changed values get a hash suffix so two
    subjects never share one name after sanitizing or truncation."""
    cleaned = _NAME_UNSAFE.sub("-", value)
    if cleaned == value and 2 <= len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{cleaned[: limit - len(digest) - 1]}-{digest}"


def _tag_value(value: str) -> str:
    """``value`` as an STS tag value: ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]``, 256 at most."""
    cleaned = "".join(
        c if c in _TAG_EXTRA or unicodedata.category(c)[0] in "LZN" else "_" for c in value
    )
    if cleaned[:4].lower() == "aws:":  # reserved prefix
        cleaned = "_" + cleaned
    return cleaned[:_TAG_MAX]


class _Entry:
    """One (tenant, subject): its lock, its credentials and the time to refresh them."""

    __slots__ = ("attempts", "error", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: tuple[Credentials, float] | None = None  # replaced whole, never mutated
        self.attempts = 0  # STS calls made for this key (success or failure)
        self.error: BaseException | None = None  # the last one's failure

    def fresh(self, now: float) -> Credentials | None:
        value = self.value
        return value[0] if value is not None and now < value[1] else None


class TenantRoleCredentials:
    """``credentials_for`` hook: the assumed-role credentials of the caller's tenant, or ``None``.

    ``roles`` maps tenant → IAM role ARN. The STS client is ``sts_client`` if given, else one
    made on first use from ``session`` (a boto3 session; a new one by default) with ``region``
    and ``endpoint_url``. ``clock`` gives the time in epoch seconds (injectable for tests).
    """

    def __init__(
        self,
        roles: Mapping[str, str],
        *,
        sts_client: Any = None,
        session: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        duration_s: int = 3600,
        refresh_margin_s: float = 300,
        clock: Callable[[], float] = time.time,
        session_name_prefix: str = "bedrock-gateway",
        max_entries: int = 10_000,
    ) -> None:
        for tenant, arn in roles.items():
            if not _ROLE_ARN.match(arn):
                raise ValueError(f"tenant {tenant!r}: not an IAM role ARN: {arn!r}")
        if not 900 <= duration_s <= 43_200:
            raise ValueError("duration_s must be between 900 and 43200 seconds")
        if not 0 <= refresh_margin_s < duration_s:
            raise ValueError("refresh_margin_s must be at least 0 and less than duration_s")
        if not re.fullmatch(r"[\w+=,.@-]{1,32}", session_name_prefix, re.ASCII):
            raise ValueError("session_name_prefix: 1-32 characters of [A-Za-z0-9_+=,.@-]")
        self.roles = dict(roles)
        self.duration_s = duration_s
        self.refresh_margin_s = refresh_margin_s
        self.session_name_prefix = session_name_prefix
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._sts = sts_client
        self._owns_client = sts_client is None
        self._session = session
        self._region = region
        self._endpoint_url = endpoint_url
        self._client_lock = threading.Lock()
        self._lock = threading.Lock()  # guards _entries only; never held during an STS call
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __call__(self, call: Call) -> Credentials | None:
        principal = call.principal
        if principal is None or principal.tenant is None:
            return None
        role_arn = self.roles.get(principal.tenant)
        if role_arn is None:
            return None
        key = (principal.tenant, principal.subject)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._evict()
                entry = self._entries[key] = _Entry()
            else:
                self._entries.move_to_end(key)
            seen = entry.attempts
        credentials = entry.fresh(self._clock())
        if credentials is not None:
            return credentials
        with entry.lock:  # one STS call per key at a time; other keys are not blocked
            credentials = entry.fresh(self._clock())
            if credentials is not None:
                return credentials  # another thread refreshed it while we waited
            if entry.attempts != seen and entry.error is not None:
                raise ServiceUnavailableError(_MESSAGE) from entry.error  # shared failure
            try:
                credentials, refresh_at = self._assume(role_arn, *key)
            except ServiceUnavailableError as exc:
                entry.error = exc.__cause__
                raise
            else:
                entry.value, entry.error = (credentials, refresh_at), None
            finally:
                entry.attempts += 1  # after the call: who waited for it shares its outcome
            return credentials

    def _evict(self) -> None:
        """With ``_lock`` held, before an insert: drop every entry that holds no usable
        credentials and is not being fetched, then the least recently used, to make room."""
        if len(self._entries) < self.max_entries:
            return
        now = self._clock()
        low = self.max_entries - max(1, self.max_entries // 100)  # one scan per batch
        for key, entry in list(self._entries.items()):
            if entry.attempts and not entry.lock.locked() and entry.fresh(now) is None:
                del self._entries[key]
        while len(self._entries) > low:
            self._entries.popitem(last=False)

    def _client(self) -> Any:
        with self._client_lock:  # boto3 sessions are not thread-safe
            if self._sts is None:
                from botocore.config import Config

                if self._session is None:
                    import boto3

                    self._session = boto3.session.Session()
                self._sts = self._session.client(
                    "sts", region_name=self._region, endpoint_url=self._endpoint_url,
                    config=Config(connect_timeout=3, read_timeout=10,
                                  retries={"mode": "standard", "total_max_attempts": 3}),
                )
            return self._sts

    def close(self) -> None:
        """Close the STS client if it was made here (a given ``sts_client`` is the caller's)."""
        with self._client_lock:
            if self._owns_client and self._sts is not None:
                self._sts.close()
                self._sts = None

    def _assume(self, role_arn: str, tenant: str, subject: str) -> tuple[Credentials, float]:
        prefix = self.session_name_prefix
        asked_at = self._clock()
        try:
            answer = self._client().assume_role(
                RoleArn=role_arn,
                RoleSessionName=f"{prefix}-{_identifier(subject, _NAME_MAX - len(prefix) - 1)}",
                DurationSeconds=self.duration_s,
                Tags=[{"Key": "tenant", "Value": _tag_value(tenant)},
                      {"Key": "subject", "Value": _tag_value(subject)}],
                TransitiveTagKeys=["tenant", "subject"],
                SourceIdentity=_identifier(subject, _NAME_MAX),
            )
            found = answer["Credentials"]
            credentials = Credentials(found["AccessKeyId"], found["SecretAccessKey"],
                                      found["SessionToken"], method="assume-role")
            # The lifetime by STS's clock (Expiration - Date), counted from when we asked on
            # ours: a skewed gateway clock neither keeps dead credentials nor refreshes early.
            lifetime = found["Expiration"].timestamp() - _sts_time(answer, asked_at)
            refresh_at = asked_at + lifetime - self.refresh_margin_s
        except (BotoCoreError, ClientError, KeyError, TypeError, ValueError, AttributeError
                ) as exc:
            log.error("could not assume role %s for tenant %r: %s", role_arn, tenant,
                      _describe(exc))
            raise ServiceUnavailableError(_MESSAGE) from exc
        log.info("assumed role %s for tenant %r (subject %r)", role_arn, tenant, subject)
        return credentials, refresh_at


def _sts_time(answer: Any, default: float) -> float:
    """The ``Date`` of STS's answer (epoch seconds), or ``default`` when there is none."""
    sent = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return parsedate_to_datetime(sent).timestamp() if sent else default


def _describe(exc: BaseException) -> str:
    """An STS error's code and message (they name ARNs, never secrets); else the type only."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}"
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc}"
    return f"malformed AssumeRole answer ({type(exc).__name__})"
