"""The quota middleware: reserve the worst case before forwarding, settle the real usage after.

For each call, every :class:`~bedrock_gateway.quota.limits.Limit` that counts it becomes a
:class:`~bedrock_gateway.quota.ledger.Charge` of the call's worst case — 1 request; input bound
+ output bound tokens; in AWS dollars, what Bedrock could bill for it at most
(:mod:`~bedrock_gateway.quota.costing`: the dearest input-side rate — a 1-hour cache write where
one may happen — the long-context rates when the prompt may pass their threshold, the asked-for
service tier; seconds of video, images, guardrail text units), in nano-USD rounded up. A call
whose cost cannot be bounded is refused under a dollar limit unless the limit allows unpriced
calls. All charges are reserved
in one atomic store operation; if any does not fit the call is refused before it costs
anything: a rate with 429 ``ThrottlingException`` and ``x-amz-retry-after`` (ms), a budget with
400 ``ServiceQuotaExceededException`` naming the limit and the period.

When the response is finished with — completed, failed, or the client gone mid-stream — the
close hook settles: requests stay counted; tokens and cost become the real usage, priced as
AWS bills it (nothing for a failed call); a stream whose final usage never arrived is charged
its worst case, because Bedrock may have billed tokens the gateway never saw. With the
``bytes`` input bound the real bill never exceeds the reservation, so no interleaving of calls
lets settled spend pass a budget. See ``docs/quota.md``.

Each reservation has an id the store uses to apply every operation once. A settlement the store
cannot take, and the void of a reservation that got no answer (it may still land), go to the
:class:`~bedrock_gateway.quota.journal.Journal`, which applies them when the store answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import count

from bedrock_gateway.auth.access import call_resources
from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import (
    ServiceQuotaExceededError,
    ServiceUnavailableError,
    ThrottlingError,
    ValidationError,
)
from bedrock_gateway.operations import RUNTIME
from bedrock_gateway.pipeline import Next
from bedrock_gateway.quota.bounds import InputBound, generates, output_bound
from bedrock_gateway.quota.costing import Costing, costing_for, settled_atto
from bedrock_gateway.quota.count_tokens import count_input_tokens
from bedrock_gateway.quota.journal import Journal, Pending
from bedrock_gateway.quota.ledger import (
    LATE,
    Charge,
    Decision,
    QuotaStore,
    QuotaStoreError,
    hold_slot,
)
from bedrock_gateway.quota.limits import KINDS, NANO_USD, Limit, period_of
from bedrock_gateway.quota.meter import QUOTA_NOTE, Meter, QuotaNote
from bedrock_gateway.quota.pricing import Pricing
from bedrock_gateway.quota.stores.memory import MemoryStore
from bedrock_gateway.quota.terms import billed_model

__all__ = ["QuotaEnforcer"]

log = logging.getLogger("bedrock_gateway.quota")
_HEADER = "x-bedrock-gateway-remaining-"


@dataclass(frozen=True, slots=True)
class _Worst:
    tokens: int
    usd: int  # nano-USD
    atto: int = 0  # the same, exact (atto-USD)


@dataclass(frozen=True, slots=True)
class _Held:
    """One call's reservation, kept until it is settled."""

    call: str  # the reservation's id in the store
    limits: tuple[Limit, ...]
    charges: list[Charge]
    slot: int
    worst: _Worst
    costing: Costing | None  # None: an unpriced call a limit allowed (charged $0)
    note: QuotaNote


class QuotaEnforcer:
    """Middleware holding calls to ``limits`` in ``store`` (default: a :class:`MemoryStore`).

    ``input_bound`` bounds input tokens (``InputBound("bytes")`` by default);
    ``count_tokens=True`` asks Bedrock's CountTokens first and falls back to the bound.
    ``on_store_error`` is ``"fail_closed"`` (503, the default) or ``"fail_open"`` (forward
    unmetered, with a warning). ``reject_unpriced`` refuses calls to models without a price even
    when no dollar limit counts them. ``clock`` returns epoch seconds (inject it in tests).

    ``journal`` (a file path, or a :class:`~bedrock_gateway.quota.journal.Journal`) keeps the
    settlements the store could not take, and the voids of reservations that got no answer,
    and applies them when the store answers again — also after a restart, from the file.
    Without one they are kept in memory (an outage loses nothing; a restart during one does).
    """

    def __init__(self, limits: Sequence[Limit], store: QuotaStore | None = None,
                 pricing: Pricing | None = None, *, input_bound: InputBound | None = None,
                 count_tokens: bool = False, default_max_tokens: int = 4096,
                 on_store_error: str = "fail_closed", reservation_ttl_s: float = 900,
                 reject_unpriced: bool = False, clock: Callable[[], float] = time.time,
                 journal: str | os.PathLike[str] | Journal | None = None) -> None:
        if on_store_error not in ("fail_closed", "fail_open"):
            raise ValueError("on_store_error must be 'fail_closed' or 'fail_open'")
        self.limits = tuple(limits)
        counters = [(limit.scope_key_template, limit.kind) for limit in self.limits]
        if len(set(counters)) != len(counters):
            raise ValueError("two limits of one kind count the same calls on the same scope;"
                             " keep the stricter one")
        self.store = store if store is not None else MemoryStore()
        self.pricing = pricing if pricing is not None else Pricing()
        self.input_bound = input_bound if input_bound is not None else InputBound()
        self.count_tokens = count_tokens
        self.default_max_tokens = default_max_tokens
        self.fail_open = on_store_error == "fail_open"
        self.ttl_ms = int(reservation_ttl_s * 1000)
        self.reject_unpriced = reject_unpriced
        self.clock = clock
        self.journal = journal if isinstance(journal, Journal) else Journal(journal)
        self.journal.attach(self.store)
        # Reservation ids: unique across processes and restarts (random prefix), cheap to make.
        self._id_prefix = os.urandom(8).hex() + "."
        self._ids = count()

    def close(self) -> None:
        self.journal.close()
        self.store.close()

    def __call__(self, call: Call, next_: Next) -> Response:
        # The model, or what the call uses instead (a knowledge base, an agent; the body's model
        # for StartAsyncInvoke): ``tenant:model`` limits count per resource, globs match it.
        principal = call.principal
        model = call.model_id
        if model is None:
            model = next(iter(call_resources(call)), None)
        matched = [(limit, key) for limit in self.limits
                   if (key := limit.scope_key(principal, model)) is not None]
        if not matched and not self.reject_unpriced:
            return next_(call)
        costing = self._costing(call, [limit for limit, _ in matched if limit.spec.unit == "usd"])
        if not matched:
            return next_(call)
        generating = generates(call)
        units = {limit.spec.unit for limit, _ in matched}
        if "usd" not in units:
            costing = None
        worst = self._worst(call, next_, costing, generating and bool(units - {"requests"}))
        now_ms = int(self.clock() * 1000)
        charges = [self._charge(limit, key, worst, now_ms) for limit, key in matched]
        for (limit, _), charge in zip(matched, charges, strict=True):
            if charge.amount > charge.capacity:
                raise ServiceQuotaExceededError(
                    f"This request's worst case ({_amount(limit, charge.amount)}) exceeds the"
                    f" {limit.name} limit of {_amount(limit, charge.capacity)} on its own;"
                    " lower its maximum output tokens or prompt size.")
        slot = hold_slot(now_ms, self.ttl_ms)
        call_id = f"{self._id_prefix}{next(self._ids):x}"
        try:
            decision = self.store.reserve(call_id, charges, now_ms, slot)
            if not decision.ok and decision.refused == LATE:  # never for a fresh id
                raise QuotaStoreError(f"the store says call {call_id} was already settled")
        except Exception as exc:
            # The reservation may still arrive (a store paused or slow to answer): void it
            # when the store answers again, so it holds nothing.
            self._journal(Pending(call_id, tuple(charges), None, now_ms, slot))
            if not self.fail_open:
                log.error("quota store unavailable; refusing the call (fail_closed): %r", exc)
                raise ServiceUnavailableError(
                    "The gateway cannot check quotas right now; try again later.") from exc
            log.warning("quota store unavailable; forwarding unmetered (fail_open): %r", exc)
            return next_(call)
        if self.journal.pending:
            self.journal.wake()  # the store answers: apply what waits
        if not decision.ok:
            self._refuse(matched[decision.refused][0], charges[decision.refused], decision,
                         now_ms)
        limits = tuple(limit for limit, _ in matched)
        note = QuotaNote(tuple(limit.name for limit in limits))
        call.attrs[QUOTA_NOTE] = note
        held = _Held(call_id, limits, charges, slot, worst, costing, note)
        try:
            response = next_(call)
        except BaseException:
            self._settle(held, [1 if _is_requests(limit) else 0 for limit in limits])
            raise
        _remaining_headers(response, limits, decision)
        meter = Meter.of(call, response)
        response.on_close(lambda: self._finish(call, held, meter, generating))
        return response

    # -- before -----------------------------------------------------------------------------

    def _costing(self, call: Call, usd_limits: list[Limit]) -> Costing | None:
        """How the call is priced; refused when no dollar limit may count it unpriced."""
        if not usd_limits and not self.reject_unpriced:
            return None
        costing = costing_for(call, self.pricing)
        if costing is not None:
            return costing
        model = billed_model(call)
        strict = [limit for limit in usd_limits if not limit.allow_unpriced]
        if strict or (self.reject_unpriced and model is not None and generates(call)):
            raise ValidationError(_unpriced_reason(call, model, strict))
        return None

    def _worst(self, call: Call, next_: Next, costing: Costing | None,
               bounds: bool) -> _Worst:
        """Tokens and dollars the call can cost at most."""
        inp = output = 0
        if bounds or (costing is not None and costing.kind == "model"):
            bound = output_bound(call, self.default_max_tokens)
            if bound is None:
                raise ValidationError(
                    "The gateway cannot find this model's maximum-output-tokens field and"
                    " enforces token quotas: set max_tokens (or the model's equivalent) in the"
                    " request.")
            output = bound
            counted = count_input_tokens(call, next_) if self.count_tokens else None
            inp = counted if counted is not None else self.input_bound(call)
        atto = costing.worst(inp, output) if costing is not None else 0
        return _Worst(inp + output if bounds else 0, nano_usd_of(atto), atto)

    def _charge(self, limit: Limit, key: str, worst: _Worst, now_ms: int) -> Charge:
        spec = limit.spec
        amount = 1 if spec.unit == "requests" else worst.tokens if spec.unit == "tokens" \
            else worst.usd
        if spec.rate_ms:
            return Charge(key, amount, limit.capacity, period_ms=spec.rate_ms)
        period = period_of(spec.calendar, now_ms)
        return Charge(f"{key}|{period.label}", amount, limit.capacity,
                      expires_ms=period.ends_ms)

    def _refuse(self, limit: Limit, charge: Charge, decision: Decision, now_ms: int) -> None:
        if charge.is_rate:
            seconds = decision.retry_after_ms / 1000
            raise ThrottlingError(
                f"Rate exceeded: {limit.name} limit of {_amount(limit, charge.capacity)} per"
                f" minute; retry in {seconds:.1f} s.", retry_after_ms=decision.retry_after_ms)
        period = period_of(limit.spec.calendar, now_ms)
        raise ServiceQuotaExceededError(
            f"Quota exceeded: {limit.name} limit of {_amount(limit, charge.capacity)} is used up"
            f" for {period.label} (UTC).")

    # -- after ------------------------------------------------------------------------------

    def _finish(self, call: Call, held: _Held, meter: Meter, generating: bool) -> None:
        usage, worst, note, costing = meter.usage, held.worst, held.note, held.costing
        ok = meter.status == 200
        tokens = 0
        if ok and meter.complete and usage is not None:
            tokens = usage.total_tokens
        elif ok and generating:  # cut short, or usage not readable
            tokens = worst.tokens
            note.estimated = True
        usd = 0
        if costing is not None:
            atto, estimated = settled_atto(costing, call, self.pricing, usage, ok=ok,
                                           complete=meter.complete, worst_atto=worst.atto)
            note.estimated = note.estimated or estimated
            usd = nano_usd_of(atto)
            note.cost_usd = Decimal(usd) / NANO_USD
        actual = [1 if _is_requests(limit) else tokens if limit.spec.unit == "tokens" else usd
                  for limit in held.limits]
        self._settle(held, actual)

    def _settle(self, held: _Held, actual: list[int]) -> None:
        """Settle once; if the store fails, the journal applies it when the store is back (the
        store applies a call's settlement once, however often it is sent)."""
        now_ms = int(self.clock() * 1000)
        try:
            self.store.settle(held.call, held.charges, actual, now_ms)
        except Exception as exc:
            log.warning("quota settle failed (%r); journaled for retry: usage %s on %s",
                        exc, actual, [c.key for c in held.charges])
            self._journal(Pending(held.call, tuple(held.charges), tuple(actual), now_ms,
                                  held.slot))
            return
        if self.journal.pending:
            self.journal.wake()

    def _journal(self, entry: Pending) -> None:
        try:
            self.journal.add(entry)
        except Exception as exc:  # a full disk, a closed journal: say what is lost
            log.error("quota journal failed (%r); unrecorded %s of call %s: usage %s on %s",
                      exc, "void" if entry.actual is None else "settlement", entry.call,
                      entry.actual, [c.key for c in entry.charges])


def nano_usd_of(atto: int) -> int:
    """Atto-USD rounded up to the nano-dollar (budgets count nano-USD)."""
    return -(-atto // 1_000_000_000)


def _unpriced_reason(call: Call, model: str | None, strict: list[Limit]) -> str:
    name = call.operation.name
    limit = f" under the {strict[0].name} limit" if strict else ""
    if call.operation.service != RUNTIME:
        return (f"{name} has no per-call price at the gateway, so its cost cannot be bounded"
                f"{limit}; ask the gateway operator to set [pricing.operations] {name}.")
    if name in ("ApplyGuardrail", "InvokeGuardrailChecks"):
        return (f"The gateway has no guardrail prices, so the cost of {name} cannot be"
                f" bounded{limit}.")
    if name == "StartAsyncInvoke" and model is not None:
        return (f"The cost of this asynchronous invocation of {model} cannot be bounded"
                f"{limit}: the gateway needs the model's per-second or per-image price and"
                " the request's duration or image count.")
    return (f"The model {model} has no price configured at the gateway, so its cost cannot be"
            f" bounded{limit}; ask the gateway operator to add it to [pricing].")


def _is_requests(limit: Limit) -> bool:
    return limit.spec.unit == "requests"


def _amount(limit: Limit, units: float) -> str:
    unit = limit.spec.unit
    if unit == "usd":
        return f"{(Decimal(int(units)) / NANO_USD).normalize():f} USD"
    return f"{int(units):,} {unit}"


_HEADER_NAMES = {kind: _HEADER + kind.replace("_", "-") for kind in KINDS}


def _remaining_headers(response: Response, limits: tuple[Limit, ...],
                       decision: Decision) -> None:
    """``x-bedrock-gateway-remaining-<kind>``: the tightest remainder of each kind."""
    tightest: dict[str, float] = {}
    for limit, left in zip(limits, decision.remaining, strict=True):
        kind = limit.kind
        seen = tightest.get(kind)
        tightest[kind] = left if seen is None or left < seen else seen
    headers = response.headers
    for kind, left in tightest.items():
        if kind.startswith("usd"):
            headers[_HEADER_NAMES[kind]] = f"{max(left, 0) / 1e9:.6f}"
        else:
            headers[_HEADER_NAMES[kind]] = str(max(int(left), 0))
