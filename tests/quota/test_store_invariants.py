"""The budget guarantee against every store: no interleaving of reservations and settlements
(hypothesis stateful) and no race of 64 threads can make settled spend exceed a budget, as long
as every call's real usage is at most what it reserved (true of the ``bytes`` input bound)."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from bedrock_gateway.quota.ledger import HOLD_SLOT_MS, Charge, QuotaStore, hold_slot

from .conftest import StoreFactory

T0 = 1_790_000_000_000
TTL = 5 * 60_000
EXAMPLES = {"memory": 200, "sqlite": 60, "redis": 60, "dynamodb": 12}


def budget(key: str, amount: int, capacity: int) -> Charge:
    return Charge(key, amount, capacity, expires_ms=T0 + 86_400_000)


def test_no_interleaving_overspends_a_budget(store_factory: StoreFactory,
                                             request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["store_factory"]

    class Ledger(RuleBasedStateMachine):
        calls = Bundle("calls")

        def __init__(self) -> None:
            super().__init__()
            self.store: QuotaStore = store_factory()
            tag = uuid.uuid4().hex[:8]
            self.keys = (f"a-{tag}", f"b-{tag}")
            self.capacity = (1_000, 700)
            self.now = T0
            self.settled = [0, 0]
            self.live: dict[int, tuple[tuple[int, int], int]] = {}  # id -> (amounts, slot)
            self.tag = tag
            self.next_id = 0

        def charges(self, amounts: tuple[int, int]) -> list[Charge]:
            return [budget(k, a, c) for k, a, c in zip(self.keys, amounts, self.capacity,
                                                        strict=True)]

        @rule(target=calls, a=st.integers(0, 450), b=st.integers(0, 300))
        def reserve(self, a: int, b: int) -> int:
            slot = hold_slot(self.now, TTL)
            self.next_id += 1
            decision = self.store.reserve(f"{self.tag}-{self.next_id}", self.charges((a, b)),
                                          self.now, slot)
            fits = all(self.level(i) + amount <= self.capacity[i]
                       for i, amount in enumerate((a, b)))
            assert decision.ok == fits
            if decision.ok:
                self.live[self.next_id] = ((a, b), slot)
            return self.next_id

        @rule(call=consumes(calls), used=st.floats(0, 1), times=st.integers(1, 3))
        def settle(self, call: int, used: float, times: int) -> None:
            if call not in self.live:  # refused, or its process died (hold expired)
                return
            amounts, _ = self.live.pop(call)
            actual = [int(amount * used) for amount in amounts]  # never more than reserved
            for _ in range(times):  # a settlement resent (lost answers) counts once
                self.store.settle(f"{self.tag}-{call}", self.charges(amounts), actual,
                                  self.now)
            for i, value in enumerate(actual):
                self.settled[i] += value

        @rule(call=consumes(calls))
        def void(self, call: int) -> None:
            """The gateway gave up on the reservation (no answer): it holds nothing more."""
            found = self.live.pop(call, None)
            amounts = found[0] if found else (1, 1)
            self.store.void(f"{self.tag}-{call}", self.charges(amounts), self.now,
                            found[1] if found else hold_slot(self.now, TTL))

        @rule(ms=st.integers(0, 4 * 60_000))
        def advance(self, ms: int) -> None:
            self.now += ms
            # a call whose hold expired belongs to a process that died: it never settles
            self.live = {k: v for k, v in self.live.items() if v[1] * HOLD_SLOT_MS > self.now}

        def level(self, i: int) -> int:
            return self.settled[i] + sum(amounts[i] for amounts, _ in self.live.values())

        @invariant()
        def spend_within_budget_and_ledger_exact(self) -> None:
            for i, key in enumerate(self.keys):
                assert self.settled[i] <= self.capacity[i]
                assert self.store.level(budget(key, 0, self.capacity[i]), self.now) == \
                    self.level(i)

    run_state_machine_as_test(Ledger, settings=settings(
        max_examples=EXAMPLES[kind], stateful_step_count=25, deadline=None,
        suppress_health_check=list(HealthCheck)))


def test_64_threads_never_overspend(store_factory: StoreFactory,
                                    request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["store_factory"]
    rounds = 4 if kind == "dynamodb" else 25
    capacity = 64 * rounds * 15  # about half of what the threads would settle
    key = f"t-{uuid.uuid4().hex[:8]}"
    settled: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(64)
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        store = store_factory()
        start.wait()
        try:
            for r in range(rounds):
                amount = rng.randint(1, 120)
                slot = hold_slot(T0, TTL)
                call = f"{key}-{seed}-{r}"
                decision = store.reserve(call, [budget(key, amount, capacity)], T0, slot)
                if not decision.ok:
                    with lock:
                        refused.append(amount)
                    continue
                actual = rng.randint(0, amount)
                store.settle(call, [budget(key, amount, capacity)], [actual], T0)
                with lock:
                    settled.append(actual)
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert settled and refused
    assert sum(settled) <= capacity
    assert store_factory().level(budget(key, 0, capacity), T0) == sum(settled)
