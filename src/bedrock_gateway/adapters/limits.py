"""What one HTTP server process will spend on clients it does not know yet.

:class:`ServerLimits` are the knobs of ``[gateway]`` that belong to the server rather than to
the pipeline: how large a request head may be, how long a client may take to send its request,
how long an idle keep-alive connection stays, how many connections are served at once. The
uvicorn protocol (:mod:`bedrock_gateway.adapters.http_guard`) and the ASGI adapter enforce them;
this module imports neither, so the config can build it cheaply.

Every refusal is shaped like Bedrock's own errors (``x-amzn-ErrorType`` + JSON ``message``);
:func:`raw_response` renders one for the protocol layer, where no ASGI app is running yet.
"""

from __future__ import annotations

import http
from dataclasses import dataclass

from bedrock_gateway.errors import GatewayError, ServiceUnavailableError, ValidationError

__all__ = [
    "DEADLINE_EXTENSION",
    "HeadersTooLargeError",
    "RequestTimeoutError",
    "ServerLimits",
    "TooManyConnectionsError",
    "raw_response",
]

# The ASGI scope extension through which the protocol hands the app the loop time by which the
# whole request (head and body) must have arrived: ``scope["extensions"][DEADLINE_EXTENSION]``
# is ``{"at": <loop.time()>}``.
DEADLINE_EXTENSION = "bedrock_gateway.read_deadline"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Defaults are safe for a process under a ``ulimit -n`` of 1024 (see
    ``docs/configuration.md`` for each key and ``docs/architecture.md`` for why)."""

    max_header_bytes: int = 32 * 1024  # request line + headers; a JWT may be 8-16 KiB
    max_header_count: int = 100
    request_read_timeout_s: float = 60.0  # head + body; 25 MiB in 60 s is ~3.5 Mbit/s
    keep_alive_timeout_s: float = 75.0  # longer than an ALB's 60 s idle timeout
    max_connections: int = 768  # 1024 - 256 kept for upstream pools, logs and stores

    def __post_init__(self) -> None:
        if self.max_header_bytes < 1024 or self.max_header_count < 8:
            raise ValueError("max_header_bytes must be >= 1024 and max_header_count >= 8")
        if self.request_read_timeout_s <= 0 or self.keep_alive_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


class HeadersTooLargeError(ValidationError):
    """431: the request line and headers are larger, or more numerous, than allowed."""

    status = 431


class RequestTimeoutError(GatewayError):
    """408: the client did not send its whole request in time (botocore retries this code)."""

    status = 408
    code = "RequestTimeoutException"


class TooManyConnectionsError(ServiceUnavailableError):
    """503: the server is at its connection cap (botocore retries a 503 with backoff)."""

    def __init__(self) -> None:
        super().__init__("The gateway is serving as many connections as it allows; retry later.")


def raw_response(error: GatewayError) -> bytes:
    """The whole HTTP/1.1 response for ``error``, closing the connection."""
    body = error.body()
    try:
        phrase = http.HTTPStatus(error.status).phrase
    except ValueError:  # pragma: no cover - every status we use has a phrase
        phrase = ""
    lines = [f"HTTP/1.1 {error.status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in error.headers().items()]
    lines += [f"content-length: {len(body)}", "connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body
