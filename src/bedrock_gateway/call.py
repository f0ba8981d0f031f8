"""The request and response shapes every block of the pipeline works on."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bedrock_gateway.errors import GatewayError, StreamError, ValidationError
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.operations import Operation

__all__ = ["Call", "Principal", "Response"]

log = logging.getLogger("bedrock_gateway")

EVENT_STREAM = "application/vnd.amazon.eventstream"
_JSON_KEY = "bedrock_gateway.json"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the result of authentication."""

    subject: str
    tenant: str | None = None
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(subject="anonymous")


@dataclass(slots=True)
class Call:
    """One request on its way through the pipeline.

    ``raw_path`` and ``query`` are what the client sent; ``params`` are the decoded path
    parameters (``modelId``, ...). Policies may change ``params``, ``headers`` and ``body``;
    the upstream path is always rebuilt from ``params`` (:attr:`upstream_path`).
    """

    method: str
    raw_path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    operation: Operation
    params: dict[str, str]
    principal: Principal | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str | None:
        return self.params.get("modelId")

    @property
    def upstream_path(self) -> str:
        return self.operation.path(self.params)

    @property
    def is_json(self) -> bool:
        """Whether the body is JSON (always for Converse & co, by Content-Type for InvokeModel)."""
        if self.operation.json_body:
            return True
        ctype = self.headers.get("content-type", "application/json")
        return self.method == "POST" and ctype.split(";")[0].strip().lower() == "application/json"

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, parsed once and shared by every policy.

        Raises :class:`ValidationError` when the body is not a JSON object. A policy that
        rewrites the body sets ``call.body`` and calls :meth:`set_json`.
        """
        cached = self.attrs.get(_JSON_KEY)
        if cached is None:
            cached = parse_request_json(self.body)
            self.attrs[_JSON_KEY] = cached
        return cached

    def set_json(self, document: dict[str, Any]) -> None:
        """Replace the body with ``document`` (compact JSON) and keep the parsed copy."""
        self.body = json.dumps(document, separators=(",", ":")).encode()
        self.attrs[_JSON_KEY] = document


MAX_JSON_DEPTH = 128  # Bedrock request bodies nest a few dozen levels at most (tool schemas)


class _DuplicateKey(ValueError):
    pass


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # rare: find the key to name it
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _depth_over(document: object, limit: int) -> bool:
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return False


def parse_request_json(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, parsed strictly: a duplicate key (a policy would see
    one value and Bedrock may use the other) or nesting deeper than :data:`MAX_JSON_DEPTH`
    is a :class:`ValidationError`, like malformed JSON."""
    try:
        document = json.loads(body, object_pairs_hook=_strict_object) if body else None
    except _DuplicateKey as exc:
        raise ValidationError(
            f"The request body repeats the key {str(exc)[:100]!r} in one object.") from None
    except RecursionError:
        raise ValidationError("The request body is nested too deeply.") from None
    except ValueError:  # also UnicodeDecodeError
        raise ValidationError("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ValidationError("The request body must be a JSON object.")
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _depth_over(
            document, MAX_JSON_DEPTH):
        raise ValidationError(
            f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")
    return document


class Response:
    """Status, headers and either a bytes body or a stream of event-stream frames.

    Close hooks registered with :meth:`on_close` run exactly once, whatever happens: after a
    buffered body is sent, when a stream ends, fails, or when the client goes away
    (:meth:`close`). Streams are consumed through :meth:`chunks`, which never raises: an
    error after the stream started becomes an exception frame at a frame boundary.
    """

    __slots__ = ("_aborts", "_closed", "_hooks", "_lock", "body", "frames", "headers",
                 "is_stream", "status")

    def __init__(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        frames: Iterator[Frame] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else {}
        self.body = body
        self.frames = frames
        self.is_stream = frames is not None  # stays true after the stream is consumed
        self._hooks: list[Callable[[], None]] = []
        self._aborts: list[Callable[[], None]] = []
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_error(cls, error: GatewayError) -> Response:
        return cls(error.status, error.headers(), error.body())

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once when the response is finished with (success, error or abort)."""
        self._hooks.append(hook)

    def on_abort(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (from any thread) to unblock a producer when the client goes away."""
        self._aborts.append(hook)

    def map_frames(self, fn: Callable[[Iterator[Frame]], Iterator[Frame]]) -> None:
        """Wrap the frame stream (a filter, a usage meter). No-op for buffered responses."""
        if self.frames is not None:
            self.frames = fn(self.frames)

    def abort(self) -> None:
        """The client went away: unblock whoever is producing frames. Thread-safe."""
        for hook in self._aborts:
            try:
                hook()
            except Exception:
                log.exception("abort hook failed")

    def close(self) -> None:
        """Release the stream and run the close hooks, once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        frames, self.frames = self.frames, None
        close = getattr(frames, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing the response stream failed")
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                log.exception("close hook failed")

    def chunks(self) -> Generator[bytes, None, None]:
        """The body as wire bytes; closes the response when done. Never raises mid-stream."""
        try:
            if self.frames is None:
                if self.body:
                    yield self.body
                return
            frames = self.frames
            try:
                for frame in frames:
                    yield frame.raw
            except GatewayError as exc:
                log.warning("stream ended with %s: %s", exc.code, exc.message)
                yield exc.to_frame()
            except Exception:
                log.exception("unexpected error inside a stream")
                yield StreamError("The stream failed inside the gateway.").to_frame()
        finally:
            self.close()
