"""Image, rerank and video models: InvokeModel families that generate no text, and the Nova
Reel input StartAsyncInvoke validates.

- **Images** (``amazon.nova-canvas-*``, ``amazon.titan-image-generator-*``: ``taskType`` +
  ``textToImageParams`` + ``imageGenerationConfig``; ``stability.*``: ``{"prompt": ...}``) answer
  ``numberOfImages`` (1..5, default 1; Stability: 1) base64 images. Each is a valid 1x1 PNG
  whose colour is a hash of the request and the image's index, whatever the requested size.
- **Rerank** (``cohere.rerank-*``, ``amazon.rerank-*``: ``query``, ``documents``, ``top_n``,
  ``api_version`` 2) scores each document by the share of the query's words it contains
  (0.05..0.95, plus a hash tie-breaker below 0.01), best first.
- Neither reports token counts (no token headers) nor streams. Nova Reel is async only.
- **Video** (:func:`check_async_input`): Nova Reel ``TEXT_VIDEO`` is 6 s, 24 fps, 1280x720;
  ``amazon.nova-reel-v1:1`` adds ``MULTI_SHOT_AUTOMATED`` (12..120 s in steps of 6) and
  ``MULTI_SHOT_MANUAL`` (2..20 shots of 6 s). Other models' async input is not checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
import zlib
from typing import Any

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.testing.fake_families import JSON, Family, Turn, require_keys
from bedrock_gateway.testing.fake_text import PromptText, base_model_id

__all__ = ["MEDIA_FAMILIES", "check_async_input", "tiny_png"]

_IMAGE_TASKS = {  # taskType -> its parameters member (Titan Image Generator v2, Nova Canvas)
    "TEXT_IMAGE": "textToImageParams",
    "INPAINTING": "inPaintingParams",
    "OUTPAINTING": "outPaintingParams",
    "IMAGE_VARIATION": "imageVariationParams",
    "COLOR_GUIDED_GENERATION": "colorGuidedGenerationParams",
    "BACKGROUND_REMOVAL": "backgroundRemovalParams",
    "VIRTUAL_TRY_ON": "virtualTryOnParams",
}
_WORD = re.compile(r"\w+")


def _invalid(path: str, why: str) -> ValidationError:
    return ValidationError(f"Malformed input request: #/{path}: {why}, please reformat your"
                           " input and try again.")


def _int_in(value: object, path: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(path, f"must be an integer from {low} to {high}")
    return value


def _text(value: object, path: str, high: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= high:
        raise _invalid(path, f"expected a string of 1 to {high} characters")
    return value


def tiny_png(seed: bytes) -> str:
    """Base64 of a valid 1x1 RGB PNG whose colour is taken from ``seed``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixel = zlib.compress(b"\x00" + hashlib.sha256(seed).digest()[:3])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel)
    return base64.b64encode(png + chunk(b"IEND", b"")).decode()


class _Media(Family):
    generates = False
    counted = False


class AmazonImage(_Media):
    """Titan Image Generator v1/v2 and Nova Canvas."""

    def __init__(self, max_text: int) -> None:
        self.max_text = max_text

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "taskType")
        task = request["taskType"]
        member = _IMAGE_TASKS.get(task) if isinstance(task, str) else None
        if member is None:
            raise _invalid("taskType", f"{task} is not a valid enum value")
        require_keys(request, member)
        params = request[member]
        if not isinstance(params, dict):
            raise _invalid(member, "expected an object")
        pt = PromptText(model_id)
        if task == "TEXT_IMAGE" or "text" in params:
            pt.add(_text(params.get("text"), f"{member}/text", self.max_text))
        if isinstance(params.get("negativeText"), str):
            pt.add(params["negativeText"])
        self.count(request)
        return pt, 0

    def count(self, request: JSON) -> int:
        """``numberOfImages`` after checking ``imageGenerationConfig``."""
        config = request.get("imageGenerationConfig", {})
        if not isinstance(config, dict):
            raise _invalid("imageGenerationConfig", "expected an object")
        for key in ("width", "height"):
            if key in config:
                _int_in(config[key], f"imageGenerationConfig/{key}", 256, 4096)
        if "seed" in config:
            _int_in(config["seed"], "imageGenerationConfig/seed", 0, 2147483646)
        if config.get("quality", "standard") not in ("standard", "premium"):
            raise _invalid("imageGenerationConfig/quality", "must be standard or premium")
        return _int_in(config.get("numberOfImages", 1), "imageGenerationConfig/numberOfImages",
                       1, 5)

    def response(self, turn: Turn) -> JSON:
        seed = turn.digest.encode()
        images = [tiny_png(seed + bytes([i])) for i in range(self.count(turn.request))]
        return {"images": images, "error": None}


class Stability(_Media):
    """Stable Diffusion 3.x, Stable Image Core / Ultra: one image per request."""

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "prompt")
        pt = PromptText(model_id)
        pt.add(_text(request["prompt"], "prompt", 10000))
        if isinstance(request.get("negative_prompt"), str):
            pt.add(request["negative_prompt"])
        if "seed" in request:
            _int_in(request["seed"], "seed", 0, 4294967294)
        return pt, 0

    def response(self, turn: Turn) -> JSON:
        seed = turn.request.get("seed") or int(turn.digest[:8], 16) % 4294967295
        return {"seeds": [seed], "finish_reasons": [None],
                "images": [tiny_png(turn.digest.encode())]}


class Rerank(_Media):
    """Cohere Rerank 3.5 and Amazon Rerank 1.0."""

    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        require_keys(request, "query", "documents")
        if base_model_id(model_id)[0].startswith("cohere."):
            require_keys(request, "api_version")
        if request.get("api_version", 2) != 2:
            raise _invalid("api_version", "must be 2")
        pt = PromptText(model_id)
        pt.add(_text(request["query"], "query", 32000))
        documents = request["documents"]
        if not isinstance(documents, list) or not 1 <= len(documents) <= 1000:
            raise _invalid("documents", "expected a list of 1 to 1000 documents")
        for text in self.texts(documents):
            pt.add(text)
        if "top_n" in request:
            _int_in(request["top_n"], "top_n", 1, 1000)
        return pt, 0

    @staticmethod
    def texts(documents: list[Any]) -> list[str]:
        texts = []
        for doc in documents:
            if not isinstance(doc, str | dict):
                raise _invalid("documents", "expected strings or objects")
            texts.append(doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True))
        return texts

    def response(self, turn: Turn) -> JSON:
        query = set(_WORD.findall(turn.request["query"].lower()))
        scored = []
        for index, text in enumerate(self.texts(turn.request["documents"])):
            share = len(query & set(_WORD.findall(text.lower()))) / len(query) if query else 0
            jitter = hashlib.sha256(f"{index}:{text}".encode()).digest()[0] / 25600
            scored.append((round(0.05 + 0.9 * share + jitter, 6), index))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        top = turn.request.get("top_n", len(scored))
        return {
            "id": str(uuid.UUID(turn.digest[:32])),
            "results": [{"index": i, "relevance_score": s} for s, i in scored[:top]],
        }


class NovaReel(_Media):
    def parse(self, model_id: str, request: JSON) -> tuple[PromptText, int | None]:
        raise ValidationError(
            "The provided model doesn't support InvokeModel; invoke it with StartAsyncInvoke.")


MEDIA_FAMILIES: dict[str, Family] = {
    "nova-canvas": AmazonImage(1024),
    "titan-image": AmazonImage(512),
    "stability": Stability(),
    "rerank": Rerank(),
    "nova-reel": NovaReel(),
}


# -- Nova Reel (StartAsyncInvoke) -------------------------------------------------------------
def _video_config(model_input: JSON, durations: range | None) -> None:
    config = model_input.get("videoGenerationConfig")
    if not isinstance(config, dict):
        raise _invalid("videoGenerationConfig", "expected an object")
    if durations is not None:
        require_keys(config, "durationSeconds")
        seconds = config["durationSeconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds not in durations:
            allowed = "6" if len(durations) == 1 else "12 to 120 in multiples of 6"
            raise _invalid("videoGenerationConfig/durationSeconds", f"must be {allowed}")
    if config.get("fps", 24) != 24:
        raise _invalid("videoGenerationConfig/fps", "must be 24")
    if config.get("dimension", "1280x720") != "1280x720":
        raise _invalid("videoGenerationConfig/dimension", "must be 1280x720")
    if "seed" in config:
        _int_in(config["seed"], "videoGenerationConfig/seed", 0, 2147483646)


def check_async_input(model_id: str, model_input: object) -> None:
    """Validate a Nova Reel ``modelInput`` as Bedrock does (other models: not checked)."""
    base = base_model_id(model_id)[0]
    if not base.startswith("amazon.nova-reel-"):
        return
    if not isinstance(model_input, dict):
        raise _invalid("", "expected an object")
    tasks = ("TEXT_VIDEO",) if base == "amazon.nova-reel-v1:0" else (
        "TEXT_VIDEO", "MULTI_SHOT_AUTOMATED", "MULTI_SHOT_MANUAL")
    require_keys(model_input, "taskType")
    task = model_input["taskType"]
    if task not in tasks:
        raise _invalid("taskType", f"{task} is not supported by {base}")
    if task == "TEXT_VIDEO":
        require_keys(model_input, "textToVideoParams")
        params = model_input["textToVideoParams"]
        _text(params.get("text") if isinstance(params, dict) else None,
              "textToVideoParams/text", 512)
        _video_config(model_input, range(6, 7))
    elif task == "MULTI_SHOT_AUTOMATED":
        require_keys(model_input, "multiShotAutomatedParams")
        params = model_input["multiShotAutomatedParams"]
        _text(params.get("text") if isinstance(params, dict) else None,
              "multiShotAutomatedParams/text", 4000)
        _video_config(model_input, range(12, 121, 6))
    else:
        require_keys(model_input, "multiShotManualParams")
        params = model_input["multiShotManualParams"]
        shots = params.get("shots") if isinstance(params, dict) else None
        if not isinstance(shots, list) or not 2 <= len(shots) <= 20:
            raise _invalid("multiShotManualParams/shots", "expected 2 to 20 shots")
        for i, shot in enumerate(shots):
            _text(shot.get("text") if isinstance(shot, dict) else None,
                  f"multiShotManualParams/shots/{i}/text", 512)
        _video_config(model_input, None)
