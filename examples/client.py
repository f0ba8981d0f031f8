"""Calling the gateway from your application: the ordinary boto3 bedrock-runtime client, with
one of the credentials the gateway accepts."""

import os
from collections.abc import Callable
from pathlib import Path

import boto3
from bedrock_gateway.client import gateway_client


def jwt_client(url: str, token: Callable[[], str]):
    """A JWT from your identity provider. ``token`` is called for every request, so a refreshed
    token is used without building a new client."""
    return gateway_client(url, token=token)


def token_file(path: str) -> Callable[[], str]:
    """A token that an agent keeps fresh in a file (e.g. a Kubernetes projected token)."""
    return lambda: Path(path).read_text().strip()


def sigv4_client(url: str, access_key_id: str, secret_access_key: str):
    """A key pair the gateway issued: boto3 signs with it exactly as it would for Bedrock."""
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)


def ask(client, question: str, model_id: str = "us.anthropic.claude-3-5-haiku-20241022-v1:0") -> str:
    reply = client.converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": question}]}])
    return reply["output"]["message"]["content"][0]["text"]


if __name__ == "__main__":
    url = os.environ["GATEWAY_URL"]  # https://...: botocore sends bearer tokens over https only
    if "GATEWAY_ACCESS_KEY_ID" in os.environ:
        client = sigv4_client(url, os.environ["GATEWAY_ACCESS_KEY_ID"], os.environ["GATEWAY_SECRET_ACCESS_KEY"])
    else:
        client = jwt_client(url, token_file(os.environ["GATEWAY_TOKEN_FILE"]))
    print(ask(client, "Hello!"))
