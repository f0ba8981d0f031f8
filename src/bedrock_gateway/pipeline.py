"""The middleware chain and the :class:`Gateway` that runs it.

``Middleware = Callable[[Call, Next], Response]``: a middleware may inspect or rewrite the
call, raise a :class:`GatewayError` to refuse it, return its own :class:`Response`, or wrap
the response it gets from ``next_`` (streams included, via :meth:`Response.map_frames`). The
innermost handler is the forwarder. The chain is composed once, at construction; no
per-request state lives on middleware objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bedrock_gateway.call import Call, Principal, Response
from bedrock_gateway.errors import GatewayError, PayloadTooLargeError, ValidationError
from bedrock_gateway.operations import RUNTIME, SERVICES, route

if TYPE_CHECKING:
    from bedrock_gateway.auth.access import Rule
    from bedrock_gateway.auth.dispatch import Authorizer
    from bedrock_gateway.config import GatewayConfig

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_UNAUTHENTICATED_BODY_BYTES",
    "Gateway",
    "Handler",
    "Middleware",
    "Next",
]

log = logging.getLogger("bedrock_gateway")

DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_UNAUTHENTICATED_BODY_BYTES = 64 * 1024

Next = Callable[[Call], Response]
Handler = Next  # the terminal step has the same shape as the rest of the chain


class Middleware(Protocol):
    def __call__(self, call: Call, next_: Next, /) -> Response: ...


def _link(middleware: Middleware, next_: Next) -> Next:
    def step(call: Call) -> Response:
        return middleware(call, next_)

    return step


class Gateway:
    """Routes a raw request, authenticates and authorizes it, runs the middleware chain, and
    never lets an error escape.

    ``handler`` is the terminal step (normally a :class:`SigV4Forwarder`). The chain is:
    authentication (``authorizers``; a call without credentials is refused unless
    ``anonymous=True``), then the ``router`` (model aliases, so that access rules, quotas and
    pricing see the resolved model), then the ``access_rules`` (when given, whatever no rule
    allows is denied), then ``middleware`` outermost first, then ``handler``. A gateway with neither
    authorizers nor ``anonymous=True`` cannot be built: deny by default, said at construction.

    ``services`` are the AWS services it answers for: ``bedrock-runtime`` (default) and, opt-in,
    ``bedrock-agent-runtime``; the path names the operation and so the service. A client may
    also say which service it means in an ``aws-endpoint-prefix`` header: it must be one of
    ``services`` and agree with the path, or the call is refused. It never picks a host.

    ``max_unauthenticated_body_bytes``: an adapter reads no more of a body than this before
    :meth:`precheck` has judged the request from its headers (authentication first, so a caller
    without valid credentials cannot make the gateway hold a large body).
    """

    def __init__(
        self,
        handler: Handler,
        middleware: Sequence[Middleware] = (),
        *,
        authorizers: Sequence[Authorizer] = (),
        access_rules: Sequence[Rule] | None = None,
        anonymous: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_unauthenticated_body_bytes: int = DEFAULT_MAX_UNAUTHENTICATED_BODY_BYTES,
        router: Middleware | None = None,
        services: Sequence[str] = (RUNTIME,),
    ) -> None:
        from bedrock_gateway.auth.access import AccessPolicy
        from bedrock_gateway.auth.dispatch import AuthMiddleware

        if not authorizers and not anonymous:
            raise ValueError(
                "no authorizer is configured: pass authorizers=[...] or anonymous=True")
        unknown = set(services) - set(SERVICES)
        if unknown or not services:
            raise ValueError(f"services must be among {SERVICES}, not {sorted(unknown)}")
        self.services = frozenset(services)
        self.handler = handler
        self.middleware = tuple(middleware)
        self.anonymous = anonymous
        self.max_body_bytes = max_body_bytes
        self.max_unauthenticated_body_bytes = max_unauthenticated_body_bytes
        self.router = router
        self._auth = AuthMiddleware(authorizers, anonymous=anonymous)
        stack: list[Middleware] = [self._auth]
        if router is not None:  # aliases resolve before access rules judge the model
            stack.append(router)
        if access_rules is not None:
            stack.append(AccessPolicy(access_rules))
        stack += self.middleware
        chain: Next = handler
        for mw in reversed(stack):
            chain = _link(mw, chain)
        self._chain = chain

    def close(self) -> None:
        """Release what the chain holds (upstream connections, open usage logs)."""
        parts: list[object] = [*self.middleware, self.handler]
        for part in parts:
            close = getattr(part, "close", None)
            if callable(close):
                close()

    @classmethod
    def from_config(cls, source: str | Path | GatewayConfig) -> Gateway:
        """Build the gateway a TOML file (or a loaded :class:`GatewayConfig`) describes."""
        from bedrock_gateway.config import build_gateway, load_config

        config = source if not isinstance(source, str | Path) else load_config(source)
        return build_gateway(config)

    def check_content_length(self, value: str | bytes | None) -> int | None:
        """For adapters, before reading a body: the declared length, refused when malformed or
        over ``max_body_bytes``; ``None`` when no Content-Length was sent."""
        if value is None or value in ("", b""):
            return None
        try:
            declared = int(value)
        except ValueError:
            raise ValidationError("Content-Length is not a number.") from None
        if declared < 0:
            raise ValidationError("Content-Length is not a number.")
        if declared > self.max_body_bytes:
            raise PayloadTooLargeError.over(self.max_body_bytes)
        return declared

    def precheck(
        self,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        mount: str = "",
    ) -> Response | None:
        """For adapters, before reading a body larger than ``max_unauthenticated_body_bytes``:
        the refusal the headers alone already decide — an unknown or malformed path, a missing or
        invalid credential — or ``None`` when the body may be read. JWTs and API keys are
        verified in full (they do not depend on the body); a SigV4 signature covers the body,
        so only its form and access key id are checked here. The request is still
        authenticated in full by :meth:`handle`: this is a gate, never a grant. It may block
        (a JWKS fetch): call it off the event loop."""
        try:
            call = self._call(method, raw_path, query, headers, b"", mount=mount, principal=None)
            self._auth.precheck(call)
        except Exception as exc:  # every failure becomes a Bedrock-shaped answer
            return _refusal(exc, "checking", method, raw_path)
        return None

    def handle(
        self,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        *,
        mount: str = "",
        principal: Principal | None = None,
    ) -> Response:
        """Serve one request. Always returns a response; errors become Bedrock-shaped ones.

        ``raw_path`` is the path after the ``mount`` prefix an adapter stripped (the client
        signed ``mount + raw_path``; SigV4 verification uses that). ``principal`` is for an
        adapter that already knows who is calling from a source it trusts (the context of an
        API Gateway Lambda authorizer): authentication is then skipped, never the access rules."""
        try:
            if len(body) > self.max_body_bytes:
                raise PayloadTooLargeError.over(self.max_body_bytes)
            call = self._call(method, raw_path, query, headers, body, mount=mount,
                              principal=principal)
            if call.is_json:
                call.json()  # malformed JSON is refused here, before any policy or upstream
            elif method == "GET" and body:
                raise ValidationError(f"{call.operation.name} does not take a request body.")
            return self._chain(call)
        except Exception as exc:  # every failure becomes a Bedrock-shaped answer
            return _refusal(exc, "serving", method, raw_path)

    def _call(self, method: str, raw_path: str, query: str,
              headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes, *,
              mount: str, principal: Principal | None) -> Call:
        r = route(method, raw_path, query, self.services)
        hdrs = _lower_headers(headers)
        claimed = hdrs.get("aws-endpoint-prefix")
        if claimed is not None and claimed != r.operation.service:
            raise ValidationError(
                "The aws-endpoint-prefix header names a service this gateway does not serve"
                " or that does not match the request path.")
        call = Call(method, raw_path, query, hdrs, body, r.operation, r.params, principal)
        if mount:
            call.attrs["mount"] = mount
        return call


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _refusal(exc: Exception, doing: str, method: str, raw_path: str) -> Response:
    """The Bedrock-shaped answer to a failure: a :class:`GatewayError` as itself (logged when
    it is the gateway's fault), anything else as a generic 500 with its traceback logged."""
    if isinstance(exc, GatewayError):
        if exc.status >= 500:
            log.warning("%s %r -> %s: %s", method, raw_path[:200], exc.code, exc.message)
        return Response.from_error(exc)
    log.error("unhandled error %s %s %r", doing, method, raw_path[:200], exc_info=exc)
    return Response.from_error(GatewayError())
