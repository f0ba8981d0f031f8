"""ParameterPolicy: bounds on inference parameters, guardrail presence, stripped fields."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway import Call, Response
from bedrock_gateway.errors import ValidationError
from bedrock_gateway.filters.base import RequestPolicy, verdict
from bedrock_gateway.filters.parameters import ParameterPolicy
from bedrock_gateway.operations import route
from bedrock_gateway.pipeline import Next
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock
from tests.conftest import gateway_client

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
MSG = [{"role": "user", "content": [{"text": "hello there"}]}]


def cats(findings: list[Any]) -> list[tuple[str, str]]:
    return [(f.category, f.action) for f in findings]


def converse(**extra: Any) -> dict[str, Any]:
    return {"messages": json.loads(json.dumps(MSG)), **extra}


# -- Converse ----------------------------------------------------------------------------------


def test_is_a_request_policy_named_parameters() -> None:
    policy = ParameterPolicy(max_tokens=10)
    assert isinstance(policy, RequestPolicy)
    assert policy.name == "parameters"
    assert ParameterPolicy(name="p2").name == "p2"


def test_converse_max_tokens_clamped_and_logged() -> None:
    body = converse(inferenceConfig={"maxTokens": 4096})
    findings = ParameterPolicy(max_tokens=512).apply("Converse", CLAUDE, body)
    assert body["inferenceConfig"]["maxTokens"] == 512
    assert cats(findings) == [("max_tokens", "log")]
    assert findings[0].filter == "parameters"
    assert verdict(findings).blocked is None


def test_converse_max_tokens_within_limit_untouched() -> None:
    body = converse(inferenceConfig={"maxTokens": 100})
    assert ParameterPolicy(max_tokens=512).apply("ConverseStream", CLAUDE, body) == []
    assert body["inferenceConfig"]["maxTokens"] == 100


def test_converse_missing_max_tokens_is_written() -> None:
    body = converse()
    findings = ParameterPolicy(max_tokens=512).apply("Converse", CLAUDE, body)
    assert body["inferenceConfig"] == {"maxTokens": 512}
    assert cats(findings) == [("max_tokens", "log")]


def test_block_mode_refuses_and_leaves_body() -> None:
    body = converse(inferenceConfig={"maxTokens": 4096, "temperature": 1.5, "topP": 0.2})
    policy = ParameterPolicy(max_tokens=512, temperature=(0.0, 1.0), top_p=(0.5, 1.0),
                             on_violation="block")
    findings = policy.apply("Converse", CLAUDE, body)
    assert cats(findings) == [("max_tokens", "block"), ("temperature", "block"),
                              ("top_p", "block")]
    assert body["inferenceConfig"] == {"maxTokens": 4096, "temperature": 1.5, "topP": 0.2}
    assert "parameters" in verdict(findings).message()


def test_converse_temperature_and_top_p_clamped_both_ways() -> None:
    policy = ParameterPolicy(temperature=(0.2, 0.8), top_p=(0.5, 0.9))
    high = converse(inferenceConfig={"temperature": 1.0, "topP": 1.0})
    assert cats(policy.apply("Converse", CLAUDE, high)) == [("temperature", "log"),
                                                            ("top_p", "log")]
    assert high["inferenceConfig"] == {"temperature": 0.8, "topP": 0.9}
    low = converse(inferenceConfig={"temperature": 0, "topP": 0.1})
    policy.apply("Converse", CLAUDE, low)
    assert low["inferenceConfig"] == {"temperature": 0.2, "topP": 0.5}
    inside = converse(inferenceConfig={"temperature": 0.5})
    assert policy.apply("Converse", CLAUDE, inside) == []


@pytest.mark.parametrize("value", ["0.5", True, math.nan, math.inf, [1]])
def test_wrong_type_always_blocks(value: object) -> None:
    body = converse(inferenceConfig={"temperature": value})
    findings = ParameterPolicy(temperature=(0.0, 1.0)).apply("Converse", CLAUDE, body)
    assert cats(findings) == [("temperature", "block")]


@pytest.mark.parametrize("value", [100.0, "100", False])
def test_max_tokens_must_be_an_integer(value: object) -> None:
    body = converse(inferenceConfig={"maxTokens": value})
    findings = ParameterPolicy(max_tokens=512).apply("Converse", CLAUDE, body)
    assert cats(findings) == [("max_tokens", "block")]


def test_huge_numbers_are_clamped() -> None:
    body = converse(inferenceConfig={"maxTokens": 10**400, "temperature": -(10**400)})
    policy = ParameterPolicy(max_tokens=9, temperature=(0.0, 1.0))
    assert cats(policy.apply("Converse", CLAUDE, body)) == [("max_tokens", "log"),
                                                            ("temperature", "log")]
    assert body["inferenceConfig"] == {"maxTokens": 9, "temperature": 0.0}


def test_null_is_absent() -> None:
    body = converse(inferenceConfig={"maxTokens": None, "temperature": None})
    findings = ParameterPolicy(max_tokens=9, temperature=(0, 1)).apply("Converse", CLAUDE, body)
    assert body["inferenceConfig"] == {"maxTokens": 9, "temperature": None}
    assert cats(findings) == [("max_tokens", "log")]


def test_converse_additional_model_request_fields_are_bounded() -> None:
    body = converse(inferenceConfig={"maxTokens": 10},
                    additionalModelRequestFields={"max_tokens": 9000, "top_p": 1.0})
    findings = ParameterPolicy(max_tokens=512, top_p=(0.0, 0.9)).apply("Converse", CLAUDE, body)
    assert body["additionalModelRequestFields"] == {"max_tokens": 512, "top_p": 0.9}
    assert cats(findings) == [("max_tokens", "log"), ("top_p", "log")]


# -- InvokeModel families ----------------------------------------------------------------------

FAMILIES = [
    ("us.anthropic.claude-3-haiku-20240307-v1:0",
     {"anthropic_version": "bedrock-2023-05-31", "messages": MSG, "max_tokens": 9000,
      "temperature": 2.0, "top_p": 1.0},
     {"max_tokens": 512, "temperature": 1.0, "top_p": 0.9}),
    ("meta.llama3-8b-instruct-v1:0",
     {"prompt": "hi", "max_gen_len": 9000, "temperature": 2.0, "top_p": 1.0},
     {"max_gen_len": 512, "temperature": 1.0, "top_p": 0.9}),
    ("mistral.mistral-7b-instruct-v0:2",
     {"prompt": "hi", "max_tokens": 9000, "temperature": 2.0, "top_p": 1.0},
     {"max_tokens": 512, "temperature": 1.0, "top_p": 0.9}),
    ("cohere.command-r-v1:0",
     {"message": "hi", "max_tokens": 9000, "temperature": 2.0, "p": 1.0},
     {"max_tokens": 512, "temperature": 1.0, "p": 0.9}),
    ("amazon.nova-lite-v1:0",
     {"messages": MSG, "inferenceConfig": {"max_new_tokens": 9000, "temperature": 2.0,
                                           "top_p": 1.0}},
     {"inferenceConfig": {"max_new_tokens": 512, "temperature": 1.0, "top_p": 0.9}}),
    ("amazon.nova-pro-v1:0",
     {"messages": MSG, "inferenceConfig": {"maxTokens": 9000, "temperature": 2.0, "topP": 1.0}},
     {"inferenceConfig": {"maxTokens": 512, "temperature": 1.0, "topP": 0.9}}),
    ("amazon.titan-text-express-v1",
     {"inputText": "hi", "textGenerationConfig": {"maxTokenCount": 9000, "temperature": 2.0,
                                                  "topP": 1.0}},
     {"textGenerationConfig": {"maxTokenCount": 512, "temperature": 1.0, "topP": 0.9}}),
]


@pytest.mark.parametrize(("model", "body", "expected"), FAMILIES,
                         ids=[m for m, _, _ in FAMILIES])
def test_invoke_model_family_fields_clamped(model: str, body: dict[str, Any],
                                            expected: dict[str, Any]) -> None:
    body = json.loads(json.dumps(body))
    policy = ParameterPolicy(max_tokens=512, temperature=(0.0, 1.0), top_p=(0.0, 0.9))
    findings = policy.apply("InvokeModelWithResponseStream", model, body)
    assert cats(findings) == [("max_tokens", "log"), ("temperature", "log"), ("top_p", "log")]
    for key, value in expected.items():
        assert body[key] == value


@pytest.mark.parametrize(("model", "body", "path"), [
    (CLAUDE, {"anthropic_version": "bedrock-2023-05-31", "messages": MSG}, ("max_tokens",)),
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "hi"}, ("max_gen_len",)),
    ("amazon.nova-micro-v1:0", {"messages": MSG}, ("inferenceConfig", "max_new_tokens")),
    ("amazon.titan-text-lite-v1", {"inputText": "hi", "textGenerationConfig": {}},
     ("textGenerationConfig", "maxTokenCount")),
])
def test_invoke_model_missing_max_tokens_is_written(model: str, body: dict[str, Any],
                                                    path: tuple[str, ...]) -> None:
    findings = ParameterPolicy(max_tokens=77).apply("InvokeModel", model, body)
    node: Any = body
    for key in path:
        node = node[key]
    assert node == 77
    assert cats(findings) == [("max_tokens", "log")]


def test_invoke_model_unknown_family_checks_known_spellings_without_writing() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    body = {"prompt": "hi", "max_tokens": 9000, "temperature": 3}
    findings = ParameterPolicy(max_tokens=100, temperature=(0, 1)).apply("InvokeModel", arn, body)
    assert body == {"prompt": "hi", "max_tokens": 100, "temperature": 1}
    assert len(findings) == 2
    bare: dict[str, Any] = {"prompt": "hi"}
    assert ParameterPolicy(max_tokens=100).apply("InvokeModel", arn, bare) == []
    assert bare == {"prompt": "hi"}


def test_embedding_models_get_no_max_tokens() -> None:
    body = {"inputText": "hi"}
    assert ParameterPolicy(max_tokens=10).apply("InvokeModel", "amazon.titan-embed-text-v2:0",
                                                body) == []
    assert body == {"inputText": "hi"}


def test_non_model_operations_only_strip() -> None:
    body = {"source": "INPUT", "content": [], "performanceConfig": {"latency": "optimized"}}
    policy = ParameterPolicy(max_tokens=10, guardrail="force", strip=["performanceConfig"])
    assert cats(policy.apply("ApplyGuardrail", None, body)) == [("strip", "log")]
    assert body == {"source": "INPUT", "content": []}


# -- guardrail presence and stripping -----------------------------------------------------------

GUARD = {"guardrailIdentifier": "abc123", "guardrailVersion": "1"}


def test_forbid_refuses_a_client_guardrail() -> None:
    policy = ParameterPolicy(guardrail="forbid")  # clamp mode: still refused
    assert cats(policy.apply("Converse", CLAUDE, converse(guardrailConfig=GUARD))) == [
        ("guardrail", "block")]
    assert policy.apply("Converse", CLAUDE, converse()) == []
    headers = {"x-amzn-bedrock-guardrailidentifier": "abc123",
               "x-amzn-bedrock-guardrailversion": "1"}
    assert cats(policy.check_headers("InvokeModel", headers)) == [("guardrail", "block")]
    assert policy.check_headers("InvokeModel", {"content-type": "application/json"}) == []


def test_force_requires_a_guardrail() -> None:
    policy = ParameterPolicy(guardrail="force")
    assert cats(policy.apply("ConverseStream", CLAUDE, converse())) == [("guardrail", "block")]
    assert policy.apply("ConverseStream", CLAUDE, converse(guardrailConfig=GUARD)) == []
    assert cats(policy.check_headers("InvokeModel", {})) == [("guardrail", "block")]
    assert policy.check_headers("InvokeModel",
                                {"x-amzn-bedrock-guardrailidentifier": "abc123"}) == []
    assert policy.check_headers("Converse", {}) == []  # Converse: the body says


def test_strip_removes_dotted_paths_and_their_headers() -> None:
    policy = ParameterPolicy(strip=["performanceConfig", "serviceTier", "inferenceConfig.stopSequences",
                                    "additionalModelRequestFields", "not.there"])
    body = converse(inferenceConfig={"maxTokens": 5, "stopSequences": ["x"]},
                    performanceConfig={"latency": "optimized"}, serviceTier={"type": "priority"},
                    additionalModelRequestFields={"top_k": 5})
    findings = policy.apply("Converse", CLAUDE, body)
    assert body == converse(inferenceConfig={"maxTokens": 5})
    assert cats(findings) == [("strip", "log")] * 4
    headers = {"x-amzn-bedrock-performanceconfig-latency": "optimized",
               "x-amzn-bedrock-service-tier": "priority", "content-type": "application/json"}
    assert len(policy.check_headers("InvokeModel", headers)) == 2
    assert headers == {"content-type": "application/json"}


@pytest.mark.parametrize("kwargs", [
    {"max_tokens": 0}, {"temperature": (1.0, 0.5)}, {"top_p": (0.9, 0.1)},
    {"on_violation": "warn"}, {"guardrail": "maybe"}, {"strip": "performanceConfig"},
])
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        ParameterPolicy(**kwargs)


def _call(model: str, body: bytes, op: str = "converse",
          headers: dict[str, str] | None = None) -> Call:
    path = f"/model/{model}/{op}"
    r = route("POST", path)
    return Call("POST", path, "", headers or {"content-type": "application/json"}, body,
                r.operation, r.params)


def test_check_call_reencodes_the_body_only_when_changed() -> None:
    policy = ParameterPolicy(max_tokens=50)
    call = _call(CLAUDE, json.dumps(converse(inferenceConfig={"maxTokens": 10})).encode())
    original = call.body
    assert policy.check_call(call) == []
    assert call.body is original
    call = _call(CLAUDE, json.dumps(converse(inferenceConfig={"maxTokens": 500})).encode())
    assert cats(policy.check_call(call)) == [("max_tokens", "log")]
    assert json.loads(call.body)["inferenceConfig"]["maxTokens"] == 50


def test_check_call_skips_a_body_that_is_not_json() -> None:
    call = _call(CLAUDE, b"\x00\x01", "invoke", {"content-type": "application/octet-stream"})
    assert ParameterPolicy(max_tokens=5, guardrail="forbid").check_call(call) == []


# -- end to end: boto3 -> gateway -> FakeBedrock ------------------------------------------------


class Enforce:
    """A minimal middleware around the policy (the content-filter middleware does the same)."""

    def __init__(self, policy: ParameterPolicy) -> None:
        self.policy = policy

    def __call__(self, call: Call, next_: Next) -> Response:
        v = verdict(self.policy.check_call(call))
        if v.blocked is not None:
            raise ValidationError(v.message())
        return next_(call)


def test_e2e_converse_clamped_before_forwarding(
        serve_gateway: Callable[..., BackgroundServer], fake_bedrock: FakeBedrock) -> None:
    policy = ParameterPolicy(max_tokens=2, temperature=(0.0, 0.5), strip=["performanceConfig"])
    server = serve_gateway([Enforce(policy)])
    client = gateway_client(server.url)
    reply = client.converse(modelId=CLAUDE, messages=MSG,
                            inferenceConfig={"maxTokens": 4000, "temperature": 0.9},
                            performanceConfig={"latency": "standard"})
    assert reply["stopReason"] == "max_tokens"  # the fake obeyed the clamped cap
    assert reply["usage"]["outputTokens"] == 2
    (sent,) = fake_bedrock.requests
    assert json.loads(sent.body)["inferenceConfig"] == {"maxTokens": 2, "temperature": 0.5}
    assert "performanceConfig" not in json.loads(sent.body)


def test_e2e_invoke_model_clamped_and_block_mode_refuses(
        serve_gateway: Callable[..., BackgroundServer], fake_bedrock: FakeBedrock) -> None:
    clamp = gateway_client(serve_gateway([Enforce(ParameterPolicy(max_tokens=1))]).url)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 300, "messages": MSG}
    answer = json.loads(clamp.invoke_model(modelId=CLAUDE, body=json.dumps(body))["body"].read())
    assert answer["usage"]["output_tokens"] == 1
    assert json.loads(fake_bedrock.requests[0].body)["max_tokens"] == 1
    block = gateway_client(serve_gateway(
        [Enforce(ParameterPolicy(max_tokens=1, on_violation="block"))]).url)
    with pytest.raises(ClientError) as info:
        block.invoke_model(modelId=CLAUDE, body=json.dumps(body))
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "parameters" in info.value.response["Error"]["Message"]
    assert len(fake_bedrock.requests) == 1  # the refused call never reached Bedrock


def test_e2e_forbidden_guardrail_header(
        serve_gateway: Callable[..., BackgroundServer], fake_bedrock: FakeBedrock) -> None:
    client = gateway_client(serve_gateway([Enforce(ParameterPolicy(guardrail="forbid"))]).url)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": MSG}
    with pytest.raises(ClientError) as info:
        client.invoke_model(modelId=CLAUDE, body=json.dumps(body),
                            guardrailIdentifier="abc123", guardrailVersion="1")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    client.invoke_model(modelId=CLAUDE, body=json.dumps(body))
    assert len(fake_bedrock.requests) == 1
