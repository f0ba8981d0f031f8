"""Inference-parameter policy: bound what a request may ask the model for.

:class:`ParameterPolicy` is a :class:`~bedrock_gateway.filters.base.RequestPolicy` for the
operations that run a model (Converse, ConverseStream, InvokeModel,
InvokeModelWithResponseStream). It knows where each API keeps its parameters:

- Converse(Stream): ``inferenceConfig.maxTokens``, ``.temperature``, ``.topP``;
- Anthropic, Mistral, AI21, DeepSeek, OpenAI, Qwen, Writer: ``max_tokens``, ``temperature``,
  ``top_p``; Llama: ``max_gen_len`` for max tokens; Cohere Command: ``p`` for top-p;
- Nova: ``inferenceConfig.max_new_tokens`` (or ``maxTokens``), ``.temperature``, ``.top_p``
  (or ``topP``);
- Titan Text: ``textGenerationConfig.maxTokenCount``, ``.temperature``, ``.topP``.

In an InvokeModel body every one of these spellings that is present is checked, whatever the
model (an application inference profile does not tell which model it runs); so are the
model-native fields a Converse request passes in ``additionalModelRequestFields``.

- ``max_tokens``: a larger value is a violation; a text request that sets none gets
  ``max_tokens`` written into the family's field (when the family is known; a ``log``
  finding), so the bound always holds.
- ``temperature`` / ``top_p``: ``(low, high)`` bounds, inclusive.
- ``on_violation="clamp"`` (default) rewrites an out-of-range value into range and returns a
  ``log`` finding; ``"block"`` returns a ``block`` finding (category ``max_tokens``,
  ``temperature`` or ``top_p``). A value of the wrong type (a string, ``NaN``) always
  blocks; ``null`` counts as absent.
- ``guardrail="forbid"`` refuses a request carrying its own guardrail (``guardrailConfig`` in a
  Converse body, or the ``x-amzn-bedrock-guardrailidentifier`` / ``-guardrailversion``
  headers); ``"force"`` refuses one without (put a
  :class:`~bedrock_gateway.filters.guardrails.GuardrailInjector` before the policy to satisfy
  it). Guardrail findings always block: silently dropping a client's guardrail would remove a
  protection the client asked for.
- ``strip``: dotted paths removed from the body when present (a ``log`` finding, category
  ``strip``). ``performanceConfig`` and ``serviceTier`` also remove the InvokeModel headers
  that carry them.

Headers are not part of the body: :meth:`ParameterPolicy.check_headers` checks (and strips)
them, and :meth:`ParameterPolicy.check_call` does both for a :class:`~bedrock_gateway.call.Call`.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bedrock_gateway.auth.access import model_names
from bedrock_gateway.call import Call
from bedrock_gateway.filters.base import Action, Finding
from bedrock_gateway.model_fields import (
    ANY_MAX_TOKENS,
    ANY_TEMPERATURE,
    ANY_TOP_P,
    CONVERSE_FIELDS,
    GENERATING,
    Field,
    Fields,
    family_fields,
)

__all__ = ["ParameterPolicy"]

_GUARDRAIL_HEADERS = ("x-amzn-bedrock-guardrailidentifier", "x-amzn-bedrock-guardrailversion")
_STRIP_HEADERS = {"performanceConfig": "x-amzn-bedrock-performanceconfig-latency",
                  "serviceTier": "x-amzn-bedrock-service-tier"}

_PROMPT_KEYS = ("messages", "prompt", "inputText", "message")
def _paths(index: int, converse: bool, family: Fields | None
           ) -> tuple[Field, ...]:
    """Where parameter ``index`` (max tokens, temperature, top-p) may be, most specific first."""
    if converse:
        return (CONVERSE_FIELDS[index],)
    anywhere = (ANY_MAX_TOKENS, ANY_TEMPERATURE, ANY_TOP_P)[index]
    return tuple(dict.fromkeys(anywhere if family is None else (family[index], *anywhere)))


def _generates_text(model_id: str | None, body: dict[str, Any]) -> bool:
    """Whether a default max-tokens may be written: a text prompt, not an embedding model."""
    if any("embed" in name.lower() for name in model_names(model_id or "")):
        return False
    return any(key in body for key in _PROMPT_KEYS)


def _parent(body: dict[str, Any], path: Field, create: bool = False) -> dict[str, Any] | None:
    node = body
    for key in path[:-1]:
        child = node.get(key)
        if child is None and create:
            child = node[key] = {}
        if not isinstance(child, dict):
            return None
        node = child
    return node


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):  # may be too large for a float: compare it as an int
        return value
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class ParameterPolicy:
    """Bounds on inference parameters, guardrail presence and fields to strip (see module)."""

    max_tokens: int | None = None
    temperature: tuple[float, float] | None = None
    top_p: tuple[float, float] | None = None
    guardrail: Literal["force", "forbid"] | None = None
    strip: Sequence[str] = ()
    on_violation: Literal["clamp", "block"] = "clamp"
    name: str = "parameters"

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be a positive integer")
        for label, bounds in (("temperature", self.temperature), ("top_p", self.top_p)):
            if bounds is not None and not bounds[0] <= bounds[1]:
                raise ValueError(f"{label} bounds must be (low, high) with low <= high")
        if self.guardrail not in (None, "force", "forbid"):
            raise ValueError("guardrail must be 'force', 'forbid' or None")
        if self.on_violation not in ("clamp", "block"):
            raise ValueError("on_violation must be 'clamp' or 'block'")
        if isinstance(self.strip, str):
            raise ValueError("strip must be a sequence of dotted paths, not one string")

    def _finding(self, category: str, action: Action) -> Finding:
        return Finding(self.name, category, 0, 0, action)

    def apply(self, operation: str, model_id: str | None, body: dict[str, Any]
              ) -> list[Finding]:
        """Check ``body`` and rewrite it in place; the findings say what was done or refused
        (every rewrite comes with a finding, so a caller re-encodes the body only then)."""
        return self._apply(operation, model_id, body)[0]

    def _apply(self, operation: str, model_id: str | None, body: dict[str, Any]
               ) -> tuple[list[Finding], bool]:
        findings: list[Finding] = []
        changed = False
        for dotted in self.strip:
            path = tuple(dotted.split("."))
            parent = _parent(body, path)
            if parent is not None and path[-1] in parent:
                del parent[path[-1]]
                findings.append(self._finding("strip", "log"))
                changed = True
        if operation not in GENERATING:
            return findings, changed
        converse = operation.startswith("Converse")
        family = CONVERSE_FIELDS if converse else family_fields(model_id, body)
        if self.guardrail == "forbid" and body.get("guardrailConfig") is not None:
            findings.append(self._finding("guardrail", "block"))
        if self.guardrail == "force" and converse and not isinstance(
                body.get("guardrailConfig"), dict):
            findings.append(self._finding("guardrail", "block"))
        bounds: tuple[tuple[float, float] | None, ...] = (
            None if self.max_tokens is None else (-math.inf, float(self.max_tokens)),
            self.temperature, self.top_p)
        extra = body.get("additionalModelRequestFields") if converse else None
        for index, label in enumerate(("max_tokens", "temperature", "top_p")):
            limits = bounds[index]
            if limits is None:
                continue
            paths = _paths(index, converse, family)
            changed |= self._bound(body, label, paths, limits, findings)
            if isinstance(extra, dict):  # model-native fields passed through by Converse
                native = _paths(index, False, family_fields(model_id, extra))
                changed |= self._bound(extra, label, native, limits, findings)
            if index == 0 and family is not None and _generates_text(model_id, body) and not any(
                    (p := _parent(body, f)) is not None and p.get(f[-1]) is not None
                    for f in paths):
                parent = _parent(body, family[0], create=True)
                if parent is not None:  # a malformed body is left for Bedrock to refuse
                    parent[family[0][-1]] = self.max_tokens
                    findings.append(self._finding("max_tokens", "log"))
                    changed = True
        return findings, changed

    def _bound(self, body: dict[str, Any], label: str, paths: tuple[Field, ...],
               limits: tuple[float, float], findings: list[Finding]) -> bool:
        changed = False
        low, high = limits
        for path in paths:
            parent = _parent(body, path)
            raw = parent.get(path[-1]) if parent is not None else None
            if parent is None or raw is None:  # absent (null counts as absent)
                continue
            value = _number(raw)
            if value is None or (label == "max_tokens" and not isinstance(raw, int)):
                findings.append(self._finding(label, "block"))
            elif not low <= value <= high:
                if self.on_violation == "block":
                    findings.append(self._finding(label, "block"))
                    continue
                bound = low if value < low else high
                parent[path[-1]] = int(bound) if label == "max_tokens" else bound
                findings.append(self._finding(label, "log"))
                changed = True
        return changed

    def check_headers(self, operation: str, headers: MutableMapping[str, str]
                      ) -> list[Finding]:
        """Check (and strip, in place) the request's lower-case headers."""
        findings: list[Finding] = []
        for dotted, header in _STRIP_HEADERS.items():
            if dotted in self.strip and headers.pop(header, None) is not None:
                findings.append(self._finding("strip", "log"))
        has_guardrail = any(h in headers for h in _GUARDRAIL_HEADERS)
        if self.guardrail == "forbid" and has_guardrail:
            findings.append(self._finding("guardrail", "block"))
        if (self.guardrail == "force" and operation.startswith("InvokeModel")
                and _GUARDRAIL_HEADERS[0] not in headers):
            findings.append(self._finding("guardrail", "block"))
        return findings

    def check_call(self, call: Call) -> list[Finding]:
        """:meth:`check_headers` and :meth:`apply` on ``call``; a rewritten body is stored
        with :meth:`Call.set_json`. A body that is not JSON only has its headers checked."""
        findings = self.check_headers(call.operation.name, call.headers)
        if call.is_json and call.body:
            body = call.json()
            found, changed = self._apply(call.operation.name, call.model_id, body)
            findings += found
            if changed:
                call.set_json(body)
        return findings
