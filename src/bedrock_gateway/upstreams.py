"""The terminal handler when a gateway reaches more than one upstream: services and regions.

A :class:`~bedrock_gateway.forward.SigV4Forwarder` talks to one host. :class:`Upstreams` keeps
one forwarder per (service, region) — ``bedrock-runtime`` and ``bedrock-agent-runtime``, the
configured region and the regions a model alias's targets name — and sends each call to the
one its operation's service and its route's region pick. Hosts come from configuration only
(``endpoints``, else the service's regional AWS endpoint), never from anything the client
sent.

``endpoints`` maps ``"<service>"`` (the default region) or ``"<service>/<region>"`` to a URL,
for VPC endpoints or a local fake; ``endpoint_url`` is shorthand for bedrock-runtime in the
default region. Every forwarder shares the same options (credentials, timeouts, retries).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bedrock_gateway.call import Call, Response
from bedrock_gateway.forward import SigV4Forwarder
from bedrock_gateway.operations import AGENT_RUNTIME, RUNTIME, SERVICES

__all__ = ["Upstreams"]

_ROUTE = "bedrock_gateway.route"  # routing.aliases.ROUTE_KEY: the region a target names
# Request headers a service needs beyond Content-Type, Accept and X-Amzn-Bedrock-*.
_SERVICE_HEADERS = {AGENT_RUNTIME: frozenset({"x-amz-source-arn"})}


class Upstreams:
    """Forward each call to its service's host in its route's region (see the module doc)."""

    def __init__(
        self,
        *,
        region: str,
        services: Iterable[str] = (RUNTIME,),
        regions: Iterable[str] = (),
        endpoint_url: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        forwarder: Callable[..., SigV4Forwarder] = SigV4Forwarder,
        **options: Any,
    ) -> None:
        self.region = region
        self.services = tuple(services)
        self._endpoints = dict(endpoints or {})
        if endpoint_url is not None:
            self._endpoints.setdefault(RUNTIME, endpoint_url)
        for key in self._endpoints:
            service, _, _where = key.partition("/")
            if service not in SERVICES:
                raise ValueError(f"endpoints: {key!r} names no service of {SERVICES}")
        self._make = forwarder
        self._options = options
        self._lock = threading.Lock()
        self._forwarders: dict[tuple[str, str], SigV4Forwarder] = {}
        for service in self.services:  # built now, so a bad region or URL fails at start-up
            for where in {region, *regions}:
                self._build(service, where)

    def endpoint(self, service: str, region: str) -> str | None:
        """The configured URL for ``service`` in ``region``; ``None``: AWS's regional host."""
        found = self._endpoints.get(f"{service}/{region}")
        if found is None and region == self.region:
            found = self._endpoints.get(service)
        return found

    def _build(self, service: str, region: str) -> SigV4Forwarder:
        with self._lock:
            made = self._forwarders.get((service, region))
            if made is None:
                url = self.endpoint(service, region) or f"https://{service}.{region}.amazonaws.com"
                made = self._make(region=region, endpoint_url=url,
                                  extra_headers=_SERVICE_HEADERS.get(service, frozenset()),
                                  **self._options)
                self._forwarders[(service, region)] = made
            return made

    def forwarder(self, service: str, region: str | None = None) -> SigV4Forwarder:
        """The forwarder for ``service`` in ``region`` (default: the configured region)."""
        key = (service, region or self.region)
        found = self._forwarders.get(key)
        return found if found is not None else self._build(*key)

    def __call__(self, call: Call) -> Response:
        route = call.attrs.get(_ROUTE)
        region = route.get("region") if route is not None else None
        return self.forwarder(call.operation.service, region)(call)

    def close(self) -> None:
        """Close every forwarder's pooled connections."""
        with self._lock:
            forwarders = list(self._forwarders.values())
        for forwarder in forwarders:
            forwarder.close()
