"""Test tools: a faithful fake Amazon Bedrock Runtime and a boto3 client for it.

>>> from bedrock_gateway.testing import FakeBedrock, bedrock_client
>>> with FakeBedrock() as fake:
...     client = bedrock_client(fake.endpoint_url)
...     reply = client.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
...                             messages=[{"role": "user", "content": [{"text": "hi"}]}])
...     client.close()
>>> reply["output"]["message"]["content"][0]["text"]
'Echo: hi'
"""

from bedrock_gateway.testing.client import bedrock_client
from bedrock_gateway.testing.fake_bedrock import (
    FAKE_ACCESS_KEY,
    FAKE_SECRET_KEY,
    FakeBedrock,
    RecordedRequest,
)
from bedrock_gateway.testing.tokens import TokenIssuer

__all__ = [
    "FAKE_ACCESS_KEY",
    "FAKE_SECRET_KEY",
    "FakeBedrock",
    "RecordedRequest",
    "TokenIssuer",
    "bedrock_client",
]
