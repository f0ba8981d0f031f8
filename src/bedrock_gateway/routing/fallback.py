"""Fallback across an alias's models, before the first byte reaches the client.

:class:`FallbackHandler` wraps the terminal handler (normally a
:class:`~bedrock_gateway.forward.SigV4Forwarder`). For a call routed by
:class:`~bedrock_gateway.routing.aliases.AliasRouter` (a route note under
:data:`~bedrock_gateway.routing.aliases.ROUTE_KEY`) it tries the chosen model, then each
fallback in order, moving on when an attempt fails *before any byte was returned*:

- the handler answers 429 (``ThrottlingException``, ``ModelNotReadyException``...), any 5xx,
  or an error typed ``ModelNotReadyException`` whatever its status; or
- the handler raises :class:`~bedrock_gateway.errors.UpstreamUnavailableError`.

Anything else — a 200 (buffered or a stream that has started), or a client error such as
``ValidationException`` — is returned at once: a stream is never restarted on another model,
and a bad request is not retried elsewhere. Models whose circuit is open in the
:class:`~bedrock_gateway.routing.breaker.CircuitBreaker` are skipped; no new attempt starts
after ``deadline_s`` (measured on ``clock`` from the first attempt, which always runs unless its
circuit is open). Every attempt is appended to the note's ``attempts`` as
``{"model", "region", "outcome", "status"}`` and the note's ``served`` names the model that
answered. Each attempt sets the note's ``region``, so a fallback to the same model in another
region goes to that region's endpoint (:class:`~bedrock_gateway.upstreams.Upstreams`); the
circuit breaker keeps one circuit per model and region.
The last failure is returned (or raised) as-is, so the client sees Bedrock's own error.

The forwarder retries each model itself first; keep its ``max_attempts`` low (1 or 2) behind a
fallback, or the deadline is spent retrying the first model. Calls without a route note pass
straight through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import ServiceUnavailableError, UpstreamUnavailableError
from bedrock_gateway.routing.aliases import ROUTE_KEY
from bedrock_gateway.routing.breaker import CircuitBreaker

__all__ = ["FallbackHandler", "is_fallback_status"]

log = logging.getLogger("bedrock_gateway.routing")

_NOT_READY = "modelnotreadyexception"


def is_fallback_status(response: Response) -> bool:
    """Whether a response is a failure another model may answer instead (429, 5xx, not ready)."""
    status = response.status
    if status == 200:
        return False
    if status == 429 or status >= 500:
        return True
    error_type = response.headers.get("x-amzn-errortype", "")
    return error_type.split(":", 1)[0].lower() == _NOT_READY


class FallbackHandler:
    """Terminal handler trying an alias's models in order (see the module docstring)."""

    def __init__(self, handler: Callable[[Call], Response],
                 breaker: CircuitBreaker | None = None, deadline_s: float = 30.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        self.handler = handler
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock=clock)
        self.deadline_s = deadline_s
        self._clock = clock

    def close(self) -> None:
        """Release the wrapped handler (the forwarder's connections)."""
        close = getattr(self.handler, "close", None)
        if callable(close):
            close()

    def __call__(self, call: Call) -> Response:
        note: dict[str, Any] | None = call.attrs.get(ROUTE_KEY)
        if note is None:
            return self.handler(call)
        chain: list[dict[str, Any]] = note.get("chain") or [
            {"model": m, "region": None} for m in (note["model"], *note.get("fallback", ()))]
        attempts: list[dict[str, Any]] = note.setdefault("attempts", [])
        breaker = self.breaker
        deadline: float | None = None
        last: Response | None = None
        error: UpstreamUnavailableError | None = None
        for step in chain:
            model, region = step["model"], step.get("region")
            circuit = f"{model}@{region}" if region else model
            if not breaker.allow(circuit):
                attempts.append({"model": model, "region": region, "outcome": "circuit-open",
                                 "status": None})
                continue
            if deadline is None:
                deadline = self._clock() + self.deadline_s
            elif self._clock() >= deadline:
                attempts.append({"model": model, "region": region, "outcome": "deadline",
                                 "status": None})
                break
            call.params["modelId"] = model
            note["region"] = region
            try:
                response = self.handler(call)
            except UpstreamUnavailableError as exc:
                breaker.record_failure(circuit)
                attempts.append({"model": model, "region": region, "outcome": "unavailable",
                                 "status": exc.status})
                if last is not None:
                    last.close()
                last, error = None, exc
                continue
            if not is_fallback_status(response):
                breaker.record_success(circuit)
                attempts.append({"model": model, "region": region, "outcome": "ok",
                                 "status": response.status})
                note["served"] = model
                if last is not None:
                    last.close()
                return response
            breaker.record_failure(circuit)
            attempts.append({"model": model, "region": region, "outcome": "failed",
                             "status": response.status})
            if last is not None:
                last.close()  # an earlier failure is superseded; release it
            last, error = response, None
        if len(attempts) > 1:
            log.warning("alias %r: every model failed: %s", note.get("alias"), attempts)
        if last is not None:
            return last
        if error is not None:
            raise error
        raise ServiceUnavailableError(
            f"No model behind '{note.get('alias')}' is available right now.")
