"""The operation table (bedrock-runtime, and opt-in bedrock-agent-runtime) and the router that
maps a raw request onto it.

Routing works on the *raw* (still percent-encoded) path, segment by segment, so a model id
such as ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic...`` (sent as
one segment with ``%3A`` and ``%2F``) survives intact. Each path parameter is decoded once,
validated against what Bedrock accepts, and the upstream path is rebuilt from the decoded
values with the exact encoding botocore uses — so what reaches Bedrock is canonical whatever
a hostile client sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from bedrock_gateway.errors import UnknownOperationError, ValidationError

__all__ = ["AGENT_RUNTIME", "OPERATIONS", "RUNTIME", "SERVICES", "Operation", "Route",
           "rebuild_decoded", "route"]

RUNTIME = "bedrock-runtime"
AGENT_RUNTIME = "bedrock-agent-runtime"
SERVICES = (RUNTIME, AGENT_RUNTIME)  # what a gateway can be configured to serve

# A path of segments made of RFC 3986 pchar characters (percent escapes well-formed).
_PATH_OK = re.compile(r"^(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)+$")
_UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]*$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+\-_]{0,2047}$")
_GUARDRAIL_ID = re.compile(
    r"^(?:[a-z0-9]+|arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$"
)
_GUARDRAIL_VERSION = re.compile(r"^(?:[1-9][0-9]{0,7}|DRAFT)$")
_INVOCATION_ARN = re.compile(
    r"^arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:async-invoke/[a-z0-9]{12}$"
)
# bedrock-agent-runtime identifiers, by botocore's service model.
_KNOWLEDGE_BASE_ID = re.compile(
    r"^(?:[0-9a-zA-Z]{10}|arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}"
    r":knowledge-base/[0-9a-zA-Z]{10})$"
)
_AGENT_ID = re.compile(r"^[0-9a-zA-Z]{1,10}$")
_SESSION_ID = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")

# ListAsyncInvokes' query parameters, by botocore's service model (ListAsyncInvokesRequest):
# name -> what a value must look like. Anything else is refused, never forwarded.
_ISO8601 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})$")
_LIST_ASYNC_QUERY: dict[str, re.Pattern[str]] = {
    "maxResults": re.compile(r"^(?:[1-9][0-9]{0,2}|1000)$"),  # MaxResults: 1..1000
    "nextToken": re.compile(r"^\S{1,2048}$"),  # PaginationToken
    "sortBy": re.compile(r"^SubmissionTime$"),
    "sortOrder": re.compile(r"^(?:Ascending|Descending)$"),
    "statusEquals": re.compile(r"^(?:InProgress|Completed|Failed)$"),
    "submitTimeAfter": _ISO8601,
    "submitTimeBefore": _ISO8601,
}
_QUERY_PARAMS = {"ListAsyncInvokes": _LIST_ASYNC_QUERY}
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # echoed in an error only when this plain


@dataclass(frozen=True, slots=True)
class Operation:
    """One Bedrock operation: how it looks on the wire and how it answers."""

    name: str
    method: str
    template: tuple[str, ...]  # path segments; "{name}" marks a parameter
    streaming: bool = False  # answers with application/vnd.amazon.eventstream
    query: bool = False  # accepts a query string
    json_body: bool = False  # the body must be a JSON object (InvokeModel: when sent as JSON)
    service: str = RUNTIME
    supported: bool = True
    resource: str | None = None  # what access rules and quotas call the thing used (agents)

    def path(self, params: dict[str, str]) -> str:
        """The canonical upstream path for these (decoded) parameters, encoded as botocore does."""
        out = []
        for seg in self.template:
            if seg[0] == "{":
                value = params[seg[1:-1]]
                out.append(value if _UNRESERVED.match(value) else quote(value, safe="-._~"))
            else:
                out.append(seg)
        return "/" + "/".join(out)

    def resource_id(self, params: dict[str, str]) -> str | None:
        """The agent resource this call uses (``knowledge-base/ID``, ``agent/ID/alias/ALIAS``),
        from its path parameters; ``None`` for operations that name none in the path."""
        return self.resource.format_map(params) if self.resource is not None else None


def _op(name: str, method: str, path: str, *, streaming: bool = False, query: bool = False,
        json_body: bool = True, supported: bool = True, service: str = RUNTIME,
        resource: str | None = None) -> Operation:
    template = tuple(path.strip("/").split("/"))
    return Operation(name, method, template, streaming=streaming, query=query,
                     json_body=json_body and method == "POST", service=service,
                     supported=supported, resource=resource)


OPERATIONS: tuple[Operation, ...] = (
    _op("InvokeModel", "POST", "/model/{modelId}/invoke", json_body=False),
    _op("InvokeModelWithResponseStream", "POST", "/model/{modelId}/invoke-with-response-stream",
        streaming=True, json_body=False),
    _op("Converse", "POST", "/model/{modelId}/converse"),
    _op("ConverseStream", "POST", "/model/{modelId}/converse-stream", streaming=True),
    _op("CountTokens", "POST", "/model/{modelId}/count-tokens"),
    _op("ApplyGuardrail", "POST",
        "/guardrail/{guardrailIdentifier}/version/{guardrailVersion}/apply"),
    _op("InvokeGuardrailChecks", "POST", "/guardrail-checks/invoke"),
    _op("StartAsyncInvoke", "POST", "/async-invoke"),
    _op("ListAsyncInvokes", "GET", "/async-invoke", query=True),
    _op("GetAsyncInvoke", "GET", "/async-invoke/{invocationArn}"),
    # HTTP/2 bidirectional streaming: recognized so it gets a clear answer, never forwarded.
    _op("InvokeModelWithBidirectionalStream", "POST",
        "/model/{modelId}/invoke-with-bidirectional-stream", streaming=True, supported=False),
    # bedrock-agent-runtime (served only when configured): knowledge bases and agents. Their
    # paths share no shape with bedrock-runtime's, so the path alone names the service.
    _op("Retrieve", "POST", "/knowledgebases/{knowledgeBaseId}/retrieve",
        service=AGENT_RUNTIME, resource="knowledge-base/{knowledgeBaseId}"),
    _op("RetrieveAndGenerate", "POST", "/retrieveAndGenerate", service=AGENT_RUNTIME),
    _op("RetrieveAndGenerateStream", "POST", "/retrieveAndGenerateStream", streaming=True,
        service=AGENT_RUNTIME),
    _op("InvokeAgent", "POST", "/agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}"
        "/text", streaming=True, service=AGENT_RUNTIME,
        resource="agent/{agentId}/alias/{agentAliasId}"),
)

_VALIDATORS = {
    "modelId": _MODEL_ID,
    "guardrailIdentifier": _GUARDRAIL_ID,
    "guardrailVersion": _GUARDRAIL_VERSION,
    "invocationArn": _INVOCATION_ARN,
    "knowledgeBaseId": _KNOWLEDGE_BASE_ID,
    "agentId": _AGENT_ID,
    "agentAliasId": _AGENT_ID,
    "sessionId": _SESSION_ID,
}


@dataclass(frozen=True, slots=True)
class Route:
    operation: Operation
    params: dict[str, str]


def _decode_param(name: str, raw: str) -> str:
    try:
        value = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        raise ValidationError(f"The {name} in the path is not valid UTF-8.") from None
    if not _VALIDATORS[name].match(value) or (
        name == "modelId" and any(part in ("", ".", "..") for part in value.split("/"))
    ):
        raise ValidationError(f"The provided {name} is not valid.")
    return value


def _check_query(op: Operation, query: str) -> None:
    """Only the operation's modelled query parameters, each once, each a valid value."""
    allowed = _QUERY_PARAMS.get(op.name, {})
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=len(allowed) or 1)
    except (ValueError, UnicodeDecodeError):  # "a&&b", bad UTF-8, too many fields
        raise ValidationError("The query string is not valid.") from None
    seen: set[str] = set()
    for name, value in pairs:
        pattern = allowed.get(name)
        if pattern is None:
            shown = f" '{name}'" if _PARAM_NAME.match(name) else ""
            raise ValidationError(f"{op.name} does not take the query parameter{shown}.")
        if name in seen:
            raise ValidationError(f"The query parameter '{name}' is given more than once.")
        seen.add(name)
        if not pattern.match(value):
            raise ValidationError(f"The value of the query parameter '{name}' is not valid.")


def _index(ops: tuple[Operation, ...]) -> dict[tuple[int, str], tuple[Operation, ...]]:
    index: dict[tuple[int, str], list[Operation]] = {}
    for op in ops:
        index.setdefault((len(op.template), op.template[0]), []).append(op)
    return {key: tuple(value) for key, value in index.items()}


_BY_SHAPE = _index(OPERATIONS)


def rebuild_decoded(segments: list[str]) -> str | None:
    """The canonical raw path for path ``segments`` whose parameters arrived *decoded* (some
    Lambda integrations decode ``%2F``), or ``None`` when no operation has that shape.

    A decoded path is ambiguous in general, but not here: every template has fixed segments,
    and only an operation's first parameter (a model id, guardrail or async-invoke ARN) can
    hold ``/``, so it takes whatever the fixed segments around it leave. Nothing is validated:
    :func:`route` still decodes and checks every parameter of the result."""
    for op in OPERATIONS:
        template = op.template
        slots = [i for i, seg in enumerate(template) if seg[0] == "{"]
        extra = len(segments) - len(template)
        if template[0] != segments[0] or not slots or extra < 0:
            continue
        first, params = slots[0], {}
        for i, seg in enumerate(template):
            value = ("/".join(segments[first:first + extra + 1]) if i == first else
                     segments[i] if i < first else segments[i + extra])
            if seg[0] == "{":
                params[seg[1:-1]] = value
            elif seg != value:
                break
        else:
            return op.path(params)
    return None


def route(method: str, raw_path: str, query: str = "",
          services: frozenset[str] | tuple[str, ...] = SERVICES) -> Route:
    """Map ``method`` + raw path onto an operation of one of ``services``, or raise a
    Bedrock-shaped error.

    Raises :class:`UnknownOperationError` for paths no operation (of those services) has and
    :class:`ValidationError` for malformed segments or parameter values.
    """
    if not _PATH_OK.match(raw_path):
        if raw_path.startswith("/"):
            raise ValidationError("The request path contains characters that are not allowed.")
        raise UnknownOperationError("The requested operation is not recognized.")
    segments = raw_path[1:].split("/")
    path_matched = False
    for op in _BY_SHAPE.get((len(segments), segments[0]), ()):
        if op.service not in services:
            continue
        raw_params: dict[str, str] = {}
        for tmpl, seg in zip(op.template, segments, strict=True):
            if tmpl[0] == "{":
                if not seg:
                    break
                raw_params[tmpl[1:-1]] = seg
            elif tmpl != seg:
                break
        else:
            path_matched = True
            if op.method != method:
                continue
            if not op.supported:
                raise ValidationError(
                    f"{op.name} needs HTTP/2 bidirectional streaming, which this gateway does not"
                    " offer."
                )
            if query and not op.query:
                raise ValidationError(f"{op.name} does not take query parameters.")
            if query:
                _check_query(op, query)
            params = {k: _decode_param(k, v) for k, v in raw_params.items()}
            return Route(op, params)
    if path_matched:
        raise UnknownOperationError(f"Method {method} is not allowed on this path.")
    raise UnknownOperationError("The requested operation is not recognized.")
