"""The ``count_tokens`` input bound: ask Bedrock's CountTokens API what a prompt costs.

The request goes down the rest of the pipeline (so it is signed and forwarded like any other
call) before the call itself. When CountTokens cannot answer — a model or profile it does not
support, an error, a body that is not JSON — the caller falls back to the ``bytes`` bound.
"""

from __future__ import annotations

import base64
import json
import logging

from bedrock_gateway.call import Call
from bedrock_gateway.errors import GatewayError
from bedrock_gateway.operations import OPERATIONS
from bedrock_gateway.pipeline import Next

__all__ = ["count_input_tokens"]

log = logging.getLogger("bedrock_gateway.quota")
_COUNT_TOKENS = next(op for op in OPERATIONS if op.name == "CountTokens")
_CONVERSE_FIELDS = ("messages", "system", "toolConfig", "additionalModelRequestFields")


def _request(call: Call) -> dict[str, object] | None:
    if call.operation.name.startswith("Converse"):
        body = call.json()
        return {"converse": {k: body[k] for k in _CONVERSE_FIELDS if k in body}}
    if not call.is_json:
        return None
    return {"invokeModel": {"body": base64.b64encode(call.body).decode()}}


def count_input_tokens(call: Call, next_: Next) -> int | None:
    """Bedrock's count of the call's input tokens, or ``None`` when it cannot tell."""
    model = call.model_id
    given = _request(call) if model else None
    if model is None or given is None:
        return None
    probe = Call(
        method="POST", raw_path=_COUNT_TOKENS.path({"modelId": model}), query="",
        headers={"content-type": "application/json"},
        body=json.dumps({"input": given}, separators=(",", ":")).encode(),
        operation=_COUNT_TOKENS, params={"modelId": model}, principal=call.principal,
        attrs={"mount": call.attrs.get("mount", "")})
    try:
        response = next_(probe)
        try:
            if response.status != 200:
                log.debug("CountTokens answered %s for %s", response.status, model)
                return None
            tokens = json.loads(response.body).get("inputTokens")
        finally:
            response.close()
    except (GatewayError, ValueError, AttributeError) as exc:
        log.debug("CountTokens failed for %s: %r", model, exc)
        return None
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        return None
    return tokens
