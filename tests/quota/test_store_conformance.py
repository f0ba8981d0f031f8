"""One contract, every store: memory, SQLite, Redis (real redis-server) and DynamoDB (moto)."""

from __future__ import annotations

import pytest

from bedrock_gateway.quota.ledger import HOLD_SLOT_MS, Charge, QuotaStore, hold_slot

from .conftest import StoreFactory

T0 = 1_790_000_000_000  # ms; any fixed instant (the stores never read a clock)
TTL = 15 * 60_000
MINUTE = 60_000


def rate(key: str = "rpm", amount: int = 1, capacity: int = 10) -> Charge:
    return Charge(key, amount, capacity, period_ms=MINUTE)


def budget(key: str = "day", amount: int = 100, capacity: int = 150) -> Charge:
    return Charge(key, amount, capacity, expires_ms=T0 + 86_400_000)


def test_an_empty_reservation_fits(store: QuotaStore) -> None:
    decision = store.reserve([], T0, hold_slot(T0, TTL))
    assert decision.ok and decision.remaining == ()


def test_a_rate_admits_its_capacity_then_says_when_to_retry(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    oks = [store.reserve([rate()], T0, slot) for _ in range(10)]
    assert all(d.ok for d in oks)
    assert [round(d.remaining[0]) for d in oks] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    refused = store.reserve([rate()], T0, slot)
    assert not refused.ok and refused.refused == 0
    assert refused.retry_after_ms == 6_000  # one request drains in 60 s / 10
    assert not store.reserve([rate()], T0 + 5_999, slot).ok
    assert store.reserve([rate()], T0 + 6_000, slot).ok
    assert store.level(rate(), T0 + 6_000) == pytest.approx(10)
    assert store.level(rate(), T0 + 6_000 + MINUTE) == 0


def test_a_rate_charge_larger_than_what_has_drained_waits_for_the_excess(
        store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    tokens = Charge("tpm", 600, 1_000, period_ms=MINUTE)
    assert store.reserve([tokens], T0, slot).ok
    refused = store.reserve([tokens], T0, slot)
    assert refused.retry_after_ms == 12_000  # 200 over, draining 1,000 per minute
    assert refused.remaining == pytest.approx((400,))


def test_reservation_is_all_or_nothing(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert store.reserve([budget("b", 100, 100)], T0, slot).ok
    decision = store.reserve([rate("r"), budget("x", 50), budget("b", 1, 100)], T0, slot)
    assert not decision.ok and decision.refused == 2 and decision.retry_after_ms == 0
    assert decision.remaining == pytest.approx((10, 150, 0))
    assert store.level(rate("r"), T0) == 0
    assert store.level(budget("x"), T0) == 0


def test_settling_a_budget_replaces_the_hold_with_the_real_amount(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    first = budget(amount=100)
    assert store.reserve([first], T0, slot).ok
    assert not store.reserve([first], T0, slot).ok  # 100 held + 100 > 150
    store.settle([first], [30], T0 + 1, slot)
    assert store.level(first, T0 + 1) == 30
    second = store.reserve([first], T0 + 2, slot)
    assert second.ok and second.remaining == pytest.approx((20,))
    store.settle([first], [100], T0 + 3, slot)
    assert store.level(first, T0 + 3) == 130


def test_settling_a_rate_gives_back_what_was_not_used(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    tokens = Charge("tpm", 800, 1_000, period_ms=MINUTE)
    assert store.reserve([tokens], T0, slot).ok
    store.settle([tokens], [50], T0, slot)
    assert store.level(tokens, T0) == pytest.approx(50)
    assert store.reserve([tokens], T0, slot).ok  # 50 + 800 fits
    store.settle([tokens], [900], T0, slot)  # more than reserved: the bucket takes it all
    assert store.level(tokens, T0) == pytest.approx(950)
    store.settle([tokens], [0], T0 + 30_000, slot)  # half a minute drains 500, returns 800
    assert store.level(tokens, T0 + 30_000) == 0


def test_holds_of_a_dead_process_expire_by_themselves(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    charge = budget(amount=100)
    assert store.reserve([charge], T0, slot).ok  # never settled
    expiry = slot * HOLD_SLOT_MS
    assert expiry >= T0 + TTL
    assert store.level(charge, expiry - 1) == 100
    assert store.level(charge, expiry) == 0
    assert store.reserve([charge], expiry, hold_slot(expiry, TTL)).ok


def test_a_late_settle_after_expiry_still_records_the_real_amount(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    charge = budget(amount=100)
    assert store.reserve([charge], T0, slot).ok
    late = slot * HOLD_SLOT_MS + 5
    store.settle([charge], [40], late, slot)
    assert store.level(charge, late) == 40


def test_holds_in_different_slots_expire_separately(store: QuotaStore) -> None:
    charge = budget(amount=50)
    early, later = hold_slot(T0, TTL), hold_slot(T0 + 2 * MINUTE, TTL)
    assert early < later
    assert store.reserve([charge], T0, early).ok
    assert store.reserve([charge], T0 + 2 * MINUTE, later).ok
    assert store.level(charge, early * HOLD_SLOT_MS) == 50
    store.settle([charge], [10], early * HOLD_SLOT_MS + 1, later)
    assert store.level(charge, early * HOLD_SLOT_MS + 1) == 10


def test_keys_are_independent_and_may_hold_any_text(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    odd = ["tenant:a{b}|c", "subject:ünïcødé 😀", "tenant:a{b}|c:model:x/y", "k" * 300]
    for key in odd:
        assert store.reserve([budget(key, 150, 150)], T0, slot).ok
    for key in odd:
        assert store.level(budget(key), T0) == 150
    assert store.level(budget("tenant:a"), T0) == 0


def test_zero_capacity_refuses_everything(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert not store.reserve([budget(amount=1, capacity=0)], T0, slot).ok
    assert store.reserve([budget(amount=0, capacity=0)], T0, slot).ok


def test_large_budgets_stay_exact(store: QuotaStore) -> None:
    # nano-USD: a $1M monthly budget is 1e15 units; sums must not round.
    slot = hold_slot(T0, TTL)
    charge = budget("usd", 999_999_999_999_999, 10**15)
    assert store.reserve([charge], T0, slot).ok
    store.settle([charge], [999_999_999_999_998], T0, slot)
    assert store.level(charge, T0) == 999_999_999_999_998
    assert store.reserve([budget("usd", 2, 10**15)], T0, slot).ok
    assert not store.reserve([budget("usd", 1, 10**15)], T0, slot).ok


def test_two_handles_on_one_backend_share_the_ledger(store_factory: StoreFactory) -> None:
    a, b = store_factory(), store_factory()
    slot = hold_slot(T0, TTL)
    for _ in range(5):
        assert a.reserve([rate()], T0, slot).ok
        assert b.reserve([rate()], T0, slot).ok
    assert not a.reserve([rate()], T0, slot).ok
    assert not b.reserve([rate()], T0, slot).ok


def test_a_clock_slightly_behind_never_drains_backwards(store: QuotaStore) -> None:
    slot = hold_slot(T0, TTL)
    assert store.reserve([rate(amount=5)], T0, slot).ok
    assert store.reserve([rate(amount=5)], T0 - 500, slot).ok  # another host, 0.5 s behind
    assert not store.reserve([rate()], T0 - 500, slot).ok
    assert store.level(rate(), T0) == pytest.approx(10)


def test_a_zero_rate_refuses_and_advises_one_period(store: QuotaStore) -> None:
    decision = store.reserve([rate(amount=1, capacity=0)], T0, hold_slot(T0, TTL))
    assert not decision.ok and decision.retry_after_ms == MINUTE
