"""Usage records equal AWS's bill: boto3 -> gateway over HTTP (configured from TOML) ->
FakeBedrock, priced against AWS's public on-demand rates written here by hand (not read from
our own table), for every billed dimension; and calls priced per unit stop at a dollar budget.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_gateway.serve import BackgroundServer

from ..conftest import ServeConfig, gateway_client, records

D = Decimal
M = D(1_000_000)
SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA_PRO = "amazon.nova-pro-v1:0"
# AWS Bedrock on-demand prices, USD per 1M tokens (aws.amazon.com/bedrock/pricing): Claude
# Sonnet 4.5 global / geo (us., eu., jp., au.) and in-region; long context (> 200k prompt
# tokens) is 2x input and 1.5x output; cache write 1.25x (5 min) / 2x (1 h), read 0.1x input.
SONNET_GLOBAL = {"input": D(3), "output": D(15), "read": D("0.3"), "write": D("3.75"),
                 "write_1h": D(6)}
SONNET_GEO = {"input": D("3.3"), "output": D("16.5"), "read": D("0.33"), "write": D("4.125"),
              "write_1h": D("6.6")}
SONNET_GEO_LONG = {"input": D("6.6"), "output": D("24.75"), "read": D("0.66"),
                   "write": D("8.25"), "write_1h": D("13.2")}
# Nova Pro: standard 0.8 / 3.2 (cache read 0.2); priority 1.75x; flex 0.5x.
NOVA_STANDARD = {"input": D("0.8"), "output": D("3.2"), "read": D("0.2")}
NOVA_PRIORITY = {"input": D("1.4"), "output": D("5.6"), "read": D("0.35")}
NOVA_FLEX = {"input": D("0.4"), "output": D("1.6"), "read": D("0.1")}
# Guardrails, USD per 1,000 text units by policy; word filters are free.
GUARDRAIL = {"contentPolicyUnits": D("0.15"), "topicPolicyUnits": D("0.15"),
             "sensitiveInformationPolicyUnits": D("0.1"),
             "contextualGroundingPolicyUnits": D("0.1"), "wordPolicyUnits": D(0),
             "automatedReasoningPolicyUnits": D("0.17")}
Start = Callable[..., tuple[BackgroundServer, Path]]


@pytest.fixture
def start(configured: ServeConfig) -> Start:
    return configured


def aws_bill(record: dict[str, Any], rates: dict[str, D]) -> D:
    """The bill AWS computes from the usage Bedrock reported."""
    one_hour = record["cache_write_1h_tokens"]
    return (record["input_tokens"] * rates["input"] + record["output_tokens"] * rates["output"]
            + record["cache_read_tokens"] * rates.get("read", rates["input"])
            + (record["cache_write_tokens"] - one_hour) * rates.get("write", rates["input"])
            + one_hour * rates.get("write_1h", rates["input"])) / M


def assert_within_1pct(recorded: str | None, expected: D) -> None:
    assert recorded is not None
    assert expected > 0
    assert abs(D(recorded) - expected) <= expected / 100, (recorded, expected)


def cached_prompt(chars: int, ttl: str | None = None) -> dict[str, Any]:
    point: dict[str, Any] = {"type": "default"}
    if ttl:
        point["ttl"] = ttl
    return {"system": [{"text": "x" * chars}, {"cachePoint": point}],
            "messages": [{"role": "user", "content": [{"text": "Summarise the notes"}]}],
            "inferenceConfig": {"maxTokens": 500}}


@pytest.mark.parametrize(("prefix", "rates"), [("us.", SONNET_GEO), ("global.", SONNET_GLOBAL)])
def test_claude_cache_reads_and_writes_by_ttl(start: Start, prefix: str,
                                              rates: dict[str, D]) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url)
    model = prefix + SONNET_45
    client.converse(modelId=model, **cached_prompt(400_000))  # writes 100k tokens (5 min)
    client.converse(modelId=model, **cached_prompt(400_000))  # reads them
    client.converse(modelId=model, **cached_prompt(200_004, ttl="1h"))  # writes 50,001 (1 h)
    write, read, hour = records(log, 3)
    assert (write["cache_write_tokens"], write["cache_write_1h_tokens"]) == (100_000, 0)
    assert read["cache_read_tokens"] == 100_000 and read["input_tokens"] < 10
    assert hour["cache_write_tokens"] == hour["cache_write_1h_tokens"] == 50_001
    for record in (write, read, hour):
        assert record["geography"] == prefix.rstrip(".")
        assert_within_1pct(record["cost_usd"], aws_bill(record, rates))
    # The case: 100k tokens read from the cache cost about 4 cents, not 34.
    assert D(read["cost_usd"]) < D("0.05")


def test_nova_pro_cache_reads_and_service_tiers(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url)
    model = "us." + NOVA_PRO
    client.converse(modelId=model, **cached_prompt(40_000))
    client.converse(modelId=model, **cached_prompt(40_000))
    ask = {"messages": [{"role": "user", "content": [{"text": "one two three " * 300}]}]}
    answer = client.converse(modelId=model, serviceTier={"type": "priority"}, **ask)
    assert answer["serviceTier"] == {"type": "priority"}
    client.converse(modelId=model, serviceTier={"type": "flex"}, **ask)
    client.converse(modelId=model, **ask)
    _, read, priority, flex, standard = records(log, 5)
    assert read["cache_read_tokens"] == 10_000
    assert_within_1pct(read["cost_usd"], aws_bill(read, NOVA_STANDARD))
    assert priority["service_tier"] == "priority" and flex["service_tier"] == "flex"
    assert_within_1pct(priority["cost_usd"], aws_bill(priority, NOVA_PRIORITY))
    assert_within_1pct(flex["cost_usd"], aws_bill(flex, NOVA_FLEX))
    assert_within_1pct(standard["cost_usd"], aws_bill(standard, NOVA_STANDARD))
    assert D(priority["cost_usd"]) == 4 * D(flex["cost_usd"]) * D("0.875")


def test_invoke_model_tier_header_and_exclusive_input_counts(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url)
    import json

    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello " * 100}]}],
                       "inferenceConfig": {"max_new_tokens": 50}})
    answer = client.invoke_model(modelId="us." + NOVA_PRO, body=body, serviceTier="flex")
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-service-tier"] == "flex"
    (record,) = records(log, 1)
    assert record["service_tier"] == "flex"
    assert_within_1pct(record["cost_usd"], aws_bill(record, NOVA_FLEX))


def test_a_prompt_over_200k_tokens_is_billed_at_the_long_context_rates(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url, read_timeout=120)
    messages = [{"role": "user", "content": [{"text": "y" * 800_400}]}]  # 200,100 tokens
    client.converse(modelId="us." + SONNET_45, messages=messages,
                    inferenceConfig={"maxTokens": 100})
    (record,) = records(log, 1)
    assert record["input_tokens"] > 200_000
    assert_within_1pct(record["cost_usd"], aws_bill(record, SONNET_GEO_LONG))


def test_an_eu_profile_is_billed_at_the_eu_rate(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url)
    client.converse(modelId="eu." + SONNET_45,
                    messages=[{"role": "user", "content": [{"text": "Bonjour " * 200}]}])
    (record,) = records(log, 1)
    assert record["geography"] == "eu"
    assert_within_1pct(record["cost_usd"], aws_bill(record, SONNET_GEO))


def test_an_embedding_is_billed_per_input_token(start: Start) -> None:
    import json

    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url)
    client.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                        body=json.dumps({"inputText": "embed me " * 500}))
    (record,) = records(log, 1)
    assert record["input_tokens"] > 1_000 and record["output_tokens"] == 0
    assert_within_1pct(record["cost_usd"], record["input_tokens"] * D("0.02") / M)


REEL = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a lighthouse at dusk"},
        "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}
OUTPUT = {"s3OutputDataConfig": {"s3Uri": "s3://videos/out"}}


def test_a_nova_reel_video_is_billed_per_second(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 5\n')
    client = gateway_client(server.url)
    client.start_async_invoke(modelId="amazon.nova-reel-v1:0", modelInput=REEL,
                              outputDataConfig=OUTPUT)
    (record,) = records(log, 1)
    assert record["model"] == "amazon.nova-reel-v1:0" and record["video_seconds"] == 6
    assert_within_1pct(record["cost_usd"], 6 * D("0.08"))  # $0.08 per second


def test_a_nova_reel_video_under_a_5_cent_budget_is_refused(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 0.05\n')
    client = gateway_client(server.url)
    with pytest.raises(ClientError) as refused:
        client.start_async_invoke(modelId="amazon.nova-reel-v1:0", modelInput=REEL,
                                  outputDataConfig=OUTPUT)
    assert refused.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert "0.48" in refused.value.response["Error"]["Message"]
    (record,) = records(log, 1)
    assert record["error"] == "ServiceQuotaExceededException"


def guardrail_call(client: Any, chars: int) -> Any:
    return client.apply_guardrail(guardrailIdentifier="grbilling", guardrailVersion="1",
                                  source="INPUT", content=[{"text": {"text": "z" * chars}}])


def test_apply_guardrail_is_billed_per_policy_and_stops_at_the_budget(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 0.01\n')
    client = gateway_client(server.url)
    outcomes = []
    for _ in range(8):
        try:
            guardrail_call(client, 5_000)  # 5 text units per policy
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes[0] == "ok" and outcomes[-1] == "ServiceQuotaExceededException"
    admitted = [r for r in records(log, 8) if r["status"] == 200]
    for record in admitted:
        units = record["guardrail_policy_units"]
        assert units and all(n == 5 for n in units.values())
        expected = sum(n * GUARDRAIL[policy] for policy, n in units.items()) / 1000
        assert_within_1pct(record["cost_usd"], expected)
    assert sum(D(r["cost_usd"]) for r in admitted) <= D("0.01")


def test_unpriced_calls_are_refused_under_a_dollar_limit_unless_allowed(start: Start) -> None:
    server, _ = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 5\n')
    client = gateway_client(server.url)
    with pytest.raises(ClientError) as refused:
        client.converse(modelId="example.unlisted-model-v1:0",
                        messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "no price" in refused.value.response["Error"]["Message"]
    allowing, _ = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 5\n'
                        'unpriced = "allow"\n')
    try:  # admitted by the gateway (the fake may still refuse an id it does not know)
        gateway_client(allowing.url).converse(
            modelId="example.unlisted-model-v1:0",
            messages=[{"role": "user", "content": [{"text": "hi"}]}])
    except ClientError as exc:
        assert "no price" not in exc.response["Error"]["Message"]


def test_guardrail_checks_are_billed_per_check(start: Start) -> None:
    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 1\n')
    client = gateway_client(server.url)
    client.invoke_guardrail_checks(
        messages=[{"role": "user", "content": [{"text": "w" * 2_500}]}],
        checks={"promptAttack": {"categories": [{"category": "JAILBREAK"}]},
                "sensitiveInformation": {"entities": [{"type": "EMAIL"}]}})
    (record,) = records(log, 1)
    units = record["guardrail_policy_units"]
    assert units == {"promptAttack": 3, "sensitiveInformation": 3}  # 2,500 chars: 3 units
    # Prompt attack is a content-filter policy ($0.15), sensitive information $0.10.
    assert_within_1pct(record["cost_usd"], (3 * D("0.15") + 3 * D("0.1")) / 1000)


def test_images_and_rerank_queries_are_billed_per_unit(start: Start) -> None:
    import json

    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 5\n')
    client = gateway_client(server.url)
    canvas = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a red kite"},
              "imageGenerationConfig": {"numberOfImages": 2, "width": 1024, "height": 1024,
                                        "quality": "premium"}}
    answer = client.invoke_model(modelId="amazon.nova-canvas-v1:0", body=json.dumps(canvas))
    assert len(json.loads(answer["body"].read())["images"]) == 2
    rerank = {"query": "refunds", "documents": [f"doc {i}" for i in range(150)],
              "api_version": 2}
    client.invoke_model(modelId="cohere.rerank-v3-5:0", body=json.dumps(rerank))
    images, queries = records(log, 2)
    assert images["images"] == 2
    assert_within_1pct(images["cost_usd"], 2 * D("0.06"))  # premium, up to 1024 x 1024
    assert queries["queries"] == 2  # 150 documents: two queries of up to 100
    assert_within_1pct(queries["cost_usd"], 2 * D("0.002"))  # $2 per 1,000 queries


def test_streams_are_billed_like_buffered_answers(start: Start) -> None:
    """ConverseStream (metadata event) and InvokeModelWithResponseStream (Anthropic
    message_start + invocation metrics): cache writes by TTL, reads, tier, at AWS rates."""
    import json

    server, log = start('[[quota.limits]]\nscope = "global"\nusd_per_day = 50\n')
    client = gateway_client(server.url)
    model = "us." + SONNET_45
    for _ in range(2):  # write, then read
        stream = client.converse_stream(modelId=model, **cached_prompt(120_000, ttl="1h"))
        list(stream["stream"])
    native = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
              "system": [{"type": "text", "text": "n" * 80_000,
                          "cache_control": {"type": "ephemeral"}}],
              "messages": [{"role": "user", "content": "Summarise the notes"}]}
    for _ in range(2):
        answer = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(native))
        list(answer["body"])
    written, read, native_write, native_read = records(log, 4)
    assert written["cache_write_1h_tokens"] == written["cache_write_tokens"] == 30_000
    assert read["cache_read_tokens"] == 30_000
    assert native_write["cache_write_tokens"] == 20_000
    assert native_write["cache_write_1h_tokens"] == 0
    assert native_read["cache_read_tokens"] == 20_000
    for record in (written, read, native_write, native_read):
        assert record["streamed"] and record["complete"]
        assert_within_1pct(record["cost_usd"], aws_bill(record, SONNET_GEO))


def test_a_5_dollar_budget_admits_many_cache_reads(start: Start) -> None:
    """The issue's case: reads of a 100k-token cached prompt cost ~4 cents each, so a $5 day
    admits dozens of them (it refused the tenant after $0.46 when reads were priced as input)."""
    server, log = start('[[quota.limits]]\nscope = "tenant"\nusd_per_day = 5\n'
                        '[[quota.limits]]\nscope = "global"\nusd_per_day = 5\n')
    client = gateway_client(server.url)
    for _ in range(25):
        client.converse(modelId="us." + SONNET_45, **cached_prompt(400_000))
    spent = sum(D(r["cost_usd"]) for r in records(log, 25))
    assert D("0.9") < spent < D("1.5")  # one write ($0.41) and 24 reads (~$0.04 each)
