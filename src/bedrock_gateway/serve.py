"""Run the ASGI app under uvicorn: blocking (``serve``) or in a background thread.

The app's :class:`ServerLimits` are applied to uvicorn here: httptools guarded by
:mod:`~bedrock_gateway.adapters.http_guard` (head size and count, read deadline, connection cap)
and the keep-alive timeout. ``serve`` raises the process's soft ``RLIMIT_NOFILE`` to its hard
limit first; both runners lower a connection cap the file-descriptor limit could not honour.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from types import TracebackType
from typing import Any

from bedrock_gateway.adapters.asgi import ASGIApp
from bedrock_gateway.adapters.limits import ServerLimits
from bedrock_gateway.pipeline import Gateway

__all__ = ["BackgroundServer", "raise_open_files_limit", "serve"]

log = logging.getLogger("bedrock_gateway.server")

# File descriptors kept free beyond the client connections: upstream pools (128 by default),
# usage logs, quota stores, JWKS fetches, the listening socket.
FD_RESERVE = 256


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            'serving needs the "server" extra: pip install "bedrock-gateway[server]"'
        ) from None
    return uvicorn


def raise_open_files_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (as far as the kernel lets it go);
    return the soft limit now in force, ``None`` where there are no rlimits."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 65536, 10240]
    for target in targets:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # above the kernel's nr_open / OPEN_MAX: try lower
            continue
        break
    return _open_files_limit()


def _open_files_limit() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _fit(limits: ServerLimits, open_files: int | None) -> ServerLimits:
    """``limits`` with a connection cap the process can hold: an unreachable cap would turn
    into EMFILE on accept, and then every client fails instead of the ones over the cap."""
    if open_files is None or limits.max_connections <= open_files - FD_RESERVE:
        return limits
    cap = max(1, open_files - FD_RESERVE)
    log.warning("max_connections %d lowered to %d: the open-files limit (ulimit -n) is %d and %d"
                " descriptors are kept for upstream connections and files",
                limits.max_connections, cap, open_files, FD_RESERVE)
    return dataclasses.replace(limits, max_connections=cap)


def _http_protocol(limits: ServerLimits) -> dict[str, Any]:
    try:
        from bedrock_gateway.adapters.http_guard import guarded_protocol
    except ImportError:  # no httptools (PyPy): h11 bounds the head, uvicorn caps concurrency
        log.warning("httptools is not installed: serving with h11, without read deadlines or"
                    " a header count limit (pip install httptools)")
        return {"http": "h11", "h11_max_incomplete_event_size": limits.max_header_bytes,
                "limit_concurrency": limits.max_connections}
    return {"http": guarded_protocol(limits)}


def _config(app: ASGIApp, host: str, port: int, limits: ServerLimits, **kwargs: Any) -> Any:
    uvicorn = _uvicorn()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "server_header": False,
        "proxy_headers": False,  # the gateway never trusts X-Forwarded-* from a client
        "date_header": True,
        "timeout_keep_alive": limits.keep_alive_timeout_s,
        **_http_protocol(limits),
    }
    options.update(kwargs)
    return uvicorn.Config(app, **options)


def serve(target: Gateway | ASGIApp, host: str = "127.0.0.1", port: int = 8080,
          **uvicorn_options: Any) -> None:
    """Serve until interrupted (what ``bedrock-gateway serve`` runs)."""
    app = target if isinstance(target, ASGIApp) else ASGIApp(target)
    # On SIGTERM, streams in flight get 30 s to finish (uvicorn would otherwise wait forever,
    # e.g. for TLS clients that left without close_notify).
    uvicorn_options.setdefault("timeout_graceful_shutdown", 30)
    limits = _fit(app.limits, raise_open_files_limit())
    _uvicorn().Server(_config(app, host, port, limits, **uvicorn_options)).run()


class BackgroundServer:
    """A uvicorn server on a free loopback port, in a daemon thread; a context manager. It does
    not change the process's open-files limit (``serve`` does)."""

    def __init__(self, target: Gateway | ASGIApp, host: str = "127.0.0.1", port: int = 0,
                 **uvicorn_options: Any) -> None:
        self.app = target if isinstance(target, ASGIApp) else ASGIApp(target)
        uvicorn_options.setdefault("timeout_graceful_shutdown", 2)
        limits = _fit(self.app.limits, _open_files_limit())
        self._server = _uvicorn().Server(_config(self.app, host, port, limits, **uvicorn_options))
        self._thread = threading.Thread(target=self._server.run, name="bgw-server", daemon=True)
        self.host = host
        self.scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"

    @property
    def port(self) -> int:
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the gateway server failed to start")
            threading.Event().wait(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
