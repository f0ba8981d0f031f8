"""Serve a :class:`Gateway` as a Lambda function behind API Gateway, an ALB or a function URL.

Two entry points over one request path:

- ``handler(event, context) -> dict`` (:meth:`LambdaHandler.__call__`): the buffered result in
  the detected integration's shape. The body is always base64 (``isBase64Encoded: true``): one
  rule for JSON, model-native bodies and event streams, and byte-exact for all of them. An
  event stream is returned whole, since a buffered integration cannot stream.
- :meth:`LambdaHandler.respond` ``(event, context) -> Reply``: the detected event and the
  gateway's :class:`Response`, *not consumed*. This is the contract for a streaming runtime:
  it writes ``reply.headers()`` and ``reply.response.status`` first, then
  ``reply.response.chunks()`` (which closes the response when exhausted) and must call
  ``reply.response.close()`` if it stops early. ``respond`` never raises for anything a client
  sent: bad input is a Bedrock-shaped error response like any other.

**An event no type recognizes** raises :class:`UnsupportedEvent` (a ``ValueError`` whose
message names no event content). Such an event did not come from an HTTP client, so there
is nobody to answer with an HTTP-shaped dict; raising records a function error where the
invoker (a test invoke, a misrouted trigger) sees it. Were it to come through API Gateway
anyway, API Gateway answers 502 with its own generic body: no traceback reaches a client.

**Trusting an authorizer** (``trust_authorizer=True``): for API Gateway events (REST and HTTP
API, the only shapes that can carry an authorizer context) the principal that
:class:`TrustedContextAuthorizer` finds in ``requestContext.authorizer`` is passed to
``Gateway.handle(principal=...)``: authentication is skipped, access rules still run. When the
event carries no such principal (a route without the authorizer), the request is
authenticated normally from its credentials: turning trust on never opens a route that has
no authorizer, it only saves verifying twice where one ran. Function URL and ALB events are
never trusted. Trust is off by default: only turn it on when every way to invoke the
function goes through routes guarded by the authorizer.

**REST APIs** only pass binary bodies through when the API's ``binaryMediaTypes`` covers them;
set it to ``*/*`` so API Gateway decodes the base64 body (and base64-encodes binary requests).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bedrock_gateway.adapters.aws_lambda.authorizer import TrustedContextAuthorizer
from bedrock_gateway.adapters.aws_lambda.events import (
    ALBEvent,
    APIGatewayV1Event,
    APIGatewayV2Event,
    FunctionURLEvent,
    LambdaEvent,
    client_headers,
)
from bedrock_gateway.call import Principal, Response
from bedrock_gateway.errors import GatewayError
from bedrock_gateway.pipeline import Gateway

__all__ = ["DEFAULT_EVENT_TYPES", "LambdaHandler", "Reply", "UnsupportedEvent",
           "handler_from_config"]

log = logging.getLogger("bedrock_gateway.lambda")

# Function URL before HTTP API: both are payload 2.0 (each infer() also excludes the other).
DEFAULT_EVENT_TYPES: tuple[type[LambdaEvent], ...] = (
    FunctionURLEvent, APIGatewayV2Event, APIGatewayV1Event, ALBEvent,
)


class UnsupportedEvent(ValueError):
    """The event has none of the shapes the handler serves."""


class Reply(NamedTuple):
    """What :meth:`LambdaHandler.respond` returns: the event (to render the answer in its shape)
    and the gateway's response, unconsumed."""

    event: LambdaEvent
    response: Response

    def headers(self) -> dict[str, str]:
        """Response headers for the client: Bedrock's (``x-amzn-requestid``,
        ``content-type``, ``x-amzn-errortype``, ``x-amzn-bedrock-*``), minus framing ones."""
        return client_headers(self.response.headers)


class LambdaHandler:
    """``LambdaHandler(gateway)`` is a Lambda handler serving the gateway.

    ``event_types`` are tried in order (default :data:`DEFAULT_EVENT_TYPES`); the first whose
    ``infer`` accepts the event serves it. See the module docstring for ``trust_authorizer``.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        event_types: Sequence[type[LambdaEvent]] | None = None,
        trust_authorizer: bool = False,
    ) -> None:
        self.gateway = gateway
        self.event_types = tuple(event_types) if event_types is not None else DEFAULT_EVENT_TYPES
        self.trust_authorizer = trust_authorizer
        self._trusted = TrustedContextAuthorizer()

    def detect(self, event: object, context: Any) -> LambdaEvent:
        """The event wrapped in the first type that recognizes it; :class:`UnsupportedEvent`
        when none does."""
        if isinstance(event, Mapping):
            for event_type in self.event_types:
                if event_type.infer(event, context):
                    return event_type(event, context)
        raise UnsupportedEvent("the event is not an API Gateway, ALB or function URL request")

    def respond(self, event: Mapping[str, Any], context: Any) -> Reply:
        """Run the gateway for ``event``; the response is returned unconsumed.

        Raises only :class:`UnsupportedEvent`. The caller owns the response: consume
        ``chunks()`` (which closes it) or call ``close()``.
        """
        detected = self.detect(event, context)
        try:
            request = detected.request(self.gateway.max_body_bytes)
        except GatewayError as exc:
            return Reply(detected, Response.from_error(exc))
        except Exception:
            log.exception("could not read a %s event", type(detected).__name__)
            return Reply(detected, Response.from_error(GatewayError()))
        principal = self._principal(detected)
        response = self.gateway.handle(request.method, request.path, request.query,
                                       request.headers, request.body, mount=request.mount,
                                       principal=principal)
        return Reply(detected, response)

    def _principal(self, detected: LambdaEvent) -> Principal | None:
        if not (self.trust_authorizer and detected.carries_authorizer):
            return None
        try:
            return self._trusted.principal(detected.event)
        except ValueError:  # a context we cannot read is not a principal we trust
            log.warning("ignoring an unreadable authorizer context")
            return None

    def __call__(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """The buffered result dict for the event's integration."""
        reply = self.respond(event, context)
        try:
            body = b"".join(reply.response.chunks())
        finally:
            reply.response.close()
        return reply.event.render(reply.response.status, reply.headers(), body)

    def close(self) -> None:
        self.gateway.close()


def handler_from_config(path: str | Path | None = None, **options: Any) -> LambdaHandler:
    """A :class:`LambdaHandler` for the gateway a TOML file describes: ``path``, else
    ``$BEDROCK_GATEWAY_CONFIG``, else ``gateway.toml``. ``options`` go to the handler."""
    source = path if path is not None else os.environ.get("BEDROCK_GATEWAY_CONFIG",
                                                          "gateway.toml")
    return LambdaHandler(Gateway.from_config(source), **options)
