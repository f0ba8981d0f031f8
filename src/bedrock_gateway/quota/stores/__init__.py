"""Quota stores, chosen by URL; each backend's client library is imported only when used.

=====================================  ====================================================
``memory://``                          ``MemoryStore`` (one process, the default)
``sqlite:///var/lib/gw/quota.db``      ``SQLiteStore`` (processes on one host)
``redis://host:6379/0``, ``rediss://`` ``RedisStore`` (``pip install bedrock-gateway[redis]``)
``dynamodb://table?region=eu-west-1``  ``DynamoDBStore``
=====================================  ====================================================

Redis and DynamoDB URLs take ``prefix=`` (Redis key prefix and cluster hash tag) and
``endpoint_url=`` (DynamoDB Local or a test server) query parameters, and both ``keep_calls_s=``:
how long a call's record outlives its holds (default 3600; it makes a settlement sent again
within that time count once).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from bedrock_gateway.quota.ledger import KEEP_CALLS_MS, QuotaStore

__all__ = ["STORE_SCHEMES", "open_store"]

STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "dynamodb")


def open_store(url: str) -> QuotaStore:
    """The store a URL names; raises ``ValueError`` for a malformed or unknown URL."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    scheme = parts.scheme
    if scheme == "memory":
        from bedrock_gateway.quota.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path == "/":
            raise ValueError("a SQLite store URL is sqlite:///path/to/file.db")
        from bedrock_gateway.quota.stores.sqlite import SQLiteStore

        return SQLiteStore(parts.path)
    keep_ms = KEEP_CALLS_MS
    if "keep_calls_s" in query:
        try:
            keep_ms = int(float(query["keep_calls_s"]) * 1000)
        except ValueError:
            keep_ms = -1
        if keep_ms < 1000:
            raise ValueError("keep_calls_s must be a number of seconds, at least 1")
    if scheme in ("redis", "rediss"):
        from bedrock_gateway.quota.stores.redis import RedisStore

        prefix = query.pop("prefix", "bgw")
        base = url.split("?", 1)[0]
        return RedisStore.from_url(base, prefix=prefix, keep_ms=keep_ms)
    if scheme == "dynamodb":
        table = parts.netloc
        if not table:
            raise ValueError("a DynamoDB store URL is dynamodb://table?region=us-east-1")
        from bedrock_gateway.quota.stores.dynamodb import DynamoDBStore

        return DynamoDBStore(table, region=query.get("region"),
                             endpoint_url=query.get("endpoint_url"), keep_ms=keep_ms)
    raise ValueError(f"unknown quota store URL scheme {scheme!r}; use one of "
                     + ", ".join(f"{s}://" for s in STORE_SCHEMES))
