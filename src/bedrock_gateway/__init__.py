"""bedrock_gateway: AI gateway building blocks for Amazon Bedrock.

An unmodified boto3 ``bedrock-runtime`` client talks to a :class:`Gateway` by changing only
its ``endpoint_url``; the gateway runs a pipeline of policies and forwards the call to Bedrock
re-signed with its own AWS identity (:class:`SigV4Forwarder`).
"""

from bedrock_gateway.adapters.asgi import ASGIApp
from bedrock_gateway.adapters.wsgi import WSGIApp
from bedrock_gateway.call import Call, Principal, Response
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

_LAZY = {"ConfigError", "GatewayConfig", "load_config"}  # pydantic loads on first use


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from bedrock_gateway import config

        return getattr(config, name)
    raise AttributeError(f"module 'bedrock_gateway' has no attribute {name!r}")


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
