"""The ``[quota]`` section and ``[[quota.limits]]`` entries, and the enforcer they build."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bedrock_gateway.quota.limits import KINDS, Limit

if TYPE_CHECKING:
    from bedrock_gateway.quota.enforcer import QuotaEnforcer
    from bedrock_gateway.quota.pricing import Pricing

__all__ = ["LimitConfig", "QuotaSection", "build_enforcer", "build_limits"]

_Count = Annotated[int, Field(ge=0)]
_Money = Annotated[Decimal, Field(ge=0, max_digits=24, decimal_places=9)]


class LimitConfig(BaseModel):
    """One ``[[quota.limits]]`` entry: a scope, optional filters, one or more limit kinds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Literal["global", "tenant", "subject", "tenant:model", "subject:model"]
    name: str = ""
    tenants: list[str] = []
    subjects: list[str] = []
    models: list[str] = []
    requests_per_minute: _Count | None = None
    tokens_per_minute: _Count | None = None
    requests_per_day: _Count | None = None
    tokens_per_day: _Count | None = None
    usd_per_day: _Money | None = None
    usd_per_month: _Money | None = None

    @model_validator(mode="after")
    def _some_kind(self) -> LimitConfig:
        if all(getattr(self, kind) is None for kind in KINDS):
            raise ValueError("a limit needs at least one of " + ", ".join(KINDS))
        return self


class QuotaSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = "memory://"
    input_bound: Literal["bytes", "estimate", "count_tokens"] = "bytes"
    estimate_factor: Annotated[float, Field(gt=0, le=100)] = 1.0
    media_tokens: Annotated[int, Field(ge=0)] = 5_000
    overhead_tokens: Annotated[int, Field(ge=0)] = 1_000
    default_max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 4_096
    on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    reservation_ttl_s: Annotated[float, Field(ge=60, le=86_400)] = 900
    limits: list[LimitConfig] = []

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        from bedrock_gateway.quota.stores import STORE_SCHEMES

        if value.split("://", 1)[0] not in STORE_SCHEMES or "://" not in value:
            raise ValueError("use memory://, sqlite:///path, redis://host:port/db or"
                             " dynamodb://table?region=...")
        return value




def build_limits(entries: list[LimitConfig]) -> list[Limit]:
    limits = []
    for entry in entries:
        for kind in KINDS:
            value = getattr(entry, kind)
            if value is None:
                continue
            name = f"{entry.name} {kind}" if entry.name else ""
            limits.append(Limit(entry.scope, kind, Decimal(value),
                                tenants=frozenset(entry.tenants),
                                subjects=frozenset(entry.subjects), models=tuple(entry.models),
                                name=name))
    return limits


def build_enforcer(section: QuotaSection, pricing: Pricing,
                   reject_unpriced: bool = False) -> QuotaEnforcer:
    from bedrock_gateway.quota.bounds import InputBound
    from bedrock_gateway.quota.enforcer import QuotaEnforcer
    from bedrock_gateway.quota.stores import open_store

    strategy = "estimate" if section.input_bound == "estimate" else "bytes"
    bound = InputBound(strategy, factor=section.estimate_factor,
                       media_tokens=section.media_tokens, overhead_tokens=section.overhead_tokens)
    return QuotaEnforcer(
        build_limits(section.limits), open_store(section.store), pricing, input_bound=bound,
        count_tokens=section.input_bound == "count_tokens",
        default_max_tokens=section.default_max_tokens, on_store_error=section.on_store_error,
        reservation_ttl_s=section.reservation_ttl_s, reject_unpriced=reject_unpriced)
