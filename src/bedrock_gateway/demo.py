"""``bedrock-gateway demo``: the whole path on this machine, with no AWS account.

Starts :class:`FakeBedrock`, a JWT issuer and a gateway on free loopback ports, then drives the
gateway with an ordinary boto3 ``bedrock-runtime`` client carrying a JWT: Converse,
ConverseStream (printed as it arrives), InvokeModel, an upstream throttle absorbed by the
gateway's retry, an access rule refusing a model, and a call without a token refused.
"""

from __future__ import annotations

import json
from typing import TextIO

from bedrock_gateway.auth.access import AccessRule
from bedrock_gateway.forward import SigV4Forwarder
from bedrock_gateway.pipeline import Gateway

__all__ = ["run_demo"]

CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN = "amazon.titan-text-express-v1"


def run_demo(out: TextIO) -> int:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.credentials import Credentials

    from bedrock_gateway.auth.jwt import JWTAuthorizer
    from bedrock_gateway.auth.jwt_keys import JWKSKeys
    from bedrock_gateway.client import gateway_client
    from bedrock_gateway.serve import BackgroundServer
    from bedrock_gateway.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, FakeBedrock, TokenIssuer

    def say(text: str = "", end: str = "\n") -> None:
        out.write(text + end)
        out.flush()

    with FakeBedrock() as fake, TokenIssuer() as issuer:
        forwarder = SigV4Forwarder(
            region="us-east-1",
            endpoint_url=fake.endpoint_url,
            credentials=Credentials(FAKE_ACCESS_KEY, FAKE_SECRET_KEY),
            backoff_base=0.05,
        )
        gateway = Gateway(
            forwarder,
            authorizers=[JWTAuthorizer(JWKSKeys(issuer.jwks_url), issuer=issuer.issuer,
                                       audience=issuer.audience)],
            access_rules=[AccessRule("demo-team", tenants=("demo",),
                                     allow_models=("*anthropic.*", "amazon.*"))],
        )
        with BackgroundServer(gateway) as server:
            token = issuer.issue("dana", tenant="demo", groups=["engineering"])
            say("bedrock-gateway demo")
            say(f"  fake Bedrock : {fake.endpoint_url}  (checks the SigV4 signature of every call)")
            say(f"  gateway      : {server.url}  (JWT required; rule 'demo-team' allows"
                " anthropic.* and amazon.* for tenant demo)")
            say("  client       : boto3, Authorization: Bearer <JWT for dana, tenant demo>")
            say()
            no_retry = Config(retries={"total_max_attempts": 1})
            client = gateway_client(server.url, token=token, config=no_retry)
            messages = [{"role": "user", "content": [{"text": "Say hello to the gateway."}]}]

            reply = client.converse(modelId=CLAUDE, messages=messages)
            text = reply["output"]["message"]["content"][0]["text"]
            usage = reply["usage"]
            say(f"1. Converse {CLAUDE}")
            say(f"   -> {text!r}  ({usage['inputTokens']} in / {usage['outputTokens']} out tokens)")

            say(f"2. ConverseStream {CLAUDE}, printed as it arrives:")
            say("   -> ", end="")
            stream = client.converse_stream(
                modelId=CLAUDE,
                messages=[{"role": "user", "content": [{"text": "Stream a short greeting."}]}],
            )
            for event in stream["stream"]:
                if "contentBlockDelta" in event:
                    say(event["contentBlockDelta"]["delta"].get("text", ""), end="")
                elif "metadata" in event:
                    u = event["metadata"]["usage"]
                    say(f"\n   ({u['inputTokens']} in / {u['outputTokens']} out tokens)")

            body = json.dumps({"inputText": "Name three rivers.",
                               "textGenerationConfig": {"maxTokenCount": 50}})
            answer = client.invoke_model(modelId=TITAN, body=body,
                                         contentType="application/json")
            result = json.loads(answer["body"].read())
            say(f"3. InvokeModel {TITAN}")
            say(f"   -> {result['results'][0]['outputText']!r}")

            fake.fail_next(1, status=429, code="ThrottlingException")
            client.converse(modelId=CLAUDE, messages=messages)
            say("4. Bedrock throttled the next call once (429); the gateway retried it with"
                " backoff and the client saw a normal answer.")

            try:
                client.converse(modelId="meta.llama3-1-8b-instruct-v1:0", messages=messages)
                say("5. ERROR: the access rules did not refuse the call")
                return 1
            except client.exceptions.AccessDeniedException as exc:
                say("5. An access rule refused meta.llama3-1-8b-instruct-v1:0 before it left the"
                    f" gateway:\n   -> AccessDeniedException: {exc.response['Error']['Message']}")

            anonymous = boto3.client("bedrock-runtime", region_name="us-east-1",
                                     endpoint_url=server.url,
                                     config=no_retry.merge(Config(signature_version=UNSIGNED)))
            try:
                anonymous.converse(modelId=CLAUDE, messages=messages)
                say("6. ERROR: a call without a token got through")
                return 1
            except anonymous.exceptions.ClientError as exc:
                say("6. A call without a token was refused:\n   -> "
                    f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}")

            keys = {r.access_key for r in fake.requests}
            say()
            say(f"Fake Bedrock received {len(fake.requests)} requests, all signed with the"
                f" gateway's own key ({', '.join(sorted(k or '-' for k in keys))});"
                " the client's token never left the gateway.")
            client.close()
            anonymous.close()
        forwarder.close()
    return 0
