"""From a routed request to what the fake answers: status, headers, a body or frames.

The table is built once; each entry is a plain function of the request (:class:`Incoming`: the
decoded path parameters, the raw query, the body, the request headers). Bedrock-shaped failures
are raised as :class:`GatewayError`. InvokeModel answers carry the usage headers
(:meth:`Answer.token_headers`) and echo the request's service-tier / latency headers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bedrock_gateway.errors import UnknownOperationError
from bedrock_gateway.testing import fake_agents
from bedrock_gateway.testing.fake_async import AsyncInvokeStore
from bedrock_gateway.testing.fake_billing import invoke_options
from bedrock_gateway.testing.fake_converse import (
    apply_guardrail,
    converse,
    converse_stream,
    count_tokens,
    invoke_guardrail_checks,
)
from bedrock_gateway.testing.fake_models import Segments, invoke_model, invoke_model_stream
from bedrock_gateway.testing.fake_text import PromptCache

__all__ = ["EVENTSTREAM", "Dispatcher", "Incoming", "Outgoing"]

EVENTSTREAM = "application/vnd.amazon.eventstream"
_JSON = "application/json"


@dataclass(slots=True)
class Outgoing:
    """A response to write: ``segments`` (event-stream frames) when streaming, else ``body``."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    segments: Segments | None = None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A routed request: path parameters, raw query, body, headers (lower-cased names) and
    the synthetic stream shape ``(count, size)`` queued for it, if any."""

    params: dict[str, str]
    query: str
    body: bytes
    synthetic: tuple[int, int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(value: object) -> Outgoing:
    return Outgoing(200, [("Content-Type", _JSON)], json.dumps(value).encode())


def _stream(headers: list[tuple[str, str]], segments: Segments) -> Outgoing:
    return Outgoing(200, headers, segments=segments)


Handler = Callable[[Incoming], Outgoing]


class Dispatcher:
    """Maps an operation name onto its builder, with the fake's shared state bound in."""

    def __init__(self, cache: PromptCache, store: AsyncInvokeStore) -> None:
        self._cache = cache
        self._store = store
        self._table: dict[str, Handler] = {
            "Converse": self._converse,
            "ConverseStream": self._converse_stream,
            "InvokeModel": self._invoke,
            "InvokeModelWithResponseStream": self._invoke_stream,
            "CountTokens": lambda r: _json(count_tokens(r.params["modelId"], r.body)),
            "ApplyGuardrail": lambda r: _json(apply_guardrail(r.body)),
            "InvokeGuardrailChecks": lambda r: _json(invoke_guardrail_checks(r.body)),
            "StartAsyncInvoke": lambda r: _json(self._store.start(r.body)),
            "GetAsyncInvoke": lambda r: _json(self._store.get(r.params["invocationArn"])),
            "ListAsyncInvokes": lambda r: _json(self._store.list(r.query)),
            # bedrock-agent-runtime
            "Retrieve": lambda r: _json(fake_agents.retrieve(r.params["knowledgeBaseId"], r.body)),
            "RetrieveAndGenerate": lambda r: _json(fake_agents.retrieve_and_generate(r.body)),
            "RetrieveAndGenerateStream": lambda r: _stream(
                *fake_agents.retrieve_and_generate_stream(r.body)),
            "InvokeAgent": lambda r: _stream(*fake_agents.invoke_agent(r.params, r.body)),
        }

    def __call__(
        self,
        operation: str,
        params: dict[str, str],
        query: str,
        body: bytes,
        *,
        synthetic: tuple[int, int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Outgoing:
        handler = self._table.get(operation)
        if handler is None:
            raise UnknownOperationError(f"The fake does not implement {operation}.")
        return handler(Incoming(params, query, body, synthetic, headers or {}))

    def _converse(self, r: Incoming) -> Outgoing:
        answer = converse(r.params["modelId"], r.body, self._cache)
        return Outgoing(200, [("Content-Type", _JSON)], answer.body)

    def _converse_stream(self, r: Incoming) -> Outgoing:
        answer = converse_stream(r.params["modelId"], r.body, self._cache, synthetic=r.synthetic)
        return Outgoing(200, [("Content-Type", EVENTSTREAM)], segments=answer.segments)

    def _invoke(self, r: Incoming) -> Outgoing:
        options = invoke_options(r.headers)
        answer = invoke_model(r.params["modelId"], r.body, self._cache)
        headers = [("Content-Type", _JSON), *answer.token_headers(), *options]
        return Outgoing(200, headers, answer.body)

    def _invoke_stream(self, r: Incoming) -> Outgoing:
        options = invoke_options(r.headers)
        answer = invoke_model_stream(
            r.params["modelId"], r.body, self._cache, synthetic=r.synthetic)
        headers = [("Content-Type", EVENTSTREAM), ("X-Amzn-Bedrock-Content-Type", _JSON)]
        return Outgoing(200, [*headers, *options], segments=answer.segments)
