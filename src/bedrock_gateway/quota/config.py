"""The ``[quota]`` section and ``[[quota.limits]]`` entries, and the enforcer they build."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bedrock_gateway.quota.limits import KINDS, Limit

if TYPE_CHECKING:
    from bedrock_gateway.quota.enforcer import QuotaEnforcer
    from bedrock_gateway.quota.pricing import Pricing

__all__ = ["LimitConfig", "PricingSection", "QuotaSection", "build_enforcer", "build_limits",
           "build_pricing"]

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
    # "refuse" (default): a call whose cost cannot be bounded before it runs (unpriced model or
    # operation) is refused under this entry's dollar limits; "allow": it runs, charged $0.
    unpriced: Literal["refuse", "allow"] = "refuse"

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
    # A local file keeping the settlements (and voids) the store could not take, until it can;
    # replayed at start. None: kept in memory (a restart during a store outage loses them).
    journal: str | None = None
    limits: list[LimitConfig] = []

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        from bedrock_gateway.quota.stores import STORE_SCHEMES

        if value.split("://", 1)[0] not in STORE_SCHEMES or "://" not in value:
            raise ValueError("use memory://, sqlite:///path, redis://host:port/db or"
                             " dynamodb://table?region=...")
        return value




_Rate = Annotated[Decimal, Field(ge=0, max_digits=30, decimal_places=12)]


class PricingSection(BaseModel):
    """``[pricing]``: the price table and what the operator adds to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A whole price table (JSON, the packaged pricing.json's format) instead of the packaged
    # one: negotiated or private prices.
    table: str | None = None
    # model id (as sent, or the base id for every geography) -> a rate set or a whole entry
    # ({"rates", "geo", "regions"}) as in pricing.json; numbers or decimal strings.
    overrides: dict[str, dict[str, Any]] = {}
    profiles: dict[str, str] = {}  # application-inference-profile ARN (or alias) -> model id
    default: dict[str, Any] | None = None  # a rate set for models the table does not price
    # Per-call prices of operations not billed by model usage (bedrock-agent-runtime:
    # "Retrieve", "RetrieveAndGenerate", "InvokeAgent", ...), in USD.
    operations: dict[str, _Rate] = {}
    reject_unpriced: bool = False  # refuse calls to models with no price (and no default)

    @field_validator("table")
    @classmethod
    def _readable_table(cls, value: str | None) -> str | None:
        if value is not None:
            _load_table(value)
        return value

    @field_validator("overrides")
    @classmethod
    def _valid_overrides(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from bedrock_gateway.quota.pricing import Pricing

        Pricing(table={"models": {}}, overrides=value)  # raises naming the bad entry
        return value

    @field_validator("default")
    @classmethod
    def _valid_default(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from bedrock_gateway.quota.prices import Price

        if value is not None:
            Price.from_mapping(value, "pricing default")
        return value


def _load_table(path: str) -> dict[str, Any]:
    """A price-table file, checked entry by entry (errors name the entry)."""
    import json

    from bedrock_gateway.quota.pricing import Pricing

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the price table {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a price table is a JSON object")
    try:
        Pricing(table=data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return data


def build_pricing(section: PricingSection, region: str | None = None) -> Pricing:
    """The price table (packaged or ``table``) with overrides, profiles, default and
    operation prices; ``region`` prices bare model ids (the gateway's upstream region)."""
    from bedrock_gateway.quota.prices import Price
    from bedrock_gateway.quota.pricing import Pricing

    return Pricing(
        _load_table(section.table) if section.table else None,
        overrides=section.overrides, profiles=dict(section.profiles),
        default=Price.from_mapping(section.default, "pricing default") if section.default
        else None, region=region, operations=dict(section.operations))


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
                                name=name, allow_unpriced=entry.unpriced == "allow"))
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
        reservation_ttl_s=section.reservation_ttl_s, reject_unpriced=reject_unpriced,
        journal=section.journal)
