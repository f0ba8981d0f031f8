"""bedrock-agent-runtime through the gateway, end to end: an unmodified boto3
``bedrock-agent-runtime`` client -> gateway over HTTP -> a FakeBedrock standing in for the
agent-runtime host (another FakeBedrock stands in for bedrock-runtime, so the test sees which
host each call reached). Opt-in by ``[upstream] services``; access rules judge knowledge bases
and agents; quotas count them; the aws-endpoint-prefix header is checked, never obeyed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from bedrock_gateway.eventstream import iter_frames
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock

from ..conftest import ServeConfig, records

KB = "KBALLOWED1"
OTHER_KB = "KBOTHER123"
AGENT, ALIAS = "AGENT12345", "TSTALIASID"
HAIKU_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
LLAMA_ARN = "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-1-8b-instruct-v1:0"


@pytest.fixture
def agent_fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


def agents_client(url: str) -> Any:
    return boto3.client("bedrock-agent-runtime", region_name="us-east-1", endpoint_url=url,
                        config=Config(signature_version=UNSIGNED,
                                      retries={"total_max_attempts": 1}))


def upstream(agent_fake: FakeBedrock) -> str:
    return (f'services = ["bedrock-runtime", "bedrock-agent-runtime"]\n'
            f'endpoints = {{ "bedrock-agent-runtime" = "{agent_fake.endpoint_url}" }}')


@pytest.fixture
def served(configured: ServeConfig, agent_fake: FakeBedrock
           ) -> Iterator[tuple[Any, BackgroundServer, Path]]:
    server, log = configured(f"""
[[access]]
name = "claude-kb-and-agent"
allow_models = ["anthropic.*"]
allow_resources = ["knowledge-base/{KB}", "agent/{AGENT}/alias/*"]
[[quota.limits]]
scope = "subject:model"
models = ["knowledge-base/*"]
requests_per_minute = 3
""", upstream=upstream(agent_fake))
    client = agents_client(server.url)
    yield client, server, log
    client.close()


def kb_config(kb: str, model: str) -> dict[str, Any]:
    return {"type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {"knowledgeBaseId": kb, "modelArn": model}}


def test_retrieve_reaches_the_agent_runtime_host_signed_and_is_recorded(
        served: tuple[Any, BackgroundServer, Path], agent_fake: FakeBedrock,
        fake_bedrock: FakeBedrock) -> None:
    client, _, log = served
    found = client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "refund policy"})
    assert found["retrievalResults"][0]["content"]["text"].endswith("refund policy")
    seen = agent_fake.requests[-1]  # the fake verified the gateway's SigV4 signature
    assert (seen.operation, seen.raw_path) == ("Retrieve", f"/knowledgebases/{KB}/retrieve")
    assert seen.host == agent_fake.endpoint_url.removeprefix("http://")
    assert fake_bedrock.requests == []  # nothing went to the bedrock-runtime host
    (record,) = records(log, 1)
    assert (record["operation"], record["resource"], record["status"]) == (
        "Retrieve", f"knowledge-base/{KB}", 200)


def test_access_rules_judge_knowledge_bases_agents_and_the_generating_model(
        served: tuple[Any, BackgroundServer, Path], agent_fake: FakeBedrock) -> None:
    client, _, _ = served
    refused = [
        lambda: client.retrieve(knowledgeBaseId=OTHER_KB, retrievalQuery={"text": "x"}),
        lambda: client.retrieve_and_generate(  # an allowed knowledge base, a model no rule allows
            input={"text": "x"}, retrieveAndGenerateConfiguration=kb_config(KB, LLAMA_ARN)),
        lambda: client.retrieve_and_generate(  # an allowed model, another knowledge base
            input={"text": "x"}, retrieveAndGenerateConfiguration=kb_config(OTHER_KB, HAIKU_ARN)),
        lambda: client.invoke_agent(agentId="AGENTOTHER", agentAliasId=ALIAS, sessionId="s1",
                                    inputText="x"),
    ]
    for call in refused:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert agent_fake.requests == []
    answer = client.retrieve_and_generate(
        input={"text": "what is covered?"}, retrieveAndGenerateConfiguration=kb_config(KB, HAIKU_ARN))
    assert answer["output"]["text"] == "Echo: what is covered?"


def test_streams_pass_through_byte_for_byte(
        served: tuple[Any, BackgroundServer, Path], agent_fake: FakeBedrock) -> None:
    client, _, log = served
    streamed = client.retrieve_and_generate_stream(
        input={"text": "tell me more"}, retrieveAndGenerateConfiguration=kb_config(KB, HAIKU_ARN))
    text = "".join(e["output"]["text"] for e in streamed["stream"] if "output" in e)
    assert text == "Echo: tell me more" and streamed["sessionId"]
    agent = client.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="session-7",
                                inputText="book a room", sourceArn=f"arn:aws:bedrock:us-east-1:"
                                f"123456789012:agent/{AGENT}")
    reply = b"".join(e["chunk"]["bytes"] for e in agent["completion"])
    assert reply == f"Agent {AGENT}: book a room".encode()
    assert agent["sessionId"] == "session-7"
    seen = agent_fake.requests[-1]
    assert seen.headers["x-amz-source-arn"].endswith(f":agent/{AGENT}")  # forwarded for agents
    _, server, _ = served
    raw = post(server, f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s8/text",
               {"inputText": "again"})
    assert raw.data == agent_fake.last_stream_body  # byte for byte
    assert [f.event_type for f in iter_frames([raw.data])] == ["chunk"] * 3  # "Agent ID: again"
    written = {r["operation"]: r for r in records(log, 3)}
    assert written["InvokeAgent"]["resource"] == f"agent/{AGENT}/alias/{ALIAS}"
    assert written["RetrieveAndGenerateStream"]["model"] == HAIKU_ARN


def test_quotas_count_knowledge_base_calls(
        served: tuple[Any, BackgroundServer, Path], agent_fake: FakeBedrock) -> None:
    client, _, _ = served
    for _ in range(3):
        client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    with pytest.raises(ClientError) as caught:
        client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(agent_fake.requests) == 3


def post(server: BackgroundServer, path: str, body: dict[str, Any], **headers: str
         ) -> urllib3.BaseHTTPResponse:
    http = urllib3.PoolManager()
    try:
        return http.request("POST", server.url + path, body=json.dumps(body),
                            headers={"Content-Type": "application/json", **headers})
    finally:
        http.clear()


def test_the_endpoint_prefix_header_must_agree_with_the_path(
        served: tuple[Any, BackgroundServer, Path], agent_fake: FakeBedrock) -> None:
    _, server, _ = served
    query = {"retrievalQuery": {"text": "q"}}
    ok = post(server, f"/knowledgebases/{KB}/retrieve", query,
              **{"aws-endpoint-prefix": "bedrock-agent-runtime"})
    assert ok.status == 200
    assert "aws-endpoint-prefix" not in agent_fake.requests[-1].headers
    wrong = post(server, f"/knowledgebases/{KB}/retrieve", query,
                 **{"aws-endpoint-prefix": "bedrock-runtime"})
    assert wrong.status == 400 and wrong.headers["x-amzn-ErrorType"].startswith("Validation")
    assert len(agent_fake.requests) == 1


def test_agent_runtime_is_off_unless_configured(configured: ServeConfig,
                                                agent_fake: FakeBedrock) -> None:
    server, _ = configured()
    client = agents_client(server.url)
    with pytest.raises(ClientError) as caught:
        client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    refused = post(server, f"/knowledgebases/{KB}/retrieve", {"retrievalQuery": {"text": "q"}},
                   **{"aws-endpoint-prefix": "bedrock-agent-runtime"})
    assert refused.status == 404
    assert agent_fake.requests == []
    client.close()


def test_hostile_agent_paths_are_refused_before_anything_is_sent(
        served: tuple[Any, BackgroundServer, Path], agent_fake: FakeBedrock) -> None:
    _, server, _ = served
    for path in (f"/knowledgebases/{KB}%2F..%2Fx/retrieve", "/knowledgebases/short/retrieve",
                 f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/a%0Db/text",
                 f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/{'s' * 101}/text"):
        answer = post(server, path, {"inputText": "x", "retrievalQuery": {"text": "q"}})
        assert answer.status == 400, path
    assert agent_fake.requests == []


def test_agent_sessions_and_memories_are_kept_apart_per_principal(
        configured: ServeConfig, agent_fake: FakeBedrock) -> None:
    server, _ = configured("", upstream=upstream(agent_fake))
    client = agents_client(server.url)
    answer = client.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="shared-name",
                                 memoryId="mem-1", inputText="hi")
    assert b"".join(e["chunk"]["bytes"] for e in answer["completion"])
    assert (answer["sessionId"], answer["memoryId"]) == ("shared-name", "mem-1")  # as sent
    seen = agent_fake.requests[-1]
    upstream_session = seen.params["sessionId"]
    assert upstream_session.endswith("-shared-name") and upstream_session != "shared-name"
    assert json.loads(seen.body)["memoryId"] == upstream_session.replace("shared-name", "mem-1")
    with pytest.raises(ClientError) as caught:
        client.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="s" * 88,
                            inputText="hi")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    client.close()


def test_two_principals_never_share_an_agent_session() -> None:
    from bedrock_gateway import Call, Gateway, Principal, Response
    from bedrock_gateway.routing.agent_sessions import AgentSessionScope

    seen: list[Call] = []

    def handler(call: Call) -> Response:
        seen.append(call)
        return Response(200, {"x-amz-bedrock-agent-session-id": call.params["sessionId"]})

    def ask(gateway: Gateway, who: Principal) -> str:
        answer = gateway.handle("POST", f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s1/text",
                                "", {"content-type": "application/json"}, b'{"inputText":"x"}',
                                principal=who)
        assert answer.headers["x-amz-bedrock-agent-session-id"] == "s1"
        return seen[-1].params["sessionId"]

    per_principal = Gateway(handler, [AgentSessionScope()], anonymous=True,
                            services=["bedrock-agent-runtime"])
    alice, bob = Principal("alice", tenant="t"), Principal("bob", tenant="t")
    assert ask(per_principal, alice) != ask(per_principal, bob)
    assert ask(per_principal, alice) == ask(per_principal, alice)  # stable across calls
    per_tenant = Gateway(handler, [AgentSessionScope("tenant")], anonymous=True,
                         services=["bedrock-agent-runtime"])
    assert ask(per_tenant, alice) == ask(per_tenant, bob)
    assert ask(per_tenant, alice) != ask(per_tenant, Principal("alice", tenant="other"))


def test_agent_runtime_calls_need_a_per_call_price_under_a_dollar_limit(
        configured: ServeConfig, agent_fake: FakeBedrock) -> None:
    budget = '[[quota.limits]]\nscope = "global"\nusd_per_day = 0.01\n'
    unpriced, _ = configured(budget, upstream=upstream(agent_fake))
    client = agents_client(unpriced.url)
    with pytest.raises(ClientError) as refused:
        client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Retrieve has no per-call price" in refused.value.response["Error"]["Message"]
    assert agent_fake.requests == []
    priced, log = configured(budget + "[pricing.operations]\nRetrieve = 0.004\n",
                             upstream=upstream(agent_fake))
    client = agents_client(priced.url)
    outcomes = []
    for _ in range(3):
        try:
            client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes == ["ok", "ok", "ServiceQuotaExceededException"]  # $0.004 x 2 of $0.01
    assert [r["cost_usd"] for r in records(log, 2)] == ["0.004", "0.004"]
