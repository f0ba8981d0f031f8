"""A boto3 ``bedrock-runtime`` client aimed at a gateway, sending a bearer token.

    client = gateway_client("https://gateway.example.com", token=lambda: my_idp.token())
    client.converse(modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0", messages=[...])

The token (a JWT or a gateway API key) may be a string or a callable, called for every request
so a refreshed token is picked up. Nothing process-wide is touched: no environment variables,
no default session. The zero-code alternative for an unmodified program is the environment:
``AWS_BEARER_TOKEN_BEDROCK=<token>`` plus ``endpoint_url`` (botocore then sends
``Authorization: Bearer <token>`` itself); and gateway-issued SigV4 keys work as plain
``aws_access_key_id`` / ``aws_secret_access_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["gateway_client"]


def gateway_client(
    endpoint_url: str,
    *,
    token: str | Callable[[], str],
    region: str = "us-east-1",
    session: Any = None,
    config: Any = None,
    verify: bool | str | None = None,
) -> Any:
    """A ``bedrock-runtime`` client that authenticates to the gateway with ``token``.

    ``verify`` is boto3's: ``False``, or a CA bundle path for a gateway with a private CA."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    merged = Config(signature_version=UNSIGNED)
    if config is not None:
        merged = merged.merge(config)
    client = (session or boto3.session.Session()).client(
        "bedrock-runtime", endpoint_url=endpoint_url, region_name=region, config=merged,
        verify=verify)

    def add_bearer(request: Any, **_: Any) -> None:
        value = token() if callable(token) else token
        request.headers["Authorization"] = f"Bearer {value}"

    client.meta.events.register("before-sign.bedrock-runtime.*", add_bearer)
    return client
