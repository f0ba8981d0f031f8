"""The ``bedrock-gateway`` command: ``serve``, ``check-config`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
    app = ASGIApp(build_gateway(config), max_workers=config.gateway.worker_threads)
    print(f"bedrock-gateway serving on http://{args.host}:{args.port}", file=sys.stderr)
    serve(app, args.host, args.port, log_level=args.log_level)
    return 0


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
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=_check_config)
    demo = sub.add_parser("demo", help="a self-contained demo against a fake Bedrock")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
