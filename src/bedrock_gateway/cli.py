"""The ``bedrock-gateway`` command: ``serve``, ``check-config`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bedrock_gateway.pipeline import Gateway

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from bedrock_gateway.adapters.asgi import ASGIApp
    from bedrock_gateway.config import ConfigError, build_gateway, load_config
    from bedrock_gateway.serve import serve

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from bedrock_gateway.quota.ledger import QuotaStoreError

    try:
        gateway = build_gateway(config)
    except (QuotaStoreError, ValueError) as exc:  # e.g. a quota store that cannot be opened
        print(f"{args.config}: cannot start: {exc}", file=sys.stderr)
        return 2
    app = ASGIApp(gateway, max_workers=config.gateway.worker_threads,
                  limits=config.gateway.server_limits())
    if config.routes and hasattr(signal, "SIGHUP"):  # kill -HUP: re-read [[routes]] (weights)
        def on_hup(*_: object) -> None:  # work off the signal handler: it may interrupt a lock
            threading.Thread(target=_reload_routes, args=(args.config, gateway),
                             name="bgw-reload", daemon=True).start()

        signal.signal(signal.SIGHUP, on_hup)
    scheme = "https" if args.ssl_certfile else "http"
    print(f"bedrock-gateway serving on {scheme}://{args.host}:{args.port}", file=sys.stderr)
    tls = {}
    if args.ssl_certfile:
        tls = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile}
    serve(app, args.host, args.port, log_level=args.log_level, **tls)
    return 0


def _reload_routes(path: str, gateway: Gateway) -> None:
    """Re-read ``path`` and swap in its ``[[routes]]``; on any problem keep the old ones."""
    from bedrock_gateway.config import ConfigError, load_config
    from bedrock_gateway.routing.config import reload_routes

    log = logging.getLogger("bedrock_gateway")
    try:
        reload_routes(gateway, load_config(path).routes)
    except (ConfigError, ValueError) as exc:
        log.error("routes not reloaded, the old ones stay: %s", exc)
        return
    log.warning("routes reloaded from %s (other sections take effect on restart)", path)


def _check_config(args: argparse.Namespace) -> int:
    from bedrock_gateway.config import ConfigError, load_config

    try:
        load_config(args.file)
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.errors)} error(s)")
        for path, message in exc.errors:
            print(f"  {path}: {message}")
        return 1
    print(f"{args.file}: OK")
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from bedrock_gateway.auth.api_keys import generate_api_key

    key, digest = generate_api_key()
    print(f"key     {key}")
    print(f"sha256  {digest}")
    print("\nGive the key to the client (it is shown once); put only the hash in the config:\n")
    print("[[auth.api_keys]]")
    print(f'sha256 = "{digest}"')
    print(f'subject = "{args.subject}"')
    if args.tenant:
        print(f'tenant = "{args.tenant}"')
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bedrock_gateway.demo import run_demo

    return run_demo(out=sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bedrock-gateway", description="An AI gateway for Amazon Bedrock."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a gateway from a TOML config (uvicorn)")
    serve.add_argument("--config", required=True, help="path to the TOML config")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=_check_config)
    key = sub.add_parser("api-key", help="generate an API key and print its SHA-256 for the config")
    key.add_argument("--subject", default="client")
    key.add_argument("--tenant", default=None)
    key.set_defaults(func=_api_key)
    demo = sub.add_parser("demo", help="a self-contained demo against a fake Bedrock")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "log_level", None):
        _gateway_log_level(args.log_level)
    return int(args.func(args))


def _gateway_log_level(level: str) -> None:
    """``--log-level`` applies to the gateway's own loggers (``bedrock_gateway.*``), not only to
    uvicorn's: the root logger stays at WARNING for third-party libraries."""
    logger = logging.getLogger("bedrock_gateway")
    logger.setLevel(level.upper())
    for handler in logging.getLogger().handlers:  # basicConfig's handler passes everything
        if handler.level > logger.level:
            handler.setLevel(logger.level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
