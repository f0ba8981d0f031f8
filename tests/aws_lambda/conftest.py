"""A LambdaHandler in front of FakeBedrock (anonymous gateway, real SigV4 forwarder)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bedrock_gateway import Gateway
from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
from bedrock_gateway.testing import FakeBedrock

from ..conftest import make_forwarder


@pytest.fixture
def handler(fake_bedrock: FakeBedrock) -> Iterator[LambdaHandler]:
    gateway = Gateway(make_forwarder(fake_bedrock), anonymous=True)
    yield LambdaHandler(gateway)
    gateway.close()
