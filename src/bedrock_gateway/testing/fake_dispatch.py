"""From a routed request to what the fake answers: status, headers, a body or frames.

The table is built once; each entry is a plain function of the decoded path parameters, the raw
query and the body. Bedrock-shaped failures are raised as :class:`GatewayError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from bedrock_gateway.errors import UnknownOperationError
from bedrock_gateway.testing import fake_agents
from bedrock_gateway.testing.fake_async import AsyncInvokeStore
from bedrock_gateway.testing.fake_converse import (
    apply_guardrail,
    converse,
    converse_stream,
    count_tokens,
    invoke_guardrail_checks,
)
from bedrock_gateway.testing.fake_models import Answer, Segments, invoke_model, invoke_model_stream
from bedrock_gateway.testing.fake_text import PromptCache

__all__ = ["EVENTSTREAM", "Dispatcher", "Outgoing"]

EVENTSTREAM = "application/vnd.amazon.eventstream"
_JSON = "application/json"


@dataclass(slots=True)
class Outgoing:
    """A response to write: ``segments`` (event-stream frames) when streaming, else ``body``."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    segments: Segments | None = None


def _json(value: object) -> Outgoing:
    return Outgoing(200, [("Content-Type", _JSON)], json.dumps(value).encode())


def _stream(headers: list[tuple[str, str]], segments: Segments) -> Outgoing:
    return Outgoing(200, headers, segments=segments)


Handler = Callable[[dict[str, str], str, bytes, "tuple[int, int] | None"], Outgoing]


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
            "CountTokens": lambda p, q, b, s: _json(count_tokens(p["modelId"], b)),
            "ApplyGuardrail": lambda p, q, b, s: _json(apply_guardrail(b)),
            "InvokeGuardrailChecks": lambda p, q, b, s: _json(invoke_guardrail_checks(b)),
            "StartAsyncInvoke": lambda p, q, b, s: _json(self._store.start(b)),
            "GetAsyncInvoke": lambda p, q, b, s: _json(self._store.get(p["invocationArn"])),
            "ListAsyncInvokes": lambda p, q, b, s: _json(self._store.list(q)),
            # bedrock-agent-runtime
            "Retrieve": lambda p, q, b, s: _json(fake_agents.retrieve(p["knowledgeBaseId"], b)),
            "RetrieveAndGenerate": lambda p, q, b, s: _json(fake_agents.retrieve_and_generate(b)),
            "RetrieveAndGenerateStream": lambda p, q, b, s: _stream(
                *fake_agents.retrieve_and_generate_stream(b)),
            "InvokeAgent": lambda p, q, b, s: _stream(*fake_agents.invoke_agent(p, b)),
        }

    def __call__(
        self,
        operation: str,
        params: dict[str, str],
        query: str,
        body: bytes,
        synthetic: tuple[int, int] | None = None,
    ) -> Outgoing:
        handler = self._table.get(operation)
        if handler is None:
            raise UnknownOperationError(f"The fake does not implement {operation}.")
        return handler(params, query, body, synthetic)

    def _converse(
        self, params: dict[str, str], query: str, body: bytes, synthetic: tuple[int, int] | None
    ) -> Outgoing:
        answer = converse(params["modelId"], body, self._cache)
        return Outgoing(200, [("Content-Type", _JSON)], answer.body)

    def _converse_stream(
        self, params: dict[str, str], query: str, body: bytes, synthetic: tuple[int, int] | None
    ) -> Outgoing:
        answer = converse_stream(params["modelId"], body, self._cache, synthetic=synthetic)
        return Outgoing(200, [("Content-Type", EVENTSTREAM)], segments=answer.segments)

    def _invoke(
        self, params: dict[str, str], query: str, body: bytes, synthetic: tuple[int, int] | None
    ) -> Outgoing:
        answer: Answer = invoke_model(params["modelId"], body, self._cache)
        headers = [
            ("Content-Type", _JSON),
            ("X-Amzn-Bedrock-Input-Token-Count", str(answer.input_tokens)),
            ("X-Amzn-Bedrock-Output-Token-Count", str(answer.output_tokens)),
            ("X-Amzn-Bedrock-Invocation-Latency", str(answer.latency_ms)),
        ]
        return Outgoing(200, headers, answer.body)

    def _invoke_stream(
        self, params: dict[str, str], query: str, body: bytes, synthetic: tuple[int, int] | None
    ) -> Outgoing:
        answer = invoke_model_stream(params["modelId"], body, self._cache, synthetic=synthetic)
        headers = [("Content-Type", EVENTSTREAM), ("X-Amzn-Bedrock-Content-Type", _JSON)]
        return Outgoing(200, headers, segments=answer.segments)
