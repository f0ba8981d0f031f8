"""bedrock_gateway: AI gateway building blocks for Amazon Bedrock.

An unmodified boto3 ``bedrock-runtime`` client talks to a :class:`Gateway` by changing only
its ``endpoint_url``; the gateway runs a pipeline of policies and forwards the call to Bedrock
re-signed with its own AWS identity (:class:`SigV4Forwarder`).
"""

from typing import TYPE_CHECKING

from bedrock_gateway._lazy import lazy_exports

if TYPE_CHECKING:
    from bedrock_gateway.adapters.asgi import ASGIApp
    from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
    from bedrock_gateway.adapters.wsgi import WSGIApp
    from bedrock_gateway.call import Call, Principal, Response
    from bedrock_gateway.config import ConfigError, GatewayConfig, load_config
    from bedrock_gateway.errors import (
        AccessDeniedError,
        AuthenticationError,
        GatewayError,
        ModelTimeoutError,
        PayloadTooLargeError,
        ResourceNotFoundError,
        ServiceQuotaExceededError,
        ServiceUnavailableError,
        StreamError,
        ThrottlingError,
        UnknownOperationError,
        UpstreamUnavailableError,
        ValidationError,
    )
    from bedrock_gateway.eventstream import EventStreamDecoder, Frame, encode_frame
    from bedrock_gateway.forward import SigV4Forwarder
    from bedrock_gateway.operations import OPERATIONS, Operation
    from bedrock_gateway.pipeline import Gateway, Middleware, Next

__version__ = "0.1.0"

# Names load on first use (PEP 562): importing the package stays cheap for the pytest plugin,
# Lambda cold starts and tools, and botocore/pydantic load only when something needs them.
_HOME = {
    "ASGIApp": "adapters.asgi", "WSGIApp": "adapters.wsgi",
    "LambdaHandler": "adapters.aws_lambda.handler",
    "Call": "call", "Principal": "call", "Response": "call",
    "ConfigError": "config", "GatewayConfig": "config", "load_config": "config",
    "EventStreamDecoder": "eventstream", "Frame": "eventstream", "encode_frame": "eventstream",
    "SigV4Forwarder": "forward", "OPERATIONS": "operations", "Operation": "operations",
    "Gateway": "pipeline", "Middleware": "pipeline", "Next": "pipeline",
    **{name: "errors" for name in (
        "AccessDeniedError", "AuthenticationError", "GatewayError", "ModelTimeoutError",
        "PayloadTooLargeError", "ResourceNotFoundError", "ServiceQuotaExceededError",
        "ServiceUnavailableError", "StreamError", "ThrottlingError", "UnknownOperationError",
        "UpstreamUnavailableError", "ValidationError")},
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME, globals())


__all__ = [
    "OPERATIONS",
    "ASGIApp",
    "AccessDeniedError",
    "AuthenticationError",
    "Call",
    "ConfigError",
    "EventStreamDecoder",
    "Frame",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "LambdaHandler",
    "Middleware",
    "ModelTimeoutError",
    "Next",
    "Operation",
    "PayloadTooLargeError",
    "Principal",
    "ResourceNotFoundError",
    "Response",
    "ServiceQuotaExceededError",
    "ServiceUnavailableError",
    "SigV4Forwarder",
    "StreamError",
    "ThrottlingError",
    "UnknownOperationError",
    "UpstreamUnavailableError",
    "ValidationError",
    "WSGIApp",
    "__version__",
    "encode_frame",
    "load_config",
]
