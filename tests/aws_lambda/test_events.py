"""Event detection, path presentations, prefixes, headers and hostile input, per event type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway import Call, Gateway, Response
from bedrock_gateway.adapters.aws_lambda.events import (
    ALBEvent,
    APIGatewayV1Event,
    APIGatewayV2Event,
    FunctionURLEvent,
    LambdaEvent,
    LambdaRequest,
    collect_headers,
)
from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler, UnsupportedEvent
from bedrock_gateway.errors import AuthenticationError, ValidationError
from bedrock_gateway.testing import FakeBedrock

from .support import CONVERSE, HAIKU, KINDS, PROFILE_ARN, botocore_path, load, parse, present

TYPES = {"rest_v1_proxy": APIGatewayV1Event, "http_v2": APIGatewayV2Event, "alb": ALBEvent,
         "alb_multivalue": ALBEvent, "function_url": FunctionURLEvent}
BODY = json.dumps(CONVERSE).encode()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, call: Call) -> Response:
        self.calls.append(call)
        return Response(200, {"content-type": "application/json"}, b"{}")


@pytest.fixture
def recorded() -> Iterator[tuple[LambdaHandler, Recorder]]:
    recorder = Recorder()
    yield LambdaHandler(Gateway(recorder, anonymous=True)), recorder


@pytest.mark.parametrize("kind", KINDS)
def test_each_document_is_recognized_by_exactly_its_type(kind: str) -> None:
    event = load(kind)
    assert [t for t in set(TYPES.values()) if t.infer(event, None)] == [TYPES[kind]]
    assert type(LambdaHandler(Gateway(Recorder(), anonymous=True)).detect(event, None)) \
        is TYPES[kind]


def test_an_http_api_on_a_custom_domain_is_not_a_function_url() -> None:
    event = load("http_v2")
    event["requestContext"]["domainName"] = "lambda-url.example.com"
    assert APIGatewayV2Event.infer(event, None) and not FunctionURLEvent.infer(event, None)


@pytest.mark.parametrize("event", [{}, {"Records": []}, [], "GET /", None,
                                   {"version": "2.0", "requestContext": {}}])
def test_unrecognized_events_raise_without_echoing_them(event: Any) -> None:
    handler = LambdaHandler(Gateway(Recorder(), anonymous=True))
    with pytest.raises(UnsupportedEvent) as info:
        handler(event, None)
    assert "Records" not in str(info.value)


def test_users_can_add_their_own_event_type(recorded: tuple[LambdaHandler, Recorder]) -> None:
    class Custom(LambdaEvent):
        @classmethod
        def infer(cls, event: Any, context: Any) -> bool:
            return "custom" in event

        def request(self, max_body_bytes: int) -> LambdaRequest:
            return LambdaRequest("POST", self.event["custom"], "", {}, BODY)

        def render(self, status: int, headers: Any, body: bytes) -> dict[str, Any]:
            return {"status": status, "raw": body}

    _, recorder = recorded
    handler = LambdaHandler(Gateway(recorder, anonymous=True), event_types=[Custom])
    assert handler({"custom": botocore_path(HAIKU, "Converse")}, None) == {"status": 200,
                                                                           "raw": b"{}"}
    assert recorder.calls[0].model_id == HAIKU
    with pytest.raises(UnsupportedEvent):  # the default types are replaced, not extended
        handler(load("http_v2"), None)


# Any model id the gateway accepts, as each integration presents its path.
_ID_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:+-")
_SEGMENT = st.text(_ID_CHARS, min_size=1, max_size=24).filter(lambda s: s not in (".", ".."))
MODEL_IDS = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join).filter(
    lambda s: s[0].isalnum())


@given(model=MODEL_IDS, kind=st.sampled_from(KINDS),
       operation=st.sampled_from(["Converse", "ConverseStream", "InvokeModel"]))
def test_any_model_id_survives_every_path_presentation(model: str, kind: str,
                                                      operation: str) -> None:
    recorder = Recorder()
    handler = LambdaHandler(Gateway(recorder, anonymous=True))
    result = handler(present(kind, botocore_path(model, operation), body=BODY), None)
    assert result["statusCode"] == 200, result
    (call,) = recorder.calls
    assert call.operation.name == operation
    assert call.model_id == model
    assert call.upstream_path == botocore_path(model, operation)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw_path", [
    "/model/../converse", "/model/a%2F..%2Fb/converse", "/model/x%0D%0AHost:evil/converse",
    "/model/x%00y/converse", "/model/%2E%2E/converse", "/model/a%252Fb/converse",
])
def test_hostile_paths_are_refused(fake_bedrock: FakeBedrock, handler: LambdaHandler,
                                   kind: str, raw_path: str) -> None:
    result = handler(present(kind, raw_path, body=BODY), None)
    parsed = parse(result, "Converse")
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] in (400, 404)
    assert parsed["Error"]["Code"] in ("ValidationException", "UnknownOperationException")
    assert fake_bedrock.requests == []


def test_rest_stage_and_custom_domain_base_path_become_the_mount(
        recorded: tuple[LambdaHandler, Recorder]) -> None:
    handler, recorder = recorded
    raw = botocore_path(PROFILE_ARN, "Converse")
    assert handler(present("rest_v1_proxy", raw, body=BODY), None)["statusCode"] == 200
    assert recorder.calls[-1].attrs["mount"] == "/prod"
    # custom domain, base path mapping "bedrock": `path` keeps the base path
    event = present("rest_v1_proxy", raw, body=BODY)
    event["path"] = event["requestContext"]["path"] = "/bedrock" + raw
    assert handler(event, None)["statusCode"] == 200
    assert recorder.calls[-1].attrs["mount"] == "/bedrock"
    assert recorder.calls[-1].model_id == PROFILE_ARN
    # a resource prefix: /llm/{proxy+}
    event = present("rest_v1_proxy", raw, body=BODY)
    event.update(resource="/llm/{proxy+}", path="/llm" + raw)
    event["requestContext"]["path"] = "/prod/llm" + raw
    assert handler(event, None)["statusCode"] == 200
    assert recorder.calls[-1].attrs["mount"] == "/prod/llm"


def test_http_api_named_stage_and_greedy_route(recorded: tuple[LambdaHandler, Recorder]
                                               ) -> None:
    handler, recorder = recorded
    event = present("http_v2", botocore_path(PROFILE_ARN, "Converse"), body=BODY)
    event["rawPath"] = "/dev/bedrock" + event["rawPath"]
    event["requestContext"]["stage"] = "dev"
    event["routeKey"] = "ANY /bedrock/{proxy+}"
    event["pathParameters"] = {"proxy": event["rawPath"][len("/dev/bedrock/"):]}
    assert handler(event, None)["statusCode"] == 200
    assert recorder.calls[-1].attrs["mount"] == "/dev/bedrock"
    assert recorder.calls[-1].model_id == PROFILE_ARN


def test_http_api_payload_1_0_path_is_decoded(recorded: tuple[LambdaHandler, Recorder]) -> None:
    handler, recorder = recorded
    event = present("rest_v1_proxy", botocore_path(PROFILE_ARN, "Converse"), body=BODY)
    event["version"] = "1.0"
    event["path"] = "/model/" + PROFILE_ARN + "/converse"
    event["requestContext"]["path"] = "/prod" + event["path"]
    assert handler(event, None)["statusCode"] == 200
    assert recorder.calls[-1].model_id == PROFILE_ARN


def test_multi_value_headers_are_joined_and_single_ones_deduplicated(
        recorded: tuple[LambdaHandler, Recorder]) -> None:
    handler, recorder = recorded
    for kind in ("rest_v1_proxy", "alb_multivalue"):
        event = present(kind, botocore_path(HAIKU, "Converse"), body=BODY)
        event["multiValueHeaders"]["x-custom"] = ["a", "b"]
        event["multiValueHeaders"]["content-type"] = ["application/json"] * 2
        event["multiValueHeaders"]["X-Amzn-Bedrock-Trace"] = ["ENABLED"]
        assert handler(event, None)["statusCode"] == 200
        headers = recorder.calls[-1].headers
        assert headers["x-custom"] == "a, b"
        assert headers["content-type"] == "application/json"
        assert headers["x-amzn-bedrock-trace"] == "ENABLED"


def test_multi_value_headers_win_over_the_single_value_copy(
        recorded: tuple[LambdaHandler, Recorder]) -> None:
    handler, recorder = recorded
    event = present("rest_v1_proxy", botocore_path(HAIKU, "Converse"), body=BODY)
    event["headers"]["x-custom"] = "b"  # REST keeps the last value in `headers`
    event["multiValueHeaders"]["x-custom"] = ["a", "b"]
    handler(event, None)
    assert recorder.calls[-1].headers["x-custom"] == "a, b"  # not "a, b, b"


def test_duplicate_headers_cannot_smuggle() -> None:
    with pytest.raises(AuthenticationError):
        collect_headers([("Authorization", "Bearer a"), ("authorization", "Bearer b")])
    with pytest.raises(ValidationError):
        collect_headers([("x-amzn-bedrock-guardrailidentifier", "g1"),
                         ("X-Amzn-Bedrock-GuardrailIdentifier", "g2")])
    with pytest.raises(ValidationError):
        collect_headers([("content-type", "application/json"), ("content-type", "text/plain")])
    with pytest.raises(ValidationError):
        collect_headers([("x-custom", "a\r\nx-api-key: k")])
    assert collect_headers([("X-Api-Key", "k"), ("x-api-key", "k")]) == {"x-api-key": "k"}


@pytest.mark.parametrize("kind", KINDS)
def test_two_credentials_in_one_event_are_refused(fake_bedrock: FakeBedrock,
                                                  handler: LambdaHandler, kind: str) -> None:
    event = present(kind, botocore_path(HAIKU, "Converse"), body=BODY)
    if "multiValueHeaders" in event:
        event["multiValueHeaders"]["authorization"] = ["Bearer one", "Bearer two"]
    else:  # single-value shapes: two spellings of the same name
        event["headers"]["authorization"] = "Bearer one"
        event["headers"]["Authorization"] = "Bearer two"
    parsed = parse(handler(event, None), "Converse")
    assert parsed["Error"]["Code"] == "UnrecognizedClientException"
    assert fake_bedrock.requests == []


MALFORMED = [(kind, change) for kind in KINDS for change in (
    {"body": 12}, {"body": "\udcff"},
    {"httpMethod": "PO ST"} if kind in ("rest_v1_proxy", "alb", "alb_multivalue") else
    {"rawPath": None},
    {"path": None} if kind in ("rest_v1_proxy", "alb", "alb_multivalue") else
    {"rawQueryString": 5},
)]


@pytest.mark.parametrize(("kind", "change"), MALFORMED)
def test_malformed_fields_are_validation_exceptions(handler: LambdaHandler, kind: str,
                                                    change: dict[str, Any]) -> None:
    event = present(kind, botocore_path(HAIKU, "Converse"), body=BODY)
    event.update(change)
    parsed = parse(handler(event, None), "Converse")
    assert parsed["Error"]["Code"] == "ValidationException"
