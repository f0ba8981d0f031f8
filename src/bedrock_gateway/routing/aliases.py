"""Model aliases: one public name, one or more weighted concrete targets, sticky per principal.

A client calls ``modelId="chat"``; :class:`AliasRouter` (a middleware) rewrites the call to the
concrete model chosen for this principal and records the decision in
``call.attrs[ROUTE_KEY]``::

    {"alias": "chat", "model": "anthropic.claude-...", "region": None,
     "fallback": ["anthropic.claude-haiku-..."],
     "chain": [{"model": "anthropic.claude-...", "region": None},
               {"model": "anthropic.claude-haiku-...", "region": "us-west-2"}],
     "attempts": []}

``alias`` is the id the client sent (still readable after the rewrite); ``chain`` is the chosen
target and then each fallback, which
:class:`~bedrock_gateway.routing.fallback.FallbackHandler` tries in order (``fallback`` lists
their models, for pricing); ``attempts`` is filled by it. ``region`` is where the current
attempt goes: :class:`~bedrock_gateway.upstreams.Upstreams` sends the call to that region's
endpoint (``None``: the gateway's own region). A fallback may be the same model in another
region — regional failover.

**Sticky split.** The target is chosen by ``sha256(alias, tenant, subject)`` mapped onto the
cumulative weights, so a principal keeps its target for as long as the weights stay the same,
and over many principals the split follows the weights.

**Tenants.** An alias with ``tenants`` applies only to those tenants and wins over a general
alias of the same name. Aliases do not chain: a target is always sent as a concrete model id.

**Model families.** Converse and ConverseStream have one body shape for every model, so an
alias may split or fall back across families (Anthropic, Meta, ...). InvokeModel bodies are
family-specific: a Claude body sent to Llama fails. Each alias therefore knows whether it is
*invoke-compatible* — by default, when all its targets and fallbacks share one family
(:func:`model_family`; a hidden family counts as different). An
InvokeModel (or InvokeModelWithResponseStream, or CountTokens over an InvokeModel body) call
to an alias that is not is refused at resolve time with a ``ValidationException``, before
anything is sent. ``invoke_compatible=True`` asserts compatibility for ids whose family cannot
be read (application inference profiles) or that the operator knows to share a body shape; it
is refused (``ValueError``) when two models belong to different providers (``anthropic.*`` and
``meta.*``). ``invoke_compatible=False`` makes an alias Converse-only.
StartAsyncInvoke (model in the body) is not routed.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any, cast

from bedrock_gateway.auth.access import model_names
from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import ValidationError

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Next

__all__ = ["ROUTE_KEY", "Alias", "AliasRouter", "Resolution", "Target", "model_family"]

ROUTE_KEY = "bedrock_gateway.route"
_INVOKE_OPERATIONS = frozenset({"InvokeModel", "InvokeModelWithResponseStream"})
_LINE_PROVIDERS = frozenset({"amazon", "cohere"})  # one provider, several body shapes


def model_family(model: str) -> str | None:
    """The InvokeModel body family of a model id, seen through inference-profile prefixes and
    ARNs: the provider (``anthropic``, ``meta``...), or provider and model line where bodies
    differ inside one provider (``amazon.nova``, ``amazon.titan-text``, ``cohere.embed``...);
    ``None`` when the id hides it (an application inference profile)."""
    base = model_names(model)[-1]
    provider, dot, rest = base.partition(".")
    if base.startswith("arn:") or not dot or not rest:
        return None
    if provider in _LINE_PROVIDERS:
        parts = rest.split("-")
        return f"{provider}.{'-'.join(parts[:2] if parts[0] == 'titan' else parts[:1])}"
    return provider


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete model behind an alias, with its share of traffic."""

    model: str
    weight: int = 1
    region: str | None = None


@dataclass(frozen=True)
class Alias:
    """A public model name; see the module docstring for ``tenants`` and ``invoke_compatible``.
    ``fallback`` entries are model ids (the gateway's region) or :class:`Target` s."""

    name: str
    targets: Sequence[Target]
    fallback: Sequence[str | Target] = ()
    tenants: frozenset[str] = frozenset()
    invoke_compatible: bool | None = None
    _cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "fallback", tuple(
            f if isinstance(f, Target) else Target(f) for f in self.fallback))
        object.__setattr__(self, "tenants", frozenset(self.tenants))
        if not self.name:
            raise ValueError("an alias needs a name")
        if not self.targets:
            raise ValueError(f"alias {self.name!r} has no targets")
        for t in self.targets:
            if not t.model:
                raise ValueError(f"alias {self.name!r} has a target without a model")
            if t.weight <= 0:
                raise ValueError(f"alias {self.name!r}: weight of {t.model!r} must be > 0")
        if any(not f.model for f in self.fallback_targets):
            raise ValueError(f"alias {self.name!r} has an empty fallback model")
        models = [t.model for t in (*self.targets, *self.fallback_targets)]
        families = [model_family(m) for m in models]
        providers = {f.split(".")[0] for f in families if f is not None}
        if self.invoke_compatible and len(providers) > 1:
            raise ValueError(
                f"alias {self.name!r} mixes providers {sorted(providers)}: InvokeModel bodies"
                " are family-specific, so it cannot be invoke_compatible")
        if self.invoke_compatible is None:
            same = None not in families and len(set(families)) == 1
            object.__setattr__(self, "invoke_compatible", same or len(set(models)) == 1)
        object.__setattr__(self, "_cumulative",
                           tuple(accumulate(t.weight for t in self.targets)))

    @property
    def fallback_targets(self) -> tuple[Target, ...]:
        """``fallback`` as targets (model ids became targets in the gateway's region)."""
        return cast(tuple[Target, ...], self.fallback)

    def choose(self, tenant: str | None, subject: str) -> Target:
        """The target for this principal: a stable hash onto the cumulative weights."""
        if len(self.targets) == 1:
            return self.targets[0]
        digest = hashlib.sha256(
            f"{self.name}\x00{tenant or ''}\x00{subject}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") * self._cumulative[-1] >> 64
        return self.targets[bisect_right(self._cumulative, point)]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :meth:`AliasRouter.resolve` decided for one call."""

    alias: Alias
    target: Target

    def note(self) -> dict[str, Any]:
        """The route note stored under :data:`ROUTE_KEY`."""
        fallback = self.alias.fallback_targets
        return {"alias": self.alias.name, "model": self.target.model,
                "region": self.target.region, "fallback": [f.model for f in fallback],
                "chain": [{"model": t.model, "region": t.region}
                          for t in (self.target, *fallback)],
                "attempts": []}


class AliasRouter:
    """Resolve aliases (pure :meth:`resolve`) and, as a middleware, rewrite ``modelId``."""

    def __init__(self, aliases: Iterable[Alias]) -> None:
        self._state = _index(tuple(aliases))

    @property
    def aliases(self) -> tuple[Alias, ...]:
        return self._state[0]

    def replace(self, aliases: Iterable[Alias]) -> None:
        """Swap in new aliases (a config reload: new weights, targets, fallbacks). Checked
        first, then swapped in one assignment: a call in flight sees the old table or the new
        one, never a mix; principals keep their target unless its weights moved."""
        self._state = _index(tuple(aliases))

    def lookup(self, name: str, tenant: str | None) -> Alias | None:
        """The alias ``name`` means for ``tenant``: its own first, then the general one."""
        _, index, names = self._state
        if name not in names:
            return None
        if tenant is not None:
            own = index.get((tenant, name))
            if own is not None:
                return own
        return index.get((None, name))

    def resolve(self, call: Call) -> Resolution | None:
        """The alias and target for this call, or ``None`` when its model is no alias here.

        Raises :class:`ValidationError` for an InvokeModel-shaped call to an alias that is not
        invoke-compatible (see the module docstring)."""
        model = call.params.get("modelId")
        if model is None or model not in self._state[2]:
            return None
        principal = call.principal
        tenant = principal.tenant if principal is not None else None
        alias = self.lookup(model, tenant)
        if alias is None:
            return None
        if not alias.invoke_compatible and _invoke_shaped(call):
            raise ValidationError(
                f"Model alias '{alias.name}' spans model families and can only be used with"
                " Converse or ConverseStream.")
        subject = principal.subject if principal is not None else "anonymous"
        return Resolution(alias, alias.choose(tenant, subject))

    def __call__(self, call: Call, next_: Next) -> Response:
        resolution = self.resolve(call)
        if resolution is not None:
            call.attrs[ROUTE_KEY] = resolution.note()
            call.params["modelId"] = resolution.target.model
        return next_(call)


_State = tuple[tuple[Alias, ...], dict[tuple[str | None, str], Alias], frozenset[str]]


def _index(aliases: tuple[Alias, ...]) -> _State:
    index: dict[tuple[str | None, str], Alias] = {}
    for alias in aliases:
        for scope in alias.tenants or (None,):
            key = (scope, alias.name)
            if key in index:
                where = f"tenant {scope!r}" if scope is not None else "all tenants"
                raise ValueError(f"alias {alias.name!r} is defined twice for {where}")
            index[key] = alias
    return aliases, index, frozenset(name for _, name in index)


def _invoke_shaped(call: Call) -> bool:
    name = call.operation.name
    if name in _INVOKE_OPERATIONS:
        return True
    if name == "CountTokens":
        payload = call.json().get("input")
        return isinstance(payload, dict) and "invokeModel" in payload
    return False
