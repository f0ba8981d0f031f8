"""QuotaEnforcer in process: limits, reservations, settlement, rejections (clock injected)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from bedrock_gateway import Call, Gateway, Principal, Response
from bedrock_gateway.errors import StreamError, UpstreamUnavailableError
from bedrock_gateway.eventstream import EventStreamDecoder, Frame, event_frame
from bedrock_gateway.pipeline import Next
from bedrock_gateway.quota.bounds import InputBound
from bedrock_gateway.quota.enforcer import QuotaEnforcer
from bedrock_gateway.quota.ledger import Charge, Decision, QuotaStore, QuotaStoreError
from bedrock_gateway.quota.limits import Limit
from bedrock_gateway.quota.pricing import Price, Pricing
from bedrock_gateway.quota.records import UsageRecord, UsageRecorder
from bedrock_gateway.quota.stores.memory import MemoryStore

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"  # 0.8 / 4 USD per 1M tokens
T0 = 1_795_000_000.0  # 2026-11-18T08:53:20Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """The handler: answers Converse with chosen usage and records what it received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.usage = (10, 20)
        self.status = 200
        self.stream_cut = False

    def __call__(self, call: Call) -> Response:
        self.bodies.append(json.loads(call.body) if call.body else {})
        if self.status != 200:
            raise UpstreamUnavailableError("down")
        inp, out = self.usage
        usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out}
        if call.operation.name == "CountTokens":
            return Response(200, {}, json.dumps({"inputTokens": 42}).encode())
        if call.operation.streaming:
            frames = [event_frame("messageStart", {"role": "assistant"})]
            if not self.stream_cut:
                frames.append(event_frame("metadata", {"usage": usage, "metrics": {}}))
            decoded = EventStreamDecoder().feed(b"".join(frames))
            return Response(200, {"content-type": "application/vnd.amazon.eventstream"},
                            frames=self._stream(decoded))
        body = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
                "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 1}}
        return Response(200, {"content-type": "application/json",
                              "x-amzn-requestid": "r1"}, json.dumps(body).encode())


    def _stream(self, frames: list[Frame]) -> Iterator[Frame]:
        yield from frames
        if self.stream_cut:
            raise StreamError("the upstream connection broke")


def as_principal(call: Call, next_: Next) -> Response:
    tenant = call.headers.get("x-test-tenant")
    call.principal = Principal(call.headers.get("x-test-subject", "alice"), tenant=tenant)
    return next_(call)


class Harness:
    def __init__(self, limits: list[Limit], **options: Any) -> None:
        self.clock = Clock()
        self.upstream = Upstream()
        self.records: list[UsageRecord] = []
        self.store: QuotaStore = options.pop("store", None) or MemoryStore()
        self.enforcer = QuotaEnforcer(limits, self.store, options.pop("pricing", Pricing()),
                                      clock=self.clock, **options)
        self.gateway = Gateway(self.upstream, [as_principal, UsageRecorder(self.records.append),
                                               self.enforcer], anonymous=True)

    def call(self, body: dict[str, Any] | None = None, *, op: str = "converse",
             model: str = MODEL, tenant: str | None = "acme", subject: str = "alice"
             ) -> Response:
        headers = {"content-type": "application/json", "x-test-subject": subject}
        if tenant:
            headers["x-test-tenant"] = tenant
        raw = json.dumps(body if body is not None else {
            "messages": [{"role": "user", "content": [{"text": "hello"}]}]}).encode()
        response = self.gateway.handle("POST", f"/model/{model}/{op}", "", headers, raw)
        b"".join(response.chunks())  # send it: runs the close hooks (settlement)
        return response


def code(response: Response) -> str:
    return response.headers.get("x-amzn-errortype", "").split(":")[0] or str(response.status)


def test_a_rate_admits_its_limit_then_throttles_with_retry_after() -> None:
    h = Harness([Limit("tenant", "requests_per_minute", Decimal(10))])
    assert [code(h.call()) for _ in range(10)] == ["200"] * 10
    refused = h.call()
    assert code(refused) == "ThrottlingException" and refused.status == 429
    assert refused.headers["x-amz-retry-after"] == "6000" and refused.headers["retry-after"] == "6"
    assert "tenant requests_per_minute limit of 10 requests per minute" in json.loads(
        refused.body)["message"]
    assert code(h.call(tenant="other")) == "200"  # one counter per tenant
    h.clock.now += 6
    assert code(h.call()) == "200"
    assert len(h.upstream.bodies) == 12  # refused calls never reached the upstream


def test_successful_answers_carry_the_tightest_remaining_quota() -> None:
    h = Harness([Limit("tenant", "requests_per_minute", Decimal(5)),
                 Limit("global", "requests_per_minute", Decimal(100)),
                 Limit("tenant", "usd_per_day", Decimal("0.5"))])
    response = h.call()
    assert response.headers["x-bedrock-gateway-remaining-requests-per-minute"] == "4"
    remaining_usd = Decimal(response.headers["x-bedrock-gateway-remaining-usd-per-day"])
    assert Decimal("0.45") < remaining_usd < Decimal("0.5")  # after holding the worst case


def test_a_budget_refuses_once_spent_and_settles_real_cost() -> None:
    # worst case of one call: (bytes + 1,000 overhead) x 1.0 (a 5-minute cache write, 1.25x
    # input, is the dearest way the prompt can be billed) + 100 x 4 per 1M, about $0.0015
    h = Harness([Limit("tenant", "usd_per_day", Decimal("0.01"))])
    h.upstream.usage = (400, 100)  # $0.00072 a call
    body = {"messages": [{"role": "user", "content": [{"text": "hello"}]}],
            "inferenceConfig": {"maxTokens": 100}}
    outcomes = [code(h.call(body)) for _ in range(20)]
    assert outcomes[:12] == ["200"] * 12
    assert "ServiceQuotaExceededException" in outcomes
    refused = next(r for r in h.records if r.error == "ServiceQuotaExceededException")
    assert refused.status == 400 and refused.limits == []
    spent = sum(Decimal(r.cost_usd) for r in h.records if r.cost_usd)
    assert spent <= Decimal("0.01")
    assert all(Decimal(r.cost_usd) == Decimal("0.00072") for r in h.records if r.status == 200)
    limit = h.enforcer.limits[0]
    key = limit.scope_key(Principal("alice", tenant="acme"), MODEL)
    assert h.store.level(Charge(f"{key}|2026-11-18", 0, 1), int(T0 * 1000)) == int(
        spent * 1_000_000_000)
    message = json.loads(h.call(body).body)["message"]
    assert "tenant usd_per_day limit of 0.01 USD is used up for 2026-11-18 (UTC)" in message
    h.clock.now += 86_400  # the next UTC day has a fresh budget
    assert code(h.call(body)) == "200"


def test_the_missing_max_tokens_is_written_into_the_request() -> None:
    h = Harness([Limit("tenant", "tokens_per_minute", Decimal(100_000))], default_max_tokens=321)
    h.call()
    assert h.upstream.bodies[-1]["inferenceConfig"] == {"maxTokens": 321}
    h.call({"anthropic_version": "bedrock-2023-05-31",
            "messages": [{"role": "user", "content": "hi"}]}, op="invoke")
    assert h.upstream.bodies[-1]["max_tokens"] == 321
    h.call({"inputText": "hi"}, op="invoke", model="amazon.titan-embed-text-v2:0")
    assert h.upstream.bodies[-1] == {"inputText": "hi"}  # embeddings produce no output tokens
    h.call({"prompt": "hi"}, op="invoke", model="us.meta.llama3-2-1b-instruct-v1:0")
    assert h.upstream.bodies[-1]["max_gen_len"] == 321
    unknown = h.call({"prompt": "hi"}, op="invoke", model="acme.mystery-v1")
    assert code(unknown) == "ValidationException"
    assert "maximum-output-tokens" in json.loads(unknown.body)["message"]
    bad = h.call({"messages": [], "inferenceConfig": {"maxTokens": "lots"}})
    assert code(bad) == "ValidationException"


def test_a_request_bigger_than_a_limit_on_its_own_is_refused_without_retry_advice() -> None:
    h = Harness([Limit("subject", "tokens_per_minute", Decimal(500))])
    response = h.call()  # 4,096 default output tokens alone exceed 500
    assert code(response) == "ServiceQuotaExceededException"
    assert "on its own" in json.loads(response.body)["message"]
    assert not h.upstream.bodies


def test_unpriced_models_are_refused_when_money_is_limited_or_when_configured() -> None:
    h = Harness([Limit("tenant", "usd_per_day", Decimal(1))])
    response = h.call(model="acme.mystery-v1")
    assert code(response) == "ValidationException" and "no price" in json.loads(response.body)["message"]
    strict = Harness([], reject_unpriced=True)
    assert code(strict.call(model="acme.mystery-v1")) == "ValidationException"
    assert code(strict.call()) == "200"
    fallback = Harness([Limit("tenant", "usd_per_day", Decimal(1))], pricing=Pricing(
        default=Price(Decimal(1), Decimal(2))))
    assert code(fallback.call(model="acme.mystery-v1")) == "200"


def test_failed_calls_give_back_tokens_and_money_but_count_as_requests() -> None:
    h = Harness([Limit("tenant", "requests_per_day", Decimal(100)),
                 Limit("tenant", "tokens_per_day", Decimal(100_000))])
    h.upstream.status = 503
    assert code(h.call()) == "ServiceUnavailableException"
    now = int(T0 * 1000)
    requests, tokens = (h.store.level(Charge(f"tenant=acme|{k}|2026-11-18", 0, 1), now)
                        for k in ("requests_per_day", "tokens_per_day"))
    assert (requests, tokens) == (1, 0)


def test_a_stream_cut_short_is_charged_its_worst_case() -> None:
    h = Harness([Limit("tenant", "tokens_per_day", Decimal(100_000))])
    h.upstream.stream_cut = True
    h.call(op="converse-stream")
    (record,) = h.records
    assert record.estimated and not record.complete and record.error == "ModelStreamErrorException"
    level = h.store.level(Charge("tenant=acme|tokens_per_day|2026-11-18", 0, 1), int(T0 * 1000))
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello"}]}],
                       "inferenceConfig": {"maxTokens": 4096}}, separators=(",", ":"))
    assert level == len(body) + 1_000 + 4_096
    h.upstream.stream_cut = False
    h.call(op="converse-stream")
    assert h.records[-1].complete and not h.records[-1].estimated
    assert h.store.level(Charge("tenant=acme|tokens_per_day|2026-11-18", 0, 1),
                         int(T0 * 1000)) == level + 30


class BrokenStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def reserve(self, call: str, charges: Any, now_ms: int, slot: int) -> Decision:
        if self.down:
            raise QuotaStoreError("connection refused")
        return super().reserve(call, charges, now_ms, slot)


def test_a_store_outage_fails_closed_by_default_and_open_when_configured() -> None:
    closed = Harness([Limit("tenant", "requests_per_minute", Decimal(1))], store=BrokenStore())
    assert code(closed.call()) == "ServiceUnavailableException"
    assert not closed.upstream.bodies
    opened = Harness([Limit("tenant", "requests_per_minute", Decimal(1))], store=BrokenStore(),
                     on_store_error="fail_open")
    assert code(opened.call()) == "200" and code(opened.call()) == "200"
    assert isinstance(opened.store, BrokenStore)
    opened.store.down = False  # recovered: nothing was held during the outage
    assert code(opened.call()) == "200" and code(opened.call()) == "ThrottlingException"


def test_scopes_and_filters_pick_their_counters() -> None:
    h = Harness([Limit("tenant:model", "requests_per_minute", Decimal(1)),
                 Limit("subject", "requests_per_minute", Decimal(3), models=("amazon.nova-*",))])
    assert code(h.call()) == "200"
    assert code(h.call()) == "ThrottlingException"  # same tenant, same model
    assert code(h.call(model="anthropic.claude-3-haiku-20240307-v1:0")) == "200"
    nova = "us.amazon.nova-micro-v1:0"  # the glob covers cross-region profiles
    assert code(h.call(model=nova, tenant="t1")) == "200"
    assert code(h.call(model=nova, tenant="t2")) == "200"
    assert code(h.call(model=nova, tenant="t3")) == "200"
    assert code(h.call(model=nova, tenant="t4")) == "ThrottlingException"  # alice's 3 used
    assert code(h.call(model=nova, tenant="t4", subject="bob")) == "200"
    assert code(h.call(tenant=None)) == "200"  # no tenant: tenant scopes do not count it


def test_count_tokens_bounds_input_by_bedrocks_own_count() -> None:
    h = Harness([Limit("tenant", "tokens_per_day", Decimal(100_000))], count_tokens=True)
    h.call({"messages": [{"role": "user", "content": [{"text": "x" * 5000}]}],
            "inferenceConfig": {"maxTokens": 10}})
    assert h.enforcer.limits and len(h.upstream.bodies) == 2  # CountTokens, then the call
    assert h.upstream.bodies[0] == {"input": {"converse": {"messages": [
        {"role": "user", "content": [{"text": "x" * 5000}]}]}}}
    assert h.records[-1].limits == ["tenant tokens_per_day"]


def test_input_bound_strategies() -> None:
    bytes_bound, estimate = InputBound(), InputBound("estimate", factor=2.0)
    body = {"messages": [{"role": "user", "content": [{"text": "é" * 100}, {"image": {}}]}]}
    raw = json.dumps(body, ensure_ascii=False).encode()
    fake = replace_call(raw)
    assert bytes_bound(fake) == len(raw) + 1_000 + 5_000
    assert estimate(fake) == -(-len(raw.decode()) * 2 // 4) + 1_000 + 5_000


def replace_call(body: bytes) -> Call:
    from bedrock_gateway.operations import route

    r = route("POST", f"/model/{MODEL}/converse")
    return Call("POST", "/x", "", {}, body, r.operation, r.params)



def test_two_limits_on_one_counter_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="same scope"):
        QuotaEnforcer([Limit("tenant", "requests_per_minute", Decimal(5)),
                       Limit("tenant", "requests_per_minute", Decimal(9))])
    QuotaEnforcer([Limit("tenant", "requests_per_minute", Decimal(5)),
                   Limit("tenant", "requests_per_minute", Decimal(9), tenants=frozenset({"a"}))])


def test_a_route_with_fallbacks_reserves_at_the_dearest_model_and_settles_at_the_one_used(
        ) -> None:
    from bedrock_gateway.routing.aliases import Alias, AliasRouter, Target

    opus = "anthropic.claude-opus-4-1-20250805-v1:0"  # 15 / 75 USD per 1M tokens: the dearest
    h = Harness([Limit("tenant", "usd_per_day", Decimal(1))])
    router = AliasRouter([Alias("chat", [Target(MODEL)], fallback=(opus,))])
    h.gateway = Gateway(h.upstream, [as_principal, UsageRecorder(h.records.append),
                                     h.enforcer], anonymous=True, router=router)
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": 1000}}
    response = h.call(body, model="chat")
    assert code(response) == "200"
    held = Decimal(1) - Decimal(response.headers["x-bedrock-gateway-remaining-usd-per-day"])
    assert held > Decimal("0.075")  # 1,000 output tokens at Opus's 75 USD per 1M
    assert h.records[-1].cost_usd == "0.000088"  # 10 in + 20 out at Haiku's 0.8 / 4: served it
