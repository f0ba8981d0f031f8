"""DynamoDBStore beyond the shared contract, against moto's server: requests per call, the item
layout, create_table, the optimistic retry path, and errors."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError

from bedrock_gateway.quota.ledger import KEEP_CALLS_MS, Charge, QuotaStoreError, hold_slot
from bedrock_gateway.quota.stores import dynamodb as dynamodb_module
from bedrock_gateway.quota.stores import open_store
from bedrock_gateway.quota.stores.dynamodb import DynamoDBStore, create_table

from .conftest import _free_port

T0 = 1_790_000_000_000
MINUTE = 60_000
DAY = 86_400_000
SLOT = hold_slot(T0, 15 * MINUTE)
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def rate(key: str = "rpm", capacity: int = 10) -> Charge:
    return Charge(key, 1, capacity, period_ms=MINUTE)


def budget(key: str = "day", amount: int = 1, capacity: int = 1_000) -> Charge:
    return Charge(key, amount, capacity, expires_ms=T0 + DAY)


@pytest.fixture
def endpoint(dynamodb_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return dynamodb_url


@pytest.fixture
def raw(endpoint: str) -> Iterator[Any]:
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint,
                          config=Config(retries={"mode": "standard", "max_attempts": 1}))
    yield client
    client.close()


@pytest.fixture
def table(endpoint: str) -> str:
    name = f"q{uuid.uuid4().hex[:12]}"
    create_table(name, region="us-east-1", endpoint_url=endpoint)
    return name


@pytest.fixture
def store(table: str, endpoint: str) -> Iterator[DynamoDBStore]:
    store = DynamoDBStore(table, region="us-east-1", endpoint_url=endpoint)
    yield store
    store.close()


def count_calls(store: DynamoDBStore) -> Counter[str]:
    calls: Counter[str] = Counter()
    store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    return calls


@pytest.mark.parametrize("charges", [[rate()], [rate(), rate("tpm", 1_000), budget()]],
                         ids=["one key", "three keys"])
def test_reserve_and_settle_take_one_read_and_one_write_each(
        store: DynamoDBStore, charges: list[Charge]) -> None:
    calls = count_calls(store)
    for i in range(3):
        assert store.reserve(f"c{i}", charges, T0 + i, SLOT).ok
        store.settle(f"c{i}", charges, [0] * len(charges), T0 + i)
    assert sum(calls[op] for op in WRITES) == 2 * 3  # the call's record rides along
    assert sum(calls.values()) == 4 * 3
    assert set(calls) == {"TransactGetItems", "TransactWriteItems"}
    calls.clear()
    store.settle("c0", charges, [0] * len(charges), T0 + 5)  # applied already: a read only
    assert calls == {"TransactGetItems": 1}


def test_a_refused_reservation_writes_nothing(store: DynamoDBStore) -> None:
    assert store.reserve("a", [budget(amount=1_000)], T0, SLOT).ok
    calls = count_calls(store)
    assert not store.reserve("b", [rate(), budget()], T0, SLOT).ok
    assert sum(calls[op] for op in WRITES) == 0 and sum(calls.values()) == 1


def test_items_follow_the_documented_layout(store: DynamoDBStore, table: str, raw: Any) -> None:
    assert store.reserve("a", [rate(), budget(amount=7)], T0, SLOT).ok
    record = raw.get_item(TableName=table, Key={"pk": {"S": "#call#a"}})["Item"]
    assert json.loads(record["s"]["S"]) == {"c": "h", "n": SLOT}
    assert record["expires_at"] == {"N": str((SLOT * 60_000 + KEEP_CALLS_MS) // 1000)}
    store.settle("a", [rate(), budget(amount=7)], [1, 5], T0 + 1_500)
    record = raw.get_item(TableName=table, Key={"pk": {"S": "#call#a"}})["Item"]
    assert json.loads(record["s"]["S"]) == {"c": "s", "n": SLOT}
    assert record["expires_at"] == {"N": str((T0 + 1_500 + KEEP_CALLS_MS + 999) // 1000)}
    rpm = raw.get_item(TableName=table, Key={"pk": {"S": "rpm"}})["Item"]
    day = raw.get_item(TableName=table, Key={"pk": {"S": "day"}})["Item"]
    assert json.loads(rpm["s"]["S"]) == {"l": pytest.approx(1 - 15 / 60), "t": T0 + 1_500}
    assert json.loads(day["s"]["S"]) == {"u": 5, "h": {}}
    assert rpm["v"] == day["v"] == {"N": "2"}
    assert rpm["w"] == day["w"] == record["w"]  # one write, one transaction
    assert rpm["expires_at"] == {"N": str((T0 + 1_500 + MINUTE + 999) // 1000)}
    assert day["expires_at"] == {"N": str((T0 + DAY) // 1000 + 86_400)}


def test_create_table_is_idempotent_and_turns_on_ttl(endpoint: str, raw: Any) -> None:
    name = f"q{uuid.uuid4().hex[:12]}"
    for _ in range(2):
        create_table(name, region="us-east-1", endpoint_url=endpoint)
    described = raw.describe_table(TableName=name)["Table"]
    assert described["TableStatus"] == "ACTIVE"
    assert described["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = raw.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    create_table(name, client=raw)  # with the caller's client


def test_create_table_refuses_a_table_keyed_otherwise(endpoint: str, raw: Any) -> None:
    name = f"q{uuid.uuid4().hex[:12]}"
    raw.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    with pytest.raises(QuotaStoreError, match="key schema"):
        create_table(name, client=raw)


def test_a_missing_table_is_a_store_error(endpoint: str) -> None:
    store = DynamoDBStore("absent", region="us-east-1", endpoint_url=endpoint)
    for charges in ([rate()], [rate(), budget()]):
        with pytest.raises(QuotaStoreError, match="ResourceNotFound"):
            store.reserve("a", charges, T0, SLOT)
    with pytest.raises(QuotaStoreError, match="ResourceNotFound"):
        store.level(rate(), T0)
    store.close()


def test_an_unreachable_endpoint_is_a_store_error(endpoint: str) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1",
                          endpoint_url=f"http://127.0.0.1:{_free_port()}",
                          config=Config(retries={"mode": "standard", "max_attempts": 1}))
    store = DynamoDBStore("quota", client=client)
    with pytest.raises(QuotaStoreError, match="Could not connect"):
        store.reserve("a", [rate()], T0, SLOT)
    store.close()
    client.close()


def test_a_write_that_lost_the_race_is_recomputed(store: DynamoDBStore, table: str,
                                                  raw: Any) -> None:
    """Another process voids a call (a lone put) between this store's read and its write."""
    calls = count_calls(store)
    rival = {"pk": {"S": "#call#a"}, "s": {"S": json.dumps({"c": "h", "n": SLOT})},
             "v": {"N": "1"}}

    def interfere(**_: Any) -> None:
        if calls["PutItem"] == 1:
            raw.put_item(TableName=table, Item=rival)

    store.client.meta.events.register("before-call.dynamodb.PutItem", interfere)
    store.void("a", [rate()], T0, SLOT)  # no record yet: a tombstone, one put
    # the put found the record the rival wrote (returned with the failure): held, so the
    # void releases the call's hold (none here: the bucket stays empty) in a transaction
    assert calls == {"TransactGetItems": 1, "PutItem": 1, "TransactWriteItems": 1}
    item = raw.get_item(TableName=table, Key={"pk": {"S": "#call#a"}})["Item"]
    assert json.loads(item["s"]["S"]) == {"c": "v", "n": SLOT}


def test_a_transaction_that_lost_the_race_is_recomputed(store: DynamoDBStore, table: str,
                                                        raw: Any) -> None:
    charges = [rate(), budget(amount=10)]
    assert store.reserve("a", charges, T0, SLOT).ok
    calls = count_calls(store)
    rival = {"pk": {"S": "day"}, "s": {"S": json.dumps({"u": 500, "h": {}})}, "v": {"N": "9"}}

    def interfere(**_: Any) -> None:
        if calls["TransactWriteItems"] == 1:
            raw.put_item(TableName=table, Item=rival)

    store.client.meta.events.register("before-call.dynamodb.TransactWriteItems", interfere)
    assert store.reserve("b", charges, T0, SLOT).ok
    assert calls == {"TransactGetItems": 2, "TransactWriteItems": 2}
    assert store.level(rate(), T0) == pytest.approx(2)  # not 3: the failed attempt left nothing
    assert store.level(budget(), T0) == 510


@pytest.mark.parametrize("operation", ["TransactWriteItems", "PutItem"])
def test_a_write_resent_after_its_answer_was_lost_counts_once(
        store: DynamoDBStore, operation: str) -> None:
    """botocore resends a write whose answer it never got; the resend fails its condition and
    the store recognises the item it finds as its own write (a put) or finds the call's record
    (a transaction)."""
    lost: list[str] = []

    def deliver_then_drop(request: Any, **_: Any) -> None:
        if not lost:  # the write lands, then the connection drops before the answer
            lost.append(request.url)
            answer = urllib3.request("POST", request.url, body=request.body,
                                     headers=dict(request.headers), timeout=10)
            assert answer.status == 200
            raise ConnectionClosedError(endpoint_url=request.url)

    def retry_at_once(caught_exception: Any = None, **_: Any) -> int | None:
        return 0 if isinstance(caught_exception, ConnectionClosedError) else None

    events = store.client.meta.events
    events.register(f"before-send.dynamodb.{operation}", deliver_then_drop)
    events.register_first(f"needs-retry.dynamodb.{operation}", retry_at_once)
    calls = count_calls(store)
    if operation == "PutItem":  # a lone put: the tombstone of a call never seen
        store.void("a", [rate()], T0, SLOT)
        assert lost and calls == {"TransactGetItems": 1, "PutItem": 1}
        assert not store.reserve("a", [rate()], T0, SLOT).ok
        assert store.level(rate(), T0) == 0
        return
    assert store.reserve("a", [rate()], T0, SLOT).ok
    assert lost and calls["TransactWriteItems"] == 1
    assert store.level(rate(), T0) == pytest.approx(1)  # not 2


def test_turns_are_first_come_first_served_and_may_be_given_up() -> None:
    turns = dynamodb_module._Turns()
    assert turns.acquire(1)
    assert not turns.acquire(0.01)  # gives up, and leaves the queue
    order: list[int] = []

    def take(i: int) -> None:
        assert turns.acquire(10)
        order.append(i)
        turns.release()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(6)]
    for i, t in enumerate(threads):
        t.start()
        while len(turns._queue) < i + 2:  # queued behind the holder, in this order
            time.sleep(0.001)
    turns.release()
    for t in threads:
        t.join()
    assert order == list(range(6))
    assert turns.acquire(0)


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise moto's DynamoDB requests. Its server runs each request on a thread and checks a
    put's condition before storing it without a lock (moto/dynamodb/models/table.py:668-691);
    a failed TransactWriteItems restores a whole-table snapshot
    (moto/dynamodb/models/__init__.py:613, 714), undoing others' writes. Real DynamoDB does
    neither, so racing threads on moto could lose updates without the store being at fault."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def serialised(self: Any) -> Any:
        with lock:
            return call_action(self)

    monkeypatch.setattr(DynamoHandler, "call_action", serialised)


@pytest.mark.parametrize("keys", [1, 2], ids=["put", "transaction"])
def test_stores_racing_on_one_key_admit_exactly_the_capacity(
        table: str, endpoint: str, atomic_moto: None, monkeypatch: pytest.MonkeyPatch,
        keys: int) -> None:
    # no turns: threads of one process race like separate processes
    no_turns = SimpleNamespace(acquire=lambda timeout: True, release=lambda: None)
    monkeypatch.setattr(dynamodb_module, "_STRIPES", (no_turns,))
    charges = [rate(capacity=30), budget()][:keys]
    stores = [DynamoDBStore(table, region="us-east-1", endpoint_url=endpoint) for _ in range(4)]
    conflicts: list[str] = []

    def seen(parsed: dict[str, Any], **_: Any) -> None:
        code = parsed.get("Error", {}).get("Code")
        if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            conflicts.append(code)

    for s in stores:
        s.client.meta.events.register("after-call.dynamodb.*", seen)
    admitted: list[bool] = []
    start = threading.Barrier(len(stores))

    def worker(store: DynamoDBStore) -> None:
        start.wait()
        admitted.extend(store.reserve(f"{id(store)}-{i}", charges, T0, SLOT).ok
                        for i in range(10))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 30 and len(admitted) == 40
    assert stores[0].level(charges[0], T0) == 30
    assert conflicts  # they did race, and the conditions caught it
    for s in stores:
        s.close()


def test_the_url_names_table_region_and_endpoint(endpoint: str, table: str) -> None:
    store = open_store(f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")
    assert isinstance(store, DynamoDBStore)
    assert store.reserve("a", [rate()], T0, SLOT).ok
    store.close()
