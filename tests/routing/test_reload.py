"""Weights change by config reload: ``kill -HUP`` makes ``bedrock-gateway serve`` re-read its
``[[routes]]``; a bad file keeps the old routes. And the same through the Python API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bedrock_gateway import Gateway
from bedrock_gateway.config import parse_config
from bedrock_gateway.routing.config import reload_routes
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock

from ..conftest import Recorder, gateway_client

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def config_text(fake: FakeBedrock, weights: tuple[int, int], alias: str = "chat") -> str:
    return f"""
[upstream]
endpoint_url = "{fake.endpoint_url}"
[auth]
anonymous = true
[[routes]]
alias = "{alias}"
targets = [{{ model = "{HAIKU}", weight = {weights[0]} }}, {{ model = "{SONNET}", weight = {weights[1]} }}]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _served_model(client: object, fake: FakeBedrock) -> str:
    client.converse(modelId="chat", messages=[  # type: ignore[attr-defined]
        {"role": "user", "content": [{"text": "hi"}]}])
    return fake.requests[-1].params["modelId"]


def _wait_until(predicate: object, what: str) -> None:
    tick = threading.Event()
    for _ in range(400):
        if predicate():  # type: ignore[operator]
            return
        tick.wait(0.025)
    raise AssertionError(what)


def test_sighup_reloads_the_weights_of_a_running_server(tmp_path: Path,
                                                       fake_bedrock: FakeBedrock) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(fake_bedrock, (100, 1)))
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bedrock_gateway.cli", "serve", "--config", str(config),
         "--port", str(port), "--log-level", "warning"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        _wait_until(up, "the gateway did not start")
        client = gateway_client(f"http://127.0.0.1:{port}")
        assert _served_model(client, fake_bedrock) == HAIKU  # anonymous's point is in HAIKU's 100
        config.write_text("this is not TOML [")  # a broken file: the old routes stay
        proc.send_signal(signal.SIGHUP)
        config.write_text(config_text(fake_bedrock, (1, 100_000)))
        proc.send_signal(signal.SIGHUP)
        _wait_until(lambda: _served_model(client, fake_bedrock) == SONNET,
                    "the new weights were not applied")
        client.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"routes reloaded" in err


def test_reload_routes_swaps_aliases_and_refuses_what_needs_a_restart() -> None:
    gateway = Gateway(Recorder(), anonymous=True)
    with pytest.raises(ValueError, match="without \\[\\[routes\\]\\]"):
        reload_routes(gateway, parse_config(
            {"auth": {"anonymous": True},
             "routes": [{"alias": "a", "targets": [{"model": HAIKU}]}]}).routes)
    from bedrock_gateway.config import build_gateway

    built = build_gateway(parse_config({"auth": {"anonymous": True}, "upstream": {
        "endpoint_url": "http://127.0.0.1:9"}, "routes": [
        {"alias": "chat", "targets": [{"model": HAIKU}]}]}))
    new = parse_config({"auth": {"anonymous": True}, "routes": [
        {"alias": "chat", "targets": [{"model": SONNET}]}, {"alias": "new", "targets": [
            {"model": HAIKU}]}]}).routes
    reload_routes(built, new)
    router = built.router
    assert [a.name for a in router.aliases] == ["chat", "new"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="without fallbacks"):
        reload_routes(built, parse_config({"auth": {"anonymous": True}, "routes": [
            {"alias": "chat", "targets": [{"model": SONNET}], "fallback": [HAIKU]}]}).routes)
    assert [a.name for a in router.aliases] == ["chat", "new"]  # type: ignore[union-attr]
    built.close()
