"""What a request asks for that changes its price, read once per call.

Converse keeps the service tier and latency in its body (``serviceTier.type``,
``performanceConfig.latency``); InvokeModel in headers (``X-Amzn-Bedrock-Service-Tier``,
``X-Amzn-Bedrock-PerformanceConfig-Latency``). Image models ask for ``numberOfImages`` of a
size and quality, StartAsyncInvoke video models for ``durationSeconds``, rerank models for one
query per 100 documents. Reading is conservative: a 1-hour cache TTL is assumed wherever the
body mentions ``"1h"``, so a reservation never prices a cache write below what it may cost.
"""

from __future__ import annotations

import math
import re
from typing import Any

from bedrock_gateway.call import Call
from bedrock_gateway.quota.prices import Terms

__all__ = ["PLAIN", "billed_model", "request_terms", "video_seconds"]

_KEY = "bedrock_gateway.terms"
_TIER_HEADER = "x-amzn-bedrock-service-tier"
_LATENCY_HEADER = "x-amzn-bedrock-performanceconfig-latency"
_TIERS = frozenset({"priority", "flex"})
_DURATION = re.compile(r"(\d{1,4})\s*s?")
_DOCS_PER_QUERY = 100  # Bedrock bills a rerank query per 100 documents
_NOVA_REEL_DEFAULT_S = 6
PLAIN = Terms()  # a request that asks for nothing that changes its price
_CONVERSE = frozenset({"Converse", "ConverseStream"})


def _get(doc: object, *path: str) -> object:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _count(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def billed_model(call: Call) -> str | None:
    """The model a call is billed for: the path's, or StartAsyncInvoke's ``modelId``."""
    if call.model_id is not None:
        return call.model_id
    if call.operation.name == "StartAsyncInvoke" and call.is_json:
        model = call.json().get("modelId")
        return model if isinstance(model, str) else None
    return None


def video_seconds(model: str | None, model_input: object) -> int | None:
    """Seconds of video a StartAsyncInvoke ``modelInput`` asks for; ``None`` when it does not
    say and the model has no known default (the cost cannot be bounded)."""
    seconds = _get(model_input, "videoGenerationConfig", "durationSeconds")
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
        return seconds
    duration = _get(model_input, "duration")  # Luma Ray: "5s" / "9s"
    if isinstance(duration, str) and (found := _DURATION.fullmatch(duration.strip())):
        return int(found.group(1))
    if model is not None and "nova-reel" in model and seconds is None:
        return _NOVA_REEL_DEFAULT_S
    return None


def _image_terms(body: dict[str, Any]) -> tuple[int, str | None]:
    config = body.get("imageGenerationConfig")
    if isinstance(config, dict) or "taskType" in body:
        config = config if isinstance(config, dict) else {}
        images = _count(config.get("numberOfImages"), 1)
        width, height = config.get("width", 1024), config.get("height", 1024)
        quality = config.get("quality", "standard")
        return images, f"{width}x{height}/{quality}"
    if "prompt" in body and "text_prompts" not in body and "mode" in body:  # Stability
        return 1, None
    return 0, None


def _read(call: Call) -> Terms:
    name = call.operation.name
    if name in _CONVERSE:  # the hot path: most calls name no tier, latency or 1-hour TTL
        doc = call.json()
        if "serviceTier" not in doc and "performanceConfig" not in doc \
                and b'"1h"' not in call.body:
            return PLAIN
    headers = call.headers
    tier: object = None
    latency: object = None
    body: dict[str, Any] = call.json() if call.is_json else {}
    if name.startswith("Converse"):
        tier = _get(body, "serviceTier", "type")
        latency = _get(body, "performanceConfig", "latency")
    elif name.startswith("InvokeModel"):
        tier = headers.get(_TIER_HEADER)
        latency = headers.get(_LATENCY_HEADER)
    images, image_key, seconds, queries, input_images = 0, None, 0, 0, 0
    if name == "InvokeModel" and body:
        images, image_key = _image_terms(body)
        documents = body.get("documents")
        if isinstance(documents, list) and "query" in body:
            queries = max(1, math.ceil(len(documents) / _DOCS_PER_QUERY))
        if body.get("inputImage"):
            input_images = 1
    elif name == "StartAsyncInvoke" and body:
        model_input = body.get("modelInput")
        model = body.get("modelId")
        seconds = video_seconds(model if isinstance(model, str) else None, model_input) or 0
        if isinstance(model_input, dict):
            images, image_key = _image_terms(model_input)
    tier = tier if isinstance(tier, str) and tier in _TIERS else None
    latency = "optimized" if latency == "optimized" else None
    cache_1h = b'"1h"' in call.body
    if not (tier or latency or cache_1h or images or seconds or queries or input_images):
        return PLAIN  # most calls: nothing that changes the price
    return Terms(tier=tier, latency=latency, cache_1h=cache_1h, image_key=image_key,
                 images=images, video_seconds=seconds, queries=queries,
                 input_images=input_images)


def request_terms(call: Call) -> Terms:
    """The call's :class:`Terms`, read once (shared by the enforcer and the recorder)."""
    terms = call.attrs.get(_KEY)
    if not isinstance(terms, Terms):
        try:
            terms = _read(call)
        except Exception:  # a body the parse refused: the pipeline answers it elsewhere
            terms = Terms()
        call.attrs[_KEY] = terms
    return terms
