"""Run the ASGI app under uvicorn: blocking (``serve``) or in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from bedrock_gateway.adapters.asgi import ASGIApp
from bedrock_gateway.pipeline import Gateway

__all__ = ["BackgroundServer", "serve"]


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            'serving needs the "server" extra: pip install "bedrock-gateway[server]"'
        ) from None
    return uvicorn


def _config(app: ASGIApp, host: str, port: int, **kwargs: Any) -> Any:
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
        "timeout_keep_alive": 75,
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
    _uvicorn().Server(_config(app, host, port, **uvicorn_options)).run()


class BackgroundServer:
    """A uvicorn server on a free loopback port, in a daemon thread; a context manager."""

    def __init__(self, target: Gateway | ASGIApp, host: str = "127.0.0.1", port: int = 0,
                 **uvicorn_options: Any) -> None:
        self.app = target if isinstance(target, ASGIApp) else ASGIApp(target)
        uvicorn_options.setdefault("timeout_graceful_shutdown", 2)
        self._server = _uvicorn().Server(_config(self.app, host, port, **uvicorn_options))
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
