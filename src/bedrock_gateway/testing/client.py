"""A boto3 ``bedrock-runtime`` client for a FakeBedrock (or a gateway in front of one)."""

from __future__ import annotations

import threading
from typing import Any

from bedrock_gateway.testing.fake_bedrock import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

__all__ = ["bedrock_client"]

_session_lock = threading.Lock()
_session: Any = None


def _shared_session() -> Any:
    """One boto3 session for every client: loading the service model once keeps tests fast."""
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session()
    return _session


def bedrock_client(
    endpoint_url: str,
    *,
    access_key: str = FAKE_ACCESS_KEY,
    secret_key: str = FAKE_SECRET_KEY,
    region: str = "us-east-1",
    config: Any = None,
    **config_kwargs: Any,
) -> Any:
    """A boto3 ``bedrock-runtime`` client for ``endpoint_url`` with explicit credentials.

    ``config_kwargs`` go to ``botocore.config.Config``. The default is
    ``retries={"total_max_attempts": 1}``: one attempt, no retry, so faults surface at once
    (botocore's ``max_attempts`` counts *retries*: ``{"max_attempts": 1}`` means two attempts).
    A given ``config`` is merged over them. Close the client (``client.close()``) when done to
    release its connections.
    """
    from botocore.config import Config

    # botocore rewrites the retries dict it is given in place, so always hand it a copy.
    config_kwargs["retries"] = dict(config_kwargs.get("retries") or {"total_max_attempts": 1})
    merged = Config(**config_kwargs)
    if config is not None:
        merged = merged.merge(config)
    with _session_lock:
        return _shared_session().client(
            "bedrock-runtime",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=None,
            config=merged,
        )
