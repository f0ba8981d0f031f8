"""How a user tests their own policy: once in-process with no network, once end to end
against FakeBedrock (fixtures from the bedrock_gateway pytest plugin)."""

import fnmatch

import pytest
from botocore.credentials import Credentials

from bedrock_gateway import AccessDeniedError, Call, Gateway, Next, Response, SigV4Forwarder
from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY


class OnlyModels:
    """The policy under test: refuse every model outside a list of globs."""

    def __init__(self, *patterns: str) -> None:
        self.patterns = patterns

    def __call__(self, call: Call, next_: Next) -> Response:
        if call.model_id and not any(fnmatch.fnmatch(call.model_id, p) for p in self.patterns):
            raise AccessDeniedError(f"Model {call.model_id} is not allowed.")
        return next_(call)


def test_policy_in_process() -> None:
    gateway = Gateway(lambda call: Response(200, body=b"{}"), [OnlyModels("amazon.*")], anonymous=True)
    assert gateway.handle("POST", "/model/amazon.nova-lite-v1%3A0/converse", "", {}, b"{}").status == 200
    assert gateway.handle("POST", "/model/meta.llama3-8b/converse", "", {}, b"{}").status == 403


def test_policy_end_to_end(fake_bedrock, bedrock_client_factory) -> None:
    forwarder = SigV4Forwarder(region="us-east-1", endpoint_url=fake_bedrock.endpoint_url,
                               credentials=Credentials(FAKE_ACCESS_KEY, FAKE_SECRET_KEY))
    gateway = Gateway(forwarder, [OnlyModels("amazon.*")], anonymous=True)
    from bedrock_gateway.serve import BackgroundServer

    with BackgroundServer(gateway) as server:
        client = bedrock_client_factory(server.url)  # any credentials: the gateway is anonymous
        messages = [{"role": "user", "content": [{"text": "hi"}]}]
        assert client.converse(modelId="amazon.nova-lite-v1:0", messages=messages)["usage"]
        with pytest.raises(client.exceptions.AccessDeniedException):
            client.converse(modelId="meta.llama3-8b-instruct-v1:0", messages=messages)
    assert [r.params["modelId"] for r in fake_bedrock.requests] == ["amazon.nova-lite-v1:0"]
    forwarder.close()
