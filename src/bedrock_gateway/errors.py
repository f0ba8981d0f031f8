"""Every error the gateway raises, each rendered the way Bedrock renders its own.

A client sees these exactly like errors from Bedrock: the ``x-amzn-ErrorType`` header names
the code, the JSON body carries ``{"message": ...}`` and the HTTP status matches, so botocore
raises the typed exception (``client.exceptions.ThrottlingException`` and so on). Inside an
event stream that has started, the same error becomes an exception frame written at a frame
boundary (:meth:`GatewayError.to_frame`).

The tree::

    GatewayError                      500 InternalServerException (base; also "unexpected")
    ├── ValidationError               400 ValidationException
    │   └── PayloadTooLargeError      413 ValidationException
    ├── UnknownOperationError         404 UnknownOperationException
    ├── ResourceNotFoundError         404 ResourceNotFoundException
    ├── AuthenticationError           403 UnrecognizedClientException
    │   └── ExpiredTokenError         403 ExpiredTokenException
    ├── AccessDeniedError             403 AccessDeniedException
    ├── ThrottlingError               429 ThrottlingException
    ├── ServiceQuotaExceededError     400 ServiceQuotaExceededException
    ├── ModelTimeoutError             408 ModelTimeoutException
    ├── ModelError                    424 ModelErrorException (the model ran; its answer was lost)
    ├── ServiceUnavailableError       503 ServiceUnavailableException
    │   └── UpstreamUnavailableError  503 ServiceUnavailableException (upstream unreachable)
    └── StreamError                   424 ModelStreamErrorException (only ever inside a stream)

Messages are written for the caller: they never contain credentials, matched secrets or
internal detail. The cause (``raise ... from exc``) stays in the server log.
"""

from __future__ import annotations

import json
import uuid

from bedrock_gateway.eventstream import exception_frame

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "ExpiredTokenError",
    "GatewayError",
    "ModelError",
    "ModelTimeoutError",
    "PayloadTooLargeError",
    "ResourceNotFoundError",
    "ServiceQuotaExceededError",
    "ServiceUnavailableError",
    "StreamError",
    "ThrottlingError",
    "UnknownOperationError",
    "UpstreamUnavailableError",
    "ValidationError",
]


class GatewayError(Exception):
    """Base of the tree. Raised as-is, it is a 500 ``InternalServerException``."""

    status: int = 500
    code: str = "InternalServerException"

    def __init__(self, message: str = "The gateway could not complete the request.") -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Response headers of the Bedrock-shaped error (a fresh request id each time)."""
        return {
            "content-type": "application/json",
            "x-amzn-errortype": f"{self.code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-requestid": str(uuid.uuid4()),
        }

    def body(self) -> bytes:
        return json.dumps({"message": self.message}).encode()

    def to_frame(self) -> bytes:
        """The modelled exception frame for this error, for a stream that has started."""
        member = self.code[0].lower() + self.code[1:]
        return exception_frame(member, self.message)


class ValidationError(GatewayError):
    status = 400
    code = "ValidationException"


class PayloadTooLargeError(ValidationError):
    status = 413

    @classmethod
    def over(cls, limit: int) -> PayloadTooLargeError:
        return cls(f"The request body exceeds the gateway limit of {limit} bytes.")


class UnknownOperationError(GatewayError):
    status = 404
    code = "UnknownOperationException"


class ResourceNotFoundError(GatewayError):
    status = 404
    code = "ResourceNotFoundException"


class AuthenticationError(GatewayError):
    status = 403
    code = "UnrecognizedClientException"


class ExpiredTokenError(AuthenticationError):
    code = "ExpiredTokenException"


class AccessDeniedError(GatewayError):
    status = 403
    code = "AccessDeniedException"


class ThrottlingError(GatewayError):
    status = 429
    code = "ThrottlingException"

    def __init__(self, message: str = "Too many requests, please wait before trying again.",
                 retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.retry_after_ms is not None:
            headers["x-amz-retry-after"] = str(self.retry_after_ms)
            headers["retry-after"] = str(-(-self.retry_after_ms // 1000))
        return headers


class ServiceQuotaExceededError(GatewayError):
    status = 400
    code = "ServiceQuotaExceededException"


class ModelTimeoutError(GatewayError):
    status = 408
    code = "ModelTimeoutException"


class ModelError(GatewayError):
    """Bedrock answered 200 but the answer could not be delivered (cut short, too large).

    424, as Bedrock's own ``ModelErrorException``: botocore does not retry it and a fallback
    does not move on, so a model that already ran (and was billed) is not run again."""

    status = 424
    code = "ModelErrorException"


class ServiceUnavailableError(GatewayError):
    status = 503
    code = "ServiceUnavailableException"


class UpstreamUnavailableError(ServiceUnavailableError):
    """The upstream could not be reached (or kept failing) within the retry budget."""


class StreamError(GatewayError):
    """A failure after the stream started; written as ``modelStreamErrorException``."""

    status = 424
    code = "ModelStreamErrorException"
