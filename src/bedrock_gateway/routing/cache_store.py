"""Where :class:`~bedrock_gateway.routing.cache.ResponseCache` keeps its entries, and how.

A :class:`CacheStore` holds opaque bytes under a hex key for a while: ``get(key)`` returns the
bytes or ``None`` (absent, expired, or the store failed — a cache never fails a call);
``set(key, value, ttl_s)`` stores them (failures are logged and swallowed).
:class:`MemoryCacheStore` is one process's LRU bounded by total bytes;
:class:`RedisCacheStore` is shared by any number of gateway hosts.

An entry (:class:`CachedAnswer`, :func:`encode_entry` / :func:`decode_entry`) is a small
header, then the answer's bytes as they were on the wire::

    b"BGC1" | kind u8 (0 body, 1 event stream) | header count u8
    { name_len u8 | name | value_len u16 | value } ...      (latin-1, big-endian lengths)
    payload: the body, or the stream's frames back to back (each frame carries its length)
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CacheStore", "CachedAnswer", "MemoryCacheStore", "RedisCacheStore",
           "decode_entry", "encode_entry"]

log = logging.getLogger("bedrock_gateway.cache")

_MAGIC = b"BGC1"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class CacheStore(Protocol):
    """Bytes under a key, for ``ttl_s`` seconds. Implementations must be thread-safe."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer: its headers and either ``body`` or the raw ``frames`` of a stream."""

    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    frames: tuple[bytes, ...] | None = None


def encode_header(headers: tuple[tuple[str, str], ...], stream: bool) -> bytes:
    """The entry's header (everything before the payload)."""
    out = [_MAGIC, bytes([1 if stream else 0, len(headers)])]
    for name, value in headers:
        bname, bvalue = name.encode("latin-1"), value.encode("latin-1")
        out += [bytes([len(bname)]), bname, _U16.pack(len(bvalue)), bvalue]
    return b"".join(out)


def encode_entry(answer: CachedAnswer) -> bytes:
    head = encode_header(answer.headers, answer.frames is not None)
    payload = b"".join(answer.frames) if answer.frames is not None else answer.body
    return head + payload


def decode_entry(data: bytes) -> CachedAnswer | None:
    """The answer in ``data``; ``None`` when it is not a well-formed entry."""
    try:
        if data[:4] != _MAGIC:
            return None
        stream, count = data[4] == 1, data[5]
        pos, headers = 6, []
        for _ in range(count):
            nlen = data[pos]
            name = data[pos + 1 : pos + 1 + nlen].decode("latin-1")
            pos += 1 + nlen
            vlen = _U16.unpack_from(data, pos)[0]
            headers.append((name, data[pos + 2 : pos + 2 + vlen].decode("latin-1")))
            pos += 2 + vlen
        if pos > len(data):
            return None
        if not stream:
            return CachedAnswer(tuple(headers), body=data[pos:])
        frames, end = [], len(data)
        while pos < end:
            total = _U32.unpack_from(data, pos)[0]
            if total < 16 or pos + total > end:
                return None
            frames.append(data[pos : pos + total])
            pos += total
        return CachedAnswer(tuple(headers), frames=tuple(frames))
    except (IndexError, struct.error):
        return None


class MemoryCacheStore:
    """An in-process store: least recently used entries go first once the entries' total size
    passes ``max_bytes``; expired entries are dropped when met. ``clock`` returns seconds
    (monotonic by default; inject one in tests)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The stored bytes (values only)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self.max_bytes or ttl_s <= 0:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (self.clock() + ttl_s, value)
            self._size += len(value)
            while self._size > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._size -= len(value)


class RedisCacheStore:
    """Entries in Redis (``pip install bedrock-gateway[redis]``) under ``{prefix}:{key}``.

    One ``GET`` per lookup, one ``SET ... PX`` per store: Redis expires entries itself, and its
    ``maxmemory-policy`` (``allkeys-lru`` suits a cache) bounds their total size. Keys carry no
    hash tag: every command touches one key, so on a Redis Cluster entries spread over all
    shards. Errors are logged and read as misses, never failing the call.
    """

    def __init__(self, client: Any, prefix: str = "bgcache") -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "bgcache", **options: Any) -> RedisCacheStore:
        """A store on a new client for ``url``; short timeouts by default (a slow cache must
        not slow calls down much), overridable through ``options``."""
        import redis

        options.setdefault("socket_timeout", 0.5)
        options.setdefault("socket_connect_timeout", 0.5)
        return cls(redis.Redis.from_url(url, **options), prefix)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(self._key(key))
        except Exception as exc:  # redis.RedisError, OSError: a miss, not a failed call
            log.warning("cache store read failed: %r", exc)
            return None
        return bytes(value) if value is not None else None

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms <= 0:
            return
        try:
            self.client.set(self._key(key), value, px=ttl_ms)
        except Exception as exc:
            log.warning("cache store write failed: %r", exc)

    def close(self) -> None:
        self.client.close()
