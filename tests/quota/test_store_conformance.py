"""One contract, every store: memory, SQLite, Redis (real redis-server) and DynamoDB (moto)."""

from __future__ import annotations

import itertools

import pytest

from bedrock_gateway.quota.ledger import HOLD_SLOT_MS, LATE, Charge, QuotaStore, hold_slot

from .conftest import StoreFactory

_ids = itertools.count()


def cid() -> str:
    """A fresh call id."""
    return f"call-{next(_ids)}"

T0 = 1_790_000_000_000  # ms; any fixed instant (the stores never read a clock)
TTL = 15 * 60_000
MINUTE = 60_000


def rate(key: str = "rpm", amount: int = 1, capacity: int = 10) -> Charge:
    return Charge(key, amount, capacity, period_ms=MINUTE)


def budget(key: str = "day", amount: int = 100, capacity: int = 150) -> Charge:
    return Charge(key, amount, capacity, expires_ms=T0 + 86_400_000)


def test_an_empty_reservation_fits(store: QuotaStore) -> None:
    decision = store.reserve(cid(), [], T0, hold_slot(T0, TTL))
    assert decision.ok and decision.remaining == ()


def test_a_rate_admits_its_capacity_then_says_when_to_retry(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    oks = [store.reserve(cid(), [rate()], T0, slot) for _ in range(10)]
    assert all(d.ok for d in oks)
    assert [round(d.remaining[0]) for d in oks] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    refused = store.reserve(cid(), [rate()], T0, slot)
    assert not refused.ok and refused.refused == 0
    assert refused.retry_after_ms == 6_000  # one request drains in 60 s / 10
    assert not store.reserve(cid(), [rate()], T0 + 5_999, slot).ok
    assert store.reserve(cid(), [rate()], T0 + 6_000, slot).ok
    assert store.level(rate(), T0 + 6_000) == pytest.approx(10)
    assert store.level(rate(), T0 + 6_000 + MINUTE) == 0


def test_a_rate_charge_larger_than_what_has_drained_waits_for_the_excess(
        store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    tokens = Charge("tpm", 600, 1_000, period_ms=MINUTE)
    assert store.reserve(cid(), [tokens], T0, slot).ok
    refused = store.reserve(cid(), [tokens], T0, slot)
    assert refused.retry_after_ms == 12_000  # 200 over, draining 1,000 per minute
    assert refused.remaining == pytest.approx((400,))


def test_reservation_is_all_or_nothing(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert store.reserve(cid(), [budget("b", 100, 100)], T0, slot).ok
    decision = store.reserve(cid(), [rate("r"), budget("x", 50), budget("b", 1, 100)], T0, slot)
    assert not decision.ok and decision.refused == 2 and decision.retry_after_ms == 0
    assert decision.remaining == pytest.approx((10, 150, 0))
    assert store.level(rate("r"), T0) == 0
    assert store.level(budget("x"), T0) == 0


def test_settling_a_budget_replaces_the_hold_with_the_real_amount(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    first = budget(amount=100)
    a, b = cid(), cid()
    assert store.reserve(a, [first], T0, slot).ok
    assert not store.reserve(cid(), [first], T0, slot).ok  # 100 held + 100 > 150
    store.settle(a, [first], [30], T0 + 1)
    assert store.level(first, T0 + 1) == 30
    second = store.reserve(b, [first], T0 + 2, slot)
    assert second.ok and second.remaining == pytest.approx((20,))
    store.settle(b, [first], [100], T0 + 3)
    assert store.level(first, T0 + 3) == 130


def test_settling_a_rate_gives_back_what_was_not_used(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    tokens = Charge("tpm", 800, 1_000, period_ms=MINUTE)
    a, b, c = cid(), cid(), cid()
    assert store.reserve(a, [tokens], T0, slot).ok
    store.settle(a, [tokens], [50], T0)
    assert store.level(tokens, T0) == pytest.approx(50)
    assert store.reserve(b, [tokens], T0, slot).ok  # 50 + 800 fits
    store.settle(b, [tokens], [900], T0)  # more than reserved: the bucket takes it all
    assert store.level(tokens, T0) == pytest.approx(950)
    assert store.reserve(c, [Charge("tpm", 50, 1_000, period_ms=MINUTE)], T0 + 30_000, slot).ok
    store.settle(c, [Charge("tpm", 50, 1_000, period_ms=MINUTE)], [0], T0 + 30_000)
    assert store.level(tokens, T0 + 30_000) == pytest.approx(450)  # 950 - 500 drained


def test_holds_of_a_dead_process_expire_by_themselves(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    charge = budget(amount=100)
    assert store.reserve(cid(), [charge], T0, slot).ok  # never settled
    expiry = slot * HOLD_SLOT_MS
    assert expiry >= T0 + TTL
    assert store.level(charge, expiry - 1) == 100
    assert store.level(charge, expiry) == 0
    assert store.reserve(cid(), [charge], expiry, hold_slot(expiry, TTL)).ok


def test_a_late_settle_after_expiry_still_records_the_real_amount(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    charge = budget(amount=100)
    call = cid()
    assert store.reserve(call, [charge], T0, slot).ok
    late = slot * HOLD_SLOT_MS + 5
    store.settle(call, [charge], [40], late)
    assert store.level(charge, late) == 40


def test_holds_in_different_slots_expire_separately(store: QuotaStore) -> None:
    charge = budget(amount=50)
    early, later = hold_slot(T0, TTL), hold_slot(T0 + 2 * MINUTE, TTL)
    assert early < later
    first, second = cid(), cid()
    assert store.reserve(first, [charge], T0, early).ok
    assert store.reserve(second, [charge], T0 + 2 * MINUTE, later).ok
    assert store.level(charge, early * HOLD_SLOT_MS - 1) == 100
    assert store.level(charge, early * HOLD_SLOT_MS) == 50
    store.settle(second, [charge], [10], early * HOLD_SLOT_MS + 1)
    assert store.level(charge, early * HOLD_SLOT_MS + 1) == 10
    store.settle(first, [charge], [7], early * HOLD_SLOT_MS + 2)  # late: its hold expired
    assert store.level(charge, early * HOLD_SLOT_MS + 2) == 17


def test_keys_are_independent_and_may_hold_any_text(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    odd = ["tenant:a{b}|c", "subject:ünïcødé 😀", "tenant:a{b}|c:model:x/y", "k" * 300]
    for key in odd:
        assert store.reserve(cid(), [budget(key, 150, 150)], T0, slot).ok
    for key in odd:
        assert store.level(budget(key), T0) == 150
    assert store.level(budget("tenant:a"), T0) == 0


def test_zero_capacity_refuses_everything(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert not store.reserve(cid(), [budget(amount=1, capacity=0)], T0, slot).ok
    assert store.reserve(cid(), [budget(amount=0, capacity=0)], T0, slot).ok


def test_large_budgets_stay_exact(store: QuotaStore) -> None:
    # nano-USD: a $1M monthly budget is 1e15 units; sums must not round.
    slot = hold_slot(T0, TTL)
    charge = budget("usd", 999_999_999_999_999, 10**15)
    call = cid()
    assert store.reserve(call, [charge], T0, slot).ok
    store.settle(call, [charge], [999_999_999_999_998], T0)
    assert store.level(charge, T0) == 999_999_999_999_998
    assert store.reserve(cid(), [budget("usd", 2, 10**15)], T0, slot).ok
    assert not store.reserve(cid(), [budget("usd", 1, 10**15)], T0, slot).ok


def test_two_handles_on_one_backend_share_the_ledger(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    slot = hold_slot(T0, TTL)
    for _ in range(5):
        assert a.reserve(cid(), [rate()], T0, slot).ok
        assert b.reserve(cid(), [rate()], T0, slot).ok
    assert not a.reserve(cid(), [rate()], T0, slot).ok
    assert not b.reserve(cid(), [rate()], T0, slot).ok


def test_a_clock_slightly_behind_never_drains_backwards(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert store.reserve(cid(), [rate(amount=5)], T0, slot).ok
    assert store.reserve(cid(), [rate(amount=5)], T0 - 500, slot).ok  # another host, 0.5 s behind
    assert not store.reserve(cid(), [rate()], T0 - 500, slot).ok
    assert store.level(rate(), T0) == pytest.approx(10)


def test_a_zero_rate_refuses_and_advises_one_period(store: QuotaStore) -> None:
    decision = store.reserve(cid(), [rate(amount=1, capacity=0)], T0, hold_slot(T0, TTL))
    assert not decision.ok and decision.retry_after_ms == MINUTE


# -- idempotency: one call id, one effect, whatever the retries, timeouts and late arrivals ----


def test_a_settlement_sent_twice_counts_once(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    charges = [rate(), budget(amount=100), Charge("tpm", 800, 1_000, period_ms=MINUTE)]
    call = cid()
    assert store.reserve(call, charges, T0, slot).ok
    for attempt in range(3):  # the first answer was lost; the gateway and its journal resend
        store.settle(call, charges, [1, 40, 300], T0 + attempt)
    assert store.level(budget(), T0 + 5) == 40
    assert store.level(charges[2], T0) == pytest.approx(300)
    assert store.level(rate(), T0) == pytest.approx(1)


def test_a_repeated_settlement_never_takes_another_calls_hold(store: QuotaStore) -> None:
    """Two calls hold in one slot; the first one's settlement, delivered three times, must
    leave the second one's hold whole (a summed hold lost 30% of a live reservation so)."""
    slot = hold_slot(T0, TTL)
    first, second = cid(), cid()
    assert store.reserve(first, [budget(amount=100, capacity=300)], T0, slot).ok
    assert store.reserve(second, [budget(amount=100, capacity=300)], T0, slot).ok
    for _ in range(3):
        store.settle(first, [budget(amount=100, capacity=300)], [30], T0)
    assert store.level(budget(), T0) == 130  # 30 settled + the second call's 100
    assert not store.reserve(cid(), [budget(amount=171, capacity=300)], T0, slot).ok
    assert store.reserve(cid(), [budget(amount=170, capacity=300)], T0, slot).ok


def test_a_reservation_sent_twice_holds_once(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    call = cid()
    first = store.reserve(call, [rate(), budget(amount=100)], T0, slot)
    again = store.reserve(call, [rate(), budget(amount=100)], T0, slot)
    assert first.ok and again.ok
    assert first.remaining == pytest.approx((9, 50))
    assert again.remaining == pytest.approx((9, 50))
    assert store.level(budget(), T0) == 100
    assert store.level(rate(), T0) == pytest.approx(1)


def test_a_void_releases_everything_the_call_holds(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    call, other = cid(), cid()
    charges = [rate(), budget(amount=100, capacity=300)]
    assert store.reserve(other, charges, T0, slot).ok
    assert store.reserve(call, charges, T0, slot).ok
    store.void(call, charges, T0 + 10, slot)
    store.void(call, charges, T0 + 20, slot)  # sent again: nothing more
    assert store.level(budget(), T0 + 20) == 100  # the other call's hold only
    assert store.level(rate(), T0) == pytest.approx(1, abs=0.01)  # the other call's request
    store.settle(call, charges, [1, 50], T0 + 30)  # a settlement after the void: nothing
    assert store.level(budget(), T0 + 30) == 100
    store.settle(other, charges, [1, 60], T0 + 40)
    assert store.level(budget(), T0 + 40) == 60
    assert store.level(rate(), T0) == pytest.approx(1, abs=0.01)


def test_a_reservation_arriving_after_its_void_holds_nothing(store: QuotaStore) -> None:
    """The gateway gave up on a reservation (timeout) and voided it; the store then runs the
    reservation it had queued: it must change nothing."""
    slot = hold_slot(T0, TTL)
    call = cid()
    charges = [rate(), budget(amount=100)]
    store.void(call, charges, T0 + 2_000, slot)
    late = store.reserve(call, charges, T0, slot)
    assert not late.ok and late.refused == LATE
    assert late.remaining == pytest.approx((10, 150))
    assert store.level(budget(), T0) == 0 and store.level(rate(), T0) == 0
    assert store.reserve(cid(), [budget(amount=150)], T0, slot).ok  # all of it is free
    # the tombstone lasts while the reservation's hold could count: still there at its slot
    expiry = slot * HOLD_SLOT_MS
    assert store.reserve(call, charges, expiry - 1, slot).refused == LATE


def test_a_reservation_arriving_after_its_settlement_holds_nothing(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    call = cid()
    assert store.reserve(call, [budget(amount=100)], T0, slot).ok
    store.settle(call, [budget(amount=100)], [20], T0 + 1)
    late = store.reserve(call, [budget(amount=100)], T0, slot)
    assert not late.ok and late.refused == LATE
    assert store.level(budget(), T0 + 2) == 20


def test_voiding_a_refused_call_changes_nothing(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert store.reserve(cid(), [budget(amount=100)], T0, slot).ok
    refused = cid()
    assert not store.reserve(refused, [budget(amount=100)], T0, slot).ok
    store.void(refused, [budget(amount=100)], T0, slot)
    assert store.level(budget(), T0) == 100


def test_operations_of_one_call_are_independent_of_other_handles(
        store_factory: StoreFactory) -> None:
    """A settlement retried by another process (a journal replayed after a restart) still
    counts once."""
    a, b = store_factory(), store_factory()
    slot = hold_slot(T0, TTL)
    call = cid()
    assert a.reserve(call, [budget(amount=100)], T0, slot).ok
    a.settle(call, [budget(amount=100)], [40], T0)
    b.settle(call, [budget(amount=100)], [40], T0 + 1)
    assert b.level(budget(), T0 + 1) == 40
