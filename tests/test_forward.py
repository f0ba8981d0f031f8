"""SigV4Forwarder behaviour that needs a misbehaving upstream: timeouts, unreachable hosts,
backoff, and what is (not) forwarded."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import EventStreamError
from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway import Gateway, SigV4Forwarder
from bedrock_gateway.operations import route
from bedrock_gateway.testing import FakeBedrock

from .conftest import gateway_client, make_forwarder
from .test_e2e import CLAUDE, MESSAGES

BODY = json.dumps({"messages": MESSAGES}).encode()
PATH = f"/model/{CLAUDE.replace(':', '%3A')}/converse"


def test_read_timeout_is_a_model_timeout_and_not_retried(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.set_delay(2.0)  # ended early by reset(): the test does not wait it out
    forwarder = make_forwarder(fake_bedrock, read_timeout=0.05)
    try:
        response = Gateway(forwarder, anonymous=True).handle("POST", PATH, "", {}, BODY)
        assert response.status == 408
        assert response.headers["x-amzn-errortype"].startswith("ModelTimeoutException")
        assert len(fake_bedrock.requests) == 1
    finally:
        fake_bedrock.reset()
        forwarder.close()


def test_unreachable_upstream_is_retried_then_503() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    forwarder = SigV4Forwarder(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                               credentials=Credentials("a", "b"), max_attempts=4,
                               backoff_base=0.5, backoff_max=1.5, sleep=sleeps.append)
    response = Gateway(forwarder, anonymous=True).handle("POST", PATH, "", {}, BODY)
    forwarder.close()
    assert response.status == 503
    assert response.headers["x-amzn-errortype"].startswith("ServiceUnavailableException")
    assert b"127.0.0.1" not in response.body  # no internal detail leaks
    assert len(sleeps) == 3 and all(0 <= s <= 1.5 for s in sleeps)


def test_backoff_is_jittered_and_capped(fake_bedrock: FakeBedrock) -> None:
    sleeps: list[float] = []
    forwarder = make_forwarder(fake_bedrock, max_attempts=5, backoff_base=1.0, backoff_max=3.0,
                               sleep=sleeps.append)
    fake_bedrock.fail_next(4, status=500, code="InternalServerException")
    response = Gateway(forwarder, anonymous=True).handle("POST", PATH, "", {}, BODY)
    forwarder.close()
    assert response.status == 200
    assert len(sleeps) == 4
    assert all(0 <= s <= 3.0 for s in sleeps)
    assert len(set(sleeps)) > 1  # random, not a fixed schedule


def test_refuses_non_regions_and_endpoint_paths() -> None:
    creds = Credentials("a", "b")
    with pytest.raises(ValueError, match="region"):
        SigV4Forwarder(region="us-east-1.evil.com", credentials=creds)
    with pytest.raises(ValueError, match="path"):
        SigV4Forwarder(region="us-east-1", endpoint_url="https://x.example/prefix", credentials=creds)
    fw = SigV4Forwarder(region="eu-west-3", credentials=creds)
    assert fw.endpoint_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"


def test_no_credentials_is_a_500_and_nothing_is_sent(fake_bedrock: FakeBedrock) -> None:
    class NoCredentials:
        def get_credentials(self) -> None:
            return None

    forwarder = make_forwarder(fake_bedrock, credentials=None, session=NoCredentials())
    response = Gateway(forwarder, anonymous=True).handle("POST", PATH, "", {}, BODY)
    forwarder.close()
    assert response.status == 500
    assert fake_bedrock.requests == []


@given(st.from_regex(r"[a-z0-9]{1,10}\.[a-z0-9\-_]{1,20}(:[0-9]{1,2})?", fullmatch=True),
       st.sampled_from(["", "us.", "global.", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us."]))
def test_model_ids_survive_routing(model: str, prefix: str) -> None:
    from urllib.parse import quote

    model_id = prefix + model
    path = f"/model/{quote(model_id, safe='-._~')}/converse-stream"
    r = route("POST", path)
    assert r.params["modelId"] == model_id
    assert r.operation.path(r.params) == path


def test_client_sees_the_retry_only_as_latency(gateway_server: Any, fake_bedrock: FakeBedrock,
                                               bedrock_client_factory: Callable[..., Any]) -> None:
    client = gateway_client(gateway_server.url)
    fake_bedrock.fail_next(2, status=429, code="ModelNotReadyException")
    assert client.converse(modelId=CLAUDE, messages=MESSAGES)["stopReason"]
    client.close()
    assert [r.operation for r in fake_bedrock.requests] == ["Converse"] * 3


def test_upstream_silence_mid_stream_becomes_an_exception_frame(
        serve_gateway: Callable[..., Any], fake_bedrock: FakeBedrock) -> None:
    server = serve_gateway(read_timeout=0.2)
    release = fake_bedrock.hold_stream_after(2)
    client = gateway_client(server.url)
    try:
        stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
        events = []
        with pytest.raises(EventStreamError) as info:
            events.extend(stream)
        stream.close()
        assert info.value.response["Error"]["Code"] == "modelStreamErrorException"
        assert len(events) == 2
    finally:
        release.set()
        client.close()
