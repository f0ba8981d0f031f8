"""Amazon Bedrock Guardrails enforced by the gateway: inject the operator's guardrail, or apply one.

:class:`GuardrailInjector` makes Bedrock run a guardrail on every model call, whatever the
client sent: Converse(Stream) gets ``guardrailConfig`` in the body (replacing the client's own:
the gateway's policy wins), InvokeModel(WithResponseStream) the headers
``X-Amzn-Bedrock-GuardrailIdentifier`` / ``-GuardrailVersion`` (and ``X-Amzn-Bedrock-Trace:
ENABLED`` when ``trace``; a client's trace header is removed otherwise). ``stream_mode`` (``sync`` /
``async``) applies to ConverseStream only. Which guardrail: ``tenants[principal.tenant]`` when
the tenant is in the map (``None`` there exempts it), else ``default``.

:class:`GuardrailFilter` calls ApplyGuardrail itself, through the rest of the pipeline (signed
with the gateway's credentials; middleware after it, such as a usage recorder, sees each
ApplyGuardrail call): on the request's texts before the model runs (``INPUT``) and on a
buffered answer's texts (``OUTPUT``; streams are not checked — inject a guardrail for those).
An intervention refuses the request, or replaces the answer, with a ``ValidationException``
naming the guardrail (never the text); a guardrail that only masks also intervenes. When
ApplyGuardrail fails the call gets 503 ``ServiceUnavailableException`` (``on_error=
"fail_open"`` lets it through).

Both record in ``call.attrs["bedrock_gateway.guardrail"]`` (:data:`GUARDRAIL_NOTE`):
``injected`` (identifier, version, ``via``), ``input`` / ``output`` (identifier, version,
``action`` and billed ``units``, or ``error``) and ``intervened``: whether the model's answer
says a guardrail stepped in (``stopReason: guardrail_intervened``, InvokeModel's
``amazon-bedrock-guardrailAction: INTERVENED``; streams too).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import GatewayError, ServiceUnavailableError, ValidationError
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.model_fields import GENERATING
from bedrock_gateway.operations import OPERATIONS
from bedrock_gateway.pipeline import Next

__all__ = ["GUARDRAIL_NOTE", "Guardrail", "GuardrailFilter", "GuardrailInjector", "TextExtractor",
           "converse_request_texts", "converse_response_texts", "record_intervention"]

log = logging.getLogger("bedrock_gateway.filters")

GUARDRAIL_NOTE = "bedrock_gateway.guardrail"
_OBSERVED = "bedrock_gateway.guardrail_observed"
_APPLY = next(op for op in OPERATIONS if op.name == "ApplyGuardrail")
_VERSION = re.compile(r"^(?:[1-9][0-9]{0,7}|DRAFT)$")
_IDENTIFIER = re.compile(  # as the router accepts it in ApplyGuardrail's path
    r"^(?:[a-z0-9]+|arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$")
_ID_HEADER = "x-amzn-bedrock-guardrailidentifier"
_VERSION_HEADER = "x-amzn-bedrock-guardrailversion"
_TRACE_HEADER = "x-amzn-bedrock-trace"
_STOPPED = re.compile(rb'"stopReason"\s*:\s*"guardrail_intervened"')
_ACTION = re.compile(rb'"amazon-bedrock-guardrailAction"\s*:\s*"INTERVENED"')

TextExtractor = Callable[[str, str | None, dict[str, Any]], list[str]]


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A Bedrock guardrail: its id (or ARN), version (``"1"``, ``"DRAFT"``) and options."""

    identifier: str
    version: str
    trace: bool = False
    stream_mode: Literal["sync", "async"] | None = None

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.identifier):
            raise ValueError("guardrail identifier must be an id or a guardrail ARN")
        if not _VERSION.match(self.version):
            raise ValueError("guardrail version must be a number or DRAFT")
        if self.stream_mode not in (None, "sync", "async"):
            raise ValueError("stream_mode must be 'sync', 'async' or None")


def _texts(blocks: object) -> list[str]:
    return [b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)
            ] if isinstance(blocks, list) else []


def converse_request_texts(operation: str, model_id: str | None, body: dict[str, Any]
                           ) -> list[str]:
    """The text of a Converse request's ``system`` and ``messages`` blocks (others: none)."""
    if not operation.startswith("Converse"):
        return []
    texts = _texts(body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            texts += _texts(message.get("content"))
    return texts


def converse_response_texts(operation: str, model_id: str | None, body: dict[str, Any]
                            ) -> list[str]:
    """The text blocks of a Converse answer's ``output.message`` (others: none)."""
    output = body.get("output") if operation == "Converse" else None
    message = output.get("message") if isinstance(output, dict) else None
    return _texts(message.get("content")) if isinstance(message, dict) else []


def _note(call: Call) -> dict[str, Any]:
    return cast(dict[str, Any], call.attrs.setdefault(GUARDRAIL_NOTE, {}))


def _pick(call: Call, default: Guardrail | None, tenants: Mapping[str, Guardrail | None]
          ) -> Guardrail | None:
    if call.operation.name not in GENERATING:
        return None
    tenant = call.principal.tenant if call.principal is not None else None
    return tenants[tenant] if tenant is not None and tenant in tenants else default


def _guarded(call: Call) -> bool:
    if "injected" in call.attrs.get(GUARDRAIL_NOTE, {}) or _ID_HEADER in call.headers:
        return True
    return call.operation.name.startswith("Converse") and b"guardrailConfig" in call.body and (
        call.json().get("guardrailConfig") is not None)


def _intervened_in(frame: Frame) -> bool:
    if _STOPPED.search(frame.raw):
        return True
    if frame.event_type != "chunk":
        return False
    try:  # a malformed frame is the client's to see, not a reason to break the stream
        data = frame.json()
        inner = data.get("bytes") if isinstance(data, dict) else None
        return isinstance(inner, str) and _ACTION.search(base64.b64decode(inner)) is not None
    except ValueError:
        return False


def _tap(note: dict[str, Any], frames: Iterator[Frame]) -> Iterator[Frame]:
    try:
        for frame in frames:
            if not note["intervened"] and frame.message_type == "event" and _intervened_in(frame):
                note["intervened"] = True
            yield frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def record_intervention(call: Call, response: Response) -> None:
    """Record in the note whether the model's answer says a guardrail intervened (once per
    call, and only when a guardrail was asked for)."""
    if call.attrs.get(_OBSERVED) or response.status != 200 or not _guarded(call):
        return
    call.attrs[_OBSERVED] = True
    note = _note(call)
    note["intervened"] = False
    if response.is_stream:
        response.map_frames(lambda frames: _tap(note, frames))
    else:
        note["intervened"] = bool(_STOPPED.search(response.body) or _ACTION.search(response.body))


class GuardrailInjector:
    """Middleware: make Bedrock apply the operator's guardrail to every model call."""

    def __init__(self, default: Guardrail | None = None, *,
                 tenants: Mapping[str, Guardrail | None] | None = None) -> None:
        self.default, self.tenants = default, dict(tenants or {})

    def __call__(self, call: Call, next_: Next) -> Response:
        guardrail = _pick(call, self.default, self.tenants)
        if guardrail is not None:
            self.inject(call, guardrail)
        response = next_(call)
        record_intervention(call, response)
        return response

    @staticmethod
    def inject(call: Call, guardrail: Guardrail) -> None:
        """Put ``guardrail`` on ``call`` (body or headers, by operation) and note it."""
        via = "body" if call.operation.name.startswith("Converse") else "headers"
        if via == "body":
            config: dict[str, str] = {"guardrailIdentifier": guardrail.identifier,
                                      "guardrailVersion": guardrail.version}
            if guardrail.trace:
                config["trace"] = "enabled"
            if guardrail.stream_mode and call.operation.name == "ConverseStream":
                config["streamProcessingMode"] = guardrail.stream_mode
            body = call.json()
            body["guardrailConfig"] = config
            call.set_json(body)
        else:
            call.headers[_ID_HEADER] = guardrail.identifier
            call.headers[_VERSION_HEADER] = guardrail.version
            call.headers.pop(_TRACE_HEADER, None)
            if guardrail.trace:
                call.headers[_TRACE_HEADER] = "ENABLED"
        _note(call)["injected"] = {"identifier": guardrail.identifier,
                                   "version": guardrail.version, "via": via}


def _failed(code: str) -> GatewayError:
    error = GatewayError(f"ApplyGuardrail failed: {code}")
    error.code = code
    return error


def _blocked(guardrail: Guardrail, where: str) -> ValidationError:
    return ValidationError(f"The {where} was blocked by the gateway's guardrail"
                           f" {guardrail.identifier!r} (version {guardrail.version}).")


class GuardrailFilter:
    """Middleware: check model calls with ApplyGuardrail before (input) and after (output)."""

    def __init__(
        self,
        default: Guardrail | None = None,
        *,
        tenants: Mapping[str, Guardrail | None] | None = None,
        check_input: bool = True,
        check_output: bool = True,
        request_texts: TextExtractor = converse_request_texts,
        response_texts: TextExtractor = converse_response_texts,
        on_error: Literal["fail_closed", "fail_open"] = "fail_closed",
    ) -> None:
        if on_error not in ("fail_closed", "fail_open"):
            raise ValueError("on_error must be 'fail_closed' or 'fail_open'")
        self.default, self.tenants = default, dict(tenants or {})
        self.check_input, self.check_output = check_input, check_output
        self.request_texts, self.response_texts = request_texts, response_texts
        self.on_error = on_error

    def __call__(self, call: Call, next_: Next) -> Response:
        guardrail = _pick(call, self.default, self.tenants)
        if guardrail is None:
            response = next_(call)
            record_intervention(call, response)
            return response
        op, model = call.operation.name, call.model_id
        if self.check_input and call.is_json and call.body:
            texts = self.request_texts(op, model, call.json())
            if texts and self._apply(call, next_, guardrail, "INPUT", texts):
                raise _blocked(guardrail, "request")
        response = next_(call)
        record_intervention(call, response)
        if not self.check_output or response.is_stream or response.status != 200:
            return response
        try:
            document = json.loads(response.body)
        except ValueError:
            return response
        texts = self.response_texts(op, model, document) if isinstance(document, dict) else []
        if texts and self._apply(call, next_, guardrail, "OUTPUT", texts):
            response.close()
            return Response.from_error(_blocked(guardrail, "response"))
        return response

    def _apply(self, call: Call, next_: Next, guardrail: Guardrail, source: str,
               texts: list[str]) -> bool:
        """Whether the guardrail intervenes on ``texts``; raises 503 when it cannot tell."""
        params = {"guardrailIdentifier": guardrail.identifier,
                  "guardrailVersion": guardrail.version}
        body = {"source": source, "content": [{"text": {"text": t}} for t in texts]}
        probe = Call(
            method="POST", raw_path=_APPLY.path(params), query="",
            headers={"content-type": "application/json"},
            body=json.dumps(body, separators=(",", ":")).encode(), operation=_APPLY,
            params=params, principal=call.principal, attrs={"mount": call.attrs.get("mount", "")})
        entry: dict[str, Any] = {"identifier": guardrail.identifier, "version": guardrail.version}
        _note(call)[source.lower()] = entry
        try:
            response = next_(probe)
            try:
                if response.status != 200:
                    raise _failed(response.headers.get("x-amzn-errortype", "").split(":")[0]
                                  or str(response.status))
                answer = json.loads(response.body)
            finally:
                response.close()
            action = answer.get("action")
            if action not in ("NONE", "GUARDRAIL_INTERVENED"):
                raise _failed("InvalidResponse")
        except (GatewayError, ValueError, AttributeError) as exc:
            entry["error"] = getattr(exc, "code", "InvalidResponse")
            log.warning("guardrail %s could not be applied: %r", guardrail.identifier, exc)
            if self.on_error == "fail_open":
                return False
            raise ServiceUnavailableError(
                f"The gateway could not apply its guardrail {guardrail.identifier!r}.") from None
        entry["action"] = action
        usage = answer.get("usage")
        if isinstance(usage, dict):
            entry["units"] = sum(v for k, v in usage.items() if isinstance(v, int)
                                 and not isinstance(v, bool) and not k.endswith("FreeUnits"))
        return bool(action == "GUARDRAIL_INTERVENED")
