"""The content-filter middleware: input before forwarding, output as it comes back.

Each :class:`FilterRule` pairs one filter with where it applies (``input``, ``output``) and to
whom (``tenants``; empty = everyone). For a call, the rules that apply run in order:

- **input** — request policies (size, parameters) check and may rewrite the parsed body; text
  filters scan every text of the shape that reaches the model (``filters.text.request_fields``),
  joined across blocks and roles as the model reads them (``filters.joined``).
  ``block`` → 400 ``ValidationException`` naming the filter and category (never the text);
  ``redact`` → the text is rewritten in place, same structure, and the call is forwarded — and
  signed — with the new body; ``log`` → recorded only.
- **output** — a buffered answer is read, scanned and blocked (the client gets the same
  ``ValidationException``) or rewritten; a stream is scanned as it flows by
  :class:`~bedrock_gateway.filters.stream.StreamScanner`.

A body whose shape the gateway cannot read, or a part no filter can read (an image, video,
audio, a binary document), is refused when ``on_unknown_shape = "block"`` (the default: a
filter that cannot see the text must not wave it through) or passed, with a warning, when
``"pass"``; either way each text filter adds ``<name>:unreadable:block`` / ``:allowed``. Every
finding's label (``filter:category:action``) is kept in ``call.attrs["bedrock_gateway.filters"]``;
the usage record lists them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import ValidationError
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.filters.base import Finding, RequestPolicy, TextFilter, verdict
from bedrock_gateway.filters.joined import redact_texts, scan_joined
from bedrock_gateway.filters.stream import StreamScanner
from bedrock_gateway.filters.stream_text import with_payload
from bedrock_gateway.filters.text import (
    Refs,
    TextRef,
    UnknownShapeError,
    request_fields,
    response_texts,
    set_text,
)
from bedrock_gateway.filters.text_walk import Path
from bedrock_gateway.filters.text_walk import where as at
from bedrock_gateway.pipeline import Next

__all__ = ["FINDINGS", "ContentFilter", "FilterRule"]

log = logging.getLogger("bedrock_gateway.filters")
FINDINGS = "bedrock_gateway.filters"  # call.attrs key: labels of what the filters found
# Operations whose request carries content (StartAsyncInvoke: the job's ``modelInput``).
_MODEL_CALLS = frozenset({"Converse", "ConverseStream", "InvokeModel",
                          "InvokeModelWithResponseStream", "CountTokens", "ApplyGuardrail",
                          "InvokeGuardrailChecks", "StartAsyncInvoke",
                          # bedrock-agent-runtime: queries, agent input, and what comes back
                          "Retrieve", "RetrieveAndGenerate", "RetrieveAndGenerateStream",
                          "InvokeAgent"})


@dataclass(frozen=True, slots=True)
class FilterRule:
    filter: TextFilter | RequestPolicy
    input: bool = True
    output: bool = False
    tenants: frozenset[str] = frozenset()

    @property
    def scans_text(self) -> bool:
        # decided once per rule: isinstance() against a runtime Protocol is slow per call
        return callable(getattr(self.filter, "scan", None))

    def applies(self, call: Call) -> bool:
        if not self.tenants:
            return True
        tenant = call.principal.tenant if call.principal else None
        return tenant in self.tenants


def _record(call: Call, findings: Sequence[Finding]) -> None:
    if findings:
        labels = call.attrs.setdefault(FINDINGS, [])
        labels.extend(f"{f.label}:{f.action}" for f in findings)


def _scan(body: dict[str, Any], refs: Sequence[TextRef], filters: Sequence[TextFilter]
          ) -> tuple[list[Finding], bool]:
    """Scan the texts as the model reads them, joined (``filters/joined.py``); rewrite those
    with ``redact`` findings in ``body`` (a ``block`` anywhere makes the caller refuse the whole
    body, rewritten or not). Returns findings and whether the body changed."""
    texts = [ref.text for ref in refs]
    located = scan_joined(texts, filters, [ref.joined for ref in refs])
    rewritten = redact_texts(texts, located)
    for i in sorted(rewritten, reverse=True):  # a key is renamed after the values under it
        set_text(body, refs[i].path, rewritten[i])
    return [loc.finding for loc in located], bool(rewritten)


def _citations(call: Call, frames: Iterator[Frame], filters: Sequence[TextFilter]
               ) -> Iterator[Frame]:
    """RetrieveAndGenerateStream ``citation`` events, each judged whole: a block ends the
    stream (a ``validationException`` frame), a redaction re-encodes the frame."""
    from bedrock_gateway.filters.agent_text import citation_texts

    for frame in frames:
        if frame.event_type != "citation":
            yield frame
            continue
        try:
            payload = json.loads(frame.payload)
            refs = citation_texts(payload) if isinstance(payload, dict) else []
        except (ValueError, UnknownShapeError):  # nothing readable here: pass it on unchanged
            yield frame
            continue
        findings, changed = _scan(payload, refs, filters)
        _record(call, findings)
        v = verdict(findings)
        if v.blocked is not None:
            raise ValidationError(v.message("model output"))
        yield with_payload(frame, payload) if changed else frame


class ContentFilter:
    """Middleware running :class:`FilterRule` objects on input and output."""

    def __init__(self, rules: Sequence[FilterRule], *, on_unknown_shape: str = "block") -> None:
        if on_unknown_shape not in ("block", "pass"):
            raise ValueError("on_unknown_shape must be 'block' or 'pass'")
        self.rules = tuple(rules)
        self.block_unknown = on_unknown_shape == "block"
        for rule in self.rules:
            if rule.output and not rule.scans_text:
                raise ValueError(f"{rule.filter.name} checks requests: it cannot apply to output")
        self._plan = tuple((rule, rule.scans_text) for rule in self.rules)

    def __call__(self, call: Call, next_: Next) -> Response:
        if call.operation.name not in _MODEL_CALLS:
            return next_(call)
        plan = [(r, text) for r, text in self._plan if r.applies(call)]
        policies = [cast(RequestPolicy, r.filter) for r, text in plan if r.input and not text]
        scanners = [cast(TextFilter, r.filter) for r, text in plan if r.input and text]
        outputs = [cast(TextFilter, r.filter) for r, text in plan if r.output]
        if policies or scanners:
            self._check_input(call, policies, scanners)
        response = next_(call)
        if outputs and response.status == 200:
            return self._check_output(call, response, outputs)
        return response

    # -- input -------------------------------------------------------------------------------

    def _check_input(self, call: Call, policies: list[RequestPolicy],
                     texts: list[TextFilter]) -> None:
        if not call.is_json:
            self._unknown(call, "request", texts)
            return
        body = call.json()
        findings: list[Finding] = []
        changed = False
        for policy in policies:
            check_headers = getattr(policy, "check_headers", None)
            if callable(check_headers):  # e.g. a forbidden guardrail header
                findings += check_headers(call.operation.name, call.headers)
            # a policy that rewrites the body reports it (a finding), so only then re-encode
            found = policy.apply(call.operation.name, call.model_id, body)
            changed = changed or bool(found)
            findings += found
        unreadable: list[Path] = []
        if texts:
            try:
                refs = request_fields(call.operation.name, call.model_id, body)
            except UnknownShapeError:
                refs = Refs()
                self._unknown(call, "request", texts)
            found, rewritten = _scan(body, refs, texts)
            findings += found
            changed = changed or rewritten
            unreadable = refs.unreadable
        _record(call, findings)
        v = verdict(findings)
        if v.blocked is not None:
            raise ValidationError(v.message("request"))
        if unreadable:
            self._unknown(call, "request", texts, unreadable[0])
        if changed:
            call.set_json(body)

    def _unknown(self, call: Call, where: str, filters: Sequence[TextFilter],
                 path: Path | None = None) -> None:
        """A body (``path`` None) or a part of one (an image, a binary document) the filters
        cannot read: refused (``on_unknown_shape = "block"``) or let through, and labelled
        ``<filter>:unreadable:block`` / ``:allowed`` in the usage record either way."""
        outcome = "block" if self.block_unknown else "allowed"
        labels = call.attrs.setdefault(FINDINGS, [])
        labels.extend(f"{f.name}:unreadable:{outcome}" for f in filters)
        what = f"this {where}'s shape" if path is None else at(path)
        if self.block_unknown:
            raise ValidationError(
                f"The gateway's content filters cannot read {what} for model {call.model_id},"
                f" and {'unknown shapes are' if path is None else 'unreadable content is'}"
                " refused.")
        log.warning("content filters let through a %s they cannot read (%s, %s, %s)", where,
                    call.operation.name, call.model_id, what)

    # -- output ------------------------------------------------------------------------------

    def _check_output(self, call: Call, response: Response,
                      filters: list[TextFilter]) -> Response:
        if response.is_stream:
            if call.operation.name == "RetrieveAndGenerateStream":  # whole citations, per frame
                response.map_frames(lambda frames: _citations(call, frames, filters))
            scanner = StreamScanner(call.operation.name, filters,
                                    on_finding=lambda f: _record(call, [f]))
            response.map_frames(scanner)
            return response
        try:
            body: Any = json.loads(response.body)
            refs = response_texts(call.operation.name, call.model_id, body) \
                if isinstance(body, dict) else None
        except (ValueError, UnknownShapeError):
            refs = None
        if refs is None:
            try:
                self._unknown(call, "response", filters)
            except ValidationError as exc:
                response.close()
                return Response.from_error(exc)
            return response
        findings, changed = _scan(body, refs, filters)
        _record(call, findings)
        v = verdict(findings)
        if v.blocked is not None:
            response.close()
            return Response.from_error(ValidationError(v.message("model output")))
        if changed:
            response.body = json.dumps(body, separators=(",", ":")).encode()
        return response
