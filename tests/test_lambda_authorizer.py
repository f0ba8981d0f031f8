"""API Gateway Lambda authorizers, driven with real API Gateway event documents (tests/events)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bedrock_gateway.adapters.aws_lambda.authorizer import (
    LambdaAuthorizer,
    TrustedContextAuthorizer,
    principal_from_context,
)
from bedrock_gateway.auth.access import AccessRule
from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.auth.dispatch import Credential
from bedrock_gateway.auth.jwt import JWTAuthorizer
from bedrock_gateway.auth.jwt_keys import JWKSKeys
from bedrock_gateway.call import Call, Principal
from bedrock_gateway.errors import ServiceUnavailableError
from bedrock_gateway.operations import route
from bedrock_gateway.testing.tokens import TokenIssuer

EVENTS = Path(__file__).parent / "events"
PLACEHOLDER = "TOKEN_PLACEHOLDER"
STAGE_WILDCARD = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
METHOD_ARN = f"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST/model/{HAIKU}/converse"
PROFILE = ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
           "us.anthropic.claude-3-haiku-20240307-v1:0")


def load(name: str, token: str | None = None) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    event: dict[str, Any] = json.loads(text.replace(PLACEHOLDER, token) if token else text)
    return event


def allow(resource: str = STAGE_WILDCARD) -> dict[str, str]:
    return {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}


@pytest.fixture(scope="module")
def jwt_authorizer(token_issuer: TokenIssuer) -> JWTAuthorizer:
    return JWTAuthorizer(JWKSKeys(token_issuer.jwks_url), issuer=token_issuer.issuer,
                         audience=token_issuer.audience)


@pytest.fixture(scope="module")
def api_key() -> tuple[str, APIKeyAuthorizer]:
    key, digest = generate_api_key()
    return key, APIKeyAuthorizer([APIKey(digest, subject="batch-job", tenant="t9")])


@pytest.fixture(scope="module")
def authorizer(jwt_authorizer: JWTAuthorizer, api_key: tuple[str, APIKeyAuthorizer]
               ) -> LambdaAuthorizer:
    return LambdaAuthorizer([jwt_authorizer, api_key[1]])


@pytest.fixture
def alice(token_issuer: TokenIssuer) -> str:
    return token_issuer.issue("alice", tenant="t1", groups=["dev", "ops"],
                              scope="bedrock:invoke openid")


# -- REST TOKEN ---------------------------------------------------------------------------------

def test_rest_token_allows_the_whole_stage_with_a_flat_context(
        authorizer: LambdaAuthorizer, alice: str) -> None:
    answer = authorizer.rest_token(load("rest_token_authorizer", alice), None)
    assert answer["principalId"] == "alice"
    assert answer["policyDocument"] == {"Version": "2012-10-17", "Statement": [allow()]}
    assert answer["context"] == {"subject": "alice", "tenant": "t1", "groups": "dev,ops",
                                 "scopes": "bedrock:invoke openid"}
    assert all(isinstance(v, str | int | float | bool) for v in answer["context"].values())
    assert answer["usageIdentifierKey"] == "t1"
    assert alice not in json.dumps(answer)


def test_rest_token_accepts_api_keys_as_bearer_or_bare(
        authorizer: LambdaAuthorizer, api_key: tuple[str, APIKeyAuthorizer]) -> None:
    for token in (f"Bearer {api_key[0]}", api_key[0]):
        event = load("rest_token_authorizer")
        event["authorizationToken"] = token
        answer = authorizer.rest_token(event, None)
        assert answer["principalId"] == "batch-job"
        assert answer["usageIdentifierKey"] == "t9"
        assert answer["context"] == {"subject": "batch-job", "tenant": "t9", "groups": "",
                                     "scopes": ""}


def test_no_tenant_means_no_tenant_and_no_usage_key(
        authorizer: LambdaAuthorizer, token_issuer: TokenIssuer) -> None:
    answer = authorizer.rest_token(load("rest_token_authorizer", token_issuer.issue("carol")),
                                   None)
    assert "usageIdentifierKey" not in answer
    assert "tenant" not in answer["context"]
    assert principal_from_context(answer["context"]).tenant is None


@pytest.mark.parametrize("kind", ["expired", "garbage", "foreign", "api_key", "sigv4", "empty"])
def test_rest_token_refusals_are_unauthorized_and_never_show_the_token(
        authorizer: LambdaAuthorizer, token_issuer: TokenIssuer, caplog: pytest.LogCaptureFixture,
        kind: str) -> None:
    secret = {
        "expired": token_issuer.issue("alice", ttl_s=-3600),
        "garbage": "eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24.c2lnbmF0dXJl",
        "foreign": TokenIssuer().issue("alice"),  # signed by a key the JWKS does not hold
        "api_key": "bgw_" + "x" * 43,
        "sigv4": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240611/us-east-1/bedrock/aws4_request,"
                 " SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32,
        "empty": "",
    }[kind]
    event = load("rest_token_authorizer")
    event["authorizationToken"] = secret if kind == "sigv4" else f"Bearer {secret}".strip()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as info:
        authorizer.rest_token(event, None)
    assert type(info.value) is Exception and info.value.args == ("Unauthorized",)
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    if secret:
        assert secret not in caplog.text and secret not in repr(info.value)
        assert secret.split(".")[-1] not in caplog.text


def test_undecidable_is_an_error_not_unauthorized(token_issuer: TokenIssuer) -> None:
    def unreachable(url: str, timeout: float) -> bytes:
        raise OSError("connection refused")

    keys = JWKSKeys(token_issuer.jwks_url, fetch=unreachable)
    handler = LambdaAuthorizer([JWTAuthorizer(keys, issuer=token_issuer.issuer)])
    with pytest.raises(ServiceUnavailableError):  # API Gateway answers 500: fail closed
        handler.rest_token(load("rest_token_authorizer", token_issuer.issue("alice")), None)


def test_a_malformed_method_arn_is_refused(authorizer: LambdaAuthorizer, alice: str) -> None:
    event = load("rest_token_authorizer", alice)
    event["methodArn"] = "arn:aws:lambda:us-east-1:123456789012:function:f"
    with pytest.raises(ValueError):
        authorizer.rest_token(event, None)


def test_duplicate_kinds_are_refused_and_sigv4_authorizers_ignored(
        jwt_authorizer: JWTAuthorizer) -> None:
    with pytest.raises(ValueError):
        LambdaAuthorizer([jwt_authorizer, jwt_authorizer])

    class SigV4Stub:
        kind = "sigv4"

        def authenticate(self, credential: Any, call: Any) -> Principal:
            raise AssertionError("a signature cannot be checked without the body")

    LambdaAuthorizer([jwt_authorizer, SigV4Stub()])  # type: ignore[list-item]


# -- REST REQUEST -------------------------------------------------------------------------------

def test_rest_request_reads_headers_case_insensitively(
        authorizer: LambdaAuthorizer, alice: str, api_key: tuple[str, APIKeyAuthorizer]) -> None:
    answer = authorizer.rest_request(load("rest_request_authorizer", alice), None)
    assert answer["policyDocument"]["Statement"] == [allow()]
    assert answer["context"]["subject"] == "alice"

    event = load("rest_request_authorizer")
    for field in ("headers", "multiValueHeaders"):
        del event[field]["Authorization"]
    event["headers"]["X-API-KEY"] = api_key[0]
    event["multiValueHeaders"]["X-API-KEY"] = [api_key[0]]
    assert authorizer.rest_request(event, None)["principalId"] == "batch-job"


def test_rest_request_refuses_two_credentials(
        authorizer: LambdaAuthorizer, alice: str, token_issuer: TokenIssuer) -> None:
    event = load("rest_request_authorizer", alice)
    event["multiValueHeaders"]["Authorization"].append(f"Bearer {token_issuer.issue('mallory')}")
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.rest_request(event, None)


def test_rest_request_without_credential_or_with_sigv4_is_unauthorized(
        authorizer: LambdaAuthorizer) -> None:
    event = load("rest_request_authorizer")
    for field in ("headers", "multiValueHeaders"):
        del event[field]["Authorization"]
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.rest_request(event, None)
    sigv4 = ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240611/us-east-1/bedrock/aws4_request, "
             "SignedHeaders=host;x-amz-date, Signature=" + "cd" * 32)
    event["headers"]["Authorization"] = sigv4
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.rest_request(event, None)


@pytest.fixture(scope="module")
def ruled(jwt_authorizer: JWTAuthorizer) -> LambdaAuthorizer:
    rules = [AccessRule("t1-no-haiku", tenants=("t1",), deny_models=("*haiku*",)),
             AccessRule("everyone", allow_models=("anthropic.*", "arn:aws:bedrock:*"))]
    return LambdaAuthorizer([jwt_authorizer], rules)


def test_rest_request_denies_a_model_for_that_method_arn_only(
        ruled: LambdaAuthorizer, alice: str) -> None:
    answer = ruled.rest_request(load("rest_request_authorizer", alice), None)
    statements = answer["policyDocument"]["Statement"]
    deny = {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": METHOD_ARN}
    # The wildcard Allow stays: the answer is cached per token and serves other models too.
    assert statements == [allow(), deny]
    assert answer["context"]["subject"] == "alice"  # context even with a Deny (cache!)


def test_rest_request_allows_what_the_rules_allow(
        ruled: LambdaAuthorizer, token_issuer: TokenIssuer) -> None:
    answer = ruled.rest_request(load("rest_request_authorizer", token_issuer.issue(
        "dave", tenant="t2")), None)
    assert answer["policyDocument"]["Statement"] == [allow()]


def test_rest_request_denies_a_model_no_rule_allows(ruled: LambdaAuthorizer,
                                                     token_issuer: TokenIssuer) -> None:
    event = load("rest_request_authorizer", token_issuer.issue("dave", tenant="t2"))
    event["path"] = "/model/meta.llama3-70b-instruct-v1:0/converse-stream"
    event["requestContext"]["path"] = "/prod" + event["path"]
    event["methodArn"] = METHOD_ARN.replace(f"{HAIKU}/converse",
                                            "meta.llama3-70b-instruct-v1:0/converse-stream")
    statements = ruled.rest_request(event, None)["policyDocument"]["Statement"]
    assert statements == [allow(), {"Action": "execute-api:Invoke", "Effect": "Deny",
                                    "Resource": event["methodArn"]}]


def test_rest_request_routes_the_encoded_path_from_the_request_context(
        ruled: LambdaAuthorizer, alice: str) -> None:
    # A boto3 client sends an inference-profile ARN as one %-encoded segment; API Gateway's
    # `path` is decoded (an unroutable 4 segments), requestContext.path keeps the encoding.
    encoded = PROFILE.replace(":", "%3A").replace("/", "%2F")
    event = load("rest_request_authorizer", alice)
    event["path"] = f"/model/{PROFILE}/converse"
    event["requestContext"]["path"] = f"/prod/model/{encoded}/converse"
    event["methodArn"] = METHOD_ARN.replace(HAIKU, encoded)
    statements = ruled.rest_request(event, None)["policyDocument"]["Statement"]
    assert statements[1] == {"Action": "execute-api:Invoke", "Effect": "Deny",
                             "Resource": event["methodArn"]}


@pytest.mark.parametrize("path", [
    "/model/anthropic.claude-3-haiku%2D20240307-v1:0/converse",  # decoded yet holds '%': unsure
    f"/model/{PROFILE}/converse",  # decoded ARN without the encoded form: unroutable
    "/v1/model/anthropic.claude-3-haiku-20240307-v1:0/converse",  # custom domain base path
])
def test_rest_request_leaves_undeterminable_models_to_the_gateway(
        ruled: LambdaAuthorizer, alice: str, path: str) -> None:
    event = load("rest_request_authorizer", alice)
    event["path"] = path
    event["requestContext"]["path"] = f"/prod{path}"
    assert ruled.rest_request(event, None)["policyDocument"]["Statement"] == [allow()]


# -- HTTP API simple response -------------------------------------------------------------------

def test_http_simple_response(authorizer: LambdaAuthorizer, alice: str,
                              token_issuer: TokenIssuer) -> None:
    answer = authorizer.http_simple(load("http_v2_authorizer", alice), None)
    assert answer == {"isAuthorized": True, "context": {
        "subject": "alice", "tenant": "t1", "groups": "dev,ops", "scopes": "bedrock:invoke openid"}}

    expired = token_issuer.issue("alice", ttl_s=-3600)
    assert authorizer.http_simple(load("http_v2_authorizer", expired), None) == {
        "isAuthorized": False, "context": {}}


def test_http_simple_falls_back_to_the_identity_source(
        authorizer: LambdaAuthorizer, api_key: tuple[str, APIKeyAuthorizer]) -> None:
    event = load("http_v2_authorizer")
    del event["headers"]["authorization"]
    event["identitySource"] = [api_key[0]]
    answer = authorizer.http_simple(event, None)
    assert answer["isAuthorized"] is True and answer["context"]["subject"] == "batch-job"
    event["identitySource"] = []
    assert authorizer.http_simple(event, None)["isAuthorized"] is False


# -- the context, back in the forwarder ---------------------------------------------------------

def test_context_round_trip(authorizer: LambdaAuthorizer, alice: str,
                            jwt_authorizer: JWTAuthorizer) -> None:
    rest_allow = authorizer.rest_token(load("rest_token_authorizer", alice), None)
    target = route("POST", f"/model/{HAIKU}/converse")
    call = Call("POST", f"/model/{HAIKU}/converse", "", {}, b"", target.operation, target.params)
    original = jwt_authorizer.authenticate(Credential("jwt", alice), call)
    rebuilt = principal_from_context(rest_allow["context"])
    assert (rebuilt.subject, rebuilt.tenant, rebuilt.groups, rebuilt.scopes) == (
        original.subject, original.tenant, original.groups, original.scopes)
    http_allow = authorizer.http_simple(load("http_v2_authorizer", alice), None)
    assert principal_from_context(http_allow["context"]).groups == frozenset({"dev", "ops"})


def test_unrepresentable_groups_are_dropped(authorizer: LambdaAuthorizer,
                                            token_issuer: TokenIssuer) -> None:
    token = token_issuer.issue("eve", groups=["dev", "admin,dev"], scp=["a b", "read"])
    context = authorizer.rest_token(load("rest_token_authorizer", token), None)["context"]
    rebuilt = principal_from_context(context)
    assert rebuilt.groups == frozenset({"dev"}) and rebuilt.scopes == frozenset({"read"})


def test_trusted_context_from_a_rest_proxy_event() -> None:
    principal = TrustedContextAuthorizer().principal(load("rest_proxy_with_authorizer"))
    assert principal is not None
    assert (principal.subject, principal.tenant) == ("alice", "t1")
    assert principal.groups == frozenset({"dev", "ops"})
    assert principal.scopes == frozenset({"bedrock:invoke", "openid"})


def test_trusted_context_from_an_http_api_event() -> None:
    principal = TrustedContextAuthorizer().principal(load("http_v2_proxy_with_authorizer"))
    assert principal is not None
    assert principal == Principal("bob", "t2", frozenset({"analysts"}),
                                  frozenset({"bedrock:invoke"}), claims=principal.claims)


def test_trusted_context_absent() -> None:
    trusted = TrustedContextAuthorizer()
    rest = load("rest_proxy_with_authorizer")
    del rest["requestContext"]["authorizer"]
    assert trusted.principal(rest) is None
    http = load("http_v2_proxy_with_authorizer")
    http["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "x"}, "scopes": None}}
    assert trusted.principal(http) is None  # another authorizer's context is not ours
    rest["requestContext"]["authorizer"] = {"principalId": "someone", "integrationLatency": 3}
    assert trusted.principal(rest) is None
    assert trusted.principal({}) is None
    with pytest.raises(ValueError):
        principal_from_context({"tenant": "t1"})
