"""pytest fixtures for FakeBedrock (registered through the ``pytest11`` entry point).

- ``fake_bedrock_server`` (session): one running :class:`FakeBedrock`.
- ``fake_bedrock``: the same server, :meth:`~FakeBedrock.reset` before the test.
- ``bedrock_client_factory``: ``(endpoint_url, **kwargs) -> client`` with the fake credentials,
  region ``us-east-1`` and no retries (``retries={"total_max_attempts": 1}``, see
  :func:`~bedrock_gateway.testing.bedrock_client`); clients are closed after the test.

Nothing heavy is imported until a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bedrock_gateway.testing.fake_bedrock import FakeBedrock

__all__ = ["bedrock_client_factory", "fake_bedrock", "fake_bedrock_server", "token_issuer"]


@pytest.fixture(scope="session")
def fake_bedrock_server() -> Iterator[FakeBedrock]:
    from bedrock_gateway.testing.fake_bedrock import FakeBedrock

    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def fake_bedrock(fake_bedrock_server: FakeBedrock) -> FakeBedrock:
    fake_bedrock_server.reset()
    return fake_bedrock_server


@pytest.fixture
def bedrock_client_factory() -> Iterator[Callable[..., Any]]:
    from bedrock_gateway.testing.client import bedrock_client

    clients: list[Any] = []

    def factory(endpoint_url: str, **client_kwargs: Any) -> Any:
        client = bedrock_client(endpoint_url, **client_kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[Any]:
    """A :class:`~bedrock_gateway.testing.TokenIssuer` with its JWKS served on loopback."""
    from bedrock_gateway.testing.tokens import TokenIssuer

    with TokenIssuer() as issuer:
        yield issuer
