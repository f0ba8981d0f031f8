"""A quota store in Redis (``pip install bedrock-gateway[redis]``): any number of gateway hosts.

Round trips: one per :meth:`RedisStore.reserve`, one per :meth:`RedisStore.settle` and one per
:meth:`RedisStore.void` — each runs one Lua script (``EVALSHA``) over the call's record and all
of its keys, so it is atomic, all or nothing, and applied once per call;
:meth:`RedisStore.level` is one ``HGETALL``. A store's first script call sends the script body
(``EVAL``, which also caches it); after a ``SCRIPT FLUSH`` or a fail-over, one call makes two
trips (``NOSCRIPT``, then ``EVAL``). The scripts apply the ledger's rules
(:func:`~bedrock_gateway.quota.ledger.reserve_states`, :func:`~.ledger.settle_state`,
:func:`~.ledger.finish_plan`) in doubles, exact up to 2**53 (amounts of up to 1e15 nano-USD fit);
numbers go into hashes and come back as ``%.17g`` strings, which round-trip a double exactly.

Key layout: charge key ``k`` is the hash ``{prefix}:k'``, where ``k'`` is ``k`` with ``%``, ``{``
and ``}`` percent-encoded (distinct keys stay distinct; the hash tag is always the prefix).
Rate keys hold fields ``l`` (level) and ``t`` (ms); calendar keys hold ``u`` (settled) and one
``h:<slot>`` per expiry slot with live holds (expired holds are dropped on every write). Every
write refreshes the key's TTL: a bucket until it has surely drained (``t - now + period_ms``), a
budget until a day after its period ends (``expires_ms - now + 1 day``). Call ``c``'s record is
the string ``{prefix}#c'``: ``h<slot>`` (held), ``s`` (settled) or ``v<slot>`` (voided), kept
until its slot and ``keep_ms`` more (settled: ``keep_ms``, an hour by default; about 170 bytes of
Redis memory per call). TTLs are relative and computed from the caller's ``now_ms``, never from
Redis' clock, so clock skew between a gateway and Redis cannot drop live state. Use a
``noeviction`` or ``volatile-*`` eviction policy.

Redis Cluster: all keys of one store share the ``{prefix}`` hash tag, hence one slot, so a
multi-key script is legal. The price: a cluster gives availability, but one gateway's quota keys
live on one shard (use several prefixes to spread unrelated gateways). Pass a
``redis.RedisCluster`` client to :class:`RedisStore` for that.

Failures: redis-py errors become :class:`~.ledger.QuotaStoreError`. A script that timed out may
still run (Redis paused, then resumed, runs what it had queued): the call's record makes a
second delivery of the same operation — the gateway's journal replaying it — change nothing,
and a reservation arriving after its call was voided hold nothing. :meth:`RedisStore.from_url`
turns redis-py's own retries off all the same (the journal retries, off the request's thread).

Durability: what Redis acknowledged must survive a restart, or settled spend is lost with it.
Run Redis with ``appendonly yes``: ``appendfsync always`` keeps every acknowledged write
through a crash of the host; ``everysec`` (Redis' default) through a crash of the Redis process,
and loses up to about a second of writes if the host itself goes down. RDB snapshots alone lose
everything since the last one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.retry import Retry

from bedrock_gateway.quota.ledger import (
    HOLD_SLOT_MS,
    KEEP_CALLS_MS,
    Charge,
    Decision,
    QuotaStore,
    QuotaStoreError,
    State,
    current_level,
)

__all__ = ["RedisStore"]

GRACE_MS = 86_400_000  # a budget key outlives its period by a day (late settles, clock skew)

# ARGV: now_ms, slot, keep_ms, then the operation's own (see each script). KEYS[1] is the call's
# record ('h<slot>' held, 's' settled, 'v<slot>' voided); KEYS[2..] the charges' hashes.
_PRELUDE = """
local SLOT_MS, GRACE_MS = @SLOT_MS@, @GRACE_MS@
local now, slot, keep = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local function fmt(x) return string.format('%.17g', x) end
local function keep_px(s)  -- ledger.keep_until, relative to now
  return fmt(math.max(tonumber(s) * SLOT_MS - now, 0) + keep)
end
local function load(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local st = {l = 0, t = 0, u = 0, h = {}}
  for i = 1, #flat, 2 do
    local f, v = flat[i], tonumber(flat[i + 1])
    if string.sub(f, 1, 2) == 'h:' then st.h[string.sub(f, 3)] = v
    elseif f == 'l' or f == 't' or f == 'u' then st[f] = v end
  end
  return st
end
local function level(st, cap, per)  -- ledger.current_level
  if not st then return 0 end
  if per > 0 then return math.max(st.l - math.max(now - st.t, 0) * cap / per, 0) end
  local total = st.u
  for s, v in pairs(st.h) do
    if tonumber(s) * SLOT_MS > now then total = total + v end
  end
  return total
end
local function put_rate(key, st, lv, delta, per)  -- ledger._with, a bucket
  local t = now
  if st and st.t > now then t = st.t end
  local l = math.max(lv + delta, 0)
  redis.call('HSET', key, 'l', fmt(l), 't', fmt(t))
  redis.call('PEXPIRE', key, fmt(t - now + per))
  return l
end
-- ledger._with, a budget: add delta to the hold in slot hs (nil: no hold), settled to u
local function put_budget(key, st, delta, settled, expires, hs)
  local u, live = settled, {}
  if st then
    u = st.u + settled
    for s, v in pairs(st.h) do
      if tonumber(s) * SLOT_MS > now and v > 0 then live[s] = v
      else redis.call('HDEL', key, 'h:' .. s) end
    end
  end
  if delta ~= 0 and hs and (delta > 0 or live[hs]) then
    local held = (live[hs] or 0) + delta
    if held > 0 then
      live[hs] = held
      redis.call('HSET', key, 'h:' .. hs, fmt(held))
    else
      live[hs] = nil
      redis.call('HDEL', key, 'h:' .. hs)
    end
  end
  redis.call('HSET', key, 'u', fmt(u))
  if expires > 0 then redis.call('PEXPIRE', key, fmt(math.max(expires - now, 0) + GRACE_MS)) end
  local total = u  -- the level after: a hold put in an already expired slot does not count
  for s, v in pairs(live) do
    if tonumber(s) * SLOT_MS > now then total = total + v end
  end
  return total
end
local function floordiv(a, b)  -- Python's float // (CPython float_floor_div)
  local mod = math.fmod(a, b)
  local div = (a - mod) / b
  if mod ~= 0 and ((b < 0) ~= (mod < 0)) then div = div - 1 end
  if div == 0 then return 0 end
  local fl = math.floor(div)
  if div - fl > 0.5 then fl = fl + 1 end
  return fl
end
""".replace("@SLOT_MS@", str(HOLD_SLOT_MS)).replace("@GRACE_MS@", str(GRACE_MS))

# per charge: amount, capacity, period_ms, expires_ms. Reply: ok, refused, retry, remaining...
# A call that has a record changes nothing: held, it fits; settled or voided, it is LATE (-1).
_RESERVE = _PRELUDE + """
local rec = redis.call('GET', KEYS[1])
local n, st, lv, amt, cap, per, exp = #KEYS - 1, {}, {}, {}, {}, {}, {}
for i = 1, n do
  local b = 3 + (i - 1) * 4
  amt[i], cap[i] = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  per[i], exp[i] = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  st[i] = load(KEYS[i + 1])
  lv[i] = level(st[i], cap[i], per[i])
end
if rec then
  local out = {'0', '-1', '0'}
  if string.sub(rec, 1, 1) == 'h' then out[1] = '1' end
  for j = 1, n do out[3 + j] = fmt(cap[j] - lv[j]) end
  return out
end
for i = 1, n do
  if lv[i] + amt[i] > cap[i] then
    local retry = 0
    if per[i] > 0 then
      retry = per[i]  -- a zero-capacity bucket never drains room
      if cap[i] > 0 then retry = -floordiv(-(lv[i] + amt[i] - cap[i]) * per[i], cap[i]) end
      retry = math.max(retry, 1)
    end
    local out = {'0', tostring(i - 1), fmt(retry)}
    for j = 1, n do out[3 + j] = fmt(cap[j] - lv[j]) end
    return out
  end
end
local out = {'1', '-1', '0'}
for i = 1, n do
  local after
  if per[i] > 0 then after = put_rate(KEYS[i + 1], st[i], lv[i], amt[i], per[i])
  else after = put_budget(KEYS[i + 1], st[i], amt[i], 0, exp[i], slot) end
  out[3 + i] = fmt(cap[i] - after)
end
redis.call('SET', KEYS[1], 'h' .. slot, 'PX', keep_px(slot))
return out
"""

# ARGV[4]: 's' (settle) or 'v' (void); per charge: amount, actual, capacity, period_ms,
# expires_ms. Charges apply in order. Applies once per call (ledger.finish_plan).
_SETTLE = _PRELUDE + """
local rec, kind = redis.call('GET', KEYS[1]), ARGV[4]
local hs = nil
if rec then
  if string.sub(rec, 1, 1) ~= 'h' then return 0 end  -- settled or voided already
  hs = string.sub(rec, 2)
elseif kind == 'v' then  -- the reservation has not arrived: make sure it changes nothing
  redis.call('SET', KEYS[1], 'v' .. slot, 'PX', keep_px(slot))
  return 0
end
for i = 2, #KEYS do
  local b = 4 + (i - 2) * 5
  local amount, actual = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local cap, per, exp = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local st = load(KEYS[i])
  if per > 0 then put_rate(KEYS[i], st, level(st, cap, per), actual - amount, per)
  else put_budget(KEYS[i], st, -amount, actual, exp, hs) end
end
if kind == 's' then redis.call('SET', KEYS[1], 's', 'PX', fmt(keep))
else redis.call('SET', KEYS[1], 'v' .. hs, 'PX', keep_px(hs)) end
return 0
"""


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


_RESERVE_SCRIPT, _SETTLE_SCRIPT = _Script(_RESERVE), _Script(_SETTLE)
_ERRORS = (RedisError, RedisClusterException)  # the latter: e.g. a slot no node serves


def _quote(key: str) -> str:
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(QuotaStore):
    """Counters in Redis. ``client`` may be a ``redis.Redis`` or ``redis.RedisCluster``; a client
    passed in stays the caller's (:meth:`close` leaves it open), one made by :meth:`from_url` is
    closed by :meth:`close`."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, *, prefix: str = "bgw",
                 keep_ms: int = KEEP_CALLS_MS) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("a Redis quota prefix must be non-empty, without '{' or '}'")
        self._client: Any = client
        self._tag = "{" + prefix + "}:"
        self._call_tag = "{" + prefix + "}#"
        self._keep_ms = keep_ms
        self._owned = False
        self._secrets: tuple[str, ...] = ()
        self._sent: set[str] = set()  # scripts this store has sent in full at least once

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "bgw", socket_timeout_s: float = 2.0,
                 keep_ms: int = KEEP_CALLS_MS) -> RedisStore:
        """A store on a client of its own: ``redis://[user:password@]host:port/db`` or
        ``rediss://`` (TLS), with socket and connect timeouts of ``socket_timeout_s``."""
        client = redis.Redis.from_url(url, socket_timeout=socket_timeout_s,
                                      socket_connect_timeout=socket_timeout_s,
                                      retry=Retry(NoBackoff(), 0))
        store = cls(client, prefix=prefix, keep_ms=keep_ms)
        store._owned = True
        password = urlsplit(url).password
        store._secrets = tuple(s for s in {password or "", unquote(password or "")} if s)
        return store

    @property
    def client(self) -> redis.Redis | redis.RedisCluster:
        """The redis-py client (for health checks)."""
        return self._client  # type: ignore[no-any-return]

    def key(self, charge_key: str) -> str:
        """The Redis key that holds ``charge_key``."""
        return self._tag + _quote(charge_key)

    def call_key(self, call: str) -> str:
        """The Redis key of ``call``'s record (``#`` where a charge key has ``:``)."""
        return self._call_tag + _quote(call)

    def reserve(self, call: str, charges: Sequence[Charge], now_ms: int,
                slot: int) -> Decision:
        if not charges:
            return Decision(True, ())
        argv = [now_ms, slot, self._keep_ms]
        for c in charges:
            argv += (c.amount, c.capacity, c.period_ms, c.expires_ms)
        reply = self._run(_RESERVE_SCRIPT, call, charges, argv)
        try:
            ok, refused, retry = int(reply[0]), int(reply[1]), int(float(reply[2]))
            remaining = tuple(float(x) for x in reply[3:])
            if len(remaining) != len(charges):
                raise ValueError(f"{len(remaining)} levels for {len(charges)} charges")
        except (TypeError, ValueError, IndexError) as exc:
            raise QuotaStoreError(f"Redis quota store answered nonsense: {exc}") from exc
        if ok:
            return Decision(True, remaining)
        return Decision(False, remaining, refused, retry)

    def _finish(self, call: str, charges: Sequence[Charge], actual: Sequence[int] | None,
                now_ms: int, slot: int) -> None:
        kind = "s" if actual is not None else "v"
        amounts = actual if actual is not None else [0] * len(charges)
        argv: list[int | str] = [now_ms, slot, self._keep_ms, kind]
        for c, real in zip(charges, amounts, strict=True):
            argv += (c.amount, real, c.capacity, c.period_ms, c.expires_ms)
        self._run(_SETTLE_SCRIPT, call, charges, argv)

    def level(self, charge: Charge, now_ms: int) -> float:
        try:
            raw = self._client.hgetall(self.key(charge.key))
        except _ERRORS as exc:
            raise self._failure(exc) from exc
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            state: State | None = None
            if fields and charge.is_rate:
                state = {"l": float(fields["l"]), "t": int(float(fields["t"]))}
            elif fields:
                holds = {f[2:]: int(float(v)) for f, v in fields.items() if f.startswith("h:")}
                state = {"u": int(float(fields["u"])), "h": holds}
        except (KeyError, ValueError) as exc:
            raise QuotaStoreError(f"Redis quota store answered nonsense: {exc!r}") from exc
        return float(current_level(state, charge, now_ms))

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def _run(self, script: _Script, call: str, charges: Sequence[Charge],
             args: Sequence[int | str]) -> Any:
        keys = [self.call_key(call), *(self.key(c.key) for c in charges)]
        argv = [a if isinstance(a, str) else str(int(a)) for a in args]
        try:
            if script.sha in self._sent:
                try:
                    return self._client.evalsha(script.sha, len(keys), *keys, *argv)
                except NoScriptError:
                    pass  # flushed, or a fail-over to a replica that never saw it
            reply = self._client.eval(script.text, len(keys), *keys, *argv)
            self._sent.add(script.sha)
            return reply
        except _ERRORS as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> QuotaStoreError:
        message = f"Redis quota store failed: {type(exc).__name__}: {exc}"
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return QuotaStoreError(message)
