"""Attacks on authentication: every one is refused, answered like Bedrock, and never forwarded.

Each attack goes through a real :class:`Gateway` whose terminal handler only records the calls
that reach it. For every refusal we check the status, the ``x-amzn-errortype`` code, that the
terminal handler was not called and that the credential is not echoed back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bedrock_gateway.auth import dispatch
from bedrock_gateway.auth import jwt as jwt_authorizer_module
from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.auth.dispatch import Authorizer
from bedrock_gateway.auth.jwt import JWTAuthorizer
from bedrock_gateway.auth.jwt_keys import HMACSecret, JWKSKeys, KeySource, PEMKey
from bedrock_gateway.auth.sigv4_keys import AccessKey, SigV4Authorizer
from bedrock_gateway.call import Principal, Response
from bedrock_gateway.pipeline import Gateway
from bedrock_gateway.testing import TokenIssuer

from .conftest import Recorder

PATH = "/model/anthropic.claude-v2/converse"
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
INVALID = "UnrecognizedClientException"
EXPIRED = "ExpiredTokenException"
UNAVAILABLE = "ServiceUnavailableException"

GW_HOST = "gw.test:8080"
GW_URL = f"http://{GW_HOST}{PATH}"
AKID, AK_SECRET = "AKIDGATEWAYTEST0001", "gateway-issued-secret-0123456789abcdef"



# -- harness ---------------------------------------------------------------------------------


def make_gateway(*authorizers: Authorizer, anonymous: bool = False) -> tuple[Gateway, Recorder]:
    recorder = Recorder()
    return Gateway(recorder, authorizers=list(authorizers), anonymous=anonymous), recorder


def error_code(response: Response) -> str:
    return response.headers["x-amzn-errortype"].split(":", 1)[0]


def send(gateway: Gateway, headers: dict[str, str], body: bytes = BODY) -> Response:
    return gateway.handle("POST", PATH, "", headers, body)


def refused(gateway: Gateway, recorder: Recorder, headers: dict[str, str], *, secret: str,
            status: int = 403, code: str = INVALID, body: bytes = BODY) -> str:
    """Send; check the refusal; return the message."""
    response = send(gateway, headers, body)
    assert response.status == status, response.body
    assert error_code(response) == code
    assert recorder.calls == [], "a refused request reached the terminal handler"
    assert secret not in response.body.decode()
    assert all(secret not in value for value in response.headers.values())
    message: str = json.loads(response.body)["message"]
    return message


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(document: Any) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


def jwks_fetch(*documents: dict[str, Any]) -> Callable[[str, float], bytes]:
    """An injected JWKS fetch answering with ``documents`` (the last one repeatedly)."""
    queue = list(documents)

    def fetch(url: str, timeout: float) -> bytes:
        return json.dumps(queue.pop(0) if len(queue) > 1 else queue[0]).encode()

    return fetch


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- JWT fixtures ----------------------------------------------------------------------------


def jwt_authorizer(issuer: TokenIssuer, **kwargs: Any) -> JWTAuthorizer:
    keys = kwargs.pop("keys", None) or JWKSKeys(issuer.jwks_url)
    return JWTAuthorizer(keys, issuer=issuer.issuer, audience=issuer.audience, **kwargs)


@pytest.fixture
def jwt_gateway(token_issuer: TokenIssuer) -> tuple[Gateway, Recorder]:
    return make_gateway(jwt_authorizer(token_issuer))


def test_a_valid_token_passes_and_yields_the_principal(
        token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder]) -> None:
    gateway, recorder = jwt_gateway
    token = token_issuer.issue("alice", tenant="t1", groups=["dev", "ops"], scope="read write")
    response = send(gateway, bearer(token))
    assert response.status == 200
    principal = recorder.principal
    assert principal is not None
    assert (principal.subject, principal.tenant) == ("alice", "t1")
    assert principal.groups == {"dev", "ops"} and principal.scopes == {"read", "write"}
    assert principal.claims["sub"] == "alice" and principal.claims["tenant"] == "t1"


# -- JWT attacks -----------------------------------------------------------------------------


def _forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64json(header)}.{b64json(claims)}.{b64url(signature)}"


def _claims(issuer: TokenIssuer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "mallory", "iat": now,
              "nbf": now, "exp": now + 3600}
    claims.update(overrides)
    return claims


def test_alg_none_is_refused(token_issuer: TokenIssuer,
                             jwt_gateway: tuple[Gateway, Recorder]) -> None:
    gateway, recorder = jwt_gateway
    for alg in ("none", "None", "NONE"):
        token = _forged({"alg": alg, "typ": "JWT", "kid": token_issuer.key_id},
                        _claims(token_issuer))
        refused(gateway, recorder, bearer(token), secret=token)
        # ... also with a trailing dot only (the canonical unsecured form) and a junk signature
        refused(gateway, recorder, bearer(token.rstrip(".") + ".c2ln"), secret=token)


def test_hs256_signed_with_the_rsa_public_key_is_refused(
        token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder], tmp_path: Path) -> None:
    pem = token_issuer.public_pem()
    signing_input = (f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': token_issuer.key_id})}."
                     f"{b64json(_claims(token_issuer))}")
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    # JWKS-backed authorizer
    gateway, recorder = jwt_gateway
    refused(gateway, recorder, bearer(token), secret=token)
    # PEM-backed authorizer: the very key the attacker used as HMAC secret
    pem_file = tmp_path / "public.pem"
    pem_file.write_bytes(pem)
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer, keys=PEMKey(pem_file)))
    refused(gateway, recorder, bearer(token), secret=token)
    assert send(gateway, bearer(token_issuer.issue("alice"))).status == 200  # the PEM works


def test_expired_token(token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder]) -> None:
    gateway, recorder = jwt_gateway
    token = token_issuer.issue("alice", ttl_s=-120)  # expired beyond the 30 s leeway
    message = refused(gateway, recorder, bearer(token), secret=token, code=EXPIRED)
    assert "expired" in message


def test_expiry_within_leeway_is_accepted(
        token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder]) -> None:
    gateway, _ = jwt_gateway
    assert send(gateway, bearer(token_issuer.issue("alice", ttl_s=-5))).status == 200


def test_not_yet_valid_token(token_issuer: TokenIssuer,
                             jwt_gateway: tuple[Gateway, Recorder]) -> None:
    gateway, recorder = jwt_gateway
    token = token_issuer.issue("alice", nbf=int(time.time()) + 300)
    message = refused(gateway, recorder, bearer(token), secret=token)
    assert "not valid yet" in message
    future_iat = token_issuer.issue("alice", iat=int(time.time()) + 300)
    refused(gateway, recorder, bearer(future_iat), secret=future_iat)


@pytest.mark.parametrize("claim", [{"iss": "https://evil.test"}, {"aud": "another-app"},
                                   {"aud": ["another-app", "yet-another"]}, {"iss": None},
                                   {"aud": None}, {"exp": None}])
def test_wrong_or_missing_registered_claims(token_issuer: TokenIssuer,
                                            jwt_gateway: tuple[Gateway, Recorder],
                                            claim: dict[str, Any]) -> None:
    gateway, recorder = jwt_gateway
    token = token_issuer.issue("alice", **claim)
    refused(gateway, recorder, bearer(token), secret=token)


def test_tampered_payload_with_the_original_signature(
        token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder]) -> None:
    gateway, recorder = jwt_gateway
    token = token_issuer.issue("alice", tenant="t1")
    header, _, signature = token.split(".")
    evil = f"{header}.{b64json(_claims(token_issuer, sub='admin', tenant='t2'))}.{signature}"
    refused(gateway, recorder, bearer(evil), secret=evil)
    # the original token is fine, and the forgery stays refused once it has been cached
    assert send(gateway, bearer(token)).status == 200
    recorder.calls.clear()
    refused(gateway, recorder, bearer(evil), secret=evil)


def test_unknown_kid_refetches_once_then_refuses(token_issuer: TokenIssuer) -> None:
    gateway, recorder = make_gateway(
        jwt_authorizer(token_issuer, keys=JWKSKeys(token_issuer.jwks_url, min_refetch_s=0)))
    assert send(gateway, bearer(token_issuer.issue("alice"))).status == 200  # keys cached
    recorder.calls.clear()
    before = token_issuer.fetches
    token = token_issuer.issue("alice", key_id="rotated-but-unknown")
    refused(gateway, recorder, bearer(token), secret=token)
    assert token_issuer.fetches == before + 1


def test_a_flood_of_unknown_kids_is_one_fetch_per_min_refetch_s(token_issuer: TokenIssuer) -> None:
    fetches: list[float] = []
    clock = FakeClock()
    fetch_jwks = jwks_fetch(token_issuer.jwks())

    def fetch(url: str, timeout: float) -> bytes:
        fetches.append(clock.now)
        return fetch_jwks(url, timeout)

    keys = JWKSKeys("https://idp.test/jwks", min_refetch_s=30, clock=clock, fetch=fetch)
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer, keys=keys))
    assert send(gateway, bearer(token_issuer.issue("alice"))).status == 200
    recorder.calls.clear()
    for i in range(20):
        token = token_issuer.issue("alice", key_id=f"made-up-{i}")
        refused(gateway, recorder, bearer(token), secret=token)
    assert len(fetches) == 1
    clock.now += 30
    for i in range(20):
        token = token_issuer.issue("alice", key_id=f"made-up-again-{i}")
        refused(gateway, recorder, bearer(token), secret=token)
    assert len(fetches) == 2


def test_unknown_kid_flood_during_an_outage_is_rate_limited(token_issuer: TokenIssuer) -> None:
    attempts: list[float] = []
    clock = FakeClock()
    up = True

    def fetch(url: str, timeout: float) -> bytes:
        attempts.append(clock.now)
        if not up:
            raise OSError("JWKS endpoint down")
        return json.dumps(token_issuer.jwks()).encode()

    keys = JWKSKeys("https://idp.test/jwks", min_refetch_s=30, clock=clock, fetch=fetch)
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer, keys=keys))
    assert send(gateway, bearer(token_issuer.issue("alice"))).status == 200
    recorder.calls.clear()
    up = False
    clock.now += 31  # one refetch is now due
    for i in range(10):
        token = token_issuer.issue("alice", key_id=f"made-up-{i}")
        refused(gateway, recorder, bearer(token), secret=token)
    assert len(attempts) == 2  # the initial fetch + ONE retry, not one per token


def test_oversized_token_is_refused_before_parsing(
        token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, recorder = jwt_gateway

    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("an oversized token was parsed")

    monkeypatch.setattr(jwt_authorizer_module, "_header", must_not_parse)
    monkeypatch.setattr(jwt, "decode", must_not_parse)
    monkeypatch.setattr(dispatch, "_looks_like_jwt", must_not_parse)
    header = b64json({"alg": "RS256", "kid": token_issuer.key_id})
    token = f"{header}.{'A' * (1024 * 1024)}.{'B' * 342}"
    started = time.perf_counter()
    message = refused(gateway, recorder, bearer(token), secret=token)
    assert "too large" in message
    assert time.perf_counter() - started < 1.0  # a size check, not a parse (generous bound)
    # the same through x-api-key
    refused(gateway, recorder, {"x-api-key": token}, secret=token)


def test_token_over_max_token_bytes_is_refused_before_jwt_parsing(
        token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the dispatcher's 16 KiB cap but over the authorizer's 8 KiB ``max_token_bytes``."""
    gateway, recorder = jwt_gateway

    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("an oversized token was parsed")

    monkeypatch.setattr(jwt_authorizer_module, "_header", must_not_parse)
    token = token_issuer.issue("alice", padding="x" * 9000)
    assert 8192 < len(token) < 16 * 1024
    assert "too large" in refused(gateway, recorder, bearer(token), secret=token)


HALF_HEADER = b'{"alg": "RS256",'
HALF_PAYLOAD = b'{"sub": "admin"'


@pytest.mark.parametrize("shape", [
    "header-bad-base64", "header-bad-json", "header-not-object", "payload-bad-base64",
    "payload-bad-json", "payload-not-object", "signature-bad-base64", "two-segments",
    "four-segments", "empty-segments", "non-ascii",
])
def test_malformed_tokens(token_issuer: TokenIssuer, jwt_gateway: tuple[Gateway, Recorder],
                          shape: str) -> None:
    gateway, recorder = jwt_gateway
    good = token_issuer.issue("alice")
    header, payload, signature = good.split(".")
    token = {
        "header-bad-base64": f"{header[:5]}!*{header[7:]}.{payload}.{signature}",
        "header-bad-json": f"{b64url(HALF_HEADER)}.{payload}.{signature}",
        "header-not-object": f"{b64json(['alg', 'RS256'])}.{payload}.{signature}",
        "payload-bad-base64": f"{header}.{payload[:10]}%%%{payload[13:]}.{signature}",
        "payload-bad-json": f"{header}.{b64url(HALF_PAYLOAD)}.{signature}",
        "payload-not-object": f"{header}.{b64json(['sub', 'admin'])}.{signature}",
        "signature-bad-base64": f"{header}.{payload}.{signature[:-3]}$$$",
        "two-segments": f"{header}.{payload}",
        "four-segments": f"{good}.{signature}",
        "empty-segments": f"{header}..",
        "non-ascii": f"{header}.{payload}.{signature[:-1]}é",
    }[shape]
    refused(gateway, recorder, bearer(token), secret=token)


def test_deeply_nested_header_is_a_403_not_a_500(jwt_gateway: tuple[Gateway, Recorder],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Regression: a header of thousands of nested '[' (well under the size caps) raised
    RecursionError in the dispatcher's JSON parse and came back as a 500 with a traceback."""
    gateway, recorder = jwt_gateway
    for nested in (b"[" * 3000, b'{"a":' * 1200, b'{"alg":"RS256","kid":' + b"[" * 3000):
        token = f"{b64url(nested)}.e30.c2ln"
        assert len(token) < 8192
        refused(gateway, recorder, bearer(token), secret=token)
        payload_bomb = f"{b64json({'alg': 'RS256', 'kid': 'test-key-1'})}.{b64url(nested)}.c2ln"
        refused(gateway, recorder, bearer(payload_bomb), secret=payload_bomb)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _ec_jwk(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    return private, jwk


def test_kid_pointing_at_a_key_of_another_family(token_issuer: TokenIssuer) -> None:
    ec_private, ec_jwk = _ec_jwk("ec-1")
    document = {"keys": [*token_issuer.jwks()["keys"], ec_jwk]}
    keys = JWKSKeys("https://idp.test/jwks", fetch=jwks_fetch(document))
    gateway, recorder = make_gateway(
        jwt_authorizer(token_issuer, keys=keys, algorithms=("RS256", "ES256")))
    # RS256 header, kid of the EC key
    rs_on_ec = jwt.encode(_claims(token_issuer), token_issuer.private_key, algorithm="RS256",
                          headers={"kid": "ec-1"})
    refused(gateway, recorder, bearer(rs_on_ec), secret=rs_on_ec)
    # ES256 header, kid of the RSA key
    es_on_rsa = jwt.encode(_claims(token_issuer), ec_private, algorithm="ES256",
                           headers={"kid": token_issuer.key_id})
    refused(gateway, recorder, bearer(es_on_rsa), secret=es_on_rsa)
    # the right pairings work
    good_es = jwt.encode(_claims(token_issuer), ec_private, algorithm="ES256",
                         headers={"kid": "ec-1"})
    assert send(gateway, bearer(good_es)).status == 200
    assert send(gateway, bearer(token_issuer.issue("alice"))).status == 200


@pytest.mark.parametrize("kid", [None, 1, ["test-key-1"], {"k": 1}, ""])
def test_kid_missing_or_not_a_string(token_issuer: TokenIssuer,
                                     jwt_gateway: tuple[Gateway, Recorder], kid: Any) -> None:
    gateway, recorder = jwt_gateway
    headers = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        headers["kid"] = kid
    signing_input = f"{b64json(headers)}.{b64json(_claims(token_issuer))}"
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(
        signing_input.encode(), token_issuer.private_key)
    token = f"{signing_input}.{b64url(signature)}"
    refused(gateway, recorder, bearer(token), secret=token)


def test_dangerous_allowlists_are_refused_at_construction(
        token_issuer: TokenIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem_file = tmp_path / "public.pem"
    pem_file.write_bytes(token_issuer.public_pem())
    monkeypatch.setenv("GW_TEST_HMAC", "s" * 40)
    jwks = JWKSKeys("https://idp.test/jwks", fetch=jwks_fetch(token_issuer.jwks()))
    sources: dict[str, KeySource] = {"jwks": jwks, "pem": PEMKey(pem_file), "hmac": HMACSecret("GW_TEST_HMAC")}
    for name, source in sources.items():
        for algorithms in (("none",), ("RS256", "none"), ("NONE",), ("None",), ()):
            with pytest.raises(ValueError, match="algorithm"):
                JWTAuthorizer(source, algorithms=algorithms)
        if name != "hmac":
            for algorithms in (("HS256",), ("RS256", "HS256"), ("HS384",), ("HS512",)):
                with pytest.raises(ValueError, match="cannot be verified"):
                    JWTAuthorizer(source, algorithms=algorithms)
    with pytest.raises(ValueError, match="cannot be verified"):
        JWTAuthorizer(sources["pem"], algorithms=("ES256",))  # an RSA PEM
    with pytest.raises(ValueError, match="cannot be verified"):
        JWTAuthorizer(sources["hmac"], algorithms=("RS256",))
    JWTAuthorizer(sources["hmac"], algorithms=("HS256",))  # the legitimate pairings build
    JWTAuthorizer(sources["pem"], algorithms=("RS256", "PS256"))


def test_jwks_outage_without_cached_keys_fails_closed(token_issuer: TokenIssuer) -> None:
    def down(url: str, timeout: float) -> bytes:
        raise OSError("connection refused")

    gateway, recorder = make_gateway(
        jwt_authorizer(token_issuer, keys=JWKSKeys("https://idp.test/jwks", fetch=down)))
    token = token_issuer.issue("alice")
    refused(gateway, recorder, bearer(token), secret=token, status=503, code=UNAVAILABLE)
    refused(gateway, recorder, bearer(token), secret=token, status=503, code=UNAVAILABLE)


@pytest.mark.parametrize("failure", [OSError("timeout"), ValueError("garbage"), b"<html>",
                                     b'["not", "a", "jwks"]'])
def test_jwks_outage_with_cached_keys_keeps_working(token_issuer: TokenIssuer,
                                                          failure: Any) -> None:
    clock = FakeClock()
    up = True

    def fetch(url: str, timeout: float) -> bytes:
        if up:
            return json.dumps(token_issuer.jwks()).encode()
        if isinstance(failure, bytes):
            return failure
        raise failure

    keys = JWKSKeys("https://idp.test/jwks", ttl_s=300, min_refetch_s=0, clock=clock,
                    fetch=fetch)
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer, keys=keys))
    assert send(gateway, bearer(token_issuer.issue("alice"))).status == 200
    up = False
    clock.now += 200  # still fresh
    recorder.calls.clear()
    assert send(gateway, bearer(token_issuer.issue("bob"))).status == 200  # a new token
    assert recorder.principal is not None and recorder.principal.subject == "bob"
    recorder.calls.clear()
    # an unknown kid triggers a refetch that fails: refused as invalid, not as an outage
    token = token_issuer.issue("carol", key_id="unknown")
    refused(gateway, recorder, bearer(token), secret=token)
    # past its ttl the cached set is still served while fetches fail, for max_stale_s...
    clock.now += 200
    recorder.calls.clear()
    assert send(gateway, bearer(token_issuer.issue("dave"))).status == 200
    recorder.calls.clear()
    # ...then the gateway fails closed
    clock.now += keys.max_stale_s
    token = token_issuer.issue("erin")
    refused(gateway, recorder, bearer(token), secret=token, status=503, code=UNAVAILABLE)


def test_subject_claim_missing_or_unusable(token_issuer: TokenIssuer) -> None:
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer))
    for token in (token_issuer.issue(None),  # type: ignore[arg-type]  # no "sub" at all
                  token_issuer.issue(""), token_issuer.issue(12345)):  # type: ignore[arg-type]
        refused(gateway, recorder, bearer(token), secret=token)
    # "sub" not required, the subject read from another claim that is absent or not a string
    gateway, recorder = make_gateway(jwt_authorizer(
        token_issuer, required_claims=("exp",), subject_claim="email"))
    for token in (token_issuer.issue("alice"), token_issuer.issue("alice", email=["a@b.c"]),
                  token_issuer.issue(None, email=""),  # type: ignore[arg-type]
                  token_issuer.issue(None, email={"v": "a@b.c"})):  # type: ignore[arg-type]
        refused(gateway, recorder, bearer(token), secret=token)
    assert send(gateway, bearer(token_issuer.issue(None, email="a@b.c"))).status == 200  # type: ignore[arg-type]
    assert recorder.principal is not None and recorder.principal.subject == "a@b.c"


# -- property: any single-byte change is refused ------------------------------------------------


@pytest.fixture(scope="module")
def mutation_target(token_issuer: TokenIssuer) -> tuple[Gateway, Recorder, str]:
    keys = JWKSKeys("https://idp.test/jwks", fetch=jwks_fetch(token_issuer.jwks()))
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer, keys=keys))
    token = token_issuer.issue("alice", tenant="t1", groups=["dev"])
    assert send(gateway, bearer(token)).status == 200  # verified and cached
    recorder.calls.clear()
    return gateway, recorder, token


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_is_refused(mutation_target: tuple[Gateway, Recorder, str],
                                           data: st.DataObject) -> None:
    gateway, recorder, token = mutation_target
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    replacement = data.draw(st.integers(0, 255), label="byte")
    mutated = token[:position] + chr(replacement) + token[position + 1:]
    assume(mutated != token)
    response = send(gateway, bearer(mutated))
    assert response.status == 403, (position, replacement)
    assert error_code(response) == INVALID
    assert recorder.calls == []


# -- anonymous gateways never downgrade a bad credential ---------------------------------------


def test_anonymous_gateway_refuses_bad_jwts_and_lets_no_credential_through(
        token_issuer: TokenIssuer) -> None:
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer), anonymous=True)
    header, payload, signature = token_issuer.issue("alice").split(".")
    bad = [
        token_issuer.issue("alice", ttl_s=-3600),
        token_issuer.issue("alice", aud="another-app"),
        f"{header}.{b64json(_claims(token_issuer, sub='admin'))}.{signature}",
        _forged({"alg": "none", "kid": token_issuer.key_id}, _claims(token_issuer)),
        f"{header}.{payload}.{signature[:-4]}AAAA",
        token_issuer.issue("alice", key_id="unknown"),
    ]
    for token in bad:
        response = send(gateway, bearer(token))
        assert response.status == 403, token
        assert error_code(response) in (INVALID, EXPIRED)
    assert recorder.calls == []
    assert send(gateway, {"content-type": "application/json"}).status == 200
    assert recorder.principal == Principal.anonymous()


@pytest.mark.parametrize("change", ["bang", "not-json", "not-an-object", "no-alg", "one-char",
                                    "padding", "plus", "slash", "space"])
def test_anonymous_gateway_refuses_a_corrupted_jwt(token_issuer: TokenIssuer,
                                                   change: str) -> None:
    """A JWT whose header does not decode, or with a byte outside base64url, is a bad token to
    refuse - never a reason to run the call as anonymous."""
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer), anonymous=True)
    token = token_issuer.issue("alice")
    _, payload, signature = token.split(".")
    corrupted = {
        "bang": "!" + token[1:],
        "not-json": f"{b64url(b'garbage')}.{payload}.{signature}",
        "not-an-object": f"{b64json(['alg'])}.{payload}.{signature}",
        "no-alg": f"{b64json({'typ': 'JWT'})}.{payload}.{signature}",
        "one-char": f"A.{payload}.{signature}",
        "padding": token + "==",
        "plus": token[:-1] + "+",
        "slash": token[:5] + "/" + token[6:],
        "space": token[:40] + " " + token[41:],
    }[change]
    refused(gateway, recorder, bearer(corrupted), secret=corrupted)


def test_anonymous_gateway_refuses_an_unsupported_authorization_scheme(
        token_issuer: TokenIssuer) -> None:
    gateway, recorder = make_gateway(jwt_authorizer(token_issuer), anonymous=True)
    refused(gateway, recorder, {"authorization": "Basic YWxpY2U6c2VjcmV0"}, secret="YWxpY2U6c2Vj")
    refused(gateway, recorder, {"authorization": "Bearer "}, secret="Bearer")


# -- SigV4 with gateway-issued access keys -----------------------------------------------------


class _UnsignedHostAuth(SigV4Auth):  # type: ignore[misc]
    """botocore's signer, minus ``host`` in SignedHeaders (a well-formed, validly signed request
    that does not bind the host)."""

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        del headers["host"]
        return headers


def sigv4_headers(body: bytes = BODY, *, access_key: str = AKID, secret: str = AK_SECRET,
                  signer: type[SigV4Auth] = SigV4Auth, url: str = GW_URL) -> dict[str, str]:
    """Headers of the request boto3 sends: signed by botocore for service bedrock."""
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
    signer(Credentials(access_key, secret), "bedrock", "us-east-1").add_auth(request)
    prepared = request.prepare()
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers["host"] = GW_HOST
    return headers


def sigv4_gateway(clock: Callable[[], datetime] | None = None) -> tuple[Gateway, Recorder]:
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    authorizer = SigV4Authorizer(
        [AccessKey(AKID, secret=AK_SECRET, subject="svc", tenant="t1")], **options)
    return make_gateway(authorizer)


def signature_of(headers: dict[str, str]) -> str:
    return headers["authorization"].rsplit("Signature=", 1)[1]


def test_sigv4_valid_request_yields_the_principal() -> None:
    gateway, recorder = sigv4_gateway()
    headers = sigv4_headers()
    assert "host" in headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    response = send(gateway, headers)
    assert response.status == 200, response.body
    principal = recorder.principal
    assert principal is not None
    assert (principal.subject, principal.tenant) == ("svc", "t1")
    assert principal.claims == {"auth": "sigv4", "access_key_id": AKID}


def test_sigv4_replay_six_minutes_later() -> None:
    headers = sigv4_headers()
    later = datetime.now(UTC) + timedelta(minutes=6)
    gateway, recorder = sigv4_gateway(clock=lambda: later)
    message = refused(gateway, recorder, headers, secret=signature_of(headers))
    assert "expired" in message
    earlier = datetime.now(UTC) - timedelta(minutes=6)  # a request dated in the future
    gateway, recorder = sigv4_gateway(clock=lambda: earlier)
    refused(gateway, recorder, headers, secret=signature_of(headers))


def test_sigv4_replay_within_skew_is_accepted() -> None:
    headers = sigv4_headers()
    later = datetime.now(UTC) + timedelta(minutes=4)
    gateway, _ = sigv4_gateway(clock=lambda: later)
    assert send(gateway, headers).status == 200


def test_sigv4_body_changed_after_signing() -> None:
    gateway, recorder = sigv4_gateway()
    headers = sigv4_headers()
    changed = BODY.replace(b"hi", b"ho")
    refused(gateway, recorder, headers, secret=signature_of(headers), body=changed)


def test_sigv4_host_changed() -> None:
    gateway, recorder = sigv4_gateway()
    headers = sigv4_headers()
    refused(gateway, recorder, {**headers, "host": "evil.test:8080"},
            secret=signature_of(headers))
    refused(gateway, recorder, {**headers, "host": "gw.test"}, secret=signature_of(headers))


def test_sigv4_unknown_access_key_is_indistinguishable_from_a_bad_signature() -> None:
    gateway, recorder = sigv4_gateway()
    unknown = sigv4_headers(access_key="AKIDUNKNOWNKEY00001")
    wrong_secret = sigv4_headers(secret="not-the-secret")
    tampered = dict(sigv4_headers())
    sig = signature_of(tampered)
    tampered["authorization"] = tampered["authorization"][: -len(sig)] + sig[::-1]
    messages = {refused(gateway, recorder, h, secret=signature_of(h))
                for h in (unknown, wrong_secret, tampered)}
    assert len(messages) == 1, messages
    assert "AKIDUNKNOWNKEY00001" not in messages.pop()


def test_sigv4_unsigned_host_is_refused() -> None:
    gateway, recorder = sigv4_gateway()
    headers = sigv4_headers(signer=_UnsignedHostAuth)
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "host" not in signed and "x-amz-date" in signed
    refused(gateway, recorder, headers, secret=signature_of(headers))


def test_sigv4_other_service_or_malformed_header_is_refused() -> None:
    gateway, recorder = sigv4_gateway()
    headers = sigv4_headers()
    auth = headers["authorization"]
    for forged in (auth.replace("/bedrock/", "/s3/"), auth.replace("Signature=", "Sig="),
                   auth + " ", auth.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 ", 1)):
        refused(gateway, recorder, {**headers, "authorization": forged},
                secret=signature_of(headers))
    no_date = {k: v for k, v in headers.items() if k != "x-amz-date"}
    refused(gateway, recorder, no_date, secret=signature_of(headers))


# -- API keys -------------------------------------------------------------------------------


@pytest.fixture
def api_key_setup() -> tuple[Gateway, Recorder, str]:
    key, digest = generate_api_key()
    _, other_digest = generate_api_key()
    authorizer = APIKeyAuthorizer([APIKey(other_digest, "someone-else", "t9"),
                                   APIKey(digest, "team-bot", "t1")])
    gateway, recorder = make_gateway(authorizer)
    return gateway, recorder, key


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
def test_api_key_correct(api_key_setup: tuple[Gateway, Recorder, str], how: str) -> None:
    gateway, recorder, key = api_key_setup
    headers = {"x-api-key": key} if how == "x-api-key" else bearer(key)
    response = send(gateway, headers)
    assert response.status == 200
    assert recorder.principal == Principal("team-bot", tenant="t1", claims={"auth": "api_key"})


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
def test_api_key_wrong(api_key_setup: tuple[Gateway, Recorder, str], how: str) -> None:
    gateway, recorder, key = api_key_setup
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), key + "x", key.upper(), "bgw_",
                  hashlib.sha256(key.encode()).hexdigest()):  # the stored hash is not a key
        headers = {"x-api-key": wrong} if how == "x-api-key" else bearer(wrong)
        refused(gateway, recorder, headers, secret=wrong)
        refused(gateway, recorder, headers, secret=key)


def test_api_key_in_both_headers_is_refused(api_key_setup: tuple[Gateway, Recorder, str]) -> None:
    gateway, recorder, key = api_key_setup
    message = refused(gateway, recorder, {"x-api-key": key, **bearer(key)}, secret=key)
    assert "not both" in message


def test_a_jwt_is_never_tried_as_an_api_key(token_issuer: TokenIssuer) -> None:
    token = token_issuer.issue("alice")
    # even a JWT whose SHA-256 is a registered API key is not accepted as one
    authorizer = APIKeyAuthorizer([APIKey(hashlib.sha256(token.encode()).hexdigest(), "x")])
    gateway, recorder = make_gateway(authorizer)
    message = refused(gateway, recorder, bearer(token), secret=token)
    assert message == "This gateway does not accept JWT bearer tokens."


def test_a_sigv4_request_to_an_api_key_gateway_is_refused(
        api_key_setup: tuple[Gateway, Recorder, str]) -> None:
    gateway, recorder, _ = api_key_setup
    headers = sigv4_headers()
    assert "does not accept SigV4" in refused(gateway, recorder, headers,
                                              secret=signature_of(headers))
    assert "Missing credentials" in refused(gateway, recorder, {}, secret="bgw_")


# -- logging ----------------------------------------------------------------------------------


def test_no_log_record_contains_a_credential(
        token_issuer: TokenIssuer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key, digest = generate_api_key()
    ec_private, ec_jwk = _ec_jwk("ec-1")
    state = {"up": True}

    def fetch(url: str, timeout: float) -> bytes:
        if not state["up"]:
            raise OSError("down")
        return json.dumps({"keys": [*token_issuer.jwks()["keys"], ec_jwk]}).encode()

    keys = JWKSKeys("https://idp.test/jwks", min_refetch_s=0, fetch=fetch)
    gateway, recorder = make_gateway(
        jwt_authorizer(token_issuer, keys=keys),
        APIKeyAuthorizer([APIKey(digest, "team-bot", "t1")]),
        SigV4Authorizer([AccessKey(AKID, secret=AK_SECRET, subject="svc")]))
    good = token_issuer.issue("alice")
    header, _, signature = good.split(".")
    secrets_sent = [good, key, AK_SECRET]
    attempts: list[dict[str, str]] = [
        bearer(good), {"x-api-key": key}, bearer(key),
        bearer(token_issuer.issue("alice", ttl_s=-3600)),
        bearer(token_issuer.issue("alice", aud="nope")),
        bearer(f"{header}.{b64json(_claims(token_issuer, sub='admin'))}.{signature}"),
        bearer(token_issuer.issue("alice", key_id="unknown")),
        bearer(jwt.encode(_claims(token_issuer), ec_private, "ES256", headers={"kid": "ec-1"})),
        {"x-api-key": key + "x"}, bearer(key[:-2]), {"x-api-key": key, **bearer(good)},
        sigv4_headers(), sigv4_headers(secret="wrong-secret"),
        {"authorization": f"Basic {key}"}, bearer(f"{header}.{'A' * 20_000}.{signature}"),
    ]
    for headers in attempts:
        secrets_sent += [v.split(" ", 1)[-1] for k, v in headers.items()
                         if k in ("authorization", "x-api-key")]
        send(gateway, headers)
    state["up"] = False
    send(gateway, bearer(token_issuer.issue("bob", key_id="unknown-during-outage")))
    assert len(recorder.calls) == 4  # JWT, API key x2, SigV4: the rest were refused
    assert any(r.name == "bedrock_gateway.auth" for r in caplog.records)  # failures were logged
    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for secret in secrets_sent:
        assert secret not in logged
    assert signature not in logged
    assert digest not in logged
