"""``[[routes]]`` (model aliases, weighted targets, fallbacks) and ``[cache]``, and what they
build: the alias router, the fallback handler around the forwarder, the response cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Gateway, Handler, Middleware
    from bedrock_gateway.routing.aliases import Alias

__all__ = ["CacheSection", "RouteConfig", "build_cache", "build_routing", "reload_routes",
           "route_regions"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_REGION = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"


class TargetConfig(_Section):
    model: Annotated[str, Field(min_length=1)]
    weight: Annotated[int, Field(ge=1)] = 1
    region: Annotated[str, Field(pattern=_REGION)] | None = None


class FallbackConfig(_Section):
    model: Annotated[str, Field(min_length=1)]
    region: Annotated[str, Field(pattern=_REGION)] | None = None


class RouteConfig(_Section):
    alias: Annotated[str, Field(min_length=1)]
    targets: Annotated[list[TargetConfig], Field(min_length=1)]
    fallback: list[str | FallbackConfig] = []  # a model id, or {model, region}
    tenants: list[str] = []
    invoke_compatible: bool | None = None


class CacheSection(_Section):
    store: str = "memory://"  # memory:// or redis://host:port/db
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = 300
    max_entry_bytes: Annotated[int, Field(gt=0, le=256 * 1024 * 1024)] = 1024 * 1024
    operations: list[Literal["Converse", "ConverseStream", "InvokeModel",
                             "InvokeModelWithResponseStream"]] = [
        "Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"]
    cache_nondeterministic: bool = False


def build_routing(routes: list[RouteConfig], handler: Handler, *, deadline_s: float
                  ) -> tuple[Middleware | None, Handler]:
    """The alias router (``None`` without routes) and the handler, wrapped in a
    :class:`~bedrock_gateway.routing.fallback.FallbackHandler` when any route has fallbacks."""
    if not routes:
        return None, handler
    from bedrock_gateway.routing.aliases import AliasRouter
    from bedrock_gateway.routing.breaker import CircuitBreaker
    from bedrock_gateway.routing.fallback import FallbackHandler

    router = AliasRouter(_aliases(routes))
    if any(r.fallback for r in routes):
        handler = FallbackHandler(handler, CircuitBreaker(), deadline_s)
    return router, handler


def _aliases(routes: list[RouteConfig]) -> list[Alias]:
    from bedrock_gateway.routing.aliases import Alias, Target

    return [Alias(r.alias, [Target(t.model, t.weight, t.region) for t in r.targets],
                  fallback=tuple(f if isinstance(f, str) else Target(f.model, 1, f.region)
                                 for f in r.fallback),
                  tenants=frozenset(r.tenants), invoke_compatible=r.invoke_compatible)
            for r in routes]


def reload_routes(gateway: Gateway, routes: list[RouteConfig]) -> None:
    """Swap ``gateway``'s aliases for ``routes`` (new weights, targets, fallbacks) while it
    serves. Raises ``ValueError`` — and changes nothing — when the new routes are invalid or
    need what the running gateway was not built with: routing at all, or fallbacks."""
    from bedrock_gateway.routing.aliases import AliasRouter
    from bedrock_gateway.routing.fallback import FallbackHandler

    router = gateway.router
    if not isinstance(router, AliasRouter):
        raise ValueError("the gateway was started without [[routes]]: restart it to add routes")
    if any(r.fallback for r in routes) and not isinstance(gateway.handler, FallbackHandler):
        raise ValueError("the gateway was started without fallbacks: restart it to add them")
    router.replace(_aliases(routes))


def route_regions(routes: list[RouteConfig]) -> set[str]:
    """Every region a route's targets or fallbacks name (their upstreams are built up front)."""
    found = {t.region for r in routes for t in r.targets}
    found |= {f.region for r in routes for f in r.fallback if not isinstance(f, str)}
    return {region for region in found if region is not None}


def build_cache(section: CacheSection | None) -> Any:
    if section is None:
        return None
    from bedrock_gateway.routing.cache import ResponseCache
    from bedrock_gateway.routing.cache_store import MemoryCacheStore, RedisCacheStore

    if section.store.startswith(("redis://", "rediss://")):
        store: Any = RedisCacheStore.from_url(section.store)
    elif section.store == "memory://":
        store = MemoryCacheStore()
    else:
        raise ValueError("[cache] store must be memory:// or redis://host:port/db")
    return ResponseCache(store, ttl_s=section.ttl_s, max_entry_bytes=section.max_entry_bytes,
                         operations=section.operations,
                         cache_nondeterministic=section.cache_nondeterministic)
