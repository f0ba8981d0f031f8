"""API Gateway Lambda authorizers built from the gateway's own authorizers and access rules.

Reference deployment: API Gateway -> this authorizer -> the forwarder Lambda -> Bedrock. The
authorizer verifies the JWT or API key once; the forwarder rebuilds the :class:`Principal` from
the context API Gateway hands it (:class:`TrustedContextAuthorizer`) instead of verifying again.

**The caching pitfall.** API Gateway caches an authorizer's answer (300 s by default) keyed by
the identity source - the token - and *not* by the path. A policy that allowed only the method
ARN of the first request would be replayed for the next request with the same token to another
model, which API Gateway would then refuse with a 403. So every Allow here is a wildcard over
the stage (``arn:aws:execute-api:{region}:{account}:{api}/{stage}/*/*``), and the context is
sent with every answer, Deny included, because the cached answer also serves other paths.
Consequence: model-level access rules are not decided by a TOKEN authorizer (its event has no
path; only ``methodArn``, whose encoding of the path is undocumented) nor by an HTTP API simple
response (a cached `false` would refuse every model for that token). The gateway behind
API Gateway must keep enforcing them (``AccessPolicy``); the REST REQUEST authorizer only adds
an early, explicit Deny for the one method ARN of a request whose model its rules refuse.

Failures never echo the credential: REST handlers raise ``Exception("Unauthorized")`` (API
Gateway answers 401), HTTP simple responses say ``isAuthorized: false``. When the authorizer
cannot decide (a JWKS endpoint is down) the :class:`GatewayError` propagates: API Gateway
answers 500, nothing is let through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from bedrock_gateway.auth.access import AccessPolicy, Decision, Rule
from bedrock_gateway.auth.dispatch import AuthMiddleware, Authorizer
from bedrock_gateway.call import Call, Principal, Response
from bedrock_gateway.errors import AuthenticationError, GatewayError
from bedrock_gateway.operations import Operation, Route, route

__all__ = [
    "LambdaAuthorizer", "TrustedContextAuthorizer", "authorizer_context", "principal_from_context",
]

log = logging.getLogger("bedrock_gateway.auth")

UNAUTHORIZED = "Unauthorized"  # the exact message API Gateway REST turns into a 401
# What an authorizer's Call carries when the request's operation is unknown (TOKEN events).
_NO_OPERATION = Operation("LambdaAuthorizer", "POST", ("lambda-authorizer",))
_CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def _tenant(principal: Principal) -> str | None:
    return principal.tenant or None


def _stage_wildcard(method_arn: str) -> str:
    """``arn:{partition}:execute-api:{region}:{account}:{api}/{stage}/*/*`` of a method ARN."""
    parts = method_arn.split(":", 5)  # the path part may hold colons (model ids)
    api_id, _, rest = parts[-1].partition("/")
    stage = rest.partition("/")[0]
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "execute-api" or not stage:
        raise ValueError("the event's methodArn is not an execute-api method ARN")
    return ":".join(parts[:5]) + f":{api_id}/{stage}/*/*"


def _statement(effect: str, resource: str) -> dict[str, str]:
    return {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}


def authorizer_context(principal: Principal) -> dict[str, str]:
    """The flat context for ``principal`` (API Gateway allows only string/number/bool values).

    Groups are comma-joined and scopes space-joined, so a group containing a comma or a scope
    containing whitespace could not round-trip: it is dropped (least privilege), with a warning.
    """
    groups = sorted(g for g in principal.groups if g and "," not in g)
    scopes = sorted(s for s in principal.scopes if s and not any(c.isspace() for c in s))
    if len(groups) != len(principal.groups) or len(scopes) != len(principal.scopes):
        log.warning("dropped groups/scopes that cannot be carried in an authorizer context")
    context = {"subject": principal.subject, "groups": ",".join(groups), "scopes": " ".join(scopes)}
    if principal.tenant is not None:
        context["tenant"] = principal.tenant
    return context


def principal_from_context(context: Mapping[str, Any]) -> Principal:
    """The :class:`Principal` an authorizer context describes.

    ``context`` is ``requestContext.authorizer`` of a REST event (flat; API Gateway turned
    every value into a string and added ``principalId``) or ``requestContext.authorizer.lambda``
    of an HTTP API event. ``ValueError`` when it names no subject.
    """
    subject = context.get("subject") or context.get("principalId")
    if not isinstance(subject, str) or not subject:
        raise ValueError("the authorizer context names no subject")
    tenant = context.get("tenant")
    groups, scopes = context.get("groups"), context.get("scopes")
    return Principal(
        subject=subject,
        tenant=str(tenant) if tenant is not None else None,
        groups=frozenset(g for g in groups.split(",") if g) if isinstance(groups, str) else
        frozenset(),
        scopes=frozenset(scopes.split()) if isinstance(scopes, str) else frozenset(),
        claims=dict(context),
    )


class TrustedContextAuthorizer:
    """Finds the principal an upstream Lambda authorizer (this module) put into an event.

    Not an :class:`Authorizer` of a credential kind: the Lambda handler adapter calls
    :meth:`principal` and, when it returns one, trusts it instead of verifying again. Safe only
    when the function can be invoked solely through API Gateway routes that all use the
    authorizer (no function URL, no other invokers): the event itself is the proof.
    """

    def principal(self, event: Mapping[str, Any]) -> Principal | None:
        """The principal in a REST (v1) or HTTP API (v2) event; ``None`` when there is none."""
        request_context = event.get("requestContext")
        found = request_context.get("authorizer") if isinstance(request_context, Mapping) else None
        if not isinstance(found, Mapping):
            return None
        context = found.get("lambda")  # HTTP API: requestContext.authorizer.lambda
        if not isinstance(context, Mapping):
            context = found  # REST: requestContext.authorizer, flat
        subject = context.get("subject")  # set by this module; other authorizers are not ours
        if not isinstance(subject, str) or not subject:
            return None
        return principal_from_context(context)


def _token_headers(token: object) -> dict[str, str]:
    """Headers for a bare identity-source value: a bare token counts as a bearer token."""
    value = token.strip() if isinstance(token, str) else ""
    if value and not any(c.isspace() for c in value):
        value = f"Bearer {value}"
    return {"authorization": value}


def _rest_headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased headers of a REST REQUEST event; two different credentials are refused."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()
               if isinstance(v, str)}
    for name in _CREDENTIAL_HEADERS:
        values = {v for k, vs in (event.get("multiValueHeaders") or {}).items()
                  if str(k).lower() == name for v in (vs or ()) if isinstance(v, str)}
        values.update(v for k, v in (event.get("headers") or {}).items()
                      if str(k).lower() == name and isinstance(v, str))
        if len(values) > 1:
            raise AuthenticationError("Send one credential, not several.")
    return headers


def _request_path(event: Mapping[str, Any]) -> str | None:
    """The path as the client sent it, or ``None`` when that cannot be known for sure.

    Whether API Gateway REST hands ``path`` over raw or decoded is not settled by the sources
    (see ``events.py``), so this works for both: ``requestContext.path`` is used when it is
    demonstrably the encoded form of the same path (after the stage), and a path holding
    ``%`` that cannot be proven so is ambiguous (decoding it could name another model): no
    early model Deny then. The gateway behind still enforces every rule.
    """
    path = event.get("path")
    if not isinstance(path, str):
        return None
    request_context = event.get("requestContext") or {}
    raw, stage = request_context.get("path"), request_context.get("stage")
    if isinstance(raw, str) and isinstance(stage, str) and raw.startswith(f"/{stage}/"):
        raw = raw[len(stage) + 1:]
        if "%" in raw and unquote(raw) == path:
            return raw
    return path if "%" not in path else None


def _done(call: Call) -> Response:
    return Response(200)


class LambdaAuthorizer:
    """API Gateway Lambda authorizer handlers; each method is a ``(event, context)`` handler.

    ``authorizers`` are the gateway's own (JWT, API keys); SigV4 ones are ignored, since a
    signature cannot be checked without the body, so SigV4 requests are Unauthorized here.
    ``access_rules`` let :meth:`rest_request` deny early; the gateway must still enforce them.
    ``usage_identifier`` picks the REST ``usageIdentifierKey`` (default: the tenant); it must be
    the *value* of an API Gateway API key in a usage plan (API key source ``AUTHORIZER``).
    """

    def __init__(
        self,
        authorizers: Sequence[Authorizer],
        access_rules: Sequence[Rule] | None = None,
        *,
        usage_identifier: Callable[[Principal], str | None] = _tenant,
    ) -> None:
        self._auth = AuthMiddleware([a for a in authorizers if a.kind != "sigv4"])
        self.policy = AccessPolicy(access_rules) if access_rules else None
        self.usage_identifier = usage_identifier

    def _authenticate(self, call: Call) -> Principal:
        self._auth(call, _done)
        if call.principal is None:  # AuthMiddleware sets it or raises
            raise GatewayError()
        return call.principal

    def _policy(self, principal: Principal, statements: list[dict[str, str]]) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "principalId": principal.subject,
            "policyDocument": {"Version": "2012-10-17", "Statement": statements},
            "context": authorizer_context(principal),
        }
        usage_key = self.usage_identifier(principal)
        if usage_key:
            answer["usageIdentifierKey"] = usage_key
        return answer

    def rest_token(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """REST TOKEN authorizer: Allow on the whole stage, or ``Exception("Unauthorized")``."""
        resource = _stage_wildcard(str(event.get("methodArn", "")))
        call = Call("POST", "", "", _token_headers(event.get("authorizationToken")), b"",
                    _NO_OPERATION, {})
        try:
            principal = self._authenticate(call)
        except AuthenticationError:
            raise Exception(UNAUTHORIZED) from None  # API Gateway: 401
        return self._policy(principal, [_statement("Allow", resource)])

    def rest_request(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """REST REQUEST authorizer: like :meth:`rest_token`, plus an explicit Deny for this
        method ARN when the request path names a model the access rules refuse."""
        method_arn = str(event.get("methodArn", ""))
        resource = _stage_wildcard(method_arn)
        method = str(event.get("httpMethod") or "")
        path = _request_path(event)
        target: Route | None = None
        if path is not None:
            try:
                target = route(method, path)
            except GatewayError:  # not a path the gateway serves: it will answer itself
                target = None
        try:
            call = Call(method, path or "", "", _rest_headers(event), b"",
                        target.operation if target else _NO_OPERATION,
                        dict(target.params) if target else {})
            principal = self._authenticate(call)
        except AuthenticationError:
            raise Exception(UNAUTHORIZED) from None  # API Gateway: 401
        statements = [_statement("Allow", resource)]
        if self.policy is not None and call.model_id is not None:
            verdict = self.policy.decide(principal, call.operation.name, call.model_id)
            if verdict is None or verdict.decision is Decision.DENY:
                log.info("access rules deny %s on model %r", call.operation.name, call.model_id)
                statements.append(_statement("Deny", method_arn))
        return self._policy(principal, statements)

    def http_simple(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """HTTP API (payload 2.0) simple response: ``{"isAuthorized": bool, "context": {...}}``.

        The credential comes from the (lower-case) headers, else from a single
        ``identitySource`` value. No model rules: the boolean is cached per token.
        """
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()
                   if isinstance(v, str)}
        if not any(name in headers for name in _CREDENTIAL_HEADERS):
            sources = event.get("identitySource")
            if isinstance(sources, list) and len(sources) == 1:
                headers.update(_token_headers(sources[0]))
        call = Call("POST", "", "", headers, b"", _NO_OPERATION, {})
        try:
            principal = self._authenticate(call)
        except AuthenticationError:
            return {"isAuthorized": False, "context": {}}
        return {"isAuthorized": True, "context": authorizer_context(principal)}
