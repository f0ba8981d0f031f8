"""A quota store in a DynamoDB table, shared by gateways on any number of hosts.

Table schema (:func:`create_table` makes it; any table with this key schema will do)::

    pk          S  partition key: the charge key (no sort key)
    s           S  the ledger state as compact JSON (exact: integers of any size, float repr)
    v           N  version, 1 on the first write and +1 on each one after
    w           S  a random id of the write that made this version
    expires_at  N  TTL attribute, epoch seconds: a rate key's bucket has drained by then (its
                   last write plus one period); a calendar key's period ended a day before.
                   Absent for a calendar key without an end.

Billing is on demand; :func:`create_table` also turns TTL on for ``expires_at``, so DynamoDB
deletes finished keys by itself (within a day or two; until then the states read as drained).

Concurrency is optimistic. A call reads its keys (``GetItem``, or ``TransactGetItems`` for
several, both strongly consistent), applies the ledger's pure functions, and writes back the
changed states in ONE request: a ``PutItem``, or a ``TransactWriteItems`` for several keys,
each put conditioned on the version it read (``attribute_not_exists(pk)`` for a key it found
empty). A refused reservation writes nothing. When another writer got there first the call
reads again (for one key the failed put returns the current item, so no read is needed) and
retries after a short jittered backoff, up to ``_MAX_ATTEMPTS`` times or ``_RETRY_S`` seconds;
then, like any client or connection error, it raises :class:`QuotaStoreError`.

A put that landed but whose answer was lost is retried by botocore and then fails its
condition; the store recognises its own write by ``w`` and does not apply it twice
(``TransactWriteItems`` is idempotent through its client request token already).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bedrock_gateway.quota.ledger import (
    Charge,
    Decision,
    QuotaStore,
    QuotaStoreError,
    State,
    current_level,
    reserve_states,
    settle_state,
)

__all__ = ["KEY_ATTRIBUTE", "TTL_ATTRIBUTE", "DynamoDBStore", "create_table"]

KEY_ATTRIBUTE = "pk"
TTL_ATTRIBUTE = "expires_at"
_CALENDAR_GRACE_S = 86_400
_MAX_ATTEMPTS = 100
_RETRY_S = 5.0
_BACKOFF_S = (0.002, 0.05)  # the first backoff's ceiling, doubling up to the second
_CONFLICTS = {"ConditionalCheckFailed", "TransactionConflict"}

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


def _error(table: str, exc: Exception) -> QuotaStoreError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return QuotaStoreError(f"DynamoDB table {table}: {error.get('Code')}: "
                               f"{error.get('Message')}")
    return QuotaStoreError(f"DynamoDB table {table}: {exc}")


class _Conflict(Exception):
    """Another writer changed a key since it was read (``items``: the keys as they now are,
    when the failed write told)."""

    def __init__(self, items: _Items | None = None) -> None:
        self.items = items


def _ttl(charge: Charge, state: State) -> int | None:
    if charge.is_rate:
        return -(-(int(state["t"]) + charge.period_ms) // 1000)
    return charge.expires_ms // 1000 + _CALENDAR_GRACE_S if charge.expires_ms else None


class DynamoDBStore(QuotaStore):
    """Counters in the DynamoDB ``table`` (see the module docstring for its schema)."""

    def __init__(self, table: str, *, region: str | None = None,
                 endpoint_url: str | None = None, client: Any = None) -> None:
        self.table = table
        self._owned = client is None
        self.client: Any = _client(region, endpoint_url) if client is None else client

    def reserve(self, charges: Sequence[Charge], now_ms: int, slot: int) -> Decision:
        if not charges:
            return Decision(True, ())

        def step(items: _Items) -> tuple[Decision, _Writes | None]:
            states = [items[c.key][0] if c.key in items else None for c in charges]
            decision, new = reserve_states(states, charges, now_ms, slot)
            if new is None:
                return decision, None
            return decision, {c.key: (st, _ttl(c, st)) for c, st in zip(charges, new, strict=True)}

        return self._update([c.key for c in charges], step)

    def settle(self, charges: Sequence[Charge], actual: Sequence[int], now_ms: int,
               slot: int) -> None:
        if not charges:
            return

        def step(items: _Items) -> tuple[None, _Writes]:
            writes: _Writes = {}
            for charge, amount in zip(charges, actual, strict=True):
                old = writes[charge.key][0] if charge.key in writes else (
                    items[charge.key][0] if charge.key in items else None)
                state = settle_state(old, charge, amount, now_ms, slot)
                writes[charge.key] = (state, _ttl(charge, state))
            return None, writes

        self._update([c.key for c in charges], step)

    def level(self, charge: Charge, now_ms: int) -> float:
        items = self._read([charge.key])
        return current_level(items[charge.key][0] if charge.key in items else None, charge,
                             now_ms)

    def close(self) -> None:
        if self._owned:
            self.client.close()

    def _update(self, keys: Sequence[str],
                step: Callable[[_Items], tuple[T, _Writes | None]]) -> T:
        """Read, compute, write conditionally; again while another writer gets in between."""
        unique = list(dict.fromkeys(keys))
        deadline = time.monotonic() + _RETRY_S
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
                items = conflict.items
            if time.monotonic() >= deadline:
                break
            time.sleep(random.uniform(0, min(_BACKOFF_S[0] * 2**attempt, _BACKOFF_S[1])))
        raise QuotaStoreError(f"DynamoDB table {self.table}: keys {unique} stayed contended "
                              f"through {attempt + 1} attempts")

    def _read(self, keys: Sequence[str]) -> _Items:
        try:
            if len(keys) == 1:
                found = [self.client.get_item(TableName=self.table, Key=_key(keys[0]),
                                              ConsistentRead=True).get("Item")]
            else:
                answer = self.client.transact_get_items(TransactItems=[
                    {"Get": {"TableName": self.table, "Key": _key(k)}} for k in keys])
                found = [r.get("Item") for r in answer["Responses"]]
        except ClientError as exc:
            if _reasons(exc) <= _CONFLICTS | {"None"}:  # a write transaction is under way
                raise _Conflict from exc
            raise _error(self.table, exc) from exc
        except BotoCoreError as exc:
            raise _error(self.table, exc) from exc
        return {k: self._parse(item) for k, item in zip(keys, found, strict=True) if item}

    def _write(self, writes: _Writes, items: _Items) -> None:
        token = uuid.uuid4().hex
        puts = []
        for key, (state, ttl) in writes.items():
            put: dict[str, Any] = {"TableName": self.table, "ExpressionAttributeNames": {}}
            found = key in items
            version = items[key][1] if found else 0
            put["Item"] = {KEY_ATTRIBUTE: {"S": key}, "s": {"S": _dump(state)},
                           "v": {"N": str(version + 1)}, "w": {"S": token}}
            if ttl is not None:
                put["Item"][TTL_ATTRIBUTE] = {"N": str(ttl)}
            if found:
                put["ConditionExpression"] = "#v = :v"
                put["ExpressionAttributeNames"]["#v"] = "v"
                put["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
            else:
                put["ConditionExpression"] = "attribute_not_exists(#k)"
                put["ExpressionAttributeNames"]["#k"] = KEY_ATTRIBUTE
            puts.append(put)
        try:
            if len(puts) == 1:
                self.client.put_item(**puts[0], ReturnValuesOnConditionCheckFailure="ALL_OLD")
            else:
                self.client.transact_write_items(TransactItems=[{"Put": p} for p in puts])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                current = exc.response.get("Item")
                now = {puts[0]["Item"][KEY_ATTRIBUTE]["S"]: self._parse(current)} if current else {}
                if any(w == token for _, _, w in now.values()):
                    return  # our own write, retried by botocore after its answer was lost
                raise _Conflict(now) from exc
            if code == "TransactionCanceledException" and _reasons(exc) <= _CONFLICTS | {"None"}:
                raise _Conflict from exc
            raise _error(self.table, exc) from exc
        except BotoCoreError as exc:
            raise _error(self.table, exc) from exc

    def _parse(self, item: dict[str, Any]) -> tuple[State, int, str]:
        try:
            state = json.loads(item["s"]["S"])
            if not isinstance(state, dict):
                raise TypeError(type(state).__name__)
            return state, int(item["v"]["N"]), item.get("w", {}).get("S", "")
        except (KeyError, TypeError, ValueError) as exc:
            raise QuotaStoreError(f"DynamoDB table {self.table}: unreadable quota item "
                                  f"{item.get(KEY_ATTRIBUTE)}: {exc!r}") from exc


def _key(key: str) -> dict[str, Any]:
    return {KEY_ATTRIBUTE: {"S": key}}


def _dump(state: State) -> str:
    return json.dumps(state, separators=(",", ":"))


def _reasons(exc: Any) -> set[str]:
    """The cancellation reason codes of a cancelled transaction (empty for other errors)."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return {"?"}
    return {str(r.get("Code")) for r in exc.response.get("CancellationReasons") or [{}]}


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
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        ddb.get_waiter("table_exists").wait(TableName=table_name,
                                            WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        table = ddb.describe_table(TableName=table_name)["Table"]
        if table["KeySchema"] != key_schema:
            raise QuotaStoreError(f"DynamoDB table {table_name} has the key schema "
                                  f"{table['KeySchema']}, not a string partition key "
                                  f"{KEY_ATTRIBUTE!r}")
        ttl = ddb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != TTL_ATTRIBUTE:
                raise QuotaStoreError(f"DynamoDB table {table_name} has TTL on "
                                      f"{ttl.get('AttributeName')!r}, not {TTL_ATTRIBUTE!r}")
        else:
            ddb.update_time_to_live(TableName=table_name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    except (ClientError, BotoCoreError) as exc:
        raise _error(table_name, exc) from exc
    finally:
        if client is None:
            ddb.close()
