"""The WSGI adapter over real HTTP (wsgiref), with boto3 as the client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import urllib3
from botocore.exceptions import EventStreamError

from bedrock_gateway import Gateway, WSGIApp
from bedrock_gateway.testing import FakeBedrock

from .conftest import gateway_client, make_forwarder
from .test_e2e import ARN, CLAUDE, MESSAGES


class RawURIHandler(WSGIRequestHandler):
    """Like werkzeug/gunicorn: pass the raw request target (wsgiref decodes PATH_INFO)."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["RAW_URI"] = self.path
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_url(fake_bedrock: FakeBedrock) -> Iterator[str]:
    forwarder = make_forwarder(fake_bedrock)
    app = WSGIApp(Gateway(forwarder, anonymous=True, max_body_bytes=1024 * 1024))
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=RawURIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    forwarder.close()


def test_converse_and_stream_through_wsgi(wsgi_url: str, fake_bedrock: FakeBedrock) -> None:
    client = gateway_client(wsgi_url)
    reply = client.converse(modelId=ARN, messages=MESSAGES)
    assert reply["usage"]["inputTokens"] > 0
    assert fake_bedrock.requests[-1].params["modelId"] == ARN
    events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    assert "metadata" in events[-1]


def test_wsgi_stream_bytes_identical_and_errors(wsgi_url: str, fake_bedrock: FakeBedrock) -> None:
    http = urllib3.PoolManager()
    try:
        resp = http.request("POST", f"{wsgi_url}/model/{CLAUDE.replace(':', '%3A')}/converse-stream",
                            body=json.dumps({"messages": MESSAGES}),
                            headers={"Content-Type": "application/json"})
        assert resp.data == fake_bedrock.last_stream_body
        too_big = http.request("POST", f"{wsgi_url}/model/a.b/converse", body=b"x" * (1024 * 1024 + 1),
                               headers={"Content-Type": "application/json"})
        assert too_big.status == 413
    finally:
        http.clear()
    client = gateway_client(wsgi_url)
    fake_bedrock.cut_stream_after(2)
    stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
    with pytest.raises(EventStreamError):
        list(stream)
    stream.close()
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId="bad id with spaces", messages=MESSAGES)


def test_path_info_fallback_without_raw_uri(fake_bedrock: FakeBedrock) -> None:
    forwarder = make_forwarder(fake_bedrock)
    app = WSGIApp(Gateway(forwarder, anonymous=True))
    body = json.dumps({"messages": MESSAGES}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/model/us.amazon.nova-lite-v1:0/converse",
               "QUERY_STRING": "", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": __import__("io").BytesIO(body)}
    statuses: list[str] = []
    out = app(environ, lambda status, headers: statuses.append(status))
    data = b"".join(out)
    out.close()  # type: ignore[attr-defined]
    forwarder.close()
    assert statuses == ["200 OK"]
    assert json.loads(data)["usage"]["inputTokens"] > 0


def test_wsgi_client_disconnect_runs_close_hooks(fake_bedrock: FakeBedrock) -> None:
    """WSGI has no disconnect signal: the gateway notices on its next write, then closes the
    upstream stream and runs the close hooks."""
    import socket
    import struct

    from bedrock_gateway import Call, Next, Response

    closed = threading.Event()

    def recorder(call: Call, next_: Next) -> Response:
        response = next_(call)
        response.on_close(closed.set)
        return response

    forwarder = make_forwarder(fake_bedrock)
    app = WSGIApp(Gateway(forwarder, [recorder], anonymous=True))
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=RawURIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake_bedrock.stream_frames(2000, 4096)  # a long stream ...
    release = fake_bedrock.hold_stream_after(2)  # ... that pauses after two frames
    body = json.dumps({"messages": MESSAGES}).encode()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            sock.sendall(f"POST /model/{CLAUDE}/converse-stream HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                         .encode() + body)
            assert sock.recv(65536).startswith(b"HTTP/1.0 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        release.set()  # the upstream goes on; the gateway's next writes hit a closed socket
        assert closed.wait(10), "close hooks did not run"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        forwarder.close()


def test_gateway_issued_sigv4_keys_through_wsgi(fake_bedrock: FakeBedrock) -> None:
    """The signature covers what the client sent, including headers WSGI keeps out of HTTP_*."""
    import boto3
    from botocore.config import Config

    from bedrock_gateway.auth import AccessKey, SigV4Authorizer

    forwarder = make_forwarder(fake_bedrock)
    keys = SigV4Authorizer([AccessKey("AKIAGATEWAYWSGI00001", secret="wsgi-secret-0123456789",
                                      subject="svc", tenant="t1")])
    app = WSGIApp(Gateway(forwarder, authorizers=[keys]))
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=RawURIHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = boto3.session.Session().client(
            "bedrock-runtime", region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{server.server_port}",
            aws_access_key_id="AKIAGATEWAYWSGI00001", aws_secret_access_key="wsgi-secret-0123456789",
            config=Config(retries={"total_max_attempts": 1}))
        assert client.converse(modelId=ARN, messages=MESSAGES)["usage"]["inputTokens"] > 0
        assert fake_bedrock.requests[-1].params["modelId"] == ARN
        client.close()
    finally:
        server.shutdown()
        server.server_close()
        forwarder.close()


def echo(call: Any) -> Any:
    from bedrock_gateway import Response

    return Response(200, {"content-type": "application/json"},
                    json.dumps({"op": call.operation.name, "model": call.model_id}).encode())


def call_wsgi(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    import io

    environ = {"REQUEST_METHOD": "POST", "QUERY_STRING": "", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": "2", "wsgi.input": io.BytesIO(b"{}"), **environ}
    statuses: list[str] = []
    out = app(environ, lambda status, headers: statuses.append(status))
    data = b"".join(out)
    out.close()  # type: ignore[attr-defined]
    return statuses[0], json.loads(data)


ENCODED_ARN = ARN.replace(":", "%3A").replace("/", "%2F")


@pytest.mark.parametrize("environ", [
    # werkzeug's DispatcherMiddleware / uWSGI mounts: the raw target still has the prefix
    {"SCRIPT_NAME": "/bedrock", "PATH_INFO": f"/model/{ARN}/converse",
     "RAW_URI": f"/bedrock/model/{ENCODED_ARN}/converse"},
    {"SCRIPT_NAME": "/ai/bedrock", "PATH_INFO": f"/model/{ARN}/converse",
     "REQUEST_URI": f"/ai/bedrock/model/{ENCODED_ARN}/converse"},
    # a prefix that is percent-encoded on the wire (SCRIPT_NAME is decoded)
    {"SCRIPT_NAME": "/my gateway", "PATH_INFO": f"/model/{ARN}/converse",
     "RAW_URI": f"/my%20gateway/model/{ENCODED_ARN}/converse"},
    # a proxy stripped the prefix before the server saw the request, and says so in SCRIPT_NAME
    {"SCRIPT_NAME": "/bedrock", "PATH_INFO": f"/model/{ARN}/converse",
     "RAW_URI": f"/model/{ENCODED_ARN}/converse"},
], ids=["raw-uri", "request-uri-two-segments", "encoded-prefix", "prefix-stripped-upstream"])
def test_mounted_under_a_prefix(environ: dict[str, Any]) -> None:
    status, answer = call_wsgi(WSGIApp(Gateway(echo, anonymous=True)), environ)
    assert status == "200 OK", answer
    assert answer == {"op": "Converse", "model": ARN}


def test_mounted_without_raw_uri() -> None:
    """No raw target: PATH_INFO (already after the prefix) is re-encoded."""
    environ = {"SCRIPT_NAME": "/bedrock", "PATH_INFO": "/model/us.amazon.nova-lite-v1:0/converse"}
    status, answer = call_wsgi(WSGIApp(Gateway(echo, anonymous=True)), environ)
    assert (status, answer) == ("200 OK", {"op": "Converse", "model": "us.amazon.nova-lite-v1:0"})


@pytest.mark.parametrize("raw_uri", [True, False])
def test_sigv4_keys_verify_under_a_mount_prefix(raw_uri: bool) -> None:
    """The client signed the full path, prefix included; routing uses the path after it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from bedrock_gateway.auth import AccessKey, SigV4Authorizer

    keys = SigV4Authorizer([AccessKey("AKIAMOUNTEDKEY000001", secret="mounted-secret-0123456789",
                                      subject="svc")])
    full = "/bedrock/model/us.amazon.nova-lite-v1:0/converse"  # as boto3 sends it
    request = AWSRequest("POST", "http://gw.test" + full, data=b"{}",
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("AKIAMOUNTEDKEY000001", "mounted-secret-0123456789"), "bedrock",
              "us-east-1").add_auth(request)
    environ: dict[str, Any] = {
        "SCRIPT_NAME": "/bedrock", "PATH_INFO": "/model/us.amazon.nova-lite-v1:0/converse",
        "HTTP_HOST": "gw.test",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request.headers.items()
           if k.lower() != "content-type"}}
    if raw_uri:
        environ["RAW_URI"] = full
    status, answer = call_wsgi(WSGIApp(Gateway(echo, authorizers=[keys])), environ)
    assert status == "200 OK", answer
    assert answer == {"op": "Converse", "model": "us.amazon.nova-lite-v1:0"}
