"""FakeBedrock: a loopback stand-in for Amazon Bedrock Runtime, for tests, demos and benchmarks.

Point a real boto3 ``bedrock-runtime`` client (or a gateway's upstream) at
:attr:`FakeBedrock.endpoint_url` with :data:`FAKE_ACCESS_KEY` / :data:`FAKE_SECRET_KEY`. Every
request is SigV4-verified, routed with the gateway's own operation table, recorded in
:attr:`FakeBedrock.requests` and answered deterministically (see ``fake_text``): Converse
replies ``"Echo: <last user text>"`` and counts ``ceil(chars / 4)`` input tokens. Usage follows
Bedrock's billing convention (input counts exclude cached tokens; cache TTLs, service tiers and
latency in ``fake_billing``); image, rerank and video models are in ``fake_media``.

Faults are queued and consumed in order: :meth:`~FakeBedrock.fail_next`,
:meth:`~FakeBedrock.set_delay`, :meth:`~FakeBedrock.stream_exception_after`,
:meth:`~FakeBedrock.cut_stream_after`, :meth:`~FakeBedrock.hold_stream_after`,
:meth:`~FakeBedrock.stream_frames`.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from bedrock_gateway.operations import Operation
from bedrock_gateway.sigv4 import SigV4Error, verify_sigv4
from bedrock_gateway.testing.fake_async import AsyncInvokeStore
from bedrock_gateway.testing.fake_dispatch import Dispatcher
from bedrock_gateway.testing.fake_faults import ErrorFault, FaultQueue, StreamEnding, StreamShape
from bedrock_gateway.testing.fake_http import FakeHTTPServer
from bedrock_gateway.testing.fake_text import PromptCache

__all__ = ["FAKE_ACCESS_KEY", "FAKE_SECRET_KEY", "FakeBedrock", "RecordedRequest"]

FAKE_ACCESS_KEY = "AKIAFAKEBEDROCK00001"
FAKE_SECRET_KEY = "fake-bedrock-secret-key"  # noqa: S105 - a published test credential

_CREDENTIAL = re.compile(r"Credential=([^/\s,]+)/")
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your"
    " AWS Secret Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it (headers lower-cased, path still percent-encoded)."""

    method: str
    raw_path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    operation: str | None
    params: Mapping[str, str]
    access_key: str | None
    host: str | None


class FakeBedrock:
    """A fake Bedrock Runtime on a loopback port, served from a background thread.

    ``credentials`` maps access key ids to secrets (default: the published fake pair);
    ``verify_signatures=False`` accepts any or no ``Authorization``; ``clock`` returns the
    fake's "now" (an aware datetime) for signature freshness and async-invoke timestamps.
    The socket is bound by :meth:`start` (or entering the context); ``port=0`` picks a free one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        region: str = "us-east-1",
        credentials: Mapping[str, str] | None = None,
        verify_signatures: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._address = (host, port)
        self.region = region
        self.verify_signatures = verify_signatures
        self._credentials = dict(
            credentials if credentials is not None else {FAKE_ACCESS_KEY: FAKE_SECRET_KEY}
        )
        self._clock = clock
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._faults = FaultQueue()
        self._cache = PromptCache()
        self._async = AsyncInvokeStore(region, self._now)
        self._dispatch = Dispatcher(self._cache, self._async)
        self._stopping = threading.Event()
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._disconnects = 0
        self.last_stream_body: bytes | None = None
        """Body bytes of the last streaming response (``None`` if none yet or 10 MB or more)."""
        self.last_stream_size = 0
        """Size in bytes of the last streaming response body, however large."""
        self.server_errors: list[BaseException] = []
        """Unexpected exceptions inside the fake (answered as 500); tests may assert it is empty."""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeBedrock:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = FakeHTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeBedrock:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        self._faults.release_holds()
        server.shutdown()
        thread.join()
        server.server_close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._lock.wait_for(lambda: not self._connections, timeout=2.0)
        self._server = self._thread = None

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("FakeBedrock is not started; call start() or use it as a context")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    # -- test API --------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received since the last :meth:`reset`."""
        with self._lock:
            return list(self._requests)

    def add_credentials(self, access_key: str, secret_key: str) -> None:
        with self._lock:
            self._credentials[access_key] = secret_key

    def reset(self) -> None:
        """Forget requests, queued faults, the delay, async invocations and stream stats."""
        with self._lock:
            self._requests.clear()
            self._disconnects = 0
            self.last_stream_body = None
            self.last_stream_size = 0
            self.server_errors.clear()
        self._faults.clear()
        self._cache.clear()
        self._async.clear()

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        code: str = "ThrottlingException",
        message: str = "Too many requests",
    ) -> None:
        """Answer the next ``n`` requests with this Bedrock error (signatures still checked)."""
        self._faults.add_errors(n, ErrorFault(status, code, message))

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before every response's headers until reset (0 turns it off)."""
        self._faults.delay = max(0.0, seconds)

    def stream_exception_after(
        self,
        frames: int,
        exception_type: str = "modelStreamErrorException",
        message: str = "The model stream failed.",
    ) -> None:
        """Next stream: ``frames`` frames, then a modelled exception frame, then a clean end."""
        self._faults.add_ending(StreamEnding("exception", frames, exception_type, message))

    def cut_stream_after(self, frames: int, partial_bytes: int = 7) -> None:
        """Next stream: ``frames`` frames, ``partial_bytes`` of the next, then the TCP
        connection is closed without the terminating chunk."""
        self._faults.add_ending(StreamEnding("cut", frames, partial_bytes=partial_bytes))

    def hold_stream_after(self, frames: int) -> threading.Event:
        """Next stream: ``frames`` frames, then wait until the returned event is set (then the
        rest of the stream) or the client disconnects (counted in :attr:`stream_disconnects`)."""
        ending = StreamEnding("hold", frames)
        self._faults.add_ending(ending)
        return ending.release

    def stream_frames(self, count: int, payload_size: int) -> None:
        """Next stream: ``count`` delta/chunk frames of ~``payload_size`` text bytes each."""
        self._faults.add_shape(StreamShape(count, payload_size))

    @property
    def stream_disconnects(self) -> int:
        """How many streaming responses found their client gone."""
        with self._lock:
            return self._disconnects

    def wait_for_stream_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until :attr:`stream_disconnects` reaches ``count``; ``False`` on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._disconnects >= count, timeout=timeout)

    # -- called by the HTTP handler --------------------------------------------------------
    def _now(self) -> datetime:
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
            self._lock.notify_all()

    def _record(
        self,
        *,
        method: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        operation: Operation | None,
        params: dict[str, str],
    ) -> None:
        found = _CREDENTIAL.search(headers.get("authorization", ""))
        record = RecordedRequest(
            method,
            raw_path,
            query,
            headers,
            body,
            operation.name if operation is not None else None,
            params,
            found.group(1) if found else None,
            headers.get("host"),
        )
        with self._lock:
            self._requests.append(record)

    def _authenticate(
        self, method: str, raw_path: str, query: str, headers: dict[str, str], body: bytes
    ) -> ErrorFault | None:
        if not self.verify_signatures:
            return None
        if "authorization" not in headers:
            message = "Missing Authentication Token"
            return ErrorFault(403, "MissingAuthenticationTokenException", message)
        try:
            signed = verify_sigv4(
                method=method,
                raw_path=raw_path,
                query=query,
                headers=headers,
                body=body,
                secret_for=self._credentials.get,
                now=self._now(),
                service="bedrock",
            )
        except SigV4Error as exc:
            if exc.reason == "unknown access key":
                message = "The security token included in the request is invalid."
                return ErrorFault(403, "UnrecognizedClientException", message)
            if exc.reason == "signature does not match":
                return ErrorFault(403, "InvalidSignatureException", _BAD_SIGNATURE)
            return ErrorFault(403, "InvalidSignatureException", exc.reason)
        if signed.region != self.region:
            message = f"Credential should be scoped to a valid region, not '{signed.region}'."
            return ErrorFault(403, "InvalidSignatureException", message)
        return None

    def _stream_body(self, body: bytes | None, size: int) -> None:
        with self._lock:
            self.last_stream_body = body
            self.last_stream_size = size

    def _stream_disconnected(self) -> None:
        with self._lock:
            self._disconnects += 1
            self._lock.notify_all()
