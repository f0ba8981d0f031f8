"""Usage records end to end: boto3 -> gateway (config with [usage] log) -> FakeBedrock."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock

from .conftest import ServeConfig, gateway_client, leave_mid_stream, records
from .test_e2e import MESSAGES

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"  # 0.8 / 4 USD per 1M tokens
UNPRICED = "acme.unknown-model-v1:0"


@pytest.fixture
def recorded(configured: ServeConfig) -> tuple[BackgroundServer, Path]:
    return configured("""
[pricing.overrides]
"meta.llama3-1-8b-instruct-v1:0" = { input = 1.0, output = 2.0 }
""")


def test_buffered_and_streamed_calls_are_recorded_with_real_tokens_and_cost(
        recorded: tuple[BackgroundServer, Path]) -> None:
    server, log = recorded
    client = gateway_client(server.url)
    reply = client.converse(modelId=HAIKU, messages=MESSAGES)
    events = list(client.converse_stream(modelId=HAIKU, messages=MESSAGES)["stream"])
    stream_usage = events[-1]["metadata"]["usage"]  # read to the end: botocore then releases it
    chunks = [json.loads(e["chunk"]["bytes"]) for e in client.invoke_model_with_response_stream(
        modelId=HAIKU, body=json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
                                        "messages": [{"role": "user", "content": "hello"}]}))["body"]]
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    client.count_tokens(modelId=HAIKU, input={"converse": {"messages": MESSAGES}})
    client.close()
    # close hooks run when each response is finished with, so records may land out of order
    by_op = {r["operation"]: r for r in records(log, 4)}
    converse, stream = by_op["Converse"], by_op["ConverseStream"]
    invoke_stream, count = by_op["InvokeModelWithResponseStream"], by_op["CountTokens"]

    assert (converse["operation"], converse["model"], converse["streamed"]) == ("Converse", HAIKU, False)
    assert converse["input_tokens"] == reply["usage"]["inputTokens"]
    assert converse["output_tokens"] == reply["usage"]["outputTokens"]
    expected = (Decimal(reply["usage"]["inputTokens"]) * Decimal("0.8")
                + Decimal(reply["usage"]["outputTokens"]) * 4) / 1_000_000
    assert Decimal(converse["cost_usd"]) == expected
    assert converse["request_id"] and converse["status"] == 200 and converse["complete"]

    assert stream["streamed"] and stream["complete"]
    assert (stream["input_tokens"], stream["output_tokens"]) == (
        stream_usage["inputTokens"], stream_usage["outputTokens"])
    assert Decimal(stream["cost_usd"]) > 0  # streamed calls are never recorded at $0

    assert (invoke_stream["input_tokens"], invoke_stream["output_tokens"]) == (
        metrics["inputTokenCount"], metrics["outputTokenCount"])
    assert count["operation"] == "CountTokens" and Decimal(count["cost_usd"]) == 0


def test_errors_unpriced_models_and_overrides(recorded: tuple[BackgroundServer, Path],
                                              fake_bedrock: FakeBedrock) -> None:
    server, log = recorded
    client = gateway_client(server.url)
    fake_bedrock.fail_next(1, status=400, code="ValidationException")
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId=HAIKU, messages=MESSAGES)
    client.converse(modelId=UNPRICED.replace("acme.unknown", "anthropic.unknown"), messages=MESSAGES)
    client.converse(modelId="meta.llama3-1-8b-instruct-v1:0", messages=MESSAGES)
    client.close()
    by_model = {r["model"]: r for r in records(log, 3)}  # written in whatever order calls end
    failed = by_model[HAIKU]
    unpriced = by_model[UNPRICED.replace("acme.unknown", "anthropic.unknown")]
    overridden = by_model["meta.llama3-1-8b-instruct-v1:0"]
    assert (failed["status"], failed["error"], failed["input_tokens"]) == (400, "ValidationException", 0)
    assert unpriced["cost_usd"] is None and unpriced["input_tokens"] > 0
    assert Decimal(overridden["cost_usd"]) == (
        Decimal(overridden["input_tokens"]) * 1 + Decimal(overridden["output_tokens"]) * 2) / 1_000_000


def test_a_client_gone_mid_stream_still_produces_a_settled_record(
        recorded: tuple[BackgroundServer, Path], fake_bedrock: FakeBedrock) -> None:
    server, log = recorded
    release = fake_bedrock.hold_stream_after(2)
    body = json.dumps({"messages": MESSAGES}).encode()
    try:
        leave_mid_stream(server, HAIKU, body)
        (record,) = records(log, 1)
    finally:
        release.set()
    assert record["streamed"] and not record["complete"]
    assert record["error"] is not None or record["output_tokens"] == 0
