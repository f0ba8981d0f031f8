"""A misbehaving JWKS endpoint, through the real path (HTTP -> gateway -> a JWKS server on
loopback): fetches have a total deadline and a size cap, run one at a time with every waiter
getting the result, stale keys are served while a refresh fails, and a bad entry costs only
itself. API-key callers are never held up by the JWKS."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bedrock_gateway import Gateway
from bedrock_gateway.adapters.asgi import ASGIApp
from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.auth.jwt import JWTAuthorizer
from bedrock_gateway.auth.jwt_keys import JWKSKeys, fetch_jwks
from bedrock_gateway.serve import BackgroundServer
from bedrock_gateway.testing import FakeBedrock, TokenIssuer

from .conftest import make_forwarder
from .scripted_http import Answer, ScriptedServer
from .test_e2e import CLAUDE, MESSAGES

PATH = f"/model/{CLAUDE.replace(':', '%3A')}/converse"
BODY = json.dumps({"messages": MESSAGES}).encode()
DEADLINE_S = 0.3  # the JWKS fetch deadline in these tests: short, so nothing waits long

Serve = Answer


def JWKSServer(*modes: Serve) -> ScriptedServer:
    """A JWKS endpoint answering fetch *n* with ``modes[n]`` (the last one repeats)."""
    return ScriptedServer(*modes, path="/.well-known/jwks.json")


def document(body: dict[str, Any]) -> Serve:
    data = json.dumps(body).encode()

    def serve(conn: socket.socket, stop: threading.Event) -> int:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                     + data)
        return len(data)
    return serve


def held(release: threading.Event, then: Serve) -> Serve:
    """Say nothing until ``release`` is set, then answer with ``then``."""
    def serve(conn: socket.socket, stop: threading.Event) -> int:
        while not (release.wait(0.01) or stop.is_set()):
            pass
        return then(conn, stop)
    return serve


def drip(conn: socket.socket, stop: threading.Event) -> int:
    """Headers at once, then one byte every 20 ms of a 100 kB body (about half an hour): each
    read returns well within any socket timeout, so only a total deadline ends it."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n{")
    sent = 1
    while sent < 100_000 and not stop.wait(0.02):
        conn.sendall(b" ")
        sent += 1
    return sent


def endless(*, chunked: bool) -> Serve:
    """A body of 64 MiB (declared) or without end (chunked), sent as fast as it is read."""
    def serve(conn: socket.socket, stop: threading.Event) -> int:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: 67108864"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing
                     + b"\r\n\r\n")
        piece, sent = b" " * 65536, 0
        try:
            while not stop.is_set() and (chunked or sent < 64 * 1024 * 1024):
                conn.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
        except OSError:  # the gateway stopped reading
            pass
        return sent
    return serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


API_KEY, API_KEY_SHA256 = generate_api_key()


@pytest.fixture
def serve_jwt(fake_bedrock: FakeBedrock, token_issuer: TokenIssuer
              ) -> Iterator[Callable[..., BackgroundServer]]:
    """A gateway (JWT from a JWKSKeys, plus API keys) over HTTP, in front of FakeBedrock."""
    running: list[tuple[BackgroundServer, Any]] = []

    def start(keys: JWKSKeys, workers: int = 8) -> BackgroundServer:
        forwarder = make_forwarder(fake_bedrock)
        gateway = Gateway(forwarder, authorizers=[
            JWTAuthorizer(keys, issuer=token_issuer.issuer, audience=token_issuer.audience),
            APIKeyAuthorizer([APIKey(API_KEY_SHA256, "bot")])])
        server = BackgroundServer(ASGIApp(gateway, max_workers=workers)).start()
        running.append((server, forwarder))
        return server

    yield start
    for server, forwarder in running:
        server.stop()
        forwarder.close()


def call(server: BackgroundServer, headers: dict[str, str]) -> tuple[int, str, float]:
    """POST a Converse; (status, error code or "", seconds taken)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", PATH, BODY, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        response.read()
        code = (response.getheader("x-amzn-errortype") or "").split(":")[0]
        return response.status, code, time.monotonic() - started
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_slow_drip_jwks_is_cut_at_its_deadline_one_fetch_for_all_waiters(
        serve_jwt: Callable[..., BackgroundServer], token_issuer: TokenIssuer) -> None:
    jwks = JWKSServer(drip)
    keys = JWKSKeys(jwks.url, timeout_s=DEADLINE_S)
    server = serve_jwt(keys, workers=4)
    token = token_issuer.issue("alice")
    try:
        with ThreadPoolExecutor(8) as pool:
            jwt_calls = [pool.submit(call, server, bearer(token)) for _ in range(6)]
            assert jwks.started.acquire(timeout=5)  # the fetch is dripping now
            api_key = pool.submit(call, server, {"x-api-key": API_KEY})
            results = [f.result(timeout=15) for f in jwt_calls]
            api_status, _, api_seconds = api_key.result(timeout=15)
    finally:
        jwks.close()
    assert [(status, code) for status, code, _ in results] == [
        (503, "ServiceUnavailableException")] * 6
    assert max(seconds for _, _, seconds in results) < DEADLINE_S + 2  # not the drip's hour
    assert jwks.requests == 1  # every waiter got the one fetch's result
    assert api_status == 200 and api_seconds < DEADLINE_S + 2  # API keys never wait on a JWKS


def test_waiters_get_the_one_fetchs_keys(serve_jwt: Callable[..., BackgroundServer],
                                         token_issuer: TokenIssuer) -> None:
    release = threading.Event()
    jwks = JWKSServer(held(release, document(token_issuer.jwks())))
    server = serve_jwt(JWKSKeys(jwks.url, timeout_s=10))
    try:
        with ThreadPoolExecutor(6) as pool:
            calls = [pool.submit(call, server, bearer(token_issuer.issue(f"user-{i}")))
                     for i in range(6)]
            assert jwks.started.acquire(timeout=5)
            release.set()
            results = [f.result(timeout=15) for f in calls]
    finally:
        jwks.close()
    assert [status for status, _, _ in results] == [200] * 6
    assert jwks.requests == 1


def test_stale_keys_are_served_while_a_refresh_fails_then_the_gateway_fails_closed(
        serve_jwt: Callable[..., BackgroundServer], token_issuer: TokenIssuer,
        caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    jwks = JWKSServer(document(token_issuer.jwks()), held(release, document({})), drip)
    clock = FakeClock()
    keys = JWKSKeys(jwks.url, ttl_s=300, timeout_s=10, clock=clock)  # max_stale_s: 3600
    server = serve_jwt(keys)
    try:
        assert call(server, bearer(token_issuer.issue("alice")))[0] == 200
        clock.now += 301  # the key set is due for a refresh
        with ThreadPoolExecutor(2) as pool:
            leader = pool.submit(call, server, bearer(token_issuer.issue("bob")))
            assert jwks.started.acquire(timeout=5) and jwks.started.acquire(timeout=5)
            # the refresh hangs (held by the server): a caller whose key is in hand is served
            # at once, without waiting for it
            assert call(server, bearer(token_issuer.issue("carol")))[0] == 200
            release.set()  # the refresh then fails (an empty key set)...
            assert leader.result(timeout=15)[0] == 200  # ...and its caller gets the stale keys
        assert jwks.requests == 2
        # failing refreshes are retried at most every few seconds; stale keys meanwhile
        keys.timeout_s = DEADLINE_S
        for name in ("dave", "erin"):
            assert call(server, bearer(token_issuer.issue(name)))[0] == 200
        assert jwks.requests == 2
        clock.now += 10
        assert call(server, bearer(token_issuer.issue("frank")))[0] == 200  # a dripping refresh
        assert jwks.requests == 3
        clock.now += 3600  # past ttl + max_stale: no key set may be trusted any more
        assert call(server, bearer(token_issuer.issue("grace")))[:2] == (
            503, "ServiceUnavailableException")
    finally:
        jwks.close()
    assert "serving the last key set" in caplog.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_jwks_is_not_read_past_its_cap(
        serve_jwt: Callable[..., BackgroundServer], token_issuer: TokenIssuer,
        chunked: bool) -> None:
    jwks = JWKSServer(endless(chunked=chunked))
    server = serve_jwt(JWKSKeys(jwks.url, timeout_s=5))  # max_bytes: 1 MiB
    try:
        status, code, _ = call(server, bearer(token_issuer.issue("alice")))
        deadline = time.monotonic() + 10
        while not jwks.sent and time.monotonic() < deadline:
            jwks.started.acquire(timeout=0.01)
    finally:
        jwks.close()
    assert (status, code) == (503, "ServiceUnavailableException")
    assert jwks.sent and jwks.sent[0] < 16 * 1024 * 1024  # the reader stopped at its cap


def test_one_bad_entry_costs_only_itself(serve_jwt: Callable[..., BackgroundServer],
                                         token_issuer: TokenIssuer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    good = token_issuer.jwks()["keys"][0]
    broken_rsa = {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB", "use": "sig"}
    jwks = JWKSServer(document({"keys": [
        "not-an-object", 42, None, ["a", "list"], {"kid": 7, "kty": "RSA"}, broken_rsa,
        {"kty": "RSA", "kid": "enc-key", "use": "enc"}, good]}))
    server = serve_jwt(JWKSKeys(jwks.url, timeout_s=5))
    caplog.set_level(logging.WARNING, logger="bedrock_gateway.auth")
    try:
        assert call(server, bearer(token_issuer.issue("alice")))[0] == 200
    finally:
        jwks.close()
    assert "6 unusable key entries skipped" in caplog.text


def header_drip(conn: socket.socket, stop: threading.Event) -> int:
    """The status line, then headers one byte every 20 ms, never ending."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
    sent = 0
    while not stop.wait(0.02):
        sent += 1
        conn.sendall(b"\r\nX-Pad: " if sent % 60 == 0 else b"x")
    return sent


def close_drip(conn: socket.socket, stop: threading.Event) -> int:
    """A body without a length (read until the connection closes), one byte every 20 ms."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{")
    sent = 1
    while not stop.wait(0.02):
        conn.sendall(b" ")
        sent += 1
    return sent


@pytest.mark.parametrize("mode", [header_drip, close_drip, drip],
                         ids=["headers", "read-to-close", "content-length"])
def test_the_deadline_covers_the_whole_fetch(mode: Serve) -> None:
    jwks = JWKSServer(mode)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            fetch_jwks(jwks.url, DEADLINE_S)
    finally:
        jwks.close()
    assert time.monotonic() - started < DEADLINE_S + 2
