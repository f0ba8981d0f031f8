"""TenantRoleCredentials against moto's STS in server mode (real HTTP, boto3 as the client)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.sts.models import sts_backends

from bedrock_gateway.auth.tenant_roles import TenantRoleCredentials
from bedrock_gateway.call import Call, Principal, Response
from bedrock_gateway.errors import ServiceUnavailableError
from bedrock_gateway.pipeline import Next
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FakeBedrock

from .conftest import gateway_client

ACCOUNT = "123456789012"
ROLE_T1 = f"arn:aws:iam::{ACCOUNT}:role/tenant-t1"
ROLE_T2 = f"arn:aws:iam::{ACCOUNT}:role/tenant-t2"
ROLES = {"t1": ROLE_T1, "t2": ROLE_T2}
GATEWAY_KEY, GATEWAY_SECRET = "AKIAGATEWAYTEST00001", "gateway-secret-do-not-log"
NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")
TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{0,256}$")  # \w, \s: letters, digits, separators
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]


class Clock:
    """An injected clock that counts its readers (so tests know who got how far)."""

    def __init__(self) -> None:
        self.now = time.time()  # moto's Expiration is real time + DurationSeconds
        self.calls = 0
        self._cond = threading.Condition()

    def __call__(self) -> float:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
            return self.now

    def wait_for_calls(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.calls >= n, timeout=10)


def call_of(subject: str | None = "alice", tenant: str | None = "t1") -> Call:
    principal = None if subject is None else Principal(subject, tenant=tenant)
    return cast(Call, SimpleNamespace(principal=principal))


def sts_client(url: str) -> Any:
    return boto3.client(
        "sts", region_name="us-east-1", endpoint_url=url, aws_access_key_id=GATEWAY_KEY,
        aws_secret_access_key=GATEWAY_SECRET, config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture
def sts(moto_url: str) -> Iterator[Any]:
    client = sts_client(moto_url)
    yield client
    client.close()


@pytest.fixture
def sent(sts: Any) -> list[dict[str, Any]]:
    """The serialized AssumeRole parameters of every call the client makes (the wire form)."""
    bodies: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(params: dict[str, Any], **_: Any) -> None:
        with lock:
            bodies.append(dict(params["body"]))

    sts.meta.events.register("before-call.sts.AssumeRole", record)
    return bodies


def test_tenant_gets_tagged_assumed_role_credentials_and_they_are_cached(
        sts: Any, sent: list[dict[str, Any]]) -> None:
    provider = TenantRoleCredentials(ROLES, sts_client=sts, clock=Clock())
    creds = provider(call_of("alice@example.com", "t1"))
    assert creds is not None and creds.access_key not in (GATEWAY_KEY, FAKE_ACCESS_KEY)
    frozen = creds.get_frozen_credentials()
    assert frozen.secret_key and frozen.token
    assert sent == [{
        "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE_T1,
        "RoleSessionName": "bedrock-gateway-alice@example.com", "DurationSeconds": 3600,
        "Tags.member.1.Key": "tenant", "Tags.member.1.Value": "t1",
        "Tags.member.2.Key": "subject", "Tags.member.2.Value": "alice@example.com",
        "TransitiveTagKeys.member.1": "tenant", "TransitiveTagKeys.member.2": "subject",
        "SourceIdentity": "alice@example.com",
    }]
    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(creds.access_key)
    assert assumed is not None and assumed.role_arn == ROLE_T1
    assert assumed.session_name == "bedrock-gateway-alice@example.com"

    assert provider(call_of("alice@example.com", "t1")) is creds  # cached: no second call
    assert len(sent) == 1
    other = provider(call_of("bob", "t1"))  # per (tenant, subject)
    assert other is not None and other.access_key != creds.access_key and len(sent) == 2


def test_refreshes_at_expiry_minus_margin(sts: Any, sent: list[dict[str, Any]]) -> None:
    clock = Clock()
    provider = TenantRoleCredentials(ROLES, sts_client=sts, clock=clock, duration_s=900,
                                     refresh_margin_s=120)
    first = provider(call_of())
    clock.now += 900 - 120 - 5
    assert provider(call_of()) is first and len(sent) == 1
    clock.now += 10
    second = provider(call_of())
    assert second is not None and second.access_key != first.access_key  # type: ignore[union-attr]
    assert len(sent) == 2 and sent[1]["DurationSeconds"] == 900
    assert provider(call_of()) is second


def test_cache_lifetime_follows_sts_time_not_a_skewed_local_clock(
        sts: Any, sent: list[dict[str, Any]]) -> None:
    clock = Clock()
    clock.now -= 2 * 3600  # the gateway's clock is two hours behind STS
    provider = TenantRoleCredentials(ROLES, sts_client=sts, clock=clock)
    first = provider(call_of())
    clock.now += 3600 - 300 - 5
    assert provider(call_of()) is first and len(sent) == 1
    clock.now += 10
    assert provider(call_of()) is not first and len(sent) == 2


@pytest.mark.parametrize("call", [
    call_of(None), call_of("alice", None), call_of("alice", "t9"),
    cast(Call, SimpleNamespace(principal=Principal.anonymous())),
], ids=["no-principal", "no-tenant", "unknown-tenant", "anonymous"])
def test_no_role_means_default_identity(call: Call, sts: Any, sent: list[dict[str, Any]]) -> None:
    assert TenantRoleCredentials(ROLES, sts_client=sts)(call) is None
    assert sent == []


def test_concurrent_first_calls_make_one_assume_role(sts: Any) -> None:
    clock, calls, threads_n = Clock(), [], 32

    def hold(**_: Any) -> None:  # hold the STS call until every thread has checked the cache
        calls.append(1)
        clock.wait_for_calls(threads_n + 2)  # everyone once, the winner three times

    sts.meta.events.register("before-call.sts.AssumeRole", hold)
    provider = TenantRoleCredentials(ROLES, sts_client=sts, clock=clock)
    results: list[Any] = [None] * threads_n
    barrier = threading.Barrier(threads_n)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = provider(call_of("carol", "t2"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert results[0] is not None and all(r is results[0] for r in results)


def test_a_slow_key_does_not_block_other_keys(sts: Any) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_for_dave(params: dict[str, Any], **_: Any) -> None:
        body = params["body"]
        if body["RoleArn"] == ROLE_T1 and body["RoleSessionName"].endswith("-dave"):
            entered.set()
            release.wait(10)

    sts.meta.events.register("before-call.sts.AssumeRole", slow_for_dave)
    provider = TenantRoleCredentials(ROLES, sts_client=sts)
    slow = threading.Thread(target=provider, args=(call_of("dave"),))
    slow.start()
    try:
        assert entered.wait(10)
        assert provider(call_of("erin")) is not None  # while dave's STS call is in flight
        assert provider(call_of("dave", "t2")) is not None  # same subject, other tenant
    finally:
        release.set()
        slow.join(10)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_sts_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    client = sts_client(closed_port_url())
    try:
        provider = TenantRoleCredentials(ROLES, sts_client=client)
        with caplog.at_level(logging.ERROR, "bedrock_gateway.auth"), \
                pytest.raises(ServiceUnavailableError) as err:
            provider(call_of())
    finally:
        client.close()
    assert err.value.message == "The gateway could not obtain upstream credentials for this tenant."
    assert err.value.status == 503 and err.value.__cause__ is not None
    [record] = caplog.records
    text = caplog.text
    assert record.name == "bedrock_gateway.auth" and ROLE_T1 in text and "'t1'" in text
    assert GATEWAY_SECRET not in text and GATEWAY_KEY not in text


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def test_failed_refresh_fails_closed_and_logs_no_secret(
        sts: Any, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    provider = TenantRoleCredentials(ROLES, sts_client=sts, clock=clock)
    old = provider(call_of())
    assert old is not None
    clock.now += 3600 - 300 + 2  # the Date header has whole seconds

    def deny(request: Any, **_: Any) -> AWSResponse:
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>"
                b"not authorized to perform: sts:TagSession</Message></Error>"
                b"<RequestId>1</RequestId></ErrorResponse>")
        return AWSResponse(request.url, 403, {}, _Raw(body))

    sts.meta.events.register("before-send.sts.AssumeRole", deny)
    with caplog.at_level(logging.INFO, "bedrock_gateway.auth"), \
            pytest.raises(ServiceUnavailableError) as err:
        provider(call_of())
    assert isinstance(err.value.__cause__, ClientError)
    assert "AccessDenied" in caplog.text and ROLE_T1 in caplog.text
    frozen = old.get_frozen_credentials()
    for secret in (frozen.secret_key, frozen.token, GATEWAY_SECRET):
        assert secret not in caplog.text

    sts.meta.events.unregister("before-send.sts.AssumeRole", deny)
    fresh = provider(call_of())  # the next call tries again
    assert fresh is not None and fresh.access_key != old.access_key


def test_waiters_share_the_failure_of_the_call_they_waited_for() -> None:
    class BlockingSTS:
        def __init__(self) -> None:
            self.calls = 0
            self.entered, self.release = threading.Event(), threading.Event()

        def assume_role(self, **_: Any) -> Any:
            self.calls += 1
            self.entered.set()
            self.release.wait(10)
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}},
                              "AssumeRole")

    stub, clock, errors = BlockingSTS(), Clock(), []
    provider = TenantRoleCredentials(ROLES, sts_client=stub, clock=clock)

    def worker() -> None:
        try:
            provider(call_of())
        except ServiceUnavailableError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    threads[0].start()
    assert stub.entered.wait(10)
    for t in threads[1:]:
        t.start()
    clock.wait_for_calls(3 + 7)  # the first thread read the clock 3 times, the others once
    stub.release.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 8 and stub.calls == 1
    assert all(isinstance(e.__cause__, ClientError) for e in errors)
    with pytest.raises(ServiceUnavailableError):
        provider(call_of())  # a later call is a new attempt
    assert stub.calls == 2


def test_names_and_tags_are_sanitized(sts: Any, sent: list[dict[str, Any]]) -> None:
    provider = TenantRoleCredentials({"t1": ROLE_T1, "t\n1|x": ROLE_T2}, sts_client=sts)
    subjects = ["auth0|" + "9" * 80, "auth0|" + "9" * 79 + "8", "x", "ünï cödé\n", "aws:evil"]
    for subject in subjects:
        assert provider(call_of(subject, "t1")) is not None
    assert provider(call_of("a", "t\n1|x")) is not None
    names = [body["RoleSessionName"] for body in sent]
    identities = [body["SourceIdentity"] for body in sent]
    assert all(NAME.match(n) for n in names + identities), names + identities
    assert len(set(names[:5])) == 5 and len(set(identities[:5])) == 5  # still distinct
    values = [body[f"Tags.member.{i}.Value"] for body in sent for i in (1, 2)]
    assert all(TAG_VALUE.match(v) and not v.lower().startswith("aws:") for v in values), values
    assert sent[3]["Tags.member.2.Value"] == "ünï cödé_"  # letters and spaces are allowed
    assert sent[5]["Tags.member.1.Value"] == "t_1_x"


def test_cache_is_bounded_least_recently_used_first(sts: Any, sent: list[dict[str, Any]]) -> None:
    provider = TenantRoleCredentials(ROLES, sts_client=sts, max_entries=3)
    for subject in ["u1", "u2", "u3"]:
        provider(call_of(subject))
    provider(call_of("u1"))  # u1 is now the most recent
    provider(call_of("u4"))  # evicts u2
    assert len(sent) == 4
    provider(call_of("u1"))
    assert len(sent) == 4
    provider(call_of("u2"))
    assert len(sent) == 5


def test_client_made_lazily_from_session_or_environment(
        moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    session = boto3.session.Session(aws_access_key_id=GATEWAY_KEY,
                                     aws_secret_access_key=GATEWAY_SECRET)
    provider = TenantRoleCredentials(ROLES, session=session, region="us-east-1",
                                     endpoint_url=moto_url)
    assert provider._sts is None  # nothing made before the first call
    assert provider(call_of()) is not None
    provider.close()

    for name, value in {"AWS_ACCESS_KEY_ID": GATEWAY_KEY, "AWS_SECRET_ACCESS_KEY": GATEWAY_SECRET,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": moto_url,
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE":
                        "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    provider = TenantRoleCredentials(ROLES)
    assert provider(call_of()) is not None
    provider.close()


@pytest.mark.parametrize("kwargs", [
    {"roles": {"t1": "arn:aws:iam::123:role/x"}}, {"roles": {"t1": "not-an-arn"}},
    {"duration_s": 600}, {"duration_s": 900, "refresh_margin_s": 900},
    {"session_name_prefix": "bad prefix"},
])
def test_invalid_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"roles": ROLES, **kwargs}
    with pytest.raises(ValueError):
        TenantRoleCredentials(options.pop("roles"), **options)


# -- end to end: boto3 -> gateway -> FakeBedrock ---------------------------------------------

def as_principal(subject: str, tenant: str | None) -> Callable[[Call, Next], Response]:
    def middleware(call: Call, next_: Next) -> Response:
        call.principal = Principal(subject, tenant=tenant)
        return next_(call)

    return middleware


def test_end_to_end_calls_are_signed_with_the_tenant_role(
        sts: Any, fake_bedrock: FakeBedrock,
        serve_gateway: Callable[..., BackgroundServer]) -> None:
    provider = TenantRoleCredentials(ROLES, sts_client=sts)
    creds = provider(call_of("alice", "t1"))  # cached: the gateway gets the same ones
    assert creds is not None
    frozen = creds.get_frozen_credentials()
    fake_bedrock.add_credentials(frozen.access_key, frozen.secret_key)
    server = serve_gateway([as_principal("alice", "t1")], credentials_for=provider)
    client = gateway_client(server.url)
    try:
        answer = client.converse(modelId=CLAUDE, messages=MESSAGES)
    finally:
        client.close()
    assert answer["output"]["message"]["role"] == "assistant"
    received = fake_bedrock.requests[-1]
    assert received.access_key == frozen.access_key
    assert received.headers["x-amz-security-token"] == frozen.token
    signed = re.search(r"SignedHeaders=([^,]+)", received.headers["authorization"])
    assert signed is not None and "x-amz-security-token" in signed.group(1).split(";")


@pytest.mark.parametrize(("tenant", "reaches_bedrock"), [("t9", True), ("t1", False)])
def test_end_to_end_default_identity_and_fail_closed(
        tenant: str, reaches_bedrock: bool, fake_bedrock: FakeBedrock,
        serve_gateway: Callable[..., BackgroundServer]) -> None:
    down = sts_client(closed_port_url())
    provider = TenantRoleCredentials(ROLES, sts_client=down)
    server = serve_gateway([as_principal("alice", tenant)], credentials_for=provider)
    client = gateway_client(server.url)
    try:
        if reaches_bedrock:  # no role for t9: the gateway's own identity
            client.converse(modelId=CLAUDE, messages=MESSAGES)
            assert fake_bedrock.requests[-1].access_key == FAKE_ACCESS_KEY
        else:  # t1 has a role and STS is down: 503, never the default identity
            with pytest.raises(ClientError) as err:
                client.converse(modelId=CLAUDE, messages=MESSAGES)
            assert err.value.response["Error"]["Code"] == "ServiceUnavailableException"
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert fake_bedrock.requests == []
    finally:
        client.close()
        down.close()
