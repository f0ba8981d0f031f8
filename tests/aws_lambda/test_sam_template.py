"""examples/sam: the template lints, says what the deployment relies on, and its code works.

The template is read with cfn-lint's CloudFormation-aware YAML loader (``!Ref`` becomes
``{"Ref": ...}``), so the assertions look at the same structure CloudFormation will.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
from bedrock_gateway.config import parse_config
from bedrock_gateway.quota.stores.dynamodb import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from bedrock_gateway.testing.tokens import TokenIssuer

cfnlint_decode = pytest.importorskip("cfnlint.decode")

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / "examples" / "sam"
TEMPLATE = SAM / "template.yaml"
EVENTS = ROOT / "tests" / "events"
STAGE_WILDCARD = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*"
METHOD_ARN = ("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST/model/"
              "anthropic.claude-3-haiku-20240307-v1:0/converse")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, matches = cfnlint_decode.decode(str(TEMPLATE))
    assert not matches, matches
    assert decoded is not None
    return dict(decoded)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def statements(template: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every IAM policy statement of the template's roles, with the condition guarding it."""
    for role in resources(template, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if "Fn::If" in statement:
                    condition, then, otherwise = statement["Fn::If"]
                    assert otherwise == {"Ref": "AWS::NoValue"}
                    yield then, condition
                else:
                    yield statement, None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- lint -------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    if not cfn_lint.exists():
        pytest.skip("cfn-lint is not installed in this environment")
    done = subprocess.run([str(cfn_lint), "--format", "json", str(TEMPLATE)],
                          capture_output=True, text=True, check=False, timeout=120)
    findings = json.loads(done.stdout or "[]")
    assert findings == [], findings
    assert done.returncode == 0, done.stderr


# -- the API ----------------------------------------------------------------------------------


def test_proxy_method_streams_from_the_forwarder(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    (resource,) = resources(template, "AWS::ApiGateway::Resource").values()
    assert resource["Properties"]["PathPart"] == "{proxy+}"
    method = template["Resources"]["ProxyMethod"]["Properties"]
    assert method["HttpMethod"] == "ANY"
    integration = method["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    assert integration["IntegrationHttpMethod"] == "POST"
    assert integration["ResponseTransferMode"] == "STREAM"
    uri = integration["Uri"]["Fn::Sub"]
    assert uri.endswith(":lambda:path/2021-11-15/functions/${ForwarderFunction.Arn}"
                        "/response-streaming-invocations")


def test_integration_timeout_is_explicit_and_may_exceed_29_seconds(
        template: dict[str, Any]) -> None:
    integration = template["Resources"]["ProxyMethod"]["Properties"]["Integration"]
    assert integration["TimeoutInMillis"] == {"Ref": "IntegrationTimeoutMs"}
    parameter = template["Parameters"]["IntegrationTimeoutMs"]
    assert parameter["MaxValue"] == 900_000  # streaming integrations: up to 15 minutes
    assert parameter["Default"] > 29_000
    forwarder = template["Resources"]["ForwarderFunction"]["Properties"]
    assert forwarder["Timeout"] * 1000 >= parameter["MaxValue"]  # the function outlives it


def test_private_endpoint_only_through_the_vpc_endpoint(template: dict[str, Any]) -> None:
    api = template["Resources"]["Api"]["Properties"]
    assert api["EndpointConfiguration"]["Types"] == [{"Ref": "EndpointType"}]
    assert template["Parameters"]["EndpointType"]["AllowedValues"] == ["REGIONAL", "PRIVATE"]
    condition, policy, otherwise = api["Policy"]["Fn::If"]
    assert condition == "IsPrivate" and otherwise == {"Ref": "AWS::NoValue"}
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {
        "StringNotEquals": {"aws:SourceVpce": {"Ref": "VpcEndpointId"}}}
    assert api["EndpointConfiguration"]["VpcEndpointIds"]["Fn::If"][1] == [
        {"Ref": "VpcEndpointId"}]
    assert "PrivateApiNeedsEndpoint" in template["Rules"]


def test_authorizer_is_a_switchable_request_authorizer(template: dict[str, Any]) -> None:
    assert template["Conditions"]["UseAuthorizer"] == {
        "Fn::Equals": [{"Ref": "EnableAuthorizer"}, "true"]}
    authorizer = template["Resources"]["Authorizer"]
    assert authorizer["Condition"] == "UseAuthorizer"
    props = authorizer["Properties"]
    assert props["Type"] == "REQUEST"
    assert props["IdentitySource"] == "method.request.header.Authorization"
    assert props["AuthorizerResultTtlInSeconds"] == {"Ref": "AuthorizerCacheTtlSeconds"}
    for name in ("AuthorizerFunction", "AuthorizerPermission", "AuthorizerRole",
                 "AuthorizerLogGroup"):
        assert template["Resources"][name]["Condition"] == "UseAuthorizer", name
    method = template["Resources"]["ProxyMethod"]["Properties"]
    assert method["AuthorizationType"] == {"Fn::If": ["UseAuthorizer", "CUSTOM", "NONE"]}
    assert method["AuthorizerId"] == {
        "Fn::If": ["UseAuthorizer", {"Ref": "Authorizer"}, {"Ref": "AWS::NoValue"}]}
    forwarder_env = template["Resources"]["ForwarderFunction"]["Properties"]["Environment"]
    assert forwarder_env["Variables"]["TRUST_AUTHORIZER"] == {
        "Fn::If": ["UseAuthorizer", "true", "false"]}


def test_outputs(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= {"GatewayUrl", "ApiId"}
    assert template["Outputs"]["ApiId"]["Value"] == {"Ref": "Api"}
    url = template["Outputs"]["GatewayUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://${Api}.execute-api.${AWS::Region}.")
    assert url.endswith("/${Stage}")


# -- the functions ----------------------------------------------------------------------------


def test_forwarder_runs_our_streaming_runtime_on_the_managed_runtime(
        template: dict[str, Any]) -> None:
    forwarder = template["Resources"]["ForwarderFunction"]["Properties"]
    assert forwarder["Runtime"] in ("python3.12", "python3.13")
    env = forwarder["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/var/task/bootstrap"
    module, attr = env["BEDROCK_GATEWAY_HANDLER"].split(":")
    assert (SAM / f"{module}.py").is_file() and attr == "handler"
    assert env["QUOTA_TABLE"] == {"Ref": "QuotaTable"}
    bootstrap = SAM / "bootstrap"
    assert os.access(bootstrap, os.X_OK)
    text = bootstrap.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "exec python3 -m bedrock_gateway.adapters.aws_lambda.runtime" in text
    assert importlib.util.find_spec("bedrock_gateway.adapters.aws_lambda.runtime") is not None


def test_handlers_exist(template: dict[str, Any]) -> None:
    for function in resources(template, "AWS::Serverless::Function").values():
        props = function["Properties"]
        module, attr = props["Handler"].split(".")
        source = (SAM / props["CodeUri"] / f"{module}.py").read_text()
        assert f"\ndef {attr}(" in source or f"\n{attr} = " in source


def test_log_groups_have_retention_and_the_function_names(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    functions = resources(template, "AWS::Serverless::Function")
    assert len(groups) == len(functions) == 2
    for function in functions.values():
        props = function["Properties"]
        group = groups[props["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + props["FunctionName"]["Fn::Sub"]}


# -- least privilege --------------------------------------------------------------------------


def test_iam_has_no_wildcards_and_no_managed_policies(template: dict[str, Any]) -> None:
    for function in resources(template, "AWS::Serverless::Function").values():
        props = function["Properties"]
        assert "Role" in props and "Policies" not in props  # no SAM-added managed policies
    for role in resources(template, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
    found = list(statements(template))
    assert found
    for statement, _ in found:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, action
        for resource in as_list(statement["Resource"]):
            assert resource != "*" and "*" not in json.dumps(resource), resource


def test_bedrock_only_on_the_allowed_models(template: dict[str, Any]) -> None:
    bedrock = [(s, c) for s, c in statements(template)
               if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]
    invoke = [s for s, c in bedrock if c is None]
    assert len(invoke) == 1
    assert sorted(as_list(invoke[0]["Action"])) == [
        "bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert invoke[0]["Resource"] == {"Ref": "AllowedModelArns"}
    assert template["Parameters"]["AllowedModelArns"]["Type"] == "CommaDelimitedList"
    guarded = [(s, c) for s, c in bedrock if c is not None]
    assert guarded == [({"Effect": "Allow", "Action": "bedrock:ApplyGuardrail",
                         "Resource": {"Ref": "GuardrailArn"}}, "UseGuardrail")]


def test_dynamodb_only_what_the_store_needs_on_the_table(template: dict[str, Any]) -> None:
    dynamodb = [s for s, _ in statements(template)
                if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    assert len(dynamodb) == 1
    assert sorted(as_list(dynamodb[0]["Action"])) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert dynamodb[0]["Resource"] == {"Fn::GetAtt": ["QuotaTable", "Arn"]}


def test_quota_table_is_what_the_dynamodb_store_expects(template: dict[str, Any]) -> None:
    table = template["Resources"]["QuotaTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": KEY_ATTRIBUTE,
                                              "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE,
                                                "Enabled": True}


# -- the code in examples/sam -----------------------------------------------------------------


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/sam/{name}.py`` as Lambda would (its directory on ``sys.path``)."""
    monkeypatch.syspath_prepend(str(SAM))
    for module in (name, "settings"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)  # removed again after the test
    return module


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, token_issuer: TokenIssuer) -> TokenIssuer:
    """The environment template.yaml gives the functions, pointed at the test issuer."""
    monkeypatch.setenv("BEDROCK_GATEWAY_CONFIG", str(SAM / "gateway.toml"))
    monkeypatch.setenv("JWT_ISSUER", token_issuer.issuer)
    monkeypatch.setenv("JWT_AUDIENCE", token_issuer.audience)
    monkeypatch.setenv("JWT_JWKS_URL", token_issuer.jwks_url)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("QUOTA_TABLE", "gw-quota")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    return token_issuer


def rest_request_event(token: str) -> dict[str, Any]:
    text = (EVENTS / "rest_request_authorizer.json").read_text()
    event: dict[str, Any] = json.loads(text.replace("TOKEN_PLACEHOLDER", token))
    assert event["methodArn"] == METHOD_ARN
    return event


def test_settings_lay_the_deployment_over_gateway_toml(lambda_env: TokenIssuer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_example("settings", monkeypatch).load_settings()
    config = parse_config(settings)  # the same checks as load_config
    assert config.quota.store == "dynamodb://gw-quota?region=eu-west-1"
    assert config.upstream.region == "eu-west-1"
    assert config.auth.jwt is not None
    assert config.auth.jwt.jwks_url == lambda_env.jwks_url
    assert config.auth.jwt.issuer == lambda_env.issuer


def test_forwarder_builds_a_trusting_handler(lambda_env: TokenIssuer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUST_AUTHORIZER", "true")
    forwarder = load_example("forwarder", monkeypatch)
    assert isinstance(forwarder.handler, LambdaHandler)
    assert forwarder.handler.trust_authorizer is True
    assert forwarder.build_handler({**os.environ, "TRUST_AUTHORIZER": "false"}
                                   ).trust_authorizer is False


def test_authorizer_allows_the_whole_stage(lambda_env: TokenIssuer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer = load_example("authorizer", monkeypatch)
    token = lambda_env.issue("alice", tenant="t1", groups=["engineering"])
    answer = authorizer.handler(rest_request_event(token), None)
    assert answer["principalId"] == "alice"
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE_WILDCARD}]
    assert answer["context"]["subject"] == "alice"
    assert answer["context"]["tenant"] == "t1"


def test_authorizer_denies_only_this_method_when_the_rules_refuse_the_model(
        lambda_env: TokenIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer = load_example("authorizer", monkeypatch)
    token = lambda_env.issue("bob", tenant="t1", groups=["sales"])  # only nova-lite for him
    statements = authorizer.handler(rest_request_event(token), None)["policyDocument"][
        "Statement"]
    assert statements == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE_WILDCARD},
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": METHOD_ARN}]


def test_authorizer_refuses_a_bad_token(lambda_env: TokenIssuer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer = load_example("authorizer", monkeypatch)
    other = TokenIssuer(issuer=lambda_env.issuer, audience=lambda_env.audience,
                        key_id=lambda_env.key_id)  # same kid, another key: a forgery
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(rest_request_event(other.issue("mallory")), None)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(rest_request_event("not-a-token"), None)
