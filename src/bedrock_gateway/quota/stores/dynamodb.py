"""A quota store in a DynamoDB table, shared by gateways on any number of hosts.

Table (:func:`create_table` makes it: on-demand billing, TTL on ``expires_at``)::

    pk          S  partition key: the charge key (no sort key); "#call#<id>" for a call's record
    s           S  the ledger state as compact JSON (exact for integers of any size); a call's
                   record: {"c": "h" (held) | "s" (settled) | "v" (voided), "n": slot}
    v           N  version: 1 on the first write, +1 on each one after
    w           S  a random id of the write that made this version
    expires_at  N  TTL, epoch seconds: when a rate key's bucket has drained (its last write plus
                   a period); a day after a calendar key's period ends; a call's record
                   ``keep_ms`` (an hour) after its holds expire (settled: after the settlement);
                   absent: never

Concurrency is optimistic. An operation reads its call's record and its keys in one
``TransactGetItems`` (strongly consistent), applies the ledger's pure functions and writes the
new states and the call's record in ONE request, ``TransactWriteItems`` (``PutItem`` for the
record alone: the void of a call never seen), each put conditioned on the version it read
(``attribute_not_exists(pk)`` for an item it found empty), so an operation applies once per call
however often it is sent. A refused reservation writes nothing, nor does an operation its
call's record shows applied already. Per call: one read and one write request to reserve, the
same to settle — at most 2 write requests (transactional writes cost 2 WCUs per item: 8 per
operation for three limits and the record).

When another writer got in first the operation reads again (a failed ``PutItem`` returns the
item) and retries after a short jittered backoff, up to ``_MAX_ATTEMPTS`` times or ``_RETRY_S``
seconds; then, like any client or connection error, it raises :class:`QuotaStoreError`. A write
botocore resends after losing its answer fails its condition: the store knows its own put by
``w``, and a transaction's by the call's record (``TransactWriteItems`` is also idempotent by
its client request token). An operation whose answer is lost altogether raises; the gateway's
journal sends it again later, and the record makes that a no-op if the first one landed.

Calls in one process that share a key take turns, first come first served (``_STRIPES``),
rather than fail each other's conditions, each failure costing a write unit and a backoff;
correctness never rests on the turns (a call waiting ``_RETRY_S`` for one goes ahead anyway).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bedrock_gateway.quota.ledger import (
    HELD,
    KEEP_CALLS_MS,
    SETTLED,
    VOIDED,
    Charge,
    Decision,
    QuotaStore,
    QuotaStoreError,
    Record,
    State,
    current_level,
    finish_plan,
    keep_until,
    repeat_decision,
    reserve_states,
    settle_state,
)

__all__ = ["CALL_PREFIX", "KEY_ATTRIBUTE", "TTL_ATTRIBUTE", "DynamoDBStore", "create_table"]

CALL_PREFIX = "#call#"  # a call record's pk: the prefix and the call id
KEY_ATTRIBUTE = "pk"
TTL_ATTRIBUTE = "expires_at"
_MAX_ATTEMPTS = 100
_RETRY_S = 5.0
_BACKOFF_S = (0.002, 0.05)  # the first backoff's ceiling, doubling up to the second
_RETRYABLE = {"ConditionalCheckFailed", "TransactionConflict", "ThrottlingError", "None"}
T = TypeVar("T")
_Items = dict[str, tuple[State, int, str]]  # key -> (state, version, write id)
_Writes = dict[str, tuple[State, int | None]]  # key -> (new state, TTL epoch seconds)

_session: Any = None  # one boto3 session makes every client (it caches the service model)
_session_lock = threading.Lock()  # and is not thread-safe


def _client(region: str | None, endpoint_url: str | None) -> Any:
    global _session
    config = Config(connect_timeout=2, read_timeout=5, max_pool_connections=64,
                    retries={"mode": "standard", "max_attempts": 3})
    try:
        with _session_lock:
            if _session is None:
                _session = boto3.session.Session()
            return _session.client("dynamodb", region_name=region, endpoint_url=endpoint_url,
                                   config=config)
    except BotoCoreError as exc:
        raise QuotaStoreError(f"cannot make a DynamoDB client: {exc}") from exc


class _Conflict(Exception):
    """Another writer changed a key since it was read (``args``: the keys now, if known)."""


class _Turns:
    """A lock taken first come, first served (``threading.Lock`` lets its releaser barge in)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: deque[threading.Lock] = deque()  # the holder's, then the waiters'

    def acquire(self, timeout: float) -> bool:
        mine = threading.Lock()
        mine.acquire()
        with self._mutex:
            self._queue.append(mine)
            if len(self._queue) == 1:
                return True
        if mine.acquire(timeout=timeout):
            return True
        with self._mutex:  # give up, unless handed the turn meanwhile
            if self._queue[0] is mine:
                return True
            self._queue.remove(mine)
            return False

    def release(self) -> None:
        with self._mutex:
            self._queue.popleft()
            if self._queue:
                self._queue[0].release()


_STRIPES = tuple(_Turns() for _ in range(256))


def _record(item: tuple[State, int, str] | None) -> Record | None:
    if item is None:
        return None
    state = item[0]
    try:
        return str(state["c"]), int(state["n"])
    except (KeyError, TypeError, ValueError) as exc:
        raise QuotaStoreError(f"unreadable quota call record {state!r}") from exc


def _ttl(charge: Charge, state: State) -> int | None:
    if charge.is_rate:
        return -(-(int(state["t"]) + charge.period_ms) // 1000)
    return charge.expires_ms // 1000 + 86_400 if charge.expires_ms else None  # a day's grace


class DynamoDBStore(QuotaStore):
    """Counters in the DynamoDB ``table`` (see the module docstring for its schema)."""

    def __init__(self, table: str, *, region: str | None = None,
                 endpoint_url: str | None = None, client: Any = None,
                 keep_ms: int = KEEP_CALLS_MS) -> None:
        self.table = table
        self._keep_ms = keep_ms
        self._owned = client is None
        self.client: Any = _client(region, endpoint_url) if client is None else client
        self._scope = (self.client.meta.endpoint_url, self.client.meta.region_name, table)

    def reserve(self, call: str, charges: Sequence[Charge], now_ms: int,
                slot: int) -> Decision:
        if not charges:
            return Decision(True, ())
        record_key = CALL_PREFIX + call

        def step(items: _Items) -> tuple[Decision, _Writes | None]:
            states = [items[c.key][0] if c.key in items else None for c in charges]
            record = _record(items.get(record_key))
            if record is not None:
                return repeat_decision(record[0], states, charges, now_ms), None
            decision, new = reserve_states(states, charges, now_ms, slot)
            if new is None:
                return decision, None
            writes: _Writes = {c.key: (st, _ttl(c, st)) for c, st in zip(charges, new,
                                                                          strict=True)}
            writes[record_key] = self._record_item(HELD, slot, now_ms)
            return decision, writes

        return self._update([record_key, *(c.key for c in charges)], step)

    def _finish(self, call: str, charges: Sequence[Charge], actual: Sequence[int] | None,
                now_ms: int, slot: int) -> None:
        record_key = CALL_PREFIX + call

        def step(items: _Items) -> tuple[None, _Writes | None]:
            record = _record(items.get(record_key))
            if record is not None and record[0] != HELD:
                return None, None  # applied already: nothing to write
            apply, held_in = finish_plan(record, actual is None)
            writes: _Writes = {}
            if apply:
                amounts = actual if actual is not None else [0] * len(charges)
                for charge, amount in zip(charges, amounts, strict=True):
                    old = writes[charge.key][0] if charge.key in writes else \
                        items[charge.key][0] if charge.key in items else None
                    state = settle_state(old, charge, amount, now_ms, held_in)
                    writes[charge.key] = (state, _ttl(charge, state))
            status = SETTLED if actual is not None else VOIDED
            writes[record_key] = self._record_item(
                status, record[1] if record is not None else slot, now_ms)
            return None, writes

        self._update([record_key, *(c.key for c in charges)], step)

    def _record_item(self, status: str, slot: int, now_ms: int) -> tuple[State, int]:
        until = keep_until(status, slot, now_ms, self._keep_ms)
        return {"c": status, "n": slot}, -(-until // 1000)

    def level(self, charge: Charge, now_ms: int) -> float:
        state = self._read([charge.key]).get(charge.key)
        return current_level(state[0] if state else None, charge, now_ms)

    def close(self) -> None:
        if self._owned:
            self.client.close()

    def _update(self, keys: Sequence[str],
                step: Callable[[_Items], tuple[T, _Writes | None]]) -> T:
        """Read, compute, write conditionally; again while another writer gets in between."""
        unique = list(dict.fromkeys(keys))
        deadline = time.monotonic() + _RETRY_S
        stripes = sorted({hash((self._scope, k)) % len(_STRIPES) for k in unique})
        held = [i for i in stripes if _STRIPES[i].acquire(max(deadline - time.monotonic(), 0))]
        try:
            items: _Items | None = None
            for attempt in range(_MAX_ATTEMPTS):
                try:
                    if items is None:
                        items = self._read(unique)
                    result, writes = step(items)
                    if writes is not None:
                        self._write(writes, items)
                    return result
                except _Conflict as conflict:
                    items = conflict.args[0] if conflict.args else None
                if time.monotonic() >= deadline:
                    break
                time.sleep(random.uniform(0, min(_BACKOFF_S[0] * 2**attempt, _BACKOFF_S[1])))
        finally:
            for i in held:
                _STRIPES[i].release()
        raise QuotaStoreError(f"DynamoDB table {self.table}: {unique} lost {attempt + 1} races")

    def _read(self, keys: Sequence[str]) -> _Items:
        try:
            if len(keys) == 1:
                key = {KEY_ATTRIBUTE: {"S": keys[0]}}
                found = [self.client.get_item(TableName=self.table, Key=key,
                                              ConsistentRead=True).get("Item")]
            else:
                answer = self.client.transact_get_items(TransactItems=[
                    {"Get": {"TableName": self.table, "Key": {KEY_ATTRIBUTE: {"S": k}}}}
                    for k in keys])
                found = [r.get("Item") for r in answer["Responses"]]
        except (ClientError, BotoCoreError) as exc:
            code, reasons = _codes(exc)
            if code == "TransactionCanceledException" and reasons <= _RETRYABLE:
                raise _Conflict from exc  # a write transaction was under way
            raise QuotaStoreError(f"DynamoDB table {self.table}: {exc}") from exc
        return {k: self._parse(item) for k, item in zip(keys, found, strict=True) if item}

    def _write(self, writes: _Writes, items: _Items) -> None:
        token = uuid.uuid4().hex
        puts = []
        for key, (state, ttl) in writes.items():
            version = items[key][1] if key in items else 0
            put: dict[str, Any] = {"TableName": self.table, "Item": {
                KEY_ATTRIBUTE: {"S": key}, "s": {"S": json.dumps(state, separators=(",", ":"))},
                "v": {"N": str(version + 1)}, "w": {"S": token}}}
            if ttl is not None:
                put["Item"][TTL_ATTRIBUTE] = {"N": str(ttl)}
            if key in items:  # unchanged since read, or not there yet
                put.update(ConditionExpression="#v = :v", ExpressionAttributeNames={"#v": "v"},
                           ExpressionAttributeValues={":v": {"N": str(version)}})
            else:
                put.update(ConditionExpression="attribute_not_exists(#k)",
                           ExpressionAttributeNames={"#k": KEY_ATTRIBUTE})
            puts.append(put)
        try:
            if len(puts) == 1:
                self.client.put_item(**puts[0], ReturnValuesOnConditionCheckFailure="ALL_OLD")
            else:
                self.client.transact_write_items(TransactItems=[{"Put": p} for p in puts])
        except (ClientError, BotoCoreError) as exc:
            code, reasons = _codes(exc)
            if code == "ConditionalCheckFailedException":
                current = exc.response.get("Item")
                now = {puts[0]["Item"][KEY_ATTRIBUTE]["S"]: self._parse(current)} if current else {}
                if any(w == token for _, _, w in now.values()):
                    return  # our own write, retried by botocore after its answer was lost
                raise _Conflict(now) from exc
            if code == "TransactionCanceledException" and reasons <= _RETRYABLE:
                raise _Conflict from exc
            raise QuotaStoreError(f"DynamoDB table {self.table}: {exc}") from exc

    def _parse(self, item: dict[str, Any]) -> tuple[State, int, str]:
        try:
            state = json.loads(item["s"]["S"])
            if not isinstance(state, dict):
                raise TypeError(type(state).__name__)
            return state, int(item["v"]["N"]), item.get("w", {}).get("S", "")
        except (KeyError, TypeError, ValueError) as exc:
            raise QuotaStoreError(f"DynamoDB table {self.table}: unreadable quota item "
                                  f"{item.get(KEY_ATTRIBUTE)}: {exc!r}") from exc


def _codes(exc: Exception) -> tuple[str | None, set[str]]:
    """The error code DynamoDB answered (if it did), and a cancelled transaction's reasons."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons") or [{}]
    return response.get("Error", {}).get("Code"), {str(r.get("Code")) for r in reasons}


def create_table(table_name: str, *, region: str | None = None, endpoint_url: str | None = None,
                 client: Any = None) -> None:
    """Create the store's table (on demand billing) unless it exists, wait until it is
    ``ACTIVE`` and turn TTL on for ``expires_at``. Safe to run again and from several hosts."""
    ddb = _client(region, endpoint_url) if client is None else client
    key_schema = [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}]
    try:
        try:
            ddb.create_table(TableName=table_name, KeySchema=key_schema,
                             AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE,
                                                    "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST")
        except ClientError as exc:
            if _codes(exc)[0] != "ResourceInUseException":
                raise
        ddb.get_waiter("table_exists").wait(TableName=table_name,
                                            WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        table = ddb.describe_table(TableName=table_name)["Table"]
        if table["KeySchema"] != key_schema:
            raise QuotaStoreError(f"DynamoDB table {table_name} has the key schema "
                                  f"{table['KeySchema']}, not {key_schema}")
        ttl = ddb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != TTL_ATTRIBUTE:
                raise QuotaStoreError(f"DynamoDB table {table_name} has TTL on "
                                      f"{ttl.get('AttributeName')!r}, not {TTL_ATTRIBUTE!r}")
        else:
            ddb.update_time_to_live(TableName=table_name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    except (ClientError, BotoCoreError) as exc:
        raise QuotaStoreError(f"DynamoDB table {table_name}: {exc}") from exc
    finally:
        if client is None:
            ddb.close()
