"""Access rules: which principal may use which model and operation.

A rule is a plain value. It *applies* to a principal when the principal matches every selector
the rule sets (``tenants``, ``groups``, ``scopes``, ``subjects``: any one listed value; an unset
selector matches everyone). An applying rule then says, for one operation and model:

- ``DENY`` when the model matches ``deny_models`` (deny always wins), else
- ``ALLOW`` when the rule allows something (``allow_models`` or ``allow_operations`` set), the
  operation is in ``allow_operations`` (unset: any) and the model matches ``allow_models``
  (unset: any). Operations that name no model (ApplyGuardrail, Get/ListAsyncInvokes,
  InvokeGuardrailChecks) are allowed by a rule with ``allow_models`` only when it lists them in
  ``allow_operations``: model globs never open them. Else
- nothing (``None``). A rule with only ``deny_models`` never allows anything.

Knowledge bases and agents (bedrock-agent-runtime) are *resources*, named
``knowledge-base/<id>`` and ``agent/<id>/alias/<alias id>``, and judged the same way by
``allow_resources`` / ``deny_resources`` — never by model globs, so ``allow_models = ["*"]``
opens no knowledge base. A call is allowed only when everything it uses is
(:func:`call_resources`): RetrieveAndGenerate needs both its knowledge base and the model
that generates.

Rules compose: ``a | b`` allows what either allows, ``a & b`` only what both allow, and a deny
from either side wins in both. :class:`AccessPolicy` is the middleware: with rules configured,
whatever no rule allows is denied; the message names the deciding rule, never a credential.

    >>> rule = AccessRule("team-a", tenants=("a",), allow_models=("anthropic.*",))
    >>> rule.allows(Principal("u", tenant="a"), "Converse", "anthropic.claude-v2")
    True
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING

from bedrock_gateway.call import Call, Principal, Response
from bedrock_gateway.errors import AccessDeniedError, ValidationError

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Next

__all__ = ["AccessPolicy", "AccessRule", "Decision", "Rule", "call_resources", "is_agent_resource",
           "model_names", "resource_model"]

_AGENT_RESOURCES = ("knowledge-base/", "agent/")


def is_agent_resource(name: str) -> bool:
    """Whether ``name`` is a knowledge base or agent (not a model id)."""
    return name.startswith(_AGENT_RESOURCES)


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    rule: str


class Rule:
    """Base of composable rules: ``evaluate`` returns a :class:`Verdict` or ``None``."""

    name: str = "rule"

    def evaluate(self, principal: Principal, operation: str, model: str | None) -> Verdict | None:
        raise NotImplementedError

    def allows(self, principal: Principal, operation: str, model: str | None = None) -> bool:
        verdict = self.evaluate(principal, operation, model)
        return verdict is not None and verdict.decision is Decision.ALLOW

    def __or__(self, other: Rule) -> Rule:
        return _Either(self, other)

    def __and__(self, other: Rule) -> Rule:
        return _Both(self, other)


_GEO_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")


def model_names(model: str) -> tuple[str, ...]:
    """The names a model id is matched by: as sent, the profile id inside an inference-profile
    ARN, and the foundation-model id behind a cross-region profile — so a rule on
    ``anthropic.claude-*`` also covers ``us.anthropic.claude-...`` and both ARNs, and a rule on
    ``us.*`` also covers the ``us.`` profile's ARN. (Application inference profiles hide their
    model; they match only as sent.)"""
    names = [model]
    arn_with_model = "foundation-model/" in model or ":inference-profile/" in model
    if model.startswith("arn:") and arn_with_model:
        names.append(model.rsplit("/", 1)[-1])  # the profile (or foundation-model) id
    for prefix in _GEO_PREFIXES:
        if names[-1].startswith(prefix):
            names.append(names[-1][len(prefix):])  # the foundation model behind a profile
            break
    return tuple(names)


def _matches(pattern: re.Pattern[str] | None, names: tuple[str, ...]) -> bool:
    return pattern is not None and any(pattern.fullmatch(n) for n in names)


def _globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


@dataclass(frozen=True, eq=False)
class AccessRule(Rule):
    name: str = "rule"
    tenants: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    allow_models: tuple[str, ...] = ()
    deny_models: tuple[str, ...] = ()
    allow_operations: tuple[str, ...] = ()
    allow_resources: tuple[str, ...] = ()
    deny_resources: tuple[str, ...] = ()

    @cached_property
    def _allow(self) -> re.Pattern[str] | None:
        return _globs(self.allow_models)

    @cached_property
    def _allow_resources(self) -> re.Pattern[str] | None:
        return _globs(self.allow_resources)

    @cached_property
    def _deny_resources(self) -> re.Pattern[str] | None:
        return _globs(self.deny_resources)

    @cached_property
    def _deny(self) -> re.Pattern[str] | None:
        return _globs(self.deny_models)

    def applies_to(self, p: Principal) -> bool:
        return (
            (not self.tenants or p.tenant in self.tenants)
            and (not self.subjects or p.subject in self.subjects)
            and (not self.groups or not p.groups.isdisjoint(self.groups))
            and (not self.scopes or not p.scopes.isdisjoint(self.scopes))
        )

    def evaluate(self, principal: Principal, operation: str, model: str | None) -> Verdict | None:
        if not self.applies_to(principal):
            return None
        if model is not None and is_agent_resource(model):
            return self._evaluate_resource(operation, model)
        names = model_names(model) if model is not None else ()
        if names and _matches(self._deny, names):
            return Verdict(Decision.DENY, self.name)
        if not self.allow_models and not self.allow_operations:
            return None  # a rule that names nothing to allow only denies
        if self.allow_operations and operation not in self.allow_operations:
            return None
        if self._allow is not None:
            if not names and operation not in self.allow_operations:
                return None  # model globs never open model-less operations (async reads...)
            if names and not _matches(self._allow, names):
                return None
        return Verdict(Decision.ALLOW, self.name)

    def _evaluate_resource(self, operation: str, resource: str) -> Verdict | None:
        if self._deny_resources is not None and self._deny_resources.fullmatch(resource):
            return Verdict(Decision.DENY, self.name)
        if self.allow_resources:
            if self.allow_operations and operation not in self.allow_operations:
                return None
            allowed = self._allow_resources is not None and \
                self._allow_resources.fullmatch(resource)
            return Verdict(Decision.ALLOW, self.name) if allowed else None
        if self.allow_operations and operation in self.allow_operations:
            return Verdict(Decision.ALLOW, self.name)  # the operation on any resource
        return None


@dataclass(frozen=True)
class _Composed(Rule):
    left: Rule
    right: Rule

    def evaluate(self, principal: Principal, operation: str, model: str | None) -> Verdict | None:
        a = self.left.evaluate(principal, operation, model)
        b = self.right.evaluate(principal, operation, model)
        for v in (a, b):
            if v is not None and v.decision is Decision.DENY:
                return v  # a deny wins on either side
        return self.combine(a, b)

    def combine(self, a: Verdict | None, b: Verdict | None) -> Verdict | None:
        raise NotImplementedError


class _Either(_Composed):
    def combine(self, a: Verdict | None, b: Verdict | None) -> Verdict | None:
        return a or b


class _Both(_Composed):
    def combine(self, a: Verdict | None, b: Verdict | None) -> Verdict | None:
        if a is not None and b is not None:
            return Verdict(Decision.ALLOW, f"{a.rule} & {b.rule}")
        return None


def _body_string(call: Call, *path: str) -> str | None:
    node: object = call.json()
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if node is not None and not isinstance(node, str):
        raise ValidationError(f"{'.'.join(path)} must be a string.")
    return node


def resource_model(call: Call) -> str | None:
    """The model a call uses: from the path, or from the body for StartAsyncInvoke."""
    if call.model_id is not None:
        return call.model_id
    if call.operation.name == "StartAsyncInvoke":
        return _body_string(call, "modelId") or ""
    return None


def call_resources(call: Call) -> tuple[str, ...]:
    """Everything a call uses that rules and quotas judge, the main one first: its model (path,
    or body), the knowledge base or agent it reaches (``knowledge-base/<id>``,
    ``agent/<id>/alias/<alias id>``), and for RetrieveAndGenerate the knowledge base and the
    model that generates. A knowledge-base ARN counts as its id. Empty for operations that use
    neither (async-invoke reads, ApplyGuardrail)."""
    op = call.operation
    if op.resource is not None:
        named = op.resource_id(call.params)
        return (_short_kb(named),) if named is not None else ()
    if op.name in ("RetrieveAndGenerate", "RetrieveAndGenerateStream"):
        config = ("retrieveAndGenerateConfiguration",)
        kb = _body_string(call, *config, "knowledgeBaseConfiguration", "knowledgeBaseId")
        model = (_body_string(call, *config, "knowledgeBaseConfiguration", "modelArn")
                 or _body_string(call, *config, "externalSourcesConfiguration", "modelArn"))
        found = tuple(r for r in (f"knowledge-base/{kb}" if kb else None, model) if r)
        return tuple(_short_kb(r) for r in found) or ("",)  # "" : nothing named, so no rule
    model = resource_model(call)                            # on a model can allow it
    return (model,) if model is not None else ()


def _short_kb(resource: str) -> str:
    if resource.startswith("knowledge-base/arn:"):
        return "knowledge-base/" + resource.rsplit("/", 1)[-1]
    return resource


class AccessPolicy:
    """Middleware: refuse what the rules do not allow (403 ``AccessDeniedException``)."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)

    def decide(self, principal: Principal, operation: str, model: str | None) -> Verdict | None:
        allowed: Verdict | None = None
        for rule in self.rules:
            verdict = rule.evaluate(principal, operation, model)
            if verdict is not None and verdict.decision is Decision.DENY:
                return verdict
            allowed = allowed or verdict
        return allowed

    def __call__(self, call: Call, next_: Next) -> Response:
        principal = call.principal or Principal.anonymous()
        operation = call.operation.name
        for resource in call_resources(call) or (None,):
            verdict = self.decide(principal, operation, resource)
            target = (resource if resource and is_agent_resource(resource) else
                      f"model {resource}" if resource else operation)
            if verdict is None:
                raise AccessDeniedError(f"No access rule allows {target} for this caller.")
            if verdict.decision is Decision.DENY:
                raise AccessDeniedError(f"Access rule '{verdict.rule}' denies {target}.")
        return next_(call)
