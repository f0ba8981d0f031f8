"""Usage, cost and quotas: what each call consumed, what it cost, and the limits that hold.

:class:`QuotaEnforcer` is the middleware holding calls to :class:`Limit` objects in a
:class:`QuotaStore` (:class:`MemoryStore` by default; SQLite, Redis and DynamoDB stores are
opened with :func:`open_store` and import their client libraries only then).
:class:`UsageRecorder` writes one :class:`UsageRecord` per call; :class:`Pricing` prices it.
See ``docs/quota.md``.
"""

from typing import TYPE_CHECKING

from bedrock_gateway._lazy import lazy_exports

if TYPE_CHECKING:
    from bedrock_gateway.quota.bounds import InputBound
    from bedrock_gateway.quota.enforcer import QuotaEnforcer
    from bedrock_gateway.quota.ledger import Charge, Decision, QuotaStore, QuotaStoreError
    from bedrock_gateway.quota.limits import Limit
    from bedrock_gateway.quota.prices import Price, Terms
    from bedrock_gateway.quota.pricing import Pricing
    from bedrock_gateway.quota.records import JSONLinesSink, UsageRecord, UsageRecorder
    from bedrock_gateway.quota.stores import open_store
    from bedrock_gateway.quota.stores.memory import MemoryStore
    from bedrock_gateway.quota.usage import Usage

# Names load on first use (PEP 562). Importing any submodule (``quota.config`` does, for every
# gateway) runs this file first; eager imports here would load the enforcer, the usage records
# and the price table for a gateway that has none of them (Lambda cold starts).
_WHERE = {
    "InputBound": "bounds", "QuotaEnforcer": "enforcer",
    **dict.fromkeys(("Charge", "Decision", "QuotaStore", "QuotaStoreError"), "ledger"),
    "Limit": "limits", "Price": "prices", "Terms": "prices", "Pricing": "pricing",
    **dict.fromkeys(("JSONLinesSink", "UsageRecord", "UsageRecorder"), "records"),
    "open_store": "stores", "MemoryStore": "stores.memory", "Usage": "usage",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "Charge",
    "Decision",
    "InputBound",
    "JSONLinesSink",
    "Limit",
    "MemoryStore",
    "Price",
    "Pricing",
    "QuotaEnforcer",
    "QuotaStore",
    "QuotaStoreError",
    "Terms",
    "Usage",
    "UsageRecord",
    "UsageRecorder",
    "open_store",
]
