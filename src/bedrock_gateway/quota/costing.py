"""How a call's dollars are bounded before it runs and counted after, by what Bedrock bills.

========================  ===============================================  ====================
operation                 worst case (reserved)                            settled
========================  ===============================================  ====================
Converse*, InvokeModel*   prompt bound x dearest input-side rate + output  the bill of the
                          bound x output rate, at the asked-for tier (or   reported usage
                          standard), long context if the prompt may pass
                          it; images / rerank queries / input images
StartAsyncInvoke          seconds of video x per-second price, or images   the reservation
                          x per-image price, from the request
ApplyGuardrail,           text units (1,000 characters) x every text       the units Bedrock
InvokeGuardrailChecks     policy's rate (+ images x image rate)            reports, by policy
agent runtime             the configured per-call price                    the same
CountTokens, Get/List…    free                                             free
========================  ===============================================  ====================

Amounts are atto-USD integers (:mod:`.prices`). A call whose cost cannot be bounded (no price
for its model or operation) gets no :class:`Costing`: under a dollar limit it is refused,
unless the limit allows unpriced calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bedrock_gateway.call import Call
from bedrock_gateway.operations import RUNTIME
from bedrock_gateway.quota.prices import Rates, Terms, atto
from bedrock_gateway.quota.pricing import Pricing
from bedrock_gateway.quota.terms import PLAIN, billed_model, request_terms

__all__ = ["FREE", "Costing", "costing_for", "guardrail_bill", "guardrail_text_units",
           "settled_atto"]

FREE = frozenset({"CountTokens", "GetAsyncInvoke", "ListAsyncInvokes"})
_GUARDRAILS = frozenset({"ApplyGuardrail", "InvokeGuardrailChecks"})
_MEMO_SIZE = 4096  # (model, terms) -> Costing, per Pricing: model ids come from clients
_UNIT_CHARS = 1_000  # a guardrail text unit is up to 1,000 characters
_ROUTE = "bedrock_gateway.route"  # routing.aliases.ROUTE_KEY
# InvokeGuardrailChecks check -> the ApplyGuardrail policy it is billed as.
_CHECKS = {"contentFilter": "contentPolicyUnits", "promptAttack": "contentPolicyUnits",
           "sensitiveInformation": "sensitiveInformationPolicyUnits"}


@dataclass(frozen=True, slots=True)
class Costing:
    """What the call's dollars depend on: ``kind`` is ``model``, ``units`` (priced from the
    request alone), ``guardrail``, ``fixed`` (a per-call price) or ``free``."""

    kind: str
    terms: Terms
    models: tuple[tuple[str, str | None, Rates], ...] = ()  # (model, region, rates) candidates
    fixed_atto: int = 0  # units / fixed: the whole price; guardrail: the worst case

    def worst(self, input_bound: int, output_bound: int) -> int:
        """Atto-USD the call can cost at most (model calls: given the token bounds)."""
        if self.kind == "model":
            if len(self.models) == 1:
                return self.models[0][2].worst(input_bound, output_bound, self.terms)
            return max(r.worst(input_bound, output_bound, self.terms) for _, _, r in self.models)
        return self.fixed_atto

    def rates_served(self, call: Call, pricing: Pricing) -> Rates | None:
        """The rates of the model that answered (a fallback may have served the call)."""
        route = call.attrs.get(_ROUTE)
        if isinstance(route, dict) and isinstance(route.get("served"), str):
            return pricing.rates_for(route["served"], route.get("region"))
        return self.models[0][2] if self.models else None


def _route_models(call: Call, model: str) -> list[tuple[str, str | None]]:
    route = call.attrs.get(_ROUTE)
    if isinstance(route, dict) and isinstance(route.get("chain"), list):
        chain = [(str(step["model"]), step.get("region")) for step in route["chain"]
                 if isinstance(step, dict) and isinstance(step.get("model"), str)]
        if chain:
            return chain
    return [(model, route.get("region") if isinstance(route, dict) else None)]


def _text_chars(node: Any) -> tuple[int, int]:
    """(text units, images) of ApplyGuardrail ``content`` / InvokeGuardrailChecks ``messages``:
    each text is billed in units of up to 1,000 characters."""
    units = images = 0
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "text" and isinstance(value, str):
                    units += max(1, -(-len(value) // _UNIT_CHARS))
                elif key == "image":
                    images += 1
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return units, images


def guardrail_text_units(call: Call) -> tuple[int, int]:
    """Text units and images a guardrail call asks to be checked (its worst case)."""
    body = call.json() if call.is_json else {}
    return _text_chars(body.get("content") if call.operation.name == "ApplyGuardrail"
                       else body.get("messages"))


def _guardrail_worst(call: Call, pricing: Pricing) -> int | None:
    units, images = guardrail_text_units(call)
    if call.operation.name == "ApplyGuardrail":
        return pricing.guardrail_worst_atto(units, images)
    checks = call.json().get("checks") if call.is_json else None
    policies = [_CHECKS.get(str(name), str(name))
                for name in (checks if isinstance(checks, dict) else {})]
    if any(policy not in pricing.guardrails for policy in policies):
        return None
    return pricing.guardrail_atto(tuple((policy, units) for policy in policies))


def guardrail_bill(call: Call, pricing: Pricing, units: tuple[tuple[str, int], ...]
                   ) -> int | None:
    """Atto-USD for the policy units a guardrail call reports (checks map to policies)."""
    if call.operation.name == "InvokeGuardrailChecks":
        units = tuple((_CHECKS.get(name, name), n) for name, n in units)
    return pricing.guardrail_atto(units)


def costing_for(call: Call, pricing: Pricing) -> Costing | None:
    """How the call is priced, or ``None`` when its cost cannot be bounded before it runs."""
    name = call.operation.name
    if name in FREE:
        return Costing("free", Terms())
    terms = request_terms(call)
    if call.operation.service != RUNTIME:
        price = pricing.operations.get(name)
        if price is None:
            return None
        return Costing("fixed", terms, fixed_atto=atto(price))
    if name in _GUARDRAILS:
        worst = _guardrail_worst(call, pricing)
        return None if worst is None else Costing("guardrail", terms, fixed_atto=worst)
    model = billed_model(call)
    if model is None:
        return None
    if name == "StartAsyncInvoke":
        rates = pricing.rates_for(model)
        if rates is None or not (terms.video_seconds or terms.images):
            return None
        whole = rates.worst(0, 0, terms)
        if not whole:  # the model has no per-second or per-image price
            return None
        return Costing("units", terms, ((model, None, rates),), fixed_atto=whole)
    if _ROUTE not in call.attrs and terms is PLAIN:  # the common case: memoized per model
        found = pricing.costings.get(model)
        if found is None:
            rates = pricing.rates_for(model)
            if rates is None:
                return None
            found = Costing("model", terms, ((model, None, rates),))
            if len(pricing.costings) >= _MEMO_SIZE:
                pricing.costings.clear()
            pricing.costings[model] = found
        assert isinstance(found, Costing)
        return found
    candidates = []
    for each, region in _route_models(call, model):
        rates = pricing.rates_for(each, region)
        if rates is None:
            return None
        candidates.append((each, region, rates))
    return Costing("model", terms, tuple(candidates))


def settled_atto(costing: Costing, call: Call, pricing: Pricing, usage: Any, *, ok: bool,
                 complete: bool, worst_atto: int) -> tuple[int, bool]:
    """(atto-USD the call is settled at, whether that is the worst case because its final
    usage never arrived). ``usage`` is a :class:`~.usage.Usage` or ``None``."""
    if not ok or costing.kind == "free":
        return 0, False
    if costing.kind in ("units", "fixed"):
        return costing.fixed_atto, False
    if not complete or usage is None:
        return worst_atto, True  # Bedrock may have billed what the gateway never saw
    if costing.kind == "guardrail":
        bill = guardrail_bill(call, pricing, usage.guardrail_policy_units)
        return (worst_atto, True) if bill is None else (bill, False)
    rates = costing.rates_served(call, pricing)
    if rates is None:
        return worst_atto, True
    return rates.bill(usage, costing.terms), False
