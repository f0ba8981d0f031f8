"""Access rules: selectors, deny-wins, composition, model globs and the AccessPolicy middleware."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.auth.access import (
    AccessPolicy,
    AccessRule,
    Decision,
    Rule,
    _Both,
    _Either,
    model_names,
    resource_model,
)
from bedrock_gateway.auth.dispatch import Credential, CredentialKind
from bedrock_gateway.call import Call, Principal, Response
from bedrock_gateway.errors import AuthenticationError
from bedrock_gateway.operations import OPERATIONS, route
from bedrock_gateway.pipeline import Gateway

from .conftest import Recorder

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
OPUS = "anthropic.claude-3-opus-20240229-v1:0"
US_CLAUDE = f"us.{CLAUDE}"
CLAUDE_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"
PROFILE_ARN = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{US_CLAUDE}"
APP_PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
LLAMA = "meta.llama3-70b-instruct-v1:0"
TITAN = "amazon.titan-text-express-v1"

ALICE = Principal("alice", tenant="t1", groups=frozenset({"dev"}), scopes=frozenset({"chat"}))
BOB = Principal("bob", tenant="t2", groups=frozenset({"ops", "admin"}), scopes=frozenset())
NOBODY = Principal.anonymous()


def decision(rule: Rule | AccessPolicy, principal: Principal, operation: str,
             model: str | None) -> Decision | None:
    verdict = (rule.decide(principal, operation, model) if isinstance(rule, AccessPolicy)
               else rule.evaluate(principal, operation, model))
    return verdict.decision if verdict is not None else None


# -- selectors ------------------------------------------------------------------------------


def test_a_rule_without_selectors_applies_to_everyone() -> None:
    rule = AccessRule("all", allow_models=("*",))
    for principal in (ALICE, BOB, NOBODY):
        assert rule.applies_to(principal)
        assert rule.allows(principal, "Converse", CLAUDE)


@pytest.mark.parametrize(("selector", "alice", "bob"), [
    ({"tenants": ("t1",)}, True, False),
    ({"tenants": ("t1", "t2")}, True, True),
    ({"groups": ("admin",)}, False, True),
    ({"groups": ("dev", "admin")}, True, True),  # any one listed value
    ({"scopes": ("chat",)}, True, False),
    ({"subjects": ("bob",)}, False, True),
    ({"tenants": ("t1",), "groups": ("admin",)}, False, False),  # every set selector must match
    ({"tenants": ("t2",), "groups": ("admin",), "subjects": ("bob",)}, False, True),
    ({"tenants": ("alice",)}, False, False),  # a subject is not a tenant
    ({"groups": ("t1",)}, False, False),
])
def test_selectors(selector: dict[str, Any], alice: bool, bob: bool) -> None:
    rule = AccessRule("r", allow_models=("*",), **selector)
    assert rule.applies_to(ALICE) is alice
    assert rule.applies_to(BOB) is bob
    assert rule.allows(ALICE, "Converse", CLAUDE) is alice
    assert rule.allows(BOB, "Converse", CLAUDE) is bob
    if not bob:
        assert rule.evaluate(BOB, "Converse", CLAUDE) is None


def test_a_principal_without_tenant_groups_or_scopes_matches_no_such_selector() -> None:
    bare = Principal("carol")
    for selector in ({"tenants": ("t1",)}, {"groups": ("dev",)}, {"scopes": ("chat",)}):
        assert not AccessRule("r", **selector).applies_to(bare)
        assert not AccessRule("r", **selector).applies_to(NOBODY)


def test_a_rule_that_does_not_apply_says_nothing_even_about_denied_models() -> None:
    rule = AccessRule("t2-no-opus", tenants=("t2",), deny_models=(OPUS,))
    assert rule.evaluate(ALICE, "Converse", OPUS) is None
    assert decision(rule, BOB, "Converse", OPUS) is Decision.DENY


# -- deny wins ------------------------------------------------------------------------------


def test_deny_wins_inside_one_rule() -> None:
    rule = AccessRule("claude-not-opus", allow_models=("anthropic.*",),
                      deny_models=("*opus*",))
    assert decision(rule, ALICE, "Converse", CLAUDE) is Decision.ALLOW
    assert decision(rule, ALICE, "Converse", OPUS) is Decision.DENY
    assert decision(rule, ALICE, "Converse", LLAMA) is None


def test_deny_wins_even_for_operations_the_rule_does_not_allow() -> None:
    rule = AccessRule("chat-only", allow_operations=("Converse",), deny_models=(OPUS,))
    assert decision(rule, ALICE, "InvokeModel", OPUS) is Decision.DENY
    assert decision(rule, ALICE, "InvokeModel", CLAUDE) is None
    assert decision(rule, ALICE, "Converse", CLAUDE) is Decision.ALLOW


@pytest.mark.parametrize("order", ["allow-first", "deny-first"])
def test_deny_wins_across_rules_of_a_policy(order: str) -> None:
    allow_all = AccessRule("allow-all", allow_models=("*",))
    no_opus = AccessRule("no-opus", deny_models=("*opus*",))
    rules = [allow_all, no_opus] if order == "allow-first" else [no_opus, allow_all]
    policy = AccessPolicy(rules)
    verdict = policy.decide(ALICE, "Converse", OPUS)
    assert verdict is not None and verdict.decision is Decision.DENY and verdict.rule == "no-opus"
    assert decision(policy, ALICE, "Converse", CLAUDE) is Decision.ALLOW


@pytest.mark.parametrize("compose", ["|", "&"])
@pytest.mark.parametrize("deny_side", ["left", "right"])
def test_deny_wins_in_compositions(compose: str, deny_side: str) -> None:
    allow_all = AccessRule("allow-all", allow_models=("*",))
    no_opus = AccessRule("no-opus", deny_models=(OPUS,))
    left, right = (no_opus, allow_all) if deny_side == "left" else (allow_all, no_opus)
    rule = left | right if compose == "|" else left & right
    verdict = rule.evaluate(ALICE, "Converse", OPUS)
    assert verdict is not None and verdict.decision is Decision.DENY
    assert verdict.rule == "no-opus"
    # nested deeper, still denied
    outer = (rule | AccessRule("x")) & (AccessRule("y") | AccessRule("z"))
    assert decision(outer, ALICE, "Converse", OPUS) is Decision.DENY


def test_or_allows_what_either_allows_and_names_the_allowing_rule() -> None:
    claude = AccessRule("claude", allow_models=("anthropic.*",))
    llama = AccessRule("llama", allow_models=("meta.*",))
    either = claude | llama
    assert either.allows(ALICE, "Converse", CLAUDE) and either.allows(ALICE, "Converse", LLAMA)
    assert not either.allows(ALICE, "Converse", TITAN)
    verdict = either.evaluate(ALICE, "Converse", LLAMA)
    assert verdict is not None and verdict.rule == "llama"


def test_and_allows_only_what_both_allow() -> None:
    team = AccessRule("team-t1", tenants=("t1",), allow_models=("*",))
    claude = AccessRule("claude", allow_models=("anthropic.*",))
    both = team & claude
    verdict = both.evaluate(ALICE, "Converse", CLAUDE)
    assert verdict is not None and verdict.decision is Decision.ALLOW
    assert verdict.rule == "team-t1 & claude"
    assert both.evaluate(ALICE, "Converse", LLAMA) is None  # claude says nothing
    assert both.evaluate(BOB, "Converse", CLAUDE) is None  # team-t1 does not apply to bob
    assert isinstance(both, _Both) and isinstance(team | claude, _Either)


# -- allow_operations -----------------------------------------------------------------------


def test_allow_operations() -> None:
    rule = AccessRule("chat", allow_operations=("Converse", "ConverseStream"),
                      allow_models=("anthropic.*",))
    assert rule.allows(ALICE, "Converse", CLAUDE)
    assert rule.allows(ALICE, "ConverseStream", CLAUDE)
    for operation in ("InvokeModel", "InvokeModelWithResponseStream", "CountTokens",
                      "StartAsyncInvoke"):
        assert rule.evaluate(ALICE, operation, CLAUDE) is None
    for operation in ("ApplyGuardrail", "ListAsyncInvokes", "GetAsyncInvoke"):
        assert rule.evaluate(ALICE, operation, None) is None


def test_every_model_operation_is_allowed_when_allow_operations_is_unset() -> None:
    rule = AccessRule("all", allow_models=("*",))
    for op in OPERATIONS:
        assert rule.allows(ALICE, op.name, CLAUDE)
        assert not rule.allows(ALICE, op.name, None)  # model globs open no model-less operation


def test_a_rule_that_names_nothing_to_allow_only_denies() -> None:
    for rule in (AccessRule("bare"), AccessRule("selectors-only", tenants=("t1",)),
                 AccessRule("deny-only", deny_models=("*opus*",))):
        for op in OPERATIONS:
            for model in (CLAUDE, None, ""):
                assert rule.evaluate(ALICE, op.name, model) is None
    assert decision(AccessRule("deny-only", deny_models=("*opus*",)), ALICE, "Converse",
                    OPUS) is Decision.DENY
    assert AccessPolicy([AccessRule("bare")]).decide(ALICE, "Converse", CLAUDE) is None


# -- model globs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "model", "matches"), [
    ("anthropic.*", CLAUDE, True),
    ("anthropic.*", US_CLAUDE, True),  # a cross-region profile of the model
    ("anthropic.*", CLAUDE_ARN, True),  # the model's foundation-model ARN
    ("anthropic.*", PROFILE_ARN, True),  # an inference-profile ARN of the model
    ("anthropic.*", APP_PROFILE_ARN, False),  # an application profile hides its model
    ("us.anthropic.*", CLAUDE, False),  # a profile pattern does not cover the bare model
    ("*anthropic.*", US_CLAUDE, True),
    ("*anthropic.*", CLAUDE_ARN, True),  # '*' also crosses '/' and ':'
    ("*anthropic.*", PROFILE_ARN, True),
    ("us.anthropic.*", US_CLAUDE, True),
    ("??.anthropic.*", "eu.anthropic.claude-3-haiku-20240307-v1:0", True),
    ("??.anthropic.*", CLAUDE, False),
    ("arn:aws:bedrock:*:*:inference-profile/*", PROFILE_ARN, True),
    ("arn:aws:bedrock:*:*:inference-profile/*", CLAUDE_ARN, False),
    ("arn:aws:bedrock:*::foundation-model/anthropic.*", CLAUDE_ARN, True),
    ("anthropic", CLAUDE, False),  # a full match, not a prefix
    ("claude", CLAUDE, False),  # nor a substring
    ("anthropic.claude", "anthropicXclaude", False),  # '.' is literal
    ("*:0", CLAUDE, True),
    ("*-v[12]:0", CLAUDE, True),
    ("*-v[!1]:0", CLAUDE, False),
    ("Anthropic.*", CLAUDE, False),  # case-sensitive
    (CLAUDE, CLAUDE, True),
    ("*", "", True),
])
def test_model_globs(pattern: str, model: str, matches: bool) -> None:
    allow = AccessRule("allow", allow_models=(pattern,))
    deny = AccessRule("deny", deny_models=(pattern,))
    assert allow.allows(ALICE, "Converse", model) is matches
    assert (decision(deny, ALICE, "Converse", model) is Decision.DENY) is matches


def test_several_patterns_any_one_matches() -> None:
    rule = AccessRule("r", allow_models=("anthropic.*", "meta.*"), deny_models=("*opus*", TITAN))
    assert rule.allows(ALICE, "Converse", CLAUDE) and rule.allows(ALICE, "Converse", LLAMA)
    assert decision(rule, ALICE, "Converse", OPUS) is Decision.DENY
    assert decision(rule, ALICE, "Converse", TITAN) is Decision.DENY
    assert decision(rule, ALICE, "Converse", "cohere.command-r-v1:0") is None


@pytest.mark.parametrize("alias", [
    CLAUDE_ARN, US_CLAUDE, PROFILE_ARN, f"eu.{CLAUDE}", f"apac.{CLAUDE}", f"global.{CLAUDE}",
    f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.{CLAUDE}",
    f"arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/{CLAUDE}",
])
def test_a_deny_on_a_model_id_also_covers_its_arn_and_profiles(alias: str) -> None:
    """Regression: a deny on the bare id was sidestepped by calling the same model through its
    ARN or a cross-region inference profile."""
    policy = AccessPolicy([AccessRule("all", allow_models=("*",)),
                           AccessRule("no-sonnet", deny_models=(CLAUDE,))])
    assert decision(policy, ALICE, "Converse", alias) is Decision.DENY
    other = alias.replace("3-5-sonnet-20240620", "3-haiku-20240307")
    assert decision(policy, ALICE, "Converse", other) is Decision.ALLOW


def test_a_deny_on_a_profile_id_also_covers_the_profile_arn() -> None:
    policy = AccessPolicy([AccessRule("all", allow_models=("*",)),
                           AccessRule("eu-stays-in-eu", deny_models=("us.*",))])
    assert decision(policy, ALICE, "Converse", US_CLAUDE) is Decision.DENY
    assert decision(policy, ALICE, "Converse", PROFILE_ARN) is Decision.DENY


@pytest.mark.parametrize(("model", "names"), [
    (CLAUDE, (CLAUDE,)),
    (US_CLAUDE, (US_CLAUDE, CLAUDE)),
    (CLAUDE_ARN, (CLAUDE_ARN, CLAUDE)),
    (PROFILE_ARN, (PROFILE_ARN, US_CLAUDE, CLAUDE)),
    (APP_PROFILE_ARN, (APP_PROFILE_ARN,)),
    ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", None),
    ("", ("",)),
])
def test_model_names(model: str, names: tuple[str, ...] | None) -> None:
    assert model_names(model) == (names or (model,))


# -- operations without a model -------------------------------------------------------------


def test_model_globs_never_open_operations_without_a_model() -> None:
    """ListAsyncInvokes/GetAsyncInvoke read every tenant's async jobs under one AWS identity:
    a rule about models must not open them."""
    rule = AccessRule("claude-only", allow_models=("anthropic.*",), deny_models=("*",))
    assert decision(rule, ALICE, "ApplyGuardrail", None) is None
    assert decision(rule, ALICE, "ListAsyncInvokes", None) is None
    assert decision(rule, ALICE, "Converse", CLAUDE) is Decision.DENY
    listed = AccessRule("claude-and-guardrails", allow_models=("anthropic.*",),
                        allow_operations=("Converse", "ApplyGuardrail"))
    assert decision(listed, ALICE, "ApplyGuardrail", None) is Decision.ALLOW
    assert decision(listed, ALICE, "Converse", CLAUDE) is Decision.ALLOW
    guard_only = AccessRule("guardrails", allow_operations=("ApplyGuardrail",))
    assert guard_only.allows(ALICE, "ApplyGuardrail")
    assert not guard_only.allows(ALICE, "Converse", CLAUDE)


# -- resource_model ---------------------------------------------------------------------------


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Call:
    r = route(method, path)
    data = json.dumps(body).encode() if body is not None else b""
    return Call(method, path, "", {}, data, r.operation, r.params)


def test_resource_model() -> None:
    assert resource_model(_call("POST", f"/model/{quote(CLAUDE_ARN, safe='')}/converse",
                                {})) == CLAUDE_ARN
    assert resource_model(_call("POST", "/async-invoke", {"modelId": OPUS})) == OPUS
    assert resource_model(_call("POST", "/async-invoke", {"modelInput": {}})) == ""
    assert resource_model(_call("POST", "/guardrail/abc123/version/1/apply", {})) is None
    assert resource_model(_call("GET", "/async-invoke")) is None


# -- the middleware in a gateway ------------------------------------------------------------


class KeyedPrincipals:
    """An authorizer mapping API keys onto fixed principals (groups and scopes included)."""

    kind: CredentialKind = "api_key"

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals

    def authenticate(self, credential: Credential, call: Call) -> Principal:
        try:
            return self.principals[credential.value]
        except KeyError:
            raise AuthenticationError("The API key is not valid.") from None


SECRET_CLAIM = "claim-value-that-must-not-leak"
CAROL = Principal("carol-subject", tenant="tenant-carol", groups=frozenset({"group-carol"}),
                  scopes=frozenset({"scope-carol"}), claims={"email": SECRET_CLAIM})
RULES = [
    AccessRule("t1-claude", tenants=("t1",), allow_models=("anthropic.*", "*.anthropic.*")),
    AccessRule("no-opus-anywhere", deny_models=("*opus*",)),
    AccessRule("ops-guardrails", groups=("ops",), allow_operations=("ApplyGuardrail",)),
    AccessRule("carol-llama", subjects=("carol-subject",), allow_models=("meta.*",)),
]


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, Recorder]]:
    recorder = Recorder()
    authorizer = KeyedPrincipals({"k-alice": ALICE, "k-bob": BOB, "k-carol": CAROL})
    yield Gateway(recorder, authorizers=[authorizer], access_rules=RULES), recorder


def _send(gateway: Gateway, key: str, method: str, path: str,
          body: dict[str, Any] | None) -> Response:
    data = json.dumps(body).encode() if body is not None else b""
    return gateway.handle(method, path, "", {"x-api-key": key}, data)


MESSAGES = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
GUARDRAIL = "/guardrail/abc123/version/1/apply"
GUARDRAIL_BODY = {"source": "INPUT", "content": [{"text": {"text": "hi"}}]}


def _async(model: Any) -> dict[str, Any]:
    return {"modelId": model, "modelInput": {}, "outputDataConfig": {
        "s3OutputDataConfig": {"s3Uri": "s3://bucket/out"}}}


CASES = [
    ("k-alice", "POST", f"/model/{CLAUDE}/converse", MESSAGES, True, None),
    ("k-alice", "POST", f"/model/{quote(CLAUDE_ARN, safe='')}/converse", MESSAGES, True, None),
    ("k-alice", "POST", f"/model/{quote(APP_PROFILE_ARN, safe='')}/converse", MESSAGES, False,
     f"No access rule allows model {APP_PROFILE_ARN} for this caller."),
    ("k-alice", "POST", f"/model/{quote(PROFILE_ARN.replace('sonnet', 'opus'), safe='')}/invoke",
     {}, False, None),
    ("k-alice", "POST", f"/model/{US_CLAUDE}/converse-stream", MESSAGES, True, None),
    ("k-alice", "POST", f"/model/{OPUS}/converse", MESSAGES, False,
     f"Access rule 'no-opus-anywhere' denies model {OPUS}."),
    ("k-alice", "POST", f"/model/us.{OPUS}/invoke", {}, False,
     f"Access rule 'no-opus-anywhere' denies model us.{OPUS}."),
    ("k-alice", "POST", f"/model/{LLAMA}/converse", MESSAGES, False,
     f"No access rule allows model {LLAMA} for this caller."),
    ("k-alice", "POST", GUARDRAIL, GUARDRAIL_BODY, False,  # t1-claude's globs do not open it
     "No access rule allows ApplyGuardrail for this caller."),
    ("k-bob", "POST", GUARDRAIL, GUARDRAIL_BODY, True, None),
    ("k-bob", "POST", f"/model/{CLAUDE}/converse", MESSAGES, False,
     f"No access rule allows model {CLAUDE} for this caller."),
    ("k-alice", "POST", "/async-invoke", _async(CLAUDE), True, None),
    ("k-alice", "POST", "/async-invoke", _async(OPUS), False,
     f"Access rule 'no-opus-anywhere' denies model {OPUS}."),
    ("k-alice", "POST", "/async-invoke", _async(LLAMA), False,
     f"No access rule allows model {LLAMA} for this caller."),
    ("k-alice", "POST", "/async-invoke", {"modelInput": {}}, False,
     "No access rule allows StartAsyncInvoke for this caller."),
    ("k-carol", "POST", f"/model/{LLAMA}/converse", MESSAGES, True, None),
    ("k-carol", "POST", "/async-invoke", _async(OPUS), False,
     f"Access rule 'no-opus-anywhere' denies model {OPUS}."),
    ("k-carol", "POST", GUARDRAIL, GUARDRAIL_BODY, False,
     "No access rule allows ApplyGuardrail for this caller."),
    ("k-carol", "GET", "/async-invoke", None, False,  # another tenant's async jobs
     "No access rule allows ListAsyncInvokes for this caller."),
]


@pytest.mark.parametrize("case", CASES)
def test_policy_in_a_gateway(gateway: tuple[Gateway, Recorder], case: tuple[Any, ...]) -> None:
    key, method, path, body, allowed, message = case
    gw, recorder = gateway
    response = _send(gw, key, method, path, body)
    if allowed:
        assert response.status == 200, response.body
        assert len(recorder.calls) == 1
        return
    assert response.status == 403, response.body
    assert response.headers["x-amzn-errortype"].startswith("AccessDeniedException:")
    assert recorder.calls == []
    text = json.loads(response.body)["message"]
    if message is not None:
        assert text == message
    principal = {"k-alice": ALICE, "k-bob": BOB, "k-carol": CAROL}[key]
    for leak in (principal.subject, principal.tenant, *principal.groups, *principal.scopes,
                 SECRET_CLAIM, key):
        assert leak is None or leak not in text


def test_start_async_invoke_of_a_denied_model_is_refused_whatever_the_path_says() -> None:
    recorder = Recorder()
    gw = Gateway(recorder, anonymous=True, access_rules=[
        AccessRule("everyone-claude", allow_models=("anthropic.*",)),
        AccessRule("no-opus", deny_models=("*opus*",))])
    for model in (OPUS, f"us.{OPUS}", f"arn:aws:bedrock:us-east-1::foundation-model/{OPUS}"):
        response = gw.handle("POST", "/async-invoke", "", {}, json.dumps(_async(model)).encode())
        assert response.status == 403
        assert json.loads(response.body)["message"] == f"Access rule 'no-opus' denies model {model}."
    assert recorder.calls == []
    ok = gw.handle("POST", "/async-invoke", "", {}, json.dumps(_async(CLAUDE)).encode())
    assert ok.status == 200 and len(recorder.calls) == 1


def test_start_async_invoke_with_a_non_string_model_id_is_not_forwarded() -> None:
    recorder = Recorder()
    gw = Gateway(recorder, anonymous=True, access_rules=[
        AccessRule("all", allow_models=("*",)),
        AccessRule("no-opus", deny_models=("anthropic.claude-3-opus*",))])
    for model in ([OPUS], {"id": OPUS}, 42):
        response = gw.handle("POST", "/async-invoke", "", {}, json.dumps(_async(model)).encode())
        assert response.status in (400, 403)
    assert recorder.calls == []


def test_no_rules_means_nothing_is_allowed_and_none_means_no_policy() -> None:
    recorder = Recorder()
    closed = Gateway(recorder, anonymous=True, access_rules=[])
    body = json.dumps(MESSAGES).encode()
    response = closed.handle("POST", f"/model/{CLAUDE}/converse", "", {}, body)
    assert response.status == 403
    assert json.loads(response.body)["message"] == (
        f"No access rule allows model {CLAUDE} for this caller.")
    response = closed.handle("POST", GUARDRAIL, "", {}, json.dumps(GUARDRAIL_BODY).encode())
    assert json.loads(response.body)["message"] == (
        "No access rule allows ApplyGuardrail for this caller.")
    assert recorder.calls == []
    open_ = Gateway(recorder, anonymous=True, access_rules=None)
    assert open_.handle("POST", f"/model/{CLAUDE}/converse", "", {}, body).status == 200


def test_authentication_runs_before_the_policy(gateway: tuple[Gateway, Recorder]) -> None:
    gw, recorder = gateway
    response = _send(gw, "k-unknown", "POST", f"/model/{OPUS}/converse", MESSAGES)
    assert response.status == 403
    assert response.headers["x-amzn-errortype"].startswith("UnrecognizedClientException:")
    assert recorder.calls == []


# -- property: a deny from any applicable rule is never overridden -------------------------------


TENANTS = ("t1", "t2")
GROUPS = ("g1", "g2", "g3")
SCOPES = ("s1", "s2")
SUBJECTS = ("alice", "bob", "carol")
PATTERNS = ("anthropic.*", "*anthropic.*", "*claude*", "meta.*", "*", "us.*", "*:0",
            "amazon.titan-?ext-*", CLAUDE, OPUS, "arn:aws:bedrock:*")
MODELS = (CLAUDE, OPUS, US_CLAUDE, CLAUDE_ARN, PROFILE_ARN, APP_PROFILE_ARN, f"eu.{OPUS}", LLAMA,
          TITAN, "", None)
OPERATION_NAMES = tuple(op.name for op in OPERATIONS)


def _subset(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), max_size=2, unique=True).map(tuple)


leaf_rules = st.builds(
    AccessRule,
    name=st.sampled_from(("a", "b", "c", "d")),
    tenants=_subset(TENANTS), groups=_subset(GROUPS), scopes=_subset(SCOPES),
    subjects=_subset(SUBJECTS), allow_models=_subset(PATTERNS),
    deny_models=st.one_of(st.just(()), _subset(PATTERNS)),
    allow_operations=_subset(OPERATION_NAMES),
)
rules: st.SearchStrategy[Rule] = st.recursive(
    leaf_rules,
    lambda children: st.one_of(st.builds(_Either, children, children),
                               st.builds(_Both, children, children)),
    max_leaves=6,
)
principals = st.builds(
    Principal, subject=st.sampled_from(SUBJECTS), tenant=st.sampled_from((None, *TENANTS)),
    groups=st.frozensets(st.sampled_from(GROUPS)), scopes=st.frozensets(st.sampled_from(SCOPES)))


def _leaves(rule: Rule) -> list[AccessRule]:
    if isinstance(rule, AccessRule):
        return [rule]
    assert isinstance(rule, _Either | _Both)
    return _leaves(rule.left) + _leaves(rule.right)


def _denies(leaf: AccessRule, principal: Principal, model: str | None) -> bool:
    return (model is not None and leaf.applies_to(principal)
            and any(fnmatch.fnmatchcase(name, p) for p in leaf.deny_models
                    for name in model_names(model)))


@settings(max_examples=500, deadline=None)
@given(st.lists(rules, max_size=5), principals, st.sampled_from(OPERATION_NAMES),
       st.sampled_from(MODELS))
def test_a_deny_is_never_overridden(rule_set: list[Rule], principal: Principal, operation: str,
                                    model: str | None) -> None:
    verdict = AccessPolicy(rule_set).decide(principal, operation, model)
    denied = any(_denies(leaf, principal, model) for rule in rule_set for leaf in _leaves(rule))
    if denied:
        assert verdict is not None and verdict.decision is Decision.DENY
    else:
        assert verdict is None or verdict.decision is Decision.ALLOW
    if verdict is not None and verdict.decision is Decision.ALLOW:
        assert any(rule.allows(principal, operation, model) for rule in rule_set)


@settings(max_examples=300, deadline=None)
@given(rules, rules, principals, st.sampled_from(OPERATION_NAMES), st.sampled_from(MODELS))
def test_composition_is_commutative_in_its_decision(a: Rule, b: Rule, principal: Principal,
                                                    operation: str, model: str | None) -> None:
    assert decision(a | b, principal, operation, model) == decision(
        b | a, principal, operation, model)
    assert decision(a & b, principal, operation, model) == decision(
        b & a, principal, operation, model)
    if (a & b).allows(principal, operation, model):
        assert a.allows(principal, operation, model) and b.allows(principal, operation, model)
    if (a | b).allows(principal, operation, model):
        assert a.allows(principal, operation, model) or b.allows(principal, operation, model)
