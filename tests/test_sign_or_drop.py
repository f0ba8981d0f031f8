"""What the gateway forwards of what a client sent, through the real path (HTTP -> gateway ->
FakeBedrock): a SigV4 client's unsigned headers are dropped (sign or drop), a bearer or API-key
client's headers are forwarded as before, and ListAsyncInvokes takes only its modelled query
parameters."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bedrock_gateway import Gateway
from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.auth.sigv4_keys import AccessKey, SigV4Authorizer
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock

from .conftest import gateway_client, make_forwarder
from .test_e2e import CLAUDE

AKID = "AKIAGATEWAYTEST00001"
SECRET = "gateway-issued-secret-for-tests-0000000"
API_KEY, API_KEY_SHA256 = generate_api_key()
PATH = f"/model/{CLAUDE.replace(':', '%3A')}/invoke"
BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
# What a party holding a captured request (but not the secret) would like to add: a guardrail
# of its choosing, a dearer service tier and latency mode billed to the key's owner.
ADDED = {"X-Amzn-Bedrock-GuardrailIdentifier": "gr-of-the-attacker",
         "X-Amzn-Bedrock-GuardrailVersion": "1",
         "X-Amzn-Bedrock-Service-Tier": "priority",
         "X-Amzn-Bedrock-PerformanceConfig-Latency": "optimized"}


@pytest.fixture(scope="module")
def server(fake_bedrock_server: FakeBedrock) -> Iterator[BackgroundServer]:
    forwarder = make_forwarder(fake_bedrock_server)
    gateway = Gateway(forwarder, authorizers=[
        SigV4Authorizer([AccessKey(AKID, secret=SECRET, subject="svc")]),
        APIKeyAuthorizer([APIKey(API_KEY_SHA256, "bot")])])
    with BackgroundServer(gateway) as running:
        yield running
    forwarder.close()


def signed_headers(server: BackgroundServer) -> dict[str, str]:
    """A request signed as boto3 signs it with the gateway-issued key (what was captured)."""
    request = AWSRequest("POST", f"{server.url}{PATH}", data=BODY, headers={
        "Content-Type": "application/json", "Accept": "application/json",
        "X-Amzn-Bedrock-Trace": "ENABLED"})
    SigV4Auth(Credentials(AKID, SECRET), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def send(server: BackgroundServer, headers: dict[str, str], path: str = PATH,
         method: str = "POST", body: bytes = BODY) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body if method == "POST" else None, headers)
        response = conn.getresponse()
        response.read()
        return response.status, (response.getheader("x-amzn-errortype") or "").split(":")[0]
    finally:
        conn.close()


def test_unsigned_headers_added_to_a_signed_request_are_not_forwarded(
        server: BackgroundServer, fake_bedrock: FakeBedrock) -> None:
    headers = signed_headers(server)
    assert send(server, headers)[0] == 200  # the request as signed
    assert fake_bedrock.requests[-1].headers["x-amzn-bedrock-trace"] == "ENABLED"
    assert send(server, {**headers, **ADDED})[0] == 200  # replayed with more headers
    seen = fake_bedrock.requests[-1].headers
    assert seen["x-amzn-bedrock-trace"] == "ENABLED"  # signed: forwarded
    assert seen["content-type"] == "application/json"
    for name in ADDED:  # unsigned: dropped
        assert name.lower() not in seen, name
    # changing a signed header is still a broken signature
    assert send(server, {**headers, "X-Amzn-Bedrock-Trace": "DISABLED"}) == (
        403, "UnrecognizedClientException")


def test_boto3_with_gateway_keys_keeps_what_it_signed(server: BackgroundServer,
                                                      fake_bedrock: FakeBedrock) -> None:
    import boto3

    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
                          aws_access_key_id=AKID, aws_secret_access_key=SECRET)

    def add_after_signing(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Bedrock-Service-Tier"] = "priority"

    client.meta.events.register("before-send.bedrock-runtime.InvokeModel", add_after_signing)
    try:
        client.invoke_model(modelId=CLAUDE, body=BODY, contentType="application/json",
                            accept="application/json", trace="ENABLED",
                            guardrailIdentifier="gr-own", guardrailVersion="DRAFT")
    except client.exceptions.ClientError:
        pass  # whatever the fake makes of the guardrail: the headers are what is checked
    finally:
        client.close()
    seen = fake_bedrock.requests[-1].headers
    assert seen["x-amzn-bedrock-trace"] == "ENABLED"
    assert seen["x-amzn-bedrock-guardrailidentifier"] == "gr-own"
    assert "x-amzn-bedrock-service-tier" not in seen


def test_bearer_and_api_key_clients_are_forwarded_as_before(
        server: BackgroundServer, fake_bedrock: FakeBedrock) -> None:
    headers = {"Content-Type": "application/json", "x-api-key": API_KEY,
               "X-Amzn-Bedrock-Service-Tier": "priority"}
    assert send(server, headers)[0] == 200
    assert fake_bedrock.requests[-1].headers["x-amzn-bedrock-service-tier"] == "priority"


# -- ListAsyncInvokes: only botocore's modelled query parameters --------------------------------


@pytest.mark.parametrize("query", [
    "maxResults=5&foo=bar",  # not modelled
    "maxResults=5&maxResults=6",  # twice
    "maxResults=0", "maxResults=1001", "sortOrder=Sideways", "statusEquals=Done",
    "submitTimeAfter=yesterday", "maxResults", "a=1&&b=2", "%ff=1",
])
def test_list_async_invokes_refuses_unmodelled_query_parameters(
        gateway_server: BackgroundServer, fake_bedrock: FakeBedrock, query: str) -> None:
    status, code = send(gateway_server, {}, path=f"/async-invoke?{query}", method="GET")
    assert (status, code) == (400, "ValidationException")
    assert fake_bedrock.requests == []


def test_list_async_invokes_takes_every_modelled_parameter(
        gateway_server: BackgroundServer, fake_bedrock: FakeBedrock) -> None:
    client = gateway_client(gateway_server.url)
    try:
        listed = client.list_async_invokes(
            maxResults=5, nextToken="0", sortBy="SubmissionTime", sortOrder="Descending",
            statusEquals="Completed", submitTimeAfter=datetime(2024, 1, 1, tzinfo=UTC),
            submitTimeBefore=datetime(2030, 1, 1, 12, 30, 15, 250_000, tzinfo=UTC))
    finally:
        client.close()
    assert "asyncInvokeSummaries" in listed
    (seen,) = fake_bedrock.requests
    assert {pair.split("=")[0] for pair in seen.query.split("&")} == {
        "maxResults", "nextToken", "sortBy", "sortOrder", "statusEquals", "submitTimeAfter",
        "submitTimeBefore"}
