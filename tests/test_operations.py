"""The router: every operation, raw-path model ids, and hostile paths."""

from __future__ import annotations

import pytest

from bedrock_gateway.errors import UnknownOperationError, ValidationError
from bedrock_gateway.operations import OPERATIONS, route

ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
ARN_RAW = ARN.replace(":", "%3A").replace("/", "%2F")


@pytest.mark.parametrize(
    ("method", "path", "operation", "params"),
    [
        ("POST", "/model/anthropic.claude-v2/invoke", "InvokeModel", {"modelId": "anthropic.claude-v2"}),
        ("POST", "/model/m.x/invoke-with-response-stream", "InvokeModelWithResponseStream", {"modelId": "m.x"}),
        ("POST", "/model/us.amazon.nova-lite-v1%3A0/converse", "Converse", {"modelId": "us.amazon.nova-lite-v1:0"}),
        ("POST", f"/model/{ARN_RAW}/converse-stream", "ConverseStream", {"modelId": ARN}),
        ("POST", "/model/m.x/count-tokens", "CountTokens", {"modelId": "m.x"}),
        ("POST", "/guardrail/abc123/version/DRAFT/apply", "ApplyGuardrail",
         {"guardrailIdentifier": "abc123", "guardrailVersion": "DRAFT"}),
        ("POST", "/guardrail-checks/invoke", "InvokeGuardrailChecks", {}),
        ("POST", "/async-invoke", "StartAsyncInvoke", {}),
        ("GET", "/async-invoke", "ListAsyncInvokes", {}),
        ("GET", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aasync-invoke%2Fabcdefghijkl",
         "GetAsyncInvoke",
         {"invocationArn": "arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdefghijkl"}),
    ],
)
def test_routes(method: str, path: str, operation: str, params: dict[str, str]) -> None:
    r = route(method, path)
    assert r.operation.name == operation
    assert r.params == params
    assert r.operation.path(r.params) == path  # rebuilt exactly as botocore encodes it


def test_every_operation_in_the_table_is_routable() -> None:
    names = {op.name for op in OPERATIONS}
    assert {"InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream",
            "CountTokens", "ApplyGuardrail", "StartAsyncInvoke", "GetAsyncInvoke",
            "ListAsyncInvokes"} <= names


def test_lowercase_or_raw_colon_is_normalized_upstream() -> None:
    r = route("POST", "/model/us.amazon.nova-lite-v1%3a0/converse")
    assert r.operation.path(r.params) == "/model/us.amazon.nova-lite-v1%3A0/converse"
    r = route("POST", "/model/us.amazon.nova-lite-v1:0/converse")
    assert r.operation.path(r.params) == "/model/us.amazon.nova-lite-v1%3A0/converse"


@pytest.mark.parametrize(
    ("method", "path", "query", "error"),
    [
        ("POST", "/", "", UnknownOperationError),
        ("POST", "/model/x.y/delete", "", UnknownOperationError),
        ("GET", "/model/x.y/converse", "", UnknownOperationError),
        ("POST", "/model//converse", "", UnknownOperationError),
        ("POST", "/model/x.y/converse/", "", UnknownOperationError),
        ("POST", "/model/..%2F..%2Fadmin/converse", "", ValidationError),
        ("POST", "/model/../converse", "", ValidationError),
        ("POST", "/model/a%0D%0AHost:%20evil/converse", "", ValidationError),
        ("POST", "/model/a b/converse", "", ValidationError),
        ("POST", "/model/%FF%FE/converse", "", ValidationError),
        ("POST", "/model/x.y%2F%2Fz/converse", "", ValidationError),
        ("POST", "/model/x.y/converse", "a=b", ValidationError),
        ("POST", "/guardrail/abc/version/0/apply", "", ValidationError),
        ("POST", "/model/x.y/invoke-with-bidirectional-stream", "", ValidationError),
        ("GET", "/async-invoke/not-an-arn", "", ValidationError),
        ("POST", "https://evil.example/model/x.y/converse", "", UnknownOperationError),
    ],
)
def test_hostile_paths(method: str, path: str, query: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        route(method, path, query)
