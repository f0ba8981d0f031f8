"""The terminal step of the pipeline: re-sign the call and send it to Bedrock.

:class:`SigV4Forwarder` keeps only the headers Bedrock needs (``Content-Type``, ``Accept``,
``X-Amzn-Bedrock-*``), signs the request with the gateway's own AWS identity
(``botocore.auth.SigV4Auth``, signing name ``bedrock``), sends it over a pooled urllib3
connection to the host built from configuration, and streams event-stream answers back frame
by frame without buffering them.

Retries (tenacity, jittered exponential backoff, attempt cap) cover throttling,
``ModelNotReadyException``, 5xx and connection failures, and all happen before the response
is handed to the pipeline — that is, before any byte reaches the client. A failure after the
stream started becomes an exception frame (see :meth:`Response.chunks`).

A 200 is never retried: Bedrock has run (and billed) the model. A buffered 200 whose body does
not arrive whole — cut short, broken, or larger than ``max_response_bytes`` — is answered with
``424 ModelErrorException`` (not retried by the SDK, nor by a fallback), and its usage meter is
marked as a 200 that did not complete, so a quota enforcer charges the reservation (estimated).
Buffered bodies are read with that size cap; streams are not capped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    ProtocolError,
    ReadTimeoutError,
)

from bedrock_gateway.call import EVENT_STREAM, Call, Response
from bedrock_gateway.errors import (
    GatewayError,
    ModelError,
    ModelTimeoutError,
    StreamError,
    UpstreamUnavailableError,
)
from bedrock_gateway.eventstream import EventStreamDecoder, EventStreamError, Frame

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "RETRYABLE_STATUSES", "SigV4Forwarder"]

log = logging.getLogger("bedrock_gateway.forward")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_FORWARD_HEADERS = frozenset({"content-type", "accept", "content-encoding"})
_DROP_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server",
     "proxy-authenticate", "trailer", "upgrade", "te"}
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_READ_SIZE = 64 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # buffered (non-stream) answers only
# Ends a stream whose client left: the meters see an incomplete stream; no client reads it.
_CLIENT_GONE = StreamError("The client closed the connection before the stream ended.").to_frame()


class _SigV4(SigV4Auth):  # type: ignore[misc]
    """botocore's SigV4 with three per-request costs removed: the body hash comes precomputed
    (botocore would prepare the whole request to get it), the headers to sign are selected once
    (botocore selects them twice), and the derived signing key is cached per (access key, day,
    region, service) instead of being re-derived with four HMACs per call."""

    # (access key id, day, region, service) -> derived key; least recently used evicted first.
    # Keyed by the access key id, not the secret: no secret is held as a dictionary key.
    _keys: ClassVar[OrderedDict[tuple[str, str, str, str], bytes]] = OrderedDict()
    _keys_lock: ClassVar[threading.Lock] = threading.Lock()
    _MAX_KEYS: ClassVar[int] = 4096

    def headers_to_sign(self, request: AWSRequest) -> Any:
        selected = request.context.get("headers_to_sign")
        if selected is None:
            selected = request.context["headers_to_sign"] = super().headers_to_sign(request)
        return selected

    def payload(self, request: AWSRequest) -> str:
        digest = request.context.get("payload_sha256")
        return digest if digest else str(super().payload(request))

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        day = request.context["timestamp"][0:8]
        creds = self.credentials
        cache_key = (creds.access_key, day, self._region_name, self._service_name)
        with self._keys_lock:
            key = self._keys.get(cache_key)
            if key is not None:
                self._keys.move_to_end(cache_key)
        if key is None:
            key = self._sign(f"AWS4{creds.secret_key}".encode(), day)
            for part in (self._region_name, self._service_name, "aws4_request"):
                key = self._sign(key, part)
            with self._keys_lock:
                self._keys[cache_key] = key
                while len(self._keys) > self._MAX_KEYS:
                    self._keys.popitem(last=False)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class _RetryableStatus(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size  # what was declared or read when the cap was passed


class SigV4Forwarder:
    """Forward calls to Bedrock Runtime, re-signed with the gateway's AWS credentials.

    ``credentials`` is any botocore credentials object (``botocore.credentials.Credentials``
    or a refreshable one); when omitted, the standard AWS chain is resolved on first use
    (``session`` — a boto3 or botocore session — if given). ``credentials_for(call)`` may
    pick other credentials per call (a tenant's assumed role; ``None`` falls back to the
    default). ``sleep`` is injectable so tests never wait for backoff. ``extra_headers`` are
    request headers to forward beyond the allowlist (``x-amz-source-arn`` for agents).
    ``max_response_bytes`` caps a buffered (non-stream) answer; streams are not capped.
    """

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        credentials: Any = None,
        session: Any = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 120.0,
        max_attempts: int = 3,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        max_connections: int = 128,
        sleep: Callable[[float], None] = time.sleep,
        signing_name: str = "bedrock",
        credentials_for: Callable[[Call], Any] | None = None,
        extra_headers: frozenset[str] = frozenset(),
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not _REGION.match(region):
            raise ValueError(f"not an AWS region name: {region!r}")
        url = endpoint_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint_url must be an http(s) URL: {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("endpoint_url must not carry a path, query or fragment")
        self.region = region
        self.endpoint_url = f"{parts.scheme}://{parts.netloc}"
        default_port = {"http": 80, "https": 443}[parts.scheme]
        hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._host = hostname if parts.port in (None, default_port) else f"{hostname}:{parts.port}"
        self.signing_name = signing_name
        self._forward_headers = _FORWARD_HEADERS | {h.lower() for h in extra_headers}
        self.max_attempts = max(1, max_attempts)
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self.max_response_bytes = max_response_bytes
        self._credentials = credentials
        self._session = session
        self._credentials_for = credentials_for
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # One pool for the one configured host (a PoolManager would re-parse the URL per call).
        self._pool = urllib3.connection_from_url(
            self.endpoint_url, maxsize=max_connections, block=False, retries=False,
            timeout=self._timeout)
        self._retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=backoff_base, max=backoff_max),
            retry=retry_if_exception_type((_RetryableStatus, ConnectTimeoutError, ProtocolError)),
            sleep=sleep,
        )

    # -- credentials -------------------------------------------------------------------

    def _frozen_credentials(self, call: Call) -> Any:
        if self._credentials_for is not None:
            chosen = self._credentials_for(call)  # e.g. a tenant's assumed role
            if chosen is not None:
                return chosen.get_frozen_credentials()
        if self._credentials is None:
            if self._session is not None:
                self._credentials = self._session.get_credentials()
            else:
                import botocore.session

                self._credentials = botocore.session.get_session().get_credentials()
            if self._credentials is None:
                log.error("no AWS credentials found for the upstream (standard chain)")
                raise GatewayError("The gateway has no upstream credentials configured.")
        return self._credentials.get_frozen_credentials()

    # -- one attempt -------------------------------------------------------------------

    def _sign(self, call: Call, url: str) -> dict[str, str]:
        headers = {
            k: v for k, v in call.headers.items()
            if k in self._forward_headers or k.startswith("x-amzn-bedrock-")
        }
        headers["host"] = self._host
        request = AWSRequest(call.method, url, data=call.body, headers=headers)
        request.context["payload_sha256"] = hashlib.sha256(call.body).hexdigest()
        _SigV4(self._frozen_credentials(call), self.signing_name, self.region).add_auth(request)
        return dict(request.headers.items())

    def _attempt(self, call: Call, target: str) -> Response:
        headers = self._sign(call, self.endpoint_url + target)
        raw = self._pool.urlopen(
            call.method, target, body=call.body or None, headers=headers,
            preload_content=False, decode_content=False, retries=False, redirect=False,
            timeout=self._timeout,
        )
        resp_headers = {
            k.lower(): v for k, v in raw.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS
        }
        streaming = raw.status == 200 and resp_headers.get("content-type", "").startswith(
            EVENT_STREAM
        )
        if streaming:
            upstream = _UpstreamStream(raw)
            response = Response(raw.status, resp_headers, frames=upstream.frames())
            response.on_abort(upstream.abort)
            return response
        if raw.status == 200:
            return self._buffered_200(call, raw, resp_headers)
        try:
            body = self._read_capped(raw)
        except _TooLarge as exc:  # an error answer this large is not Bedrock's: not retried
            log.warning("upstream answered %s with a body over %d bytes (%d); discarded",
                        raw.status, self.max_response_bytes, exc.size)
            return Response.from_error(GatewayError(
                "The model endpoint sent an error response the gateway could not read."))
        response = Response(raw.status, resp_headers, body)
        if raw.status in RETRYABLE_STATUSES:
            raise _RetryableStatus(response)
        return response

    def _buffered_200(self, call: Call, raw: urllib3.BaseHTTPResponse,
                      headers: dict[str, str]) -> Response:
        """A buffered 200: the model has run and Bedrock has billed it, so whatever happens
        while its body is read, it is never retried."""
        try:
            return Response(200, headers, self._read_capped(raw))
        except _TooLarge as exc:
            log.warning("%s answered 200 with a body over the %d-byte cap (%d bytes); not"
                        " retried (the model has run), answered as ModelErrorException",
                        call.operation.name, self.max_response_bytes, exc.size)
            error = ModelError(
                f"The model's answer is larger than this gateway accepts for a buffered response"
                f" ({self.max_response_bytes} bytes); ask for less output or use the streaming"
                " operation.")
        except (HTTPError, OSError) as exc:
            log.warning("%s answered 200 but its body did not arrive whole (%s); not retried"
                        " (the model has run), answered as ModelErrorException",
                        call.operation.name, type(exc).__name__)
            error = ModelError(
                "The model's answer was cut off on its way to the gateway. It was not retried,"
                " because the model had already run.")
        _meter_unfinished(call, headers, error.code)
        return Response.from_error(error)

    def _read_capped(self, raw: urllib3.BaseHTTPResponse) -> bytes:
        """The whole body, at most ``max_response_bytes`` (else :class:`_TooLarge`). A body that
        is not read to its end leaves its connection closed, never back in the pool."""
        limit = self.max_response_bytes
        whole = False
        try:
            declared = raw.headers.get("content-length", "")
            length = int(declared) if declared.isdigit() else None
            if length is not None and length > limit:
                raise _TooLarge(length)
            if length is not None:  # one read; urllib3 raises if fewer bytes arrive
                body = raw.read(decode_content=False)
            else:  # chunked or read to close: counted as it arrives
                parts: list[bytes] = []
                size = 0
                while data := raw.read(_READ_SIZE, decode_content=False):
                    size += len(data)
                    if size > limit:
                        raise _TooLarge(size)
                    parts.append(data)
                body = b"".join(parts)
            whole = True
            return body
        finally:
            if not whole:
                raw.close()
            raw.release_conn()

    # -- the handler -------------------------------------------------------------------

    def __call__(self, call: Call) -> Response:
        target = call.upstream_path
        if call.query:  # re-encoded canonically, like the path
            pairs = parse_qsl(call.query, keep_blank_values=True)
            target += "?" + urlencode(pairs, quote_via=quote, safe="-_.~")
        try:
            return self._retrying(self._attempt, call, target)
        except RetryError as exc:  # attempts exhausted
            last = exc.last_attempt.exception()
            if isinstance(last, _RetryableStatus):
                return last.response  # Bedrock's own error, passed through unchanged
            raise UpstreamUnavailableError("The model endpoint could not be reached.") from last
        except ReadTimeoutError as exc:
            raise ModelTimeoutError("The model did not answer in time.") from exc
        except HTTPError as exc:
            raise UpstreamUnavailableError("The model endpoint could not be reached.") from exc

    def close(self) -> None:
        """Close pooled upstream connections."""
        self._pool.close()


class _UpstreamStream:
    """Reads an upstream event stream frame by frame; ``abort`` unblocks it from any thread."""

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.raw = raw
        self.aborted = False

    def abort(self) -> None:
        """The client left (the adapter saw it go): the upstream did nothing wrong."""
        self.aborted = True
        log.debug("the client left mid-stream; closing the upstream connection")
        try:
            self.raw.shutdown()  # a read blocked in another thread returns at once
        except (RuntimeError, ValueError, OSError):
            pass  # already released or closed

    def frames(self) -> Iterator[Frame]:
        raw = self.raw
        decoder = EventStreamDecoder()
        complete = False
        try:
            try:
                while data := raw.read1(_READ_SIZE, decode_content=False):
                    yield from decoder.feed(data)
                if not self.aborted:
                    decoder.finish()
                    complete = True
            except (HTTPError, OSError) as exc:
                if not self.aborted:
                    raise StreamError("The model stream was interrupted.") from exc
            except EventStreamError as exc:
                if not self.aborted:
                    raise StreamError("The model sent a malformed event stream.") from exc
            if self.aborted:
                # The client left, so the read failed: not an upstream fault, and no warning.
                # The stream ends with an exception frame (meters see it incomplete) instead of
                # an error raised into Response.chunks, which would log it as a failure.
                yield Frame(_CLIENT_GONE)
        finally:
            if not complete:
                raw.close()  # never hand a half-read connection back to the pool
            raw.release_conn()


def _meter_unfinished(call: Call, headers: dict[str, str], code: str) -> None:
    """Tell the usage meter what happened upstream: a 200 (Bedrock has billed it) whose answer
    never arrived whole, failed with ``code`` — as for a stream cut short. The meter is attached
    here, before any policy asks for it (:meth:`~bedrock_gateway.quota.meter.Meter.of`), so a
    quota enforcer settles at the reservation (estimated) instead of at zero."""
    from bedrock_gateway.quota.meter import Meter  # only on this rare path

    meter = Meter.of(call, Response(200, headers, b""))
    meter.complete = False
    meter.error = code
