"""SigV4 verification agrees with botocore's signer; any change to a signed part is caught."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway.sigv4 import SigV4Error, verify_sigv4

SECRETS = {"AKIDEXAMPLE": "secret/example+key"}


def _sign(model: str, body: bytes, extra: dict[str, str]) -> dict[str, object]:
    url = f"http://gw.local:8080/model/{quote(model, safe='-._~')}/converse"
    req = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json", **extra})
    SigV4Auth(Credentials("AKIDEXAMPLE", SECRETS["AKIDEXAMPLE"]), "bedrock", "us-east-1").add_auth(req)
    prepared = req.prepare()
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers["host"] = "gw.local:8080"
    parts = urlsplit(prepared.url)
    return {"method": "POST", "raw_path": parts.path, "query": parts.query,
            "headers": headers, "body": body}


models = st.from_regex(r"[a-z0-9]{1,8}\.[a-z0-9\-]{1,12}(:[0-9])?(/[a-z.]{1,6})?", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@given(models, st.binary(max_size=300), header_values)
def test_botocore_signed_requests_verify(model: str, body: bytes, trace: str) -> None:
    req = _sign(model, body, {"X-Amzn-Bedrock-Trace": trace})
    signed = verify_sigv4(**req, secret_for=SECRETS.get, service="bedrock")  # type: ignore[arg-type]
    assert signed.access_key == "AKIDEXAMPLE"
    assert "x-amzn-bedrock-trace" in signed.signed_headers


@given(st.binary(min_size=1, max_size=100), st.sampled_from(["body", "path", "header", "host", "sig"]))
def test_any_tampering_is_rejected(body: bytes, part: str) -> None:
    req = _sign("anthropic.claude-v2", body, {"X-Amzn-Bedrock-Trace": "ENABLED"})
    headers = dict(req["headers"])  # type: ignore[call-overload]
    if part == "body":
        req["body"] = body + b"x"
    elif part == "path":
        req["raw_path"] = "/model/anthropic.claude-v3/converse"
    elif part == "header":
        headers["x-amzn-bedrock-trace"] = "DISABLED"
    elif part == "host":
        headers["host"] = "evil.local:8080"
    else:
        headers["authorization"] = headers["authorization"][:-1] + (
            "0" if headers["authorization"][-1] != "0" else "1")
    req["headers"] = headers
    with pytest.raises(SigV4Error):
        verify_sigv4(**req, secret_for=SECRETS.get)  # type: ignore[arg-type]


def test_clock_skew_unknown_key_and_unsigned_host() -> None:
    req = _sign("a.b", b"{}", {})
    with pytest.raises(SigV4Error, match="too far"):
        verify_sigv4(**req, secret_for=SECRETS.get,  # type: ignore[arg-type]
                     now=datetime.now(UTC) + timedelta(minutes=6))
    with pytest.raises(SigV4Error, match="unknown access key"):
        verify_sigv4(**req, secret_for=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(SigV4Error, match="must be signed"):
        verify_sigv4(**req, secret_for=SECRETS.get,  # type: ignore[arg-type]
                     required_headers=("host", "x-amz-date", "x-amz-security-token"))
    with pytest.raises(SigV4Error, match="another service"):
        verify_sigv4(**req, secret_for=SECRETS.get, service="s3")  # type: ignore[arg-type]
