"""``[[filters]]`` entries, and the middleware they build.

Each entry has a ``type`` (``deny_terms``, ``regex``, ``pii``, ``size``, ``parameters``,
``guardrail``), ``applies_to`` (``["input"]`` by default; text filters and ``apply``-mode
guardrails may add ``"output"``), ``tenants`` (empty = everyone), an ``action`` where the type
has one, and its own keys. ``[gateway] on_unknown_shape`` decides what happens to a body whose
shape the filters cannot read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Middleware

__all__ = ["FilterConfig", "build_filters"]

_Action = Literal["block", "redact", "log"]
_Where = Literal["input", "output"]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    applies_to: list[_Where] = ["input"]
    tenants: list[str] = []

    @model_validator(mode="after")
    def _somewhere(self) -> _Entry:
        if not self.applies_to:
            raise ValueError("applies_to needs input, output or both")
        return self


class DenyTermsConfig(_Entry):
    type: Literal["deny_terms"]
    terms: Annotated[list[str], Field(min_length=1)]
    action: _Action = "block"


class RegexConfig(_Entry):
    type: Literal["regex"]
    patterns: Annotated[dict[str, str], Field(min_length=1)]  # category -> pattern
    action: _Action = "block"
    max_window: Annotated[int, Field(ge=1, le=65_536)] = 256


class PIIConfig(_Entry):
    type: Literal["pii"]
    categories: list[str] | dict[str, _Action] = []  # empty: every category
    action: _Action = "redact"


class _InputOnly(_Entry):
    @model_validator(mode="after")
    def _input_only(self) -> _InputOnly:
        if self.applies_to != ["input"]:
            raise ValueError("this filter checks requests: applies_to must be [\"input\"]")
        return self


class SizeConfig(_InputOnly):
    type: Literal["size"]
    max_prompt_chars: Annotated[int, Field(ge=1)] | None = None
    max_messages: Annotated[int, Field(ge=1)] | None = None
    max_media: Annotated[int, Field(ge=0)] | None = None


class ParametersConfig(_InputOnly):
    type: Literal["parameters"]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: tuple[float, float] | None = None
    top_p: tuple[float, float] | None = None
    guardrail: Literal["force", "forbid"] | None = None
    strip: list[str] = []
    on_violation: Literal["clamp", "block"] = "clamp"


class GuardrailConfig(_Entry):
    type: Literal["guardrail"]
    identifier: str
    version: str
    mode: Literal["inject", "apply"] = "inject"
    trace: bool = False
    stream_mode: Literal["sync", "async"] | None = None
    on_error: Literal["fail_closed", "fail_open"] = "fail_closed"


FilterConfig = Annotated[
    DenyTermsConfig | RegexConfig | PIIConfig | SizeConfig | ParametersConfig | GuardrailConfig,
    Field(discriminator="type"),
]


def _text_filter(entry: DenyTermsConfig | RegexConfig | PIIConfig) -> Any:
    name = entry.name or entry.type
    if isinstance(entry, DenyTermsConfig):
        from bedrock_gateway.filters.terms import DenyTermsFilter

        return DenyTermsFilter(entry.terms, action=entry.action, name=name)
    if isinstance(entry, RegexConfig):
        from bedrock_gateway.filters.regex import RegexFilter

        return RegexFilter(entry.patterns, action=entry.action, name=name,
                           max_window=entry.max_window)
    from bedrock_gateway.filters.pii import PIIFilter

    categories: dict[str, Any] | None = (
        dict(entry.categories) if isinstance(entry.categories, dict)
        else {c: entry.action for c in entry.categories} or None)
    return PIIFilter(categories, action=entry.action, name=name)


def guardrail_texts(kind: str, on_unknown_shape: str) -> Any:
    """A text extractor for :class:`GuardrailFilter` over every shape ``filters.text`` reads;
    an unreadable shape is refused (``block``) or yields no text (``pass``)."""
    from bedrock_gateway.errors import ValidationError
    from bedrock_gateway.filters.text import UnknownShapeError, request_texts, response_texts

    read = request_texts if kind == "request" else response_texts

    def texts(operation: str, model_id: str | None, body: dict[str, Any]) -> list[str]:
        try:
            return [ref.text for ref in read(operation, model_id, body)]
        except UnknownShapeError:
            if on_unknown_shape == "block":
                raise ValidationError(
                    f"The gateway's guardrail cannot read this {kind}'s shape for model"
                    f" {model_id}, and unknown shapes are refused.") from None
            return []

    return texts


def build_filters(entries: list[Any], on_unknown_shape: str) -> tuple[
        list[Middleware], list[Middleware]]:
    """The filter middleware for ``entries``: ``(outer, inner)`` — ``outer`` (guardrail
    injection, content filters) goes before the quota enforcer, ``inner`` (ApplyGuardrail
    checks, whose own calls must reach Bedrock directly) after it.

    Each filter's module is imported only when an entry uses it (a Lambda cold start pays for
    the filters it has, not for all of them)."""
    from bedrock_gateway.filters.middleware import ContentFilter, FilterRule

    rules: list[FilterRule] = []
    outer: list[Middleware] = []
    inner: list[Middleware] = []
    for entry in entries:
        tenants = frozenset(entry.tenants)
        where = {"input": "input" in entry.applies_to, "output": "output" in entry.applies_to}
        if isinstance(entry, GuardrailConfig):
            from bedrock_gateway.filters.guardrails import (
                Guardrail,
                GuardrailFilter,
                GuardrailInjector,
            )

            guardrail = Guardrail(entry.identifier, entry.version, trace=entry.trace,
                                  stream_mode=entry.stream_mode)
            default = None if tenants else guardrail
            per_tenant = dict.fromkeys(tenants, guardrail)
            if entry.mode == "inject":
                outer.insert(0, GuardrailInjector(default, tenants=per_tenant))
            else:
                inner.append(GuardrailFilter(
                    default, tenants=per_tenant, check_input=where["input"],
                    check_output=where["output"], on_error=entry.on_error,
                    request_texts=guardrail_texts("request", on_unknown_shape),
                    response_texts=guardrail_texts("response", on_unknown_shape)))
            continue
        if isinstance(entry, SizeConfig):
            from bedrock_gateway.filters.size import SizeFilter

            flt: Any = SizeFilter(max_prompt_chars=entry.max_prompt_chars,
                                  max_messages=entry.max_messages, max_media=entry.max_media,
                                  name=entry.name or "size")
        elif isinstance(entry, ParametersConfig):
            from bedrock_gateway.filters.parameters import ParameterPolicy

            flt = ParameterPolicy(max_tokens=entry.max_tokens, temperature=entry.temperature,
                                  top_p=entry.top_p, guardrail=entry.guardrail,
                                  strip=tuple(entry.strip), on_violation=entry.on_violation,
                                  name=entry.name or "parameters")
        else:
            flt = _text_filter(entry)
        rules.append(FilterRule(flt, input=where["input"], output=where["output"],
                                tenants=tenants))
    if rules:
        outer.append(ContentFilter(rules, on_unknown_shape=on_unknown_shape))
    return outer, inner
