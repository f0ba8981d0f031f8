"""Guardrails at the gateway: injection, ApplyGuardrail checks, and intervention records."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway import Call, Principal, Response
from bedrock_gateway.errors import ServiceUnavailableError, ThrottlingError, ValidationError
from bedrock_gateway.eventstream import Frame, event_frame
from bedrock_gateway.filters.guardrails import (
    GUARDRAIL_NOTE,
    Guardrail,
    GuardrailFilter,
    GuardrailInjector,
    converse_request_texts,
    converse_response_texts,
    record_intervention,
)
from bedrock_gateway.operations import route
from bedrock_gateway.pipeline import Next
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock
from tests.conftest import gateway_client

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
GR = Guardrail("gr0abc", "1")
CALM = [{"role": "user", "content": [{"text": "hello there"}]}]
SECRET = "my secret BLOCKME plan"
HOSTILE = [{"role": "user", "content": [{"text": SECRET}]}]


def make_call(op: str = "converse", body: Any = None, tenant: str | None = None,
              headers: dict[str, str] | None = None, model: str = CLAUDE) -> Call:
    path = f"/model/{model}/{op}"
    r = route("POST", path)
    raw = json.dumps({"messages": CALM} if body is None else body).encode()
    return Call("POST", path, "", headers or {"content-type": "application/json"}, raw,
                r.operation, r.params, principal=Principal("alice", tenant=tenant))


def converse_answer(text: str = "hi", stop: str = "end_turn") -> bytes:
    return json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                       "stopReason": stop, "usage": {"inputTokens": 1, "outputTokens": 1,
                                                     "totalTokens": 2}}).encode()


class FakeNext:
    """Answers ApplyGuardrail from ``verdicts`` (in order) and the model call with ``answer``."""

    def __init__(self, verdicts: list[Any] | None = None, answer: Response | None = None) -> None:
        self.verdicts = list(verdicts or [])
        self.answer = answer or Response(200, {"content-type": "application/json"},
                                         converse_answer())
        self.seen: list[Call] = []
        self.closed: list[str] = []

    def __call__(self, call: Call) -> Response:
        self.seen.append(call)
        if call.operation.name != "ApplyGuardrail":
            return self.answer
        verdict = self.verdicts.pop(0)
        if isinstance(verdict, Exception):
            raise verdict
        if isinstance(verdict, Response):
            response = verdict
        else:
            body = {"action": verdict, "usage": {"topicPolicyUnits": 1, "contentPolicyUnits": 2,
                                                 "sensitiveInformationPolicyFreeUnits": 5},
                    "outputs": [{"text": "Blocked."}] if verdict != "NONE" else []}
            response = Response(200, {}, json.dumps(body).encode())
        response.on_close(lambda: self.closed.append("apply"))
        return response


# -- Guardrail and extractors ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"identifier": "", "version": "1"}, {"identifier": "Bad/Id", "version": "1"},
    {"identifier": "abc", "version": "0"}, {"identifier": "abc", "version": "latest"},
    {"identifier": "abc", "version": "1", "stream_mode": "fast"},
])
def test_guardrail_is_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Guardrail(**kwargs)


def test_guardrail_accepts_ids_arns_and_draft() -> None:
    Guardrail("abc123", "DRAFT")
    Guardrail("arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123", "12", trace=True,
              stream_mode="async")


def test_builtin_extractors_read_converse_only() -> None:
    body = {"system": [{"text": "be nice"}, {"cachePoint": {}}],
            "messages": [{"role": "user", "content": [{"text": "a"}, {"image": {}}]},
                         {"role": "assistant", "content": [{"text": "b"}]}, "junk"]}
    assert converse_request_texts("ConverseStream", CLAUDE, body) == ["be nice", "a", "b"]
    assert converse_request_texts("InvokeModel", CLAUDE, body) == []
    answer = json.loads(converse_answer("yes"))
    assert converse_response_texts("Converse", CLAUDE, answer) == ["yes"]
    assert converse_response_texts("InvokeModel", CLAUDE, answer) == []
    assert converse_response_texts("Converse", CLAUDE, {"output": "x"}) == []


# -- GuardrailInjector -------------------------------------------------------------------------


def test_injector_sets_converse_guardrail_config_overriding_the_client() -> None:
    client_config = {"guardrailIdentifier": "mine", "guardrailVersion": "DRAFT",
                     "trace": "enabled"}
    call = make_call(body={"messages": CALM, "guardrailConfig": client_config})
    nxt = FakeNext()
    GuardrailInjector(GR)(call, nxt)
    assert json.loads(nxt.seen[0].body)["guardrailConfig"] == {
        "guardrailIdentifier": "gr0abc", "guardrailVersion": "1"}
    assert call.json()["guardrailConfig"]["guardrailIdentifier"] == "gr0abc"
    assert call.attrs[GUARDRAIL_NOTE] == {
        "injected": {"identifier": "gr0abc", "version": "1", "via": "body"},
        "intervened": False}


def test_injector_trace_and_stream_mode() -> None:
    gr = Guardrail("gr0abc", "DRAFT", trace=True, stream_mode="async")
    stream = make_call("converse-stream")
    GuardrailInjector(gr)(stream, FakeNext())
    assert stream.json()["guardrailConfig"] == {
        "guardrailIdentifier": "gr0abc", "guardrailVersion": "DRAFT", "trace": "enabled",
        "streamProcessingMode": "async"}
    plain = make_call()
    GuardrailInjector(gr)(plain, FakeNext())
    assert "streamProcessingMode" not in plain.json()["guardrailConfig"]


def test_injector_sets_invoke_model_headers() -> None:
    call = make_call("invoke", headers={"content-type": "application/json",
                                        "x-amzn-bedrock-trace": "ENABLED_FULL"})
    body = call.body
    GuardrailInjector(GR)(call, FakeNext(answer=Response(200, {}, b"{}")))
    assert call.body == body
    assert call.headers["x-amzn-bedrock-guardrailidentifier"] == "gr0abc"
    assert call.headers["x-amzn-bedrock-guardrailversion"] == "1"
    assert "x-amzn-bedrock-trace" not in call.headers  # the gateway's policy: no trace
    traced = make_call("invoke-with-response-stream")
    GuardrailInjector(Guardrail("gr0abc", "1", trace=True))(traced, FakeNext())
    assert traced.headers["x-amzn-bedrock-trace"] == "ENABLED"
    assert traced.attrs[GUARDRAIL_NOTE]["injected"]["via"] == "headers"


def test_injector_per_tenant_and_exemptions() -> None:
    injector = GuardrailInjector(GR, tenants={"t1": Guardrail("gr1", "2"), "free": None})
    picked = {}
    for tenant in ("t1", "free", "other", None):
        call = make_call(tenant=tenant)
        injector(call, FakeNext())
        config = call.json().get("guardrailConfig")
        picked[tenant] = config and config["guardrailIdentifier"]
    assert picked == {"t1": "gr1", "free": None, "other": "gr0abc", None: "gr0abc"}
    only_tenants = GuardrailInjector(tenants={"t1": GR})
    call = make_call(tenant="t2")
    only_tenants(call, FakeNext())
    assert "guardrailConfig" not in call.json()
    assert GUARDRAIL_NOTE not in call.attrs


def test_injector_leaves_other_operations_alone() -> None:
    r = route("POST", "/model/m/count-tokens")
    call = Call("POST", "/model/m/count-tokens", "", {}, b"{}", r.operation, r.params)
    GuardrailInjector(GR)(call, FakeNext(answer=Response(200, {}, b"{}")))
    assert call.body == b"{}"
    assert GUARDRAIL_NOTE not in call.attrs


# -- record_intervention -----------------------------------------------------------------------


def test_records_converse_and_invoke_model_interventions() -> None:
    call = make_call()
    GuardrailInjector(GR)(call, FakeNext(answer=Response(
        200, {}, converse_answer("Blocked.", "guardrail_intervened"))))
    assert call.attrs[GUARDRAIL_NOTE]["intervened"] is True
    invoke = make_call("invoke")
    answer = json.dumps({"content": [], "amazon-bedrock-guardrailAction": "INTERVENED"})
    GuardrailInjector(GR)(invoke, FakeNext(answer=Response(200, {}, answer.encode())))
    assert invoke.attrs[GUARDRAIL_NOTE]["intervened"] is True


def test_records_nothing_without_a_guardrail_or_on_errors() -> None:
    call = make_call()
    record_intervention(call, Response(200, {}, converse_answer("x", "guardrail_intervened")))
    assert GUARDRAIL_NOTE not in call.attrs
    failed = make_call(body={"messages": CALM, "guardrailConfig": {"guardrailIdentifier": "a",
                                                                   "guardrailVersion": "1"}})
    record_intervention(failed, Response(400, {}, b"{}"))
    assert GUARDRAIL_NOTE not in failed.attrs
    record_intervention(failed, Response(200, {}, converse_answer()))  # client's own guardrail
    assert failed.attrs[GUARDRAIL_NOTE] == {"intervened": False}


def _frames(*frames: bytes) -> Iterator[Frame]:
    return iter([Frame(f) for f in frames])


def test_records_interventions_in_streams() -> None:
    call = make_call("converse-stream")
    frames = _frames(event_frame("messageStart", {"role": "assistant"}),
                     event_frame("messageStop", {"stopReason": "guardrail_intervened"}))
    response = GuardrailInjector(GR)(call, FakeNext(answer=Response(200, {}, frames=frames)))
    assert call.attrs[GUARDRAIL_NOTE]["intervened"] is False
    assert len(list(response.chunks())) == 2
    assert call.attrs[GUARDRAIL_NOTE]["intervened"] is True

    inner = {"type": "message_stop", "amazon-bedrock-guardrailAction": "INTERVENED"}
    chunk = {"bytes": base64.b64encode(json.dumps(inner).encode()).decode()}
    invoke = make_call("invoke-with-response-stream",
                       headers={"x-amzn-bedrock-guardrailidentifier": "a"})
    streamed = Response(200, {}, frames=_frames(event_frame("chunk", chunk)))
    record_intervention(invoke, streamed)
    record_intervention(invoke, streamed)  # once only
    list(streamed.chunks())
    assert invoke.attrs[GUARDRAIL_NOTE] == {"intervened": True}


# -- GuardrailFilter ---------------------------------------------------------------------------


def test_filter_checks_input_and_output_and_records_units() -> None:
    call = make_call(tenant="t1")
    nxt = FakeNext(["NONE", "NONE"])
    response = GuardrailFilter(GR)(call, nxt)
    assert response.status == 200
    probe, model, out = nxt.seen
    assert (probe.operation.name, model.operation.name, out.operation.name) == (
        "ApplyGuardrail", "Converse", "ApplyGuardrail")
    assert probe.upstream_path == "/guardrail/gr0abc/version/1/apply"
    assert probe.principal == call.principal
    assert json.loads(probe.body) == {"source": "INPUT",
                                      "content": [{"text": {"text": "hello there"}}]}
    assert json.loads(out.body) == {"source": "OUTPUT", "content": [{"text": {"text": "hi"}}]}
    assert call.attrs[GUARDRAIL_NOTE] == {
        "input": {"identifier": "gr0abc", "version": "1", "action": "NONE", "units": 3},
        "output": {"identifier": "gr0abc", "version": "1", "action": "NONE", "units": 3}}
    assert nxt.closed == ["apply", "apply"]


def test_filter_blocks_intervened_input_without_the_text() -> None:
    call = make_call(body={"messages": HOSTILE})
    nxt = FakeNext(["GUARDRAIL_INTERVENED"])
    with pytest.raises(ValidationError) as info:
        GuardrailFilter(GR)(call, nxt)
    assert "gr0abc" in info.value.message
    assert "BLOCKME" not in info.value.message and "secret" not in info.value.message
    assert [c.operation.name for c in nxt.seen] == ["ApplyGuardrail"]  # never forwarded
    assert call.attrs[GUARDRAIL_NOTE]["input"]["action"] == "GUARDRAIL_INTERVENED"


def test_filter_replaces_an_intervened_answer_with_an_error() -> None:
    model_answer = Response(200, {}, converse_answer("leaked BLOCKME"))
    closed: list[bool] = []
    model_answer.on_close(lambda: closed.append(True))
    call = make_call()
    response = GuardrailFilter(GR, check_input=False)(
        call, FakeNext(["GUARDRAIL_INTERVENED"], answer=model_answer))
    assert response.status == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationException")
    assert b"gr0abc" in response.body and b"BLOCKME" not in response.body
    assert closed == [True]
    assert call.attrs[GUARDRAIL_NOTE]["output"]["action"] == "GUARDRAIL_INTERVENED"


def test_filter_skips_streams_errors_and_textless_calls() -> None:
    stream = Response(200, {}, frames=_frames(event_frame("messageStart", {})))
    nxt = FakeNext(["NONE"], answer=stream)
    assert GuardrailFilter(GR)(make_call("converse-stream"), nxt) is stream
    assert len(nxt.seen) == 2  # input only
    failed = Response(429, {}, b"{}")
    nxt = FakeNext(["NONE"], answer=failed)
    assert GuardrailFilter(GR)(make_call(), nxt) is failed
    nxt = FakeNext([])
    GuardrailFilter(GR)(make_call("invoke"), nxt)  # the built-in extractors read Converse only
    assert [c.operation.name for c in nxt.seen] == ["InvokeModel"]
    nxt = FakeNext([])
    GuardrailFilter(tenants={"t1": GR})(make_call(tenant="t2"), nxt)
    assert len(nxt.seen) == 1


def test_filter_uses_the_given_extractors() -> None:
    def texts(op: str, model: str | None, body: dict[str, Any]) -> list[str]:
        return [str(body.get("prompt", body.get("generation", "")))]

    answer = Response(200, {}, json.dumps({"generation": "out"}).encode())
    nxt = FakeNext(["NONE", "NONE"], answer=answer)
    GuardrailFilter(GR, request_texts=texts, response_texts=texts)(
        make_call("invoke", body={"prompt": "in"}, model="meta.llama3-8b-instruct-v1:0"), nxt)
    assert [json.loads(c.body)["content"][0]["text"]["text"] for c in nxt.seen
            if c.operation.name == "ApplyGuardrail"] == ["in", "out"]


@pytest.mark.parametrize("failure", [
    Response(503, {"x-amzn-errortype": "ServiceUnavailableException:x"}, b"{}"),
    Response(200, {}, b"not json"),
    Response(200, {}, b'{"action": "MAYBE"}'),
    Response(200, {}, b"[]"),
    ThrottlingError(),
])
def test_filter_fails_closed_or_open(failure: Any) -> None:
    call = make_call()
    with pytest.raises(ServiceUnavailableError) as info:
        GuardrailFilter(GR)(call, FakeNext([failure]))
    assert "gr0abc" in info.value.message
    assert "error" in call.attrs[GUARDRAIL_NOTE]["input"]
    opened = make_call()
    response = GuardrailFilter(GR, on_error="fail_open", check_output=False)(
        opened, FakeNext([failure]))
    assert response.status == 200
    assert opened.attrs[GUARDRAIL_NOTE]["input"]["error"]


def test_filter_error_codes_are_recorded() -> None:
    call = make_call()
    GuardrailFilter(GR, on_error="fail_open", check_output=False)(
        call, FakeNext([Response(429, {"x-amzn-errortype": "ThrottlingException:x"}, b"")]))
    assert call.attrs[GUARDRAIL_NOTE]["input"]["error"] == "ThrottlingException"
    with pytest.raises(ValueError, match="on_error"):
        GuardrailFilter(GR, on_error="ignore")  # type: ignore[arg-type]


# -- end to end: boto3 -> gateway -> FakeBedrock ------------------------------------------------


class Keep:
    """Outermost middleware keeping each call, to read its attrs afterwards."""

    def __init__(self, tenant: str | None = None) -> None:
        self.calls: list[Call] = []
        self.tenant = tenant

    def __call__(self, call: Call, next_: Next) -> Response:
        call.principal = Principal("alice", tenant=self.tenant)
        self.calls.append(call)
        return next_(call)


Serve = Callable[..., BackgroundServer]


def test_e2e_injected_converse_guardrail_reaches_bedrock_and_intervenes(
        serve_gateway: Serve, fake_bedrock: FakeBedrock) -> None:
    keep = Keep()
    client = gateway_client(serve_gateway([keep, GuardrailInjector(GR)]).url)
    calm = client.converse(modelId=CLAUDE, messages=CALM)
    assert calm["stopReason"] == "end_turn"  # signed after the rewrite: the fake accepted it
    blocked = client.converse(modelId=CLAUDE, messages=HOSTILE)
    assert blocked["stopReason"] == "guardrail_intervened"
    for sent in fake_bedrock.requests:
        assert json.loads(sent.body)["guardrailConfig"] == {
            "guardrailIdentifier": "gr0abc", "guardrailVersion": "1"}
    assert [c.attrs[GUARDRAIL_NOTE]["intervened"] for c in keep.calls] == [False, True]


def test_e2e_injected_stream_guardrail(serve_gateway: Serve, fake_bedrock: FakeBedrock) -> None:
    keep = Keep(tenant="t1")
    injector = GuardrailInjector(tenants={"t1": Guardrail("gr1", "DRAFT", stream_mode="sync")})
    client = gateway_client(serve_gateway([keep, injector]).url)
    events = list(client.converse_stream(modelId=CLAUDE, messages=HOSTILE)["stream"])
    stops = [e["messageStop"]["stopReason"] for e in events if "messageStop" in e]
    assert stops == ["guardrail_intervened"]
    (sent,) = fake_bedrock.requests
    assert json.loads(sent.body)["guardrailConfig"]["streamProcessingMode"] == "sync"
    assert keep.calls[0].attrs[GUARDRAIL_NOTE]["intervened"] is True


def test_e2e_injected_invoke_model_headers(serve_gateway: Serve,
                                           fake_bedrock: FakeBedrock) -> None:
    client = gateway_client(serve_gateway(
        [GuardrailInjector(Guardrail("gr0abc", "3", trace=True))]).url)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": CALM}
    client.invoke_model(modelId=CLAUDE, body=json.dumps(body))
    (sent,) = fake_bedrock.requests
    assert sent.headers["x-amzn-bedrock-guardrailidentifier"] == "gr0abc"
    assert sent.headers["x-amzn-bedrock-guardrailversion"] == "3"
    assert sent.headers["x-amzn-bedrock-trace"] == "ENABLED"
    assert "x-amzn-bedrock-guardrailidentifier" in sent.headers["authorization"]  # signed


def test_e2e_filter_blocks_input(serve_gateway: Serve, fake_bedrock: FakeBedrock) -> None:
    keep = Keep()
    client = gateway_client(serve_gateway([keep, GuardrailFilter(GR)]).url)
    with pytest.raises(ClientError) as info:
        client.converse(modelId=CLAUDE, messages=HOSTILE)
    error = info.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "gr0abc" in error["Message"] and "BLOCKME" not in error["Message"]
    assert [r.operation for r in fake_bedrock.requests] == ["ApplyGuardrail"]
    assert fake_bedrock.requests[0].raw_path == "/guardrail/gr0abc/version/1/apply"
    assert keep.calls[0].attrs[GUARDRAIL_NOTE]["input"] == {
        "identifier": "gr0abc", "version": "1", "action": "GUARDRAIL_INTERVENED", "units": 4}


def test_e2e_filter_passes_and_checks_output(serve_gateway: Serve,
                                             fake_bedrock: FakeBedrock) -> None:
    client = gateway_client(serve_gateway([GuardrailFilter(GR)]).url)
    reply = client.converse(modelId=CLAUDE, messages=CALM)
    assert reply["output"]["message"]["content"][0]["text"] == "Echo: hello there"
    assert [r.operation for r in fake_bedrock.requests] == [
        "ApplyGuardrail", "Converse", "ApplyGuardrail"]
    assert json.loads(fake_bedrock.requests[2].body)["content"] == [
        {"text": {"text": "Echo: hello there"}}]
    fake_bedrock.reset()
    output_only = gateway_client(serve_gateway([GuardrailFilter(GR, check_input=False)]).url)
    with pytest.raises(ClientError) as info:  # the echo carries BLOCKME back out
        output_only.converse(modelId=CLAUDE, messages=HOSTILE)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "response" in info.value.response["Error"]["Message"]
    assert [r.operation for r in fake_bedrock.requests] == ["Converse", "ApplyGuardrail"]


def test_e2e_filter_fails_closed_then_open(serve_gateway: Serve,
                                           fake_bedrock: FakeBedrock) -> None:
    closed = gateway_client(serve_gateway([GuardrailFilter(GR)]).url)
    fake_bedrock.fail_next(1, 403, "AccessDeniedException", "no")
    with pytest.raises(ClientError) as info:
        closed.converse(modelId=CLAUDE, messages=CALM)
    assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert [r.operation for r in fake_bedrock.requests] == ["ApplyGuardrail"]
    fake_bedrock.reset()
    opened = gateway_client(serve_gateway([GuardrailFilter(GR, on_error="fail_open")]).url)
    fake_bedrock.fail_next(1, 403, "AccessDeniedException", "no")
    assert opened.converse(modelId=CLAUDE, messages=CALM)["stopReason"] == "end_turn"
