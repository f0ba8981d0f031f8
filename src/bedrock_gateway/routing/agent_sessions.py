"""Agent sessions and memories kept apart per principal.

Every caller of a gateway reaches Bedrock under the gateway's one AWS identity, and an agent's
sessions (conversation state) and memories (summaries across sessions) are keyed only by the
ids the *client* chooses. Passed through as they are, one tenant that learns or guesses
another's ``sessionId`` or ``memoryId`` would continue that conversation and read what it
remembers.

:class:`AgentSessionScope` prefixes both ids, on the way up, with a digest of who is calling
(tenant and subject, or tenant only), and takes the prefix off the ids Bedrock echoes in its
response headers, so the client sees exactly the ids it sent. The prefix is derived, not
stored: every gateway process agrees without shared state, and no caller can produce another
principal's prefix, because the gateway always applies the caller's own. Bedrock allows 100
characters for these ids; the prefix takes :data:`PREFIX_LENGTH`, so a client's own id may be
at most ``100 - PREFIX_LENGTH`` long (longer ones are refused with a ``ValidationException``).

RetrieveAndGenerate's ``sessionId`` is created by Bedrock, not chosen by the client, so it
cannot be scoped this way; see ``docs/routing.md``.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Literal

from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import ValidationError

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Next

__all__ = ["PREFIX_LENGTH", "AgentSessionScope"]

PREFIX_LENGTH = 13  # 12 hex characters and "-"
_MAX_ID = 100
_ID = re.compile(r"^[0-9a-zA-Z._:-]+$")
_HEADERS = ("x-amz-bedrock-agent-session-id", "x-amz-bedrock-agent-memory-id")


class AgentSessionScope:
    """Middleware scoping InvokeAgent session and memory ids (see the module docstring)."""

    def __init__(self, scope: Literal["principal", "tenant"] = "principal") -> None:
        self.scope = scope

    def prefix(self, call: Call) -> str:
        principal = call.principal
        tenant = principal.tenant if principal is not None else None
        subject = principal.subject if principal is not None else "anonymous"
        who = f"{tenant or ''}\x00{subject if self.scope == 'principal' else ''}"
        return hashlib.sha256(who.encode()).hexdigest()[:PREFIX_LENGTH - 1] + "-"

    def __call__(self, call: Call, next_: Next) -> Response:
        if call.operation.name != "InvokeAgent":
            return next_(call)
        prefix = self.prefix(call)
        call.params["sessionId"] = prefix + _own(call.params["sessionId"], "sessionId")
        body = call.json()
        memory = body.get("memoryId")
        if memory is not None:
            if not isinstance(memory, str) or not _ID.match(memory):
                raise ValidationError("memoryId is not valid.")
            body["memoryId"] = prefix + _own(memory, "memoryId")
            call.set_json(body)
        response = next_(call)
        for name in _HEADERS:
            value = response.headers.get(name)
            if value is not None and value.startswith(prefix):
                response.headers[name] = value[len(prefix):]
        return response


def _own(value: str, name: str) -> str:
    if len(value) > _MAX_ID - PREFIX_LENGTH:
        raise ValidationError(
            f"{name} may be at most {_MAX_ID - PREFIX_LENGTH} characters through this gateway.")
    return value
