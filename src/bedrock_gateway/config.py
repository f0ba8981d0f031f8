"""The TOML configuration, validated by pydantic, and the gateway it builds.

Unknown keys are errors (a typo must not silently disable a policy), and every error names
its key path (``upstream.read_timeout_s: Input should be greater than 0``). Secrets never live
in the file: credentials come from the standard AWS chain, keys from ``*_env`` variables.
"""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bedrock_gateway.adapters.limits import ServerLimits
from bedrock_gateway.auth.config import (
    AccessRuleConfig,
    AuthSection,
    build_access_rules,
    build_authorizers,
)
from bedrock_gateway.filters.config import FilterConfig, build_filters
from bedrock_gateway.operations import SERVICES
from bedrock_gateway.pipeline import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_UNAUTHENTICATED_BODY_BYTES,
    Gateway,
    Middleware,
)
from bedrock_gateway.quota.config import (
    PricingSection,
    QuotaSection,
    build_enforcer,
    build_pricing,
)
from bedrock_gateway.routing.config import (
    CacheSection,
    RouteConfig,
    build_cache,
    build_routing,
    route_regions,
)

__all__ = ["ConfigError", "GatewayConfig", "build_gateway", "load_config"]

log = logging.getLogger("bedrock_gateway")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` lists ``(key path, message)`` pairs."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {path}: {msg}" for path, msg in errors)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    max_body_bytes: Annotated[int, Field(gt=0, le=1024**3)] = DEFAULT_MAX_BODY_BYTES
    worker_threads: Annotated[int, Field(gt=0, le=4096)] = 128
    on_unknown_shape: Literal["block", "pass"] = "block"  # bodies the filters cannot read
    # What an unauthenticated client can make the server hold (docs/configuration.md).
    max_unauthenticated_body_bytes: Annotated[int, Field(ge=0, le=1024**3)] = (
        DEFAULT_MAX_UNAUTHENTICATED_BODY_BYTES)
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024**2)] = 32 * 1024
    max_header_count: Annotated[int, Field(ge=8, le=10_000)] = 100
    request_read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    keep_alive_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 75.0
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 768

    def server_limits(self) -> ServerLimits:
        """The limits ``bedrock-gateway serve`` applies to its HTTP server."""
        return ServerLimits(
            max_header_bytes=self.max_header_bytes, max_header_count=self.max_header_count,
            request_read_timeout_s=self.request_read_timeout_s,
            keep_alive_timeout_s=self.keep_alive_timeout_s,
            max_connections=self.max_connections)


class TenantRolesSection(_Section):
    """``[upstream.tenant_roles]``: sign each tenant's calls with its own assumed IAM role."""

    roles: dict[str, Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")]]
    duration_s: Annotated[int, Field(ge=900, le=43200)] = 3600
    refresh_margin_s: Annotated[float, Field(ge=0, le=3600)] = 300
    session_name_prefix: Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,32}$")] = "bedrock-gateway"


class UpstreamSection(_Section):
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")] = "us-east-1"
    endpoint_url: str | None = None
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.05
    read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    backoff_base_s: Annotated[float, Field(ge=0, le=60)] = 0.25
    backoff_max_s: Annotated[float, Field(ge=0, le=300)] = 8.0
    max_connections: Annotated[int, Field(ge=1, le=4096)] = 128
    # A buffered (non-stream) answer larger than this is refused (ModelErrorException);
    # streams are not capped.
    max_response_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 32 * 1024 * 1024
    profile: str | None = None  # a named AWS profile; default: the standard chain
    tenant_roles: TenantRolesSection | None = None
    services: Annotated[list[Literal["bedrock-runtime", "bedrock-agent-runtime"]],
                        Field(min_length=1)] = ["bedrock-runtime"]
    endpoints: dict[str, str] = {}  # "<service>" or "<service>/<region>" -> URL
    # InvokeAgent session and memory ids kept apart per principal (or per tenant), or shared.
    agent_sessions: Literal["principal", "tenant", "shared"] = "principal"

    @field_validator("endpoint_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local fake)")
        return value

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: dict[str, str]) -> dict[str, str]:
        for key, url in value.items():
            service, _, region = key.partition("/")
            if service not in SERVICES:
                raise ValueError(f"{key!r}: the key is a service of {SERVICES}, optionally"
                                 " followed by /<region>")
            if region and not _REGION.match(region):
                raise ValueError(f"{key!r}: {region!r} is not a region name")
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"{key!r}: must start with https:// (or http:// for a fake)")
        return value


class UsageSection(_Section):
    log: str | None = None  # a JSON-lines file: one record per call


class GatewayConfig(_Section):
    """The whole file: ``[gateway]``, ``[upstream]``, ``[auth]``, ``[[access]]`` rules,
    ``[pricing]``, ``[usage]``, ``[quota]`` and ``[[filters]]``."""

    gateway: GatewaySection = GatewaySection()
    upstream: UpstreamSection = UpstreamSection()
    auth: AuthSection = AuthSection()
    access: list[AccessRuleConfig] = []
    pricing: PricingSection = PricingSection()
    usage: UsageSection = UsageSection()
    quota: QuotaSection = QuotaSection()
    filters: list[FilterConfig] = []
    routes: list[RouteConfig] = []
    cache: CacheSection | None = None  # [cache]: present = on

    @model_validator(mode="after")
    def _require_auth_decision(self) -> GatewayConfig:
        if not self.auth.anonymous and not self.auth.configured:
            raise ValueError(
                "no authorizer is configured: add [auth.jwt], [[auth.api_keys]] or"
                " [[auth.access_keys]], or set [auth] anonymous = true to accept"
                " unauthenticated calls explicitly"
            )
        return self


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append((path, msg))
    return out


def parse_config(data: dict[str, Any], source: str = "<config>") -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _errors(exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML file; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("(syntax)", str(exc))]) from None
    return parse_config(data, str(path))


def build_gateway(config: GatewayConfig, **forwarder_overrides: Any) -> Gateway:
    """Assemble the :class:`Gateway` a configuration describes."""
    from bedrock_gateway.upstreams import Upstreams

    up = config.upstream
    session = None
    if up.profile:
        import boto3

        session = boto3.Session(profile_name=up.profile)
    options: dict[str, Any] = {
        "region": up.region,
        "endpoint_url": up.endpoint_url,
        "endpoints": up.endpoints,
        "services": up.services,
        "regions": route_regions(config.routes),
        "session": session,
        "connect_timeout": up.connect_timeout_s,
        "read_timeout": up.read_timeout_s,
        "max_attempts": up.max_attempts,
        "backoff_base": up.backoff_base_s,
        "backoff_max": up.backoff_max_s,
        "max_connections": up.max_connections,
        "max_response_bytes": up.max_response_bytes,
    }
    if up.tenant_roles is not None:
        from bedrock_gateway.auth.tenant_roles import TenantRoleCredentials

        tr = up.tenant_roles
        options["credentials_for"] = TenantRoleCredentials(
            tr.roles, session=session, region=up.region, duration_s=tr.duration_s,
            refresh_margin_s=tr.refresh_margin_s, session_name_prefix=tr.session_name_prefix)
    options.update(forwarder_overrides)
    if config.auth.anonymous:
        log.warning(
            "SECURITY: [auth] anonymous = true - the gateway accepts calls without credentials"
        )
    middleware: list[Middleware] = []
    if "bedrock-agent-runtime" in up.services and up.agent_sessions != "shared":
        from bedrock_gateway.routing.agent_sessions import AgentSessionScope

        middleware.append(AgentSessionScope(up.agent_sessions))
    pricing = build_pricing(config.pricing, up.region) if (
        config.usage.log or config.quota.limits or config.pricing.reject_unpriced) else None
    if config.usage.log:  # outermost: refused calls are recorded too
        from bedrock_gateway.quota.records import JSONLinesSink, UsageRecorder

        middleware.append(UsageRecorder(JSONLinesSink(config.usage.log), pricing))
    outer, inner = build_filters(config.filters, config.gateway.on_unknown_shape)
    middleware += outer  # guardrail injection, content filters: before quotas see the body
    cache = build_cache(config.cache)
    if cache is not None:  # after input filters (keys over the filtered body), before quotas
        middleware.append(cache)  # (a hit consumes no quota)
    if pricing is not None and (config.quota.limits or config.pricing.reject_unpriced):
        middleware.append(build_enforcer(config.quota, pricing, config.pricing.reject_unpriced))
    middleware += inner  # ApplyGuardrail checks: their own calls go straight to Bedrock
    router, handler = build_routing(config.routes, Upstreams(**options),
                                    deadline_s=up.read_timeout_s)
    return Gateway(
        handler,
        middleware,
        router=router,
        authorizers=build_authorizers(config.auth),
        access_rules=build_access_rules(config.access),
        anonymous=config.auth.anonymous,
        max_body_bytes=config.gateway.max_body_bytes,
        max_unauthenticated_body_bytes=config.gateway.max_unauthenticated_body_bytes,
        services=up.services,
    )
