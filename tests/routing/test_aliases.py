"""AliasRouter: resolution, sticky weighted split, tenants, family checks, validation."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway import Call, Principal, Response
from bedrock_gateway.errors import ValidationError
from bedrock_gateway.operations import route
from bedrock_gateway.routing.aliases import ROUTE_KEY, Alias, AliasRouter, Target, model_family

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
LLAMA = "meta.llama3-8b-instruct-v1:0"
APP_PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"

_SUFFIX = {"Converse": "converse", "ConverseStream": "converse-stream", "InvokeModel": "invoke",
           "InvokeModelWithResponseStream": "invoke-with-response-stream",
           "CountTokens": "count-tokens"}


def make_call(model: str, operation: str = "Converse", principal: Principal | None = None,
              body: bytes = b"{}") -> Call:
    path = f"/model/{quote(model, safe='')}/{_SUFFIX[operation]}"
    r = route("POST", path, "")
    return Call("POST", path, "", {"content-type": "application/json"}, body, r.operation,
                r.params, principal)


def split(*weights: tuple[str, int], name: str = "chat", **kwargs: object) -> Alias:
    return Alias(name, [Target(m, w) for m, w in weights], **kwargs)  # type: ignore[arg-type]


# -- resolution and the middleware ---------------------------------------------------------

def test_middleware_rewrites_model_and_keeps_the_alias_in_the_note() -> None:
    router = AliasRouter([Alias("chat", [Target(CLAUDE)], fallback=[HAIKU])])
    seen: list[Call] = []

    def handler(call: Call) -> Response:
        seen.append(call)
        return Response(200, {}, b"{}")

    call = make_call("chat", principal=Principal("u1", tenant="t"))
    assert router(call, handler).status == 200
    assert seen[0].params["modelId"] == CLAUDE
    assert seen[0].upstream_path == f"/model/{quote(CLAUDE, safe='')}/converse"
    assert call.attrs[ROUTE_KEY] == {"alias": "chat", "model": CLAUDE, "region": None,
                                     "fallback": [HAIKU], "attempts": [],
                                     "chain": [{"model": CLAUDE, "region": None},
                                               {"model": HAIKU, "region": None}]}


def test_a_model_that_is_no_alias_passes_untouched() -> None:
    router = AliasRouter([Alias("chat", [Target(CLAUDE)])])
    call = make_call(HAIKU)
    assert router.resolve(call) is None
    router(call, lambda c: Response(200))
    assert call.params["modelId"] == HAIKU
    assert ROUTE_KEY not in call.attrs


def test_region_is_recorded() -> None:
    router = AliasRouter([Alias("chat", [Target(CLAUDE, region="eu-west-1")])])
    call = make_call("chat")
    router(call, lambda c: Response(200))
    assert call.attrs[ROUTE_KEY]["region"] == "eu-west-1"


def test_anonymous_calls_resolve() -> None:
    router = AliasRouter([split((CLAUDE, 1), (HAIKU, 1))])
    resolution = router.resolve(make_call("chat"))
    assert resolution is not None and resolution.target.model in (CLAUDE, HAIKU)


# -- tenants -------------------------------------------------------------------------------

def test_tenant_alias_wins_over_the_general_one() -> None:
    router = AliasRouter([
        Alias("chat", [Target(HAIKU)]),
        Alias("chat", [Target(CLAUDE)], tenants=frozenset({"gold"})),
        Alias("llama", [Target(LLAMA)], tenants=frozenset({"gold"})),
    ])

    def model(tenant: str | None, name: str = "chat") -> str | None:
        r = router.resolve(make_call(name, principal=Principal("u", tenant=tenant)))
        return r.target.model if r else None

    assert model("gold") == CLAUDE
    assert model("silver") == HAIKU
    assert model(None) == HAIKU
    assert model("gold", "llama") == LLAMA
    assert model("silver", "llama") is None  # a tenant-only alias means nothing to others


def test_duplicate_names_are_refused_per_scope() -> None:
    with pytest.raises(ValueError, match="all tenants"):
        AliasRouter([Alias("chat", [Target(CLAUDE)]), Alias("chat", [Target(HAIKU)])])
    with pytest.raises(ValueError, match="tenant 'b'"):
        AliasRouter([Alias("chat", [Target(CLAUDE)], tenants=frozenset({"a", "b"})),
                     Alias("chat", [Target(HAIKU)], tenants=frozenset({"b"}))])
    AliasRouter([Alias("chat", [Target(CLAUDE)], tenants=frozenset({"a"})),
                 Alias("chat", [Target(HAIKU)], tenants=frozenset({"b"})),
                 Alias("chat", [Target(HAIKU)])])


# -- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("weight", [0, -1])
def test_weights_must_be_positive(weight: int) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Alias("chat", [Target(CLAUDE, weight)])


def test_alias_needs_targets_and_names() -> None:
    with pytest.raises(ValueError, match="no targets"):
        Alias("chat", [])
    with pytest.raises(ValueError, match="name"):
        Alias("", [Target(CLAUDE)])
    with pytest.raises(ValueError, match="without a model"):
        Alias("chat", [Target("")])
    with pytest.raises(ValueError, match="empty fallback"):
        Alias("chat", [Target(CLAUDE)], fallback=[""])


# -- model families --------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "family"), [
    (CLAUDE, "anthropic"),
    (f"us.{CLAUDE}", "anthropic"),
    (f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{CLAUDE}", "anthropic"),
    (f"arn:aws:bedrock:us-east-1::foundation-model/{LLAMA}", "meta"),
    (LLAMA, "meta"),
    ("amazon.nova-pro-v1:0", "amazon.nova"),
    ("amazon.titan-text-express-v1", "amazon.titan-text"),
    ("amazon.titan-embed-text-v2:0", "amazon.titan-embed"),
    ("cohere.embed-english-v3", "cohere.embed"),
    (APP_PROFILE, None),
    ("chat", None),
])
def test_model_family(model: str, family: str | None) -> None:
    assert model_family(model) == family


def test_cross_family_alias_serves_converse_but_refuses_invoke_model() -> None:
    alias = split((CLAUDE, 9), (LLAMA, 1))
    assert alias.invoke_compatible is False
    router = AliasRouter([alias])
    assert router.resolve(make_call("chat", "Converse")) is not None
    assert router.resolve(make_call("chat", "ConverseStream")) is not None
    for op in ("InvokeModel", "InvokeModelWithResponseStream"):
        with pytest.raises(ValidationError, match="Converse"):
            router.resolve(make_call("chat", op))
    invoke_count = json.dumps({"input": {"invokeModel": {"body": "e30="}}}).encode()
    with pytest.raises(ValidationError):
        router.resolve(make_call("chat", "CountTokens", body=invoke_count))
    converse_count = json.dumps({"input": {"converse": {"messages": []}}}).encode()
    assert router.resolve(make_call("chat", "CountTokens", body=converse_count)) is not None


def test_a_cross_family_fallback_also_makes_an_alias_converse_only() -> None:
    assert Alias("chat", [Target(CLAUDE)], fallback=[LLAMA]).invoke_compatible is False
    assert Alias("chat", [Target(CLAUDE)], fallback=[f"us.{HAIKU}"]).invoke_compatible is True


def test_same_family_split_serves_invoke_model() -> None:
    router = AliasRouter([split((CLAUDE, 1), (f"us.{HAIKU}", 1))])
    assert router.resolve(make_call("chat", "InvokeModel")) is not None


def test_invoke_compatible_is_refused_across_providers() -> None:
    with pytest.raises(ValueError, match="mixes providers"):
        split((CLAUDE, 1), (LLAMA, 1), invoke_compatible=True)


def test_invoke_compatible_can_be_asserted_for_hidden_or_same_provider_families() -> None:
    assert split((APP_PROFILE, 1), (CLAUDE, 1)).invoke_compatible is False
    assert split((APP_PROFILE, 1), (CLAUDE, 1), invoke_compatible=True).invoke_compatible
    assert Alias("e", [Target(APP_PROFILE)]).invoke_compatible is True  # one model: trivially
    nova_titan = split(("amazon.nova-pro-v1:0", 1), ("amazon.titan-text-express-v1", 1))
    assert nova_titan.invoke_compatible is False
    assert split(("amazon.nova-pro-v1:0", 1), ("amazon.titan-text-express-v1", 1),
                 invoke_compatible=True).invoke_compatible


def test_invoke_compatible_false_makes_an_alias_converse_only() -> None:
    router = AliasRouter([split((CLAUDE, 1), invoke_compatible=False)])
    with pytest.raises(ValidationError):
        router.resolve(make_call("chat", "InvokeModel"))


# -- sticky weighted split -------------------------------------------------------------------

principals = st.builds(Principal, st.text(min_size=1, max_size=40),
                       st.none() | st.text(max_size=20))


@given(principals, st.lists(st.integers(1, 100), min_size=1, max_size=6))
def test_a_principal_never_flips_while_weights_stay_the_same(
        principal: Principal, weights: list[int]) -> None:
    def build() -> AliasRouter:
        return AliasRouter([split(*((f"anthropic.m{i}", w) for i, w in enumerate(weights)))])

    first = build().resolve(make_call("chat", principal=principal))
    router = build()  # a fresh router (another process) agrees
    for _ in range(3):
        again = router.resolve(make_call("chat", principal=principal))
        assert first is not None and again is not None
        assert again.target == first.target


@given(principals)
def test_moving_weight_only_moves_principals_towards_the_grown_target(
        principal: Principal) -> None:
    before = AliasRouter([split((CLAUDE, 90), (HAIKU, 10))]).resolve(
        make_call("chat", principal=principal))
    after = AliasRouter([split((CLAUDE, 80), (HAIKU, 20))]).resolve(
        make_call("chat", principal=principal))
    assert before is not None and after is not None
    if before.target.model == HAIKU:
        assert after.target.model == HAIKU


@pytest.mark.parametrize(("name", "tenant"), [("chat", None), ("chat", "acme"), ("code", "t2")])
def test_split_over_1000_principals_follows_the_weights(name: str, tenant: str | None) -> None:
    router = AliasRouter([split((CLAUDE, 90), (HAIKU, 10), name=name)])
    counts: Counter[str] = Counter()
    for i in range(1000):
        r = router.resolve(make_call(name, principal=Principal(f"user-{i}", tenant=tenant)))
        assert r is not None
        counts[r.target.model] += 1
    assert abs(counts[CLAUDE] / 1000 - 0.9) <= 0.03, counts
