"""A response cache: an identical deterministic request is answered without calling Bedrock.

:class:`ResponseCache` is a middleware. The key (:func:`cache_key`) is a SHA-256 over the
caller's tenant scope (the principal's tenant, or its subject when it has none, so one tenant
never reads another's entry), the operation, the resolved model id (place the cache after alias
resolution), the body canonicalized (JSON parsed and re-dumped with sorted keys, compact), and
for InvokeModel the ``content-type`` / ``accept`` and ``x-amzn-bedrock-*`` request headers.

Cached: Converse and InvokeModel answers with status 200 (the body, ``content-type`` and the
``x-amzn-bedrock-*`` token headers); ConverseStream and InvokeModelWithResponseStream streams,
recorded frame by frame as they pass to the client (nothing delayed or buffered ahead of it) and
stored only when the stream ended normally without an exception frame, then replayed
byte-exact. Never cached: errors, guardrail interventions (``stopReason:
guardrail_intervened``, ``amazon-bedrock-guardrailAction: INTERVENED``, or an intervention in
``call.attrs["bedrock_gateway.guardrail"]``), entries over ``max_entry_bytes`` (a stream over it
stops recording and keeps streaming), and non-deterministic requests.

Determinism: Bedrock's default temperature is above 0 for most models, so by default
(:func:`is_deterministic`) only a request that sets its temperature to exactly 0 is cached —
Converse's ``inferenceConfig.temperature``, or in an InvokeModel body ``temperature``,
``inferenceConfig.temperature`` (Nova) or ``textGenerationConfig.temperature`` (Titan). A
request without one is not. ``deterministic`` replaces the predicate;
``cache_nondeterministic=True`` caches every request.

A client opts out per request with ``x-bedrock-gateway-cache: bypass`` (no lookup, no store).
Answers carry ``x-bedrock-gateway-cache: hit`` (served from the cache, a fresh
``x-amzn-requestid``), ``miss`` (looked up, not found: the answer may be stored) or
``bypass``; ``call.attrs["bedrock_gateway.cache"]`` says the same for the usage record, which
marks a hit ``cached`` with cost 0.

Place the cache *before* the quota enforcer in the chain: a hit returns without calling the
rest of the chain, so it never reaches the enforcer and consumes no token quota or budget.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bedrock_gateway.call import Call, Response
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.pipeline import Next
from bedrock_gateway.routing.cache_store import (
    CachedAnswer,
    CacheStore,
    MemoryCacheStore,
    decode_entry,
    encode_header,
)

__all__ = ["CACHE_HEADER", "CACHE_NOTE", "DEFAULT_OPERATIONS", "ResponseCache", "cache_key",
           "is_deterministic"]

log = logging.getLogger("bedrock_gateway.cache")

CACHE_NOTE = "bedrock_gateway.cache"  # call.attrs key: "hit", "miss" or "bypass"
CACHE_HEADER = "x-bedrock-gateway-cache"
DEFAULT_OPERATIONS = frozenset({"Converse", "ConverseStream", "InvokeModel",
                                "InvokeModelWithResponseStream"})
_GUARDRAIL_NOTE = "bedrock_gateway.guardrail"
_STOPPED = re.compile(rb'"stopReason"\s*:\s*"guardrail_intervened"')
_ACTION = re.compile(rb'"amazon-bedrock-guardrailAction"\s*:\s*"INTERVENED"')
_U32 = struct.Struct(">I")


def _temperature(body: dict[str, Any], *path: str) -> object:
    node: object = body
    for name in path:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
    return node


def is_deterministic(call: Call) -> bool:
    """Whether the request sets its temperature to exactly 0 (where its operation puts it)."""
    if not call.is_json:
        return False
    body = call.json()
    if call.operation.name.startswith("Converse"):
        paths: tuple[tuple[str, ...], ...] = (("inferenceConfig", "temperature"),)
    else:
        paths = (("temperature",), ("inferenceConfig", "temperature"),
                 ("textGenerationConfig", "temperature"))
    found = [t for path in paths if (t := _temperature(body, *path)) is not None]
    return bool(found) and all(
        isinstance(t, int | float) and not isinstance(t, bool) and t == 0 for t in found)


def cache_key(call: Call) -> str:
    """The hex SHA-256 naming the answer to ``call`` (see the module docstring)."""
    digest = hashlib.sha256()

    def put(data: bytes) -> None:
        digest.update(_U32.pack(len(data)))
        digest.update(data)

    principal = call.principal
    if principal is None:
        scope = "-"
    elif principal.tenant is not None:
        scope = "t:" + principal.tenant
    else:
        scope = "s:" + principal.subject
    put(scope.encode())
    put(call.operation.name.encode())
    put((call.model_id or "").encode())
    if call.is_json:
        put(b"json")
        put(json.dumps(call.json(), sort_keys=True, separators=(",", ":")).encode())
    else:
        put(b"raw")
        put(call.body)
    if call.operation.name.startswith("InvokeModel"):
        headers = call.headers
        put(headers.get("content-type", "").encode())
        put(headers.get("accept", "").encode())
        for name in sorted(n for n in headers if n.startswith("x-amzn-bedrock-")):
            put(f"{name}:{headers[name]}".encode())
    return digest.hexdigest()


def _kept_headers(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in headers.items()
                 if k == "content-type" or k.startswith("x-amzn-bedrock-"))


def _noted_intervention(call: Call) -> bool:
    note = call.attrs.get(_GUARDRAIL_NOTE)
    if not isinstance(note, dict):
        return False
    if note.get("intervened"):
        return True
    return any(isinstance(check := note.get(k), dict)
               and check.get("action") == "GUARDRAIL_INTERVENED" for k in ("input", "output"))


# The exact header bytes (name length, name, string type, value length, value) Bedrock writes;
# matching them spares decoding every frame's headers while it is recorded.
_EVENT = b"\r:message-type\x07\x00\x05event"
_CHUNK = b"\x0b:event-type\x07\x00\x05chunk"


def _storable(frame: Frame) -> bool:
    """Whether ``frame`` is an event frame in which no guardrail intervened."""
    raw = frame.raw
    head = raw[12 : 12 + _U32.unpack_from(raw, 4)[0]]
    if _EVENT not in head or _STOPPED.search(raw):
        return False
    if _CHUNK not in head:
        return True
    try:
        data = frame.json()
        inner = data.get("bytes") if isinstance(data, dict) else None
        return not isinstance(inner, str) or _ACTION.search(base64.b64decode(inner)) is None
    except ValueError:
        return False  # unreadable: do not cache what cannot be checked


def _replay(frames: Iterable[bytes]) -> Iterator[Frame]:
    for raw in frames:
        yield Frame(raw)


class ResponseCache:
    """Middleware answering repeated deterministic model calls from ``store``.

    ``store`` defaults to a :class:`MemoryCacheStore`; ``ttl_s`` is each entry's lifetime;
    ``max_entry_bytes`` bounds one entry (header and answer); ``operations`` are the operation
    names to cache (a subset of :data:`DEFAULT_OPERATIONS`). See the module docstring.
    """

    def __init__(self, store: CacheStore | None = None, *, ttl_s: float = 300,
                 max_entry_bytes: int = 1024 * 1024,
                 operations: Iterable[str] = DEFAULT_OPERATIONS,
                 deterministic: Callable[[Call], bool] = is_deterministic,
                 cache_nondeterministic: bool = False) -> None:
        self.operations = frozenset(operations)
        unknown = self.operations - DEFAULT_OPERATIONS
        if unknown:
            raise ValueError(f"cannot cache {sorted(unknown)}; cacheable: "
                             f"{sorted(DEFAULT_OPERATIONS)}")
        if ttl_s <= 0 or max_entry_bytes <= 0:
            raise ValueError("ttl_s and max_entry_bytes must be positive")
        self.store: CacheStore = store if store is not None else MemoryCacheStore()
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self.deterministic = deterministic
        self.cache_nondeterministic = cache_nondeterministic

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()

    def __call__(self, call: Call, next_: Next) -> Response:
        if call.operation.name not in self.operations:
            return next_(call)
        if call.headers.get(CACHE_HEADER, "").strip().lower() == "bypass":
            call.attrs[CACHE_NOTE] = "bypass"
            response = next_(call)
            response.headers[CACHE_HEADER] = "bypass"
            return response
        if not self.cache_nondeterministic and not self.deterministic(call):
            return next_(call)
        key = cache_key(call)
        try:
            data = self.store.get(key)
        except Exception:  # a cache never fails a call: a store that fails is a miss
            log.exception("cache lookup failed")
            data = None
        answer = decode_entry(data) if data is not None else None
        if answer is not None and (answer.frames is not None) == call.operation.streaming:
            call.attrs[CACHE_NOTE] = "hit"
            return self._hit(answer)
        call.attrs[CACHE_NOTE] = "miss"
        response = next_(call)
        if response.status != 200 or response.is_stream != call.operation.streaming:
            return response
        head = encode_header(_kept_headers(response.headers), response.is_stream)
        response.headers[CACHE_HEADER] = "miss"
        if response.is_stream:
            response.map_frames(lambda frames: self._record(call, key, head, frames))
        elif not (_STOPPED.search(response.body) or _ACTION.search(response.body)
                  or _noted_intervention(call)):
            self._put(key, head + response.body)
        return response

    @staticmethod
    def _hit(answer: CachedAnswer) -> Response:
        headers = dict(answer.headers)
        headers["x-amzn-requestid"] = str(uuid.uuid4())
        headers[CACHE_HEADER] = "hit"
        if answer.frames is not None:
            return Response(200, headers, frames=_replay(answer.frames))
        return Response(200, headers, answer.body)

    def _put(self, key: str, entry: bytes) -> None:
        if len(entry) <= self.max_entry_bytes:
            try:
                self.store.set(key, entry, self.ttl_s)
            except Exception:
                log.exception("storing a cached answer failed")

    def _record(self, call: Call, key: str, head: bytes,
                frames: Iterator[Frame]) -> Iterator[Frame]:
        """Pass every frame on at once, keeping a copy of its bytes while the entry fits."""
        parts: list[bytes] | None = [head]
        size = len(head)
        limit = self.max_entry_bytes
        try:
            for frame in frames:
                if parts is not None:
                    size += len(frame.raw)
                    if size > limit or not _storable(frame):
                        parts = None
                    else:
                        parts.append(frame.raw)
                yield frame
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        # Only reached when the stream ended normally (not on an error or a client gone away).
        if parts is not None and len(parts) > 1 and not _noted_intervention(call):
            self._put(key, b"".join(parts))
