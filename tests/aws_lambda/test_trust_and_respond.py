"""Trusting an API Gateway authorizer's context, and the respond() contract streaming runtimes
build on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bedrock_gateway import Gateway
from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
from bedrock_gateway.auth.access import AccessRule
from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.eventstream import iter_frames
from bedrock_gateway.testing import FakeBedrock

from ..conftest import make_forwarder
from .support import CONVERSE, HAIKU, botocore_path, exceptions, load, parse, present

KEY, DIGEST = generate_api_key()


@pytest.fixture
def guarded(fake_bedrock: FakeBedrock) -> Iterator[Gateway]:
    """API keys only; tenant t1 may use Haiku, nobody else anything."""
    gateway = Gateway(make_forwarder(fake_bedrock),
                      authorizers=[APIKeyAuthorizer([APIKey(DIGEST, "svc", tenant="t1")])],
                      access_rules=[AccessRule("t1-haiku", tenants=("t1",),
                                               allow_models=(HAIKU,))])
    yield gateway
    gateway.close()


def test_trusted_principal_reaches_the_access_rules(guarded: Gateway,
                                                    fake_bedrock: FakeBedrock) -> None:
    handler = LambdaHandler(guarded, trust_authorizer=True)
    alice = load("rest_proxy_with_authorizer")  # tenant t1, a token no authorizer here knows
    parsed = parse(handler(alice, None), "Converse")
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert parsed["output"]["message"]["role"] == "assistant"
    assert fake_bedrock.requests[-1].params["modelId"] == HAIKU

    bob = load("http_v2_proxy_with_authorizer")  # tenant t2: authenticated, but no rule allows
    result = handler(bob, None)
    parsed = parse(result, "Converse")
    assert result["statusCode"] == 403
    assert parsed["Error"]["Code"] == "AccessDeniedException"
    assert exceptions().from_code("AccessDeniedException").__name__ == "AccessDeniedException"
    assert len(fake_bedrock.requests) == 1


def test_authorizer_context_is_not_trusted_by_default(guarded: Gateway,
                                                      fake_bedrock: FakeBedrock) -> None:
    handler = LambdaHandler(guarded)
    for name in ("rest_proxy_with_authorizer", "http_v2_proxy_with_authorizer"):
        result = handler(load(name), None)
        assert result["statusCode"] == 403
        assert parse(result, "Converse")["Error"]["Code"] == "UnrecognizedClientException"
    assert fake_bedrock.requests == []


def test_trust_without_a_principal_authenticates_normally(guarded: Gateway) -> None:
    handler = LambdaHandler(guarded, trust_authorizer=True)
    event = load("rest_proxy_with_authorizer")
    del event["requestContext"]["authorizer"]
    del event["headers"]["Authorization"], event["multiValueHeaders"]["Authorization"]
    assert handler(event, None)["statusCode"] == 403  # no credential: refused
    event["multiValueHeaders"]["x-api-key"] = [KEY]
    assert handler(event, None)["statusCode"] == 200  # the key's tenant t1 may use Haiku


@pytest.mark.parametrize("kind", ["alb", "alb_multivalue", "function_url"])
def test_shapes_without_authorizers_are_never_trusted(guarded: Gateway,
                                                      fake_bedrock: FakeBedrock,
                                                      kind: str) -> None:
    handler = LambdaHandler(guarded, trust_authorizer=True)
    event = present(kind, botocore_path(HAIKU, "Converse"), body=json.dumps(CONVERSE).encode())
    forged = {"subject": "alice", "tenant": "t1", "groups": "", "scopes": ""}
    event["requestContext"]["authorizer"] = {"lambda": forged, **forged}
    result = handler(event, None)
    assert result["statusCode"] == 403
    assert parse(result, "Converse")["Error"]["Code"] == "UnrecognizedClientException"
    assert fake_bedrock.requests == []


def test_respond_returns_the_stream_unconsumed(handler: LambdaHandler,
                                               fake_bedrock: FakeBedrock) -> None:
    closed: list[bool] = []
    event = present("function_url", botocore_path(HAIKU, "ConverseStream"),
                    body=json.dumps(CONVERSE).encode())
    reply = handler.respond(event, None)
    event_obj, response = reply  # a tuple too
    assert event_obj is reply.event and response is reply.response
    response.on_close(lambda: closed.append(True))
    assert response.status == 200 and response.is_stream and response.frames is not None
    assert reply.headers()["content-type"] == "application/vnd.amazon.eventstream"
    assert "content-length" not in reply.headers()
    assert not closed
    data = b"".join(response.chunks())
    assert data == fake_bedrock.last_stream_body
    assert [f.event_type for f in iter_frames([data])][-1] == "metadata"
    assert closed == [True]


def test_respond_turns_bad_input_into_an_error_response(handler: LambdaHandler) -> None:
    event = present("http_v2", botocore_path(HAIKU, "Converse"))
    event.update(body="%%%", isBase64Encoded=True)
    reply = handler.respond(event, None)
    assert reply.response.status == 400
    assert reply.headers()["x-amzn-errortype"].startswith("ValidationException")
    rendered: dict[str, Any] = reply.event.render(reply.response.status, reply.headers(),
                                                  b"".join(reply.response.chunks()))
    assert parse(rendered, "Converse")["Error"]["Code"] == "ValidationException"
