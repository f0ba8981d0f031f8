"""The HTTP-shaped Lambda events the handler understands, in the style of Mangum.

Each event type is a :class:`LambdaEvent` subclass: ``infer(event, context)`` recognizes the
shape, :meth:`~LambdaEvent.request` turns it into what :meth:`Gateway.handle` takes, and
:meth:`~LambdaEvent.render` writes a buffered answer in that integration's response shape.
Pass your own subclasses to ``LambdaHandler(event_types=[...])`` for other shapes.

**How each event type presents a percent-encoded path** (model ids carry ``%3A``, ARNs
``%2F``), and what we do with it:

- API Gateway REST (v1 proxy): ``path`` keeps the client's encoding (localstack fixed its
  parity bug to match AWS, which sends ``/user/test%2Balias@gmail.com``:
  github.com/localstack/localstack/pull/7728; live captures summarized in
  github.com/middleapi/standard-server/pull/93). ``pathParameters`` values are *decoded*
  (github.com/dherault/serverless-offline/issues/638), so ``pathParameters.proxy`` is used only
  to find where the API's own path starts, never as the path. ``path`` has no stage on the
  execute-api endpoint, while ``requestContext.path`` is ``/{stage}`` + ``path``; through a
  custom domain ``path`` starts with the base path mapping (and even the stage when the mapping
  names none): github.com/localstack/localstack/pull/12296,
  github.com/CodeGenieApp/serverless-express/issues/216. We strip whatever precedes the greedy
  parameter's value and carry it, with the stage, as the mount prefix.
- HTTP API payload 2.0: ``rawPath`` (and ``requestContext.http.path``) are *decoded*: a
  request to ``/a%2Fb`` arrives as ``rawPath: "/a/b"`` (github.com/fastify/aws-lambda-fastify/
  issues/169; github.com/Worklytics/psoxy/pull/827; standard-server#93). ``rawPath`` starts
  with ``/{stage}`` for a named stage and never holds an API mapping key (AWS, "Create AWS
  Lambda proxy integrations for HTTP APIs", payload format differences). We strip the stage
  and rebuild the raw path from Bedrock's fixed templates (:mod:`.paths`). The same service's
  payload 1.0 decodes ``path`` too (standard-server#93), so version "1.0" events are rebuilt.
- ALB: ``path`` keeps the encoding, and query parameters arrive *not* decoded
  (standard-server#93; github.com/aws/aws-lambda-rust-runtime/issues/543).
- Lambda function URL: ``rawPath`` keeps the encoding (standard-server#93). The event is
  payload 2.0; it is told apart from HTTP API by ``requestContext.domainName``
  (``<url-id>.lambda-url.<region>.on.aws``, AWS "Invoking Lambda function URLs").

Headers and bodies are read by :mod:`.fields`.
"""

from __future__ import annotations

import base64
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from bedrock_gateway.adapters.aws_lambda.fields import (
    client_headers,
    collect_headers,
    decode_body,
    header_pairs,
)
from bedrock_gateway.adapters.aws_lambda.paths import (
    canonical_path,
    encode_query,
    query_pairs,
    split_prefix,
)
from bedrock_gateway.errors import ValidationError

__all__ = [
    "ALBEvent", "APIGatewayV1Event", "APIGatewayV2Event", "FunctionURLEvent", "LambdaEvent",
    "LambdaRequest", "client_headers", "collect_headers",
]

_GREEDY = re.compile(r"\{([A-Za-z0-9._-]+)\+\}$")
_FUNCTION_URL_DOMAIN = re.compile(r"^[a-z0-9]+\.lambda-url\.[a-z0-9-]+\.on\.aws$")


@dataclass(frozen=True, slots=True)
class LambdaRequest:
    """What the gateway needs from an event: ``path`` is raw and after ``mount``."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    mount: str = ""


class LambdaEvent(ABC):
    """One HTTP-shaped event type. Subclass it for a shape this module does not know.

    ``carries_authorizer`` says whether the shape can hold an API Gateway Lambda authorizer's
    context at all; the handler never looks for a trusted principal in any other shape.
    """

    carries_authorizer: ClassVar[bool] = False

    def __init__(self, event: Mapping[str, Any], context: Any) -> None:
        self.event = event
        self.context = context

    @classmethod
    @abstractmethod
    def infer(cls, event: Mapping[str, Any], context: Any) -> bool:
        """Whether ``event`` has this type's shape. Must not raise."""

    @abstractmethod
    def request(self, max_body_bytes: int) -> LambdaRequest:
        """The request in the event; raises :class:`GatewayError` for bad input."""

    @abstractmethod
    def render(self, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The buffered result for this integration (body always base64: byte-exact)."""

    @property
    def request_context(self) -> Mapping[str, Any]:
        found = self.event.get("requestContext")
        return found if isinstance(found, Mapping) else {}


def _method(value: object) -> str:
    if not isinstance(value, str) or not value.isalpha():
        raise ValidationError("The request method is not valid.")
    return value.upper()


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"The request {what} is not valid.")
    return value


def _strip_greedy(path: str, template: object, params: object, *, decoded: bool
                  ) -> tuple[str, str]:
    """``(prefix, rest)``: ``rest`` is the part of ``path`` the greedy parameter of
    ``template`` (``/bedrock/{proxy+}``) matched, so a resource prefix or a custom domain's
    base path moves into the mount. Unchanged when there is no greedy parameter."""
    match = _GREEDY.search(template) if isinstance(template, str) else None
    tail = params.get(match.group(1)) if match and isinstance(params, Mapping) else None
    if not isinstance(tail, str) or not tail or not path.startswith("/"):
        return "", path
    segments = path[1:].split("/")
    start = split_prefix(segments, tail, decode=not decoded)
    if not start:
        return "", path
    return "/" + "/".join(segments[:start]), "/" + "/".join(segments[start:])


def _base64(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


def _proxy_result(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The API Gateway (REST and HTTP API) and function URL result shape."""
    return {"statusCode": status, "headers": dict(headers), "body": _base64(body),
            "isBase64Encoded": True}


class APIGatewayV1Event(LambdaEvent):
    """API Gateway REST proxy integration (and HTTP API payload format 1.0)."""

    carries_authorizer = True

    @classmethod
    def infer(cls, event: Mapping[str, Any], context: Any) -> bool:
        rc = event.get("requestContext")
        return (isinstance(rc, Mapping) and "elb" not in rc and "httpMethod" in event
                and "path" in event and event.get("version", "1.0") == "1.0")

    def request(self, max_body_bytes: int) -> LambdaRequest:
        decoded = self.event.get("version") == "1.0"  # HTTP API payload 1.0 decodes `path`
        path = _str(self.event.get("path"), "path")
        prefix, rest = _strip_greedy(path, self.event.get("resource"),
                                     self.event.get("pathParameters"), decoded=decoded)
        outer = ""
        rc_path, stage = self.request_context.get("path"), self.request_context.get("stage")
        if isinstance(rc_path, str) and rc_path != path and rc_path.endswith(path):
            outer = rc_path[: len(rc_path) - len(path)]  # "/{stage}" on execute-api domains
        elif isinstance(stage, str) and stage != "$default" and isinstance(rc_path, str) \
                and rc_path.startswith(f"/{stage}/") and not path.startswith(f"/{stage}/"):
            outer = f"/{stage}"
        return LambdaRequest(
            method=_method(self.event.get("httpMethod")),
            path=canonical_path(rest, decoded=decoded),
            query=encode_query(query_pairs(self.event.get("multiValueQueryStringParameters"),
                                           self.event.get("queryStringParameters"))),
            headers=collect_headers(header_pairs(self.event, "multiValueHeaders", "headers")),
            body=decode_body(self.event, max_body_bytes),
            mount=outer + prefix,
        )

    def render(self, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        return _proxy_result(status, headers, body)


def _is_v2(event: Mapping[str, Any]) -> bool:
    rc = event.get("requestContext")
    return (event.get("version") == "2.0" and isinstance(rc, Mapping)
            and isinstance(rc.get("http"), Mapping) and "rawPath" in event)


def _is_function_url(event: Mapping[str, Any]) -> bool:
    domain = event["requestContext"].get("domainName")
    return isinstance(domain, str) and bool(_FUNCTION_URL_DOMAIN.match(domain))


class APIGatewayV2Event(LambdaEvent):
    """API Gateway HTTP API, payload format 2.0 (``rawPath`` arrives decoded)."""

    carries_authorizer = True
    decoded_path: ClassVar[bool] = True

    @classmethod
    def infer(cls, event: Mapping[str, Any], context: Any) -> bool:
        return _is_v2(event) and not _is_function_url(event)

    def request(self, max_body_bytes: int) -> LambdaRequest:
        path = _str(self.event.get("rawPath"), "path")
        stage, mount = self.request_context.get("stage"), ""
        if isinstance(stage, str) and stage != "$default" and path.startswith(f"/{stage}/"):
            mount, path = f"/{stage}", path[len(stage) + 1:]
        route_key = self.event.get("routeKey")
        template = route_key.partition(" ")[2] if isinstance(route_key, str) else None
        prefix, path = _strip_greedy(path, template, self.event.get("pathParameters"),
                                     decoded=self.decoded_path)
        query = self.event.get("rawQueryString") or ""
        return LambdaRequest(
            method=_method(self.request_context["http"].get("method")),
            path=canonical_path(path, decoded=self.decoded_path),
            query=_str(query, "query string"),
            headers=collect_headers(header_pairs(self.event, "", "headers")),
            body=decode_body(self.event, max_body_bytes),
            mount=mount + prefix,
        )

    def render(self, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        return _proxy_result(status, headers, body)


class FunctionURLEvent(APIGatewayV2Event):
    """A Lambda function URL: payload 2.0 with a raw ``rawPath`` and no authorizer context."""

    carries_authorizer = False
    decoded_path = False

    @classmethod
    def infer(cls, event: Mapping[str, Any], context: Any) -> bool:
        return _is_v2(event) and _is_function_url(event)


class ALBEvent(LambdaEvent):
    """An Application Load Balancer target-group event, single- or multi-value headers mode."""

    @classmethod
    def infer(cls, event: Mapping[str, Any], context: Any) -> bool:
        rc = event.get("requestContext")
        return isinstance(rc, Mapping) and isinstance(rc.get("elb"), Mapping)

    @property
    def multi_value(self) -> bool:
        return "multiValueHeaders" in self.event

    def request(self, max_body_bytes: int) -> LambdaRequest:
        pairs = query_pairs(self.event.get("multiValueQueryStringParameters"),
                            self.event.get("queryStringParameters"))
        return LambdaRequest(
            method=_method(self.event.get("httpMethod")),
            path=canonical_path(_str(self.event.get("path"), "path"), decoded=False),
            query="&".join(f"{k}={v}" for k, v in pairs),  # ALB passes them still encoded
            headers=collect_headers(header_pairs(self.event, "multiValueHeaders", "headers")),
            body=decode_body(self.event, max_body_bytes),
        )

    def render(self, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        try:
            description = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            description = str(status)
        result: dict[str, Any] = {"statusCode": status, "statusDescription": description,
                                  "body": _base64(body), "isBase64Encoded": True}
        if self.multi_value:
            result["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        else:
            result["headers"] = dict(headers)
        return result
