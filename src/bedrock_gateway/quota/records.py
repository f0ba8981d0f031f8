"""One usage record per call: who, which model, how many tokens, what it cost, how it ended.

:class:`UsageRecorder` is a middleware. A buffered answer is read once; a stream is metered
frame by frame as it passes (:class:`StreamUsage`, nothing buffered or delayed), and the record
is written from the response's close hook — so a call whose client went away mid-stream still
produces its record, with the usage that was seen (``complete = false``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bedrock_gateway.auth.access import call_resources, is_agent_resource
from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import GatewayError
from bedrock_gateway.operations import RUNTIME
from bedrock_gateway.pipeline import Next
from bedrock_gateway.quota.costing import costing_for, settled_atto
from bedrock_gateway.quota.meter import QUOTA_NOTE, Meter, QuotaNote
from bedrock_gateway.quota.prices import usd
from bedrock_gateway.quota.pricing import Pricing, geography_of
from bedrock_gateway.quota.terms import billed_model, request_terms

__all__ = ["JSONLinesSink", "UsageRecord", "UsageRecorder"]

log = logging.getLogger("bedrock_gateway.usage")


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    time: str  # UTC, ISO 8601, when the call arrived
    operation: str
    model: str | None
    subject: str | None
    tenant: str | None
    status: int
    streamed: bool
    complete: bool  # a stream that ended normally, or any buffered answer
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    guardrail_units: int = 0
    cost_usd: str | None = None  # a Decimal as text; None when the model has no price
    error: str | None = None  # the error code, for failed calls and streams
    limits: list[str] = field(default_factory=list)  # the quota limits that counted this call
    # True when Bedrock's final usage never arrived (a stream cut short) and the cost is the
    # reservation's worst case, as charged to the budgets.
    estimated: bool = False
    # What the content filters found (``filter:category:action``; never the text), and what a
    # Bedrock guardrail did: ``intervened``, ``none``, ``error`` (None: no guardrail involved).
    filters: list[str] = field(default_factory=list)
    guardrail: str | None = None
    # Served from the response cache (routing.cache): no upstream call, so cost_usd is "0".
    cached: bool = False
    # The alias the client called when a route resolved it (``model`` is the model that served).
    alias: str | None = None
    # The knowledge base or agent a bedrock-agent-runtime call used (``knowledge-base/<id>``,
    # ``agent/<id>/alias/<alias id>``); RetrieveAndGenerate's generating model is ``model``.
    resource: str | None = None
    # The priced dimensions beyond tokens: 1-hour cache writes (part of cache_write_tokens),
    # the service tier and latency Bedrock served, where the call was billed (``geography``:
    # ``global``, a geo prefix such as ``us`` or ``eu``, ``in-region``, or ``profile``; and the
    # upstream ``region``), and units priced per unit.
    cache_write_1h_tokens: int = 0
    service_tier: str | None = None
    latency: str | None = None
    geography: str | None = None
    region: str | None = None
    images: int = 0
    video_seconds: int = 0
    queries: int = 0
    guardrail_policy_units: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _agent_resources(call: Call) -> tuple[str | None, str | None]:
    """The knowledge base or agent, and the generating model, of a bedrock-agent-runtime call."""
    try:
        found = call_resources(call)
    except GatewayError:  # a malformed body: the access policy has refused it already
        return None, None
    resource = next((r for r in found if is_agent_resource(r)), None)
    return resource, next((r for r in found if r and not is_agent_resource(r)), None)


class JSONLinesSink:
    """Appends each record as one JSON line; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def __call__(self, record: UsageRecord) -> None:
        line = record.to_json() + "\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class UsageRecorder:
    """Middleware writing a :class:`UsageRecord` for every call that reaches it.

    Place it outside the quota enforcer (as :func:`~bedrock_gateway.config.build_gateway`
    does) so refused calls are recorded too; the record then carries the limits that applied
    and the cost the enforcer charged, so records and budgets agree.
    """

    def __init__(self, sink: Callable[[UsageRecord], None], pricing: Pricing | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.pricing = pricing
        self.clock = clock

    def close(self) -> None:
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()

    def __call__(self, call: Call, next_: Next) -> Response:
        started = self.clock()
        record = UsageRecord(
            request_id="", time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            operation=call.operation.name, model=call.model_id,
            subject=call.principal.subject if call.principal else None,
            tenant=call.principal.tenant if call.principal else None,
            status=0, streamed=call.operation.streaming, complete=False, latency_ms=0.0)
        if call.operation.service != RUNTIME:
            record.resource, record.model = _agent_resources(call)
        try:
            response = next_(call)
        except GatewayError as exc:
            record.status, record.error = exc.status, exc.code
            self._emit(call, record, None, started)
            raise
        record.status = response.status
        record.request_id = response.headers.get("x-amzn-requestid", "")
        meter = Meter.of(call, response)
        response.on_close(lambda: self._emit(call, record, meter, started))
        return response

    def _emit(self, call: Call, record: UsageRecord, meter: Meter | None,
              started: float) -> None:
        record.latency_ms = round((self.clock() - started) * 1000, 3)
        route = call.attrs.get("bedrock_gateway.route")  # routing.aliases.ROUTE_KEY
        if isinstance(route, dict):
            record.alias = route.get("alias")
            record.model = route.get("served") or route.get("model") or record.model
        found = call.attrs.get("bedrock_gateway.filters")
        if isinstance(found, list):
            record.filters = [str(label) for label in found]
        record.guardrail = _guardrail_outcome(call.attrs.get("bedrock_gateway.guardrail"))
        note = call.attrs.get(QUOTA_NOTE)
        if isinstance(note, QuotaNote):
            record.limits = list(note.limits)
            record.estimated = note.estimated
        if meter is not None:
            record.complete = meter.complete
            record.error = meter.error
            usage = meter.usage
            if usage is not None:
                record.input_tokens = usage.input_tokens
                record.output_tokens = usage.output_tokens
                record.cache_read_tokens = usage.cache_read_tokens
                record.cache_write_tokens = usage.cache_write_tokens
                record.guardrail_units = usage.guardrail_units
            if usage is not None:
                record.cache_write_1h_tokens = usage.cache_write_1h_tokens
                record.service_tier = usage.service_tier
                record.latency = usage.latency
                record.images = usage.images
                record.guardrail_policy_units = dict(usage.guardrail_policy_units)
            if isinstance(note, QuotaNote) and note.cost_usd is not None:
                record.cost_usd = _money(note.cost_usd)
            elif self.pricing is not None:
                record.cost_usd = _money(self._cost(call, meter))
        self._dimensions(call, record)
        if call.attrs.get("bedrock_gateway.cache") == "hit":  # routing.cache.CACHE_NOTE
            record.cached = True
            record.cost_usd = "0"
        try:
            self.sink(record)
        except Exception:
            log.exception("the usage sink failed; record lost: %s", record.request_id)


    def _cost(self, call: Call, meter: Meter) -> Decimal | None:
        """What AWS bills for the call (no quota enforcer priced it): ``None`` when unknown."""
        assert self.pricing is not None
        costing = costing_for(call, self.pricing)
        if costing is None or (meter.usage is None and costing.kind in ("model", "guardrail")):
            return None
        atto, estimated = settled_atto(costing, call, self.pricing, meter.usage,
                                       ok=meter.status == 200, complete=True, worst_atto=0)
        return None if estimated else usd(atto)

    def _dimensions(self, call: Call, record: UsageRecord) -> None:
        terms = request_terms(call)
        if record.service_tier is None and record.status == 200:
            record.service_tier = terms.tier
        if record.latency is None and record.status == 200:
            record.latency = terms.latency
        record.video_seconds, record.queries = terms.video_seconds, terms.queries
        model = record.model or billed_model(call)
        if model is not None:
            record.geography = geography_of(model)
            if record.model is None and call.operation.name == "StartAsyncInvoke":
                record.model = model
        route = call.attrs.get("bedrock_gateway.route")
        region = route.get("region") if isinstance(route, dict) else None
        record.region = region or (self.pricing.region if self.pricing is not None else None)


def _guardrail_outcome(note: object) -> str | None:
    """``intervened`` / ``none`` when a Bedrock guardrail ran on the call (injected or through
    ApplyGuardrail), ``error`` when checking failed; ``None`` when no guardrail was involved."""
    if not isinstance(note, dict):
        return None
    checks = [check for key in ("input", "output")
              if isinstance(check := note.get(key), dict)]
    if note.get("intervened") or any(c.get("action") == "GUARDRAIL_INTERVENED" for c in checks):
        return "intervened"
    if any("error" in c for c in checks):
        return "error"
    return "none"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")

