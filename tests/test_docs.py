"""Code in the docs is code that runs: snippets are executed or are the example files."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from bedrock_gateway.config import parse_config

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)


def example(name: str) -> str:
    return (ROOT / "examples" / name).read_text().strip()


def test_testing_md_snippets_run_or_are_examples() -> None:
    first, second, policy, policy_test = python_blocks("testing.md")
    exec(compile(first, "docs/testing.md", "exec"), {})  # noqa: S102 - our own documentation
    assert second.strip() in example("test_policy_example.py")
    assert policy.strip() == example("custom_policy.py")  # the whole file
    assert policy_test.strip() in example("test_custom_policy.py")


def test_frameworks_md_shows_the_example_files() -> None:
    blocks = [block.strip() for block in python_blocks("frameworks.md")]
    assert blocks == [example("fastapi_app.py"), example("flask_app.py")]


def test_configuration_md_example_is_valid() -> None:
    import tomllib

    (block,) = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "configuration.md").read_text(), re.S)
    config = parse_config(tomllib.loads(block))
    assert config.upstream.region == "eu-central-1"
    assert [rule.name for rule in config.access] == ["analytics-nova", "engineers", "no-opus"]
    assert [limit.name for limit in config.quota.limits] == ["", "batch"]
    assert [entry.type for entry in config.filters] == ["pii", "guardrail"]


def test_documented_keys_are_the_config_keys() -> None:
    """Every leaf key of every section is in a table of configuration.md, and the tables name
    nothing that is not a key."""
    from pydantic import BaseModel

    from bedrock_gateway.config import GatewayConfig

    def models_in(annotation: object) -> list[type[BaseModel]]:
        """Every BaseModel class inside a type (through lists, unions, Annotated, Optional)."""
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    def leaves(model: type[BaseModel]) -> set[str]:
        out: set[str] = set()
        for name, field in model.model_fields.items():
            children = models_in(field.annotation)
            if children:
                for child in children:
                    out |= leaves(child)
            else:
                out.add(name)
        return out

    def names(model: type[BaseModel]) -> set[str]:
        out = set(model.model_fields)
        for field in model.model_fields.values():
            for child in models_in(field.annotation):
                out |= names(child)
        return out

    documented = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "configuration.md").read_text(), re.M))
    assert leaves(GatewayConfig) <= documented  # every key a user can set is documented
    assert documented <= names(GatewayConfig)  # and the docs name no key that does not exist


def test_auth_md_snippets() -> None:
    import tomllib

    text = (ROOT / "docs" / "auth.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", text, re.S):
        data = tomllib.loads(block)
        if "auth" not in data:
            data["auth"] = {"anonymous": True}
        parse_config(data)
    (rules,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "AccessRule(" in b]
    exec(compile(rules, "docs/auth.md", "exec"), {})  # noqa: S102 - our own documentation
    (client,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def sigv4_client" in b]
    assert client.strip() == example("client.py")


def test_quota_md_worked_prices_reproduce_aws_bills() -> None:
    """Every row of quota.md's "Prices: what AWS bills" table, priced by the packaged table."""
    from decimal import Decimal

    from bedrock_gateway.quota.prices import Terms, usd
    from bedrock_gateway.quota.pricing import Pricing
    from bedrock_gateway.quota.usage import Usage

    text = (ROOT / "docs" / "quota.md").read_text()
    section = text.split("## Prices: what AWS bills", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| [^|]+ \| (`[^`]+`|ApplyGuardrail) \| `([^`]+)` \| [^|]+ \| ([\d.]+) \|$",
                      section, re.M)
    assert len(rows) >= 16
    pricing = Pricing(region="us-east-1")
    usage_keys = {"input": "input_tokens", "output": "output_tokens",
                  "cache_read": "cache_read_tokens", "cache_write": "cache_write_tokens",
                  "cache_write_1h": "cache_write_1h_tokens", "tier": "service_tier",
                  "latency": "latency", "images": "images"}
    for model, usage_text, bill in rows:
        fields = dict(pair.split("=") for pair in usage_text.split())
        if model == "ApplyGuardrail":
            units = tuple((k, int(v)) for k, v in fields.items())
            assert usd(pricing.guardrail_atto(units) or 0) == Decimal(bill), model
            continue
        usage = Usage(**{usage_keys[k]: v if k in ("tier", "latency") else int(v)
                         for k, v in fields.items() if k in usage_keys})
        terms = Terms(image_key=fields.get("image_key"),
                      video_seconds=int(fields.get("video_seconds", 0)),
                      queries=int(fields.get("queries", 0)))
        rates = pricing.rates_for(model.strip("`"))
        assert rates is not None, model
        assert usd(rates.bill(usage, terms)) == Decimal(bill), (model, usage_text)


def test_quota_md_snippets() -> None:
    import tomllib

    (snippet,) = python_blocks("quota.md")
    exec(compile(snippet, "docs/quota.md", "exec"), {})  # noqa: S102 - our own documentation
    block = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "quota.md").read_text(), re.S)[0]
    config = parse_config({**tomllib.loads(block), "auth": {"anonymous": True}})
    assert [limit.scope for limit in config.quota.limits] == ["tenant", "subject:model"]


def test_readme_config_is_valid() -> None:
    import tomllib

    (block,) = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    config = parse_config(tomllib.loads(block))
    assert config.quota.limits[0].usd_per_day == 50 and config.usage.log == "usage.jsonl"


def test_filters_md_snippets() -> None:
    import tomllib

    for snippet in python_blocks("filters.md"):
        exec(compile(snippet, "docs/filters.md", "exec"), {})  # noqa: S102 - our own documentation
    block = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "filters.md").read_text(), re.S)[0]
    config = parse_config({**tomllib.loads(block), "auth": {"anonymous": True}})
    assert [entry.type for entry in config.filters] == [
        "pii", "deny_terms", "regex", "size", "parameters", "guardrail"]
    from bedrock_gateway.filters.config import build_filters

    outer, inner = build_filters(config.filters, "block")
    assert len(outer) == 2 and not inner  # the injector, then the content filter


def test_routing_and_caching_md_configs_are_valid() -> None:
    import tomllib

    for doc, check in (("routing.md", lambda c: [r.alias for r in c.routes] == ["chat-default"] * 2),
                       ("caching.md", lambda c: c.cache is not None and c.cache.ttl_s == 600)):
        block = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)[0]
        config = parse_config({**tomllib.loads(block), "auth": {"anonymous": True}})
        assert check(config)
        from bedrock_gateway.routing.config import build_cache, build_routing

        router, _ = build_routing(config.routes, lambda call: None, deadline_s=10)  # type: ignore[arg-type,return-value]
        assert (router is not None) == bool(config.routes)
        if config.cache is not None:
            build_cache(config.cache.model_copy(update={"store": "memory://"})).close()


def test_routing_md_agent_runtime_config_is_valid() -> None:
    import tomllib

    from bedrock_gateway.config import build_access_rules, parse_config

    block = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "routing.md").read_text(), re.S)[1]
    config = parse_config({**tomllib.loads(block), "auth": {"anonymous": True}})
    assert config.upstream.services == ["bedrock-runtime", "bedrock-agent-runtime"]
    (rule,) = build_access_rules(config.access)
    from bedrock_gateway import Principal

    support = Principal("u", groups=frozenset({"support"}))
    assert rule.allows(support, "Retrieve", "knowledge-base/KB12345678")
    assert not rule.allows(support, "Retrieve", "knowledge-base/KB00000000")
    assert rule.allows(support, "InvokeAgent", "agent/AGENT12345/alias/TSTALIASID")
