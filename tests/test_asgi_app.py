"""The ASGI adapter driven directly with ASGI messages: mounts, lifespan, odd scopes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bedrock_gateway import ASGIApp, Call, Gateway, Response


def echo(call: Call) -> Response:
    return Response(200, {"content-type": "application/json"},
                    json.dumps({"op": call.operation.name, "model": call.model_id}).encode())


def run(app: ASGIApp, scope: dict[str, Any], body: bytes = b"{}") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # like a server: nothing more until the client leaves
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(raw_path: bytes, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": raw_path.decode("latin-1"),
            "raw_path": raw_path, "root_path": root_path, "query_string": b"",
            "headers": [(b"content-type", b"application/json")]}


def test_mounted_under_a_prefix() -> None:
    app = ASGIApp(Gateway(echo, anonymous=True))
    sent = run(app, http_scope(b"/bedrock/model/us.amazon.nova-lite-v1%3A0/converse", "/bedrock"))
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"op": "Converse", "model": "us.amazon.nova-lite-v1:0"}


def test_non_ascii_raw_path_is_a_validation_error() -> None:
    sent = run(ASGIApp(Gateway(echo, anonymous=True)), http_scope(b"/model/\xff/converse"))
    assert sent[0]["status"] == 400
    assert (b"x-amzn-errortype", b"ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/") in sent[0]["headers"]


def test_lifespan_and_websocket_scopes() -> None:
    app = ASGIApp(Gateway(echo, anonymous=True))
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    sent.clear()
    asyncio.run(ASGIApp(Gateway(echo, anonymous=True))({"type": "websocket"}, receive, send))
    assert sent == []


def test_sigv4_keys_verify_under_a_mount_prefix() -> None:
    """The client signed the full path (prefix included); routing uses the path after it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from bedrock_gateway.auth import AccessKey, SigV4Authorizer

    keys = SigV4Authorizer([AccessKey("AKIAMOUNTEDKEY000001", secret="mounted-secret-0123456789",
                                      subject="svc")])
    app = ASGIApp(Gateway(echo, authorizers=[keys]))
    full = b"/bedrock/model/us.amazon.nova-lite-v1%3A0/converse"
    request = AWSRequest("POST", "http://gw.test" + full.decode(), data=b"{}",
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("AKIAMOUNTEDKEY000001", "mounted-secret-0123456789"), "bedrock",
              "us-east-1").add_auth(request)
    scope = http_scope(full, "/bedrock")
    scope["headers"] = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    scope["headers"].append((b"host", b"gw.test"))
    sent = run(app, scope)
    assert sent[0]["status"] == 200, sent[1]["body"]
    assert json.loads(sent[1]["body"]) == {"op": "Converse", "model": "us.amazon.nova-lite-v1:0"}
