"""Event documents presented the way each AWS integration presents them, and botocore's own
parser over the results the handler returns."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from botocore.awsrequest import HeadersDict
from botocore.errorfactory import ClientExceptionsFactory
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from botocore.response import StreamingBody
from botocore.session import get_session

EVENTS = Path(__file__).resolve().parent.parent / "events"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE_ARN = ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
               "us.anthropic.claude-3-5-haiku-20241022-v1:0")
KINDS = ("rest_v1_proxy", "http_v2", "alb", "alb_multivalue", "function_url")
CONVERSE = {"messages": [{"role": "user", "content": [{"text": "Hello there, gateway"}]}],
            "inferenceConfig": {"maxTokens": 64}}
OP_SEGMENT = {"Converse": "converse", "ConverseStream": "converse-stream",
              "InvokeModel": "invoke", "InvokeModelWithResponseStream":
              "invoke-with-response-stream"}


def botocore_path(model_id: str, operation: str) -> str:
    """The path boto3 sends: the model id encoded with only ``-._~`` safe."""
    return f"/model/{quote(model_id, safe='-._~')}/{OP_SEGMENT[operation]}"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def _set_header(event: dict[str, Any], name: str, value: str) -> None:
    if isinstance(event.get("multiValueHeaders"), dict):
        event["multiValueHeaders"][name] = [value]
    if isinstance(event.get("headers"), dict):
        event["headers"][name] = value


def present(kind: str, raw_path: str, *, method: str = "POST", body: bytes = b"",
            query: Mapping[str, str] | None = None, b64: bool = False,
            content_type: str | None = "application/json") -> dict[str, Any]:
    """The ``kind`` event document for a request to ``raw_path`` (as boto3 sends it), with
    the path in that integration's own presentation (see the events module docstring)."""
    event = copy.deepcopy(load(kind))
    rc = event["requestContext"]
    decoded = unquote(raw_path)
    query = dict(query or {})
    if kind == "rest_v1_proxy":
        event.update(path=raw_path, httpMethod=method, pathParameters={"proxy": decoded[1:]})
        rc.update(path="/prod" + raw_path, httpMethod=method)
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    elif kind in ("http_v2", "function_url"):
        path = decoded if kind == "http_v2" else raw_path
        event["rawPath"] = path
        rc["http"].update(path=path, method=method)
        event["rawQueryString"] = "&".join(f"{k}={quote(v, safe='-._~')}"
                                           for k, v in query.items())
        event["queryStringParameters"] = query or None
    else:  # ALB: path and query as sent
        event.update(path=raw_path, httpMethod=method)
        encoded = {k: quote(v, safe="-._~") for k, v in query.items()}
        if "multiValueHeaders" in event:
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in encoded.items()}
        else:
            event["queryStringParameters"] = encoded
    if b64:
        event.update(body=base64.b64encode(body).decode(), isBase64Encoded=True)
    else:
        event.update(body=body.decode() if body else None, isBase64Encoded=False)
    for name in ("content-length", "Content-Type", "content-type"):
        for headers in (event.get("headers"), event.get("multiValueHeaders")):
            if isinstance(headers, dict):
                headers.pop(name, None)
    if content_type is not None:
        _set_header(event, "content-type", content_type)
    return event


@cache
def service_model() -> ServiceModel:
    model: ServiceModel = get_session().get_service_model("bedrock-runtime")
    return model


def exceptions() -> Any:
    return ClientExceptionsFactory().create_client_exceptions(service_model())


def result_parts(result: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body bytes of a handler result, as the integration would send."""
    if "multiValueHeaders" in result:
        assert "headers" not in result
        headers = {k: ", ".join(v) for k, v in result["multiValueHeaders"].items()}
    else:
        headers = dict(result["headers"])
    body = (base64.b64decode(result["body"], validate=True) if result["isBase64Encoded"]
            else result["body"].encode())
    return result["statusCode"], headers, body


class _RawStream:
    """What botocore's EventStream reads from: ``stream()`` and ``close()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, amt: int = 1024) -> Iterator[bytes]:
        for i in range(0, len(self._data), amt):  # small pieces: frames cross reads
            yield self._data[i:i + amt]

    def close(self) -> None:
        pass


def parse(result: Mapping[str, Any], operation: str) -> dict[str, Any]:
    """botocore's parse of the result, as a boto3 client would see it (streams read out)."""
    status, headers, body = result_parts(result)
    op = service_model().operation_model(operation)
    response: dict[str, Any] = {"status_code": status, "headers": HeadersDict(headers),
                                "body": body, "context": {"operation_name": operation}}
    if status < 300 and op.has_event_stream_output:
        response["body"] = _RawStream(body)
    elif status < 300 and op.has_streaming_output:
        response["body"] = StreamingBody(_BytesReader(body), len(body))
    parsed: dict[str, Any] = create_parser("rest-json").parse(response, op.output_shape)
    for key, value in list(parsed.items()):
        if hasattr(value, "__iter__") and type(value).__name__ == "EventStream":
            parsed[key] = list(value)
        elif isinstance(value, StreamingBody):
            parsed[key] = value.read()
    return parsed


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, amt: int | None = None) -> bytes:
        end = len(self._data) if amt is None else self._pos + amt
        chunk, self._pos = self._data[self._pos:end], min(end, len(self._data))
        return chunk

    def close(self) -> None:
        pass
