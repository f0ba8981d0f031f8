import base64, os
from bedrock_gateway import Gateway

gateway = Gateway.from_config(os.environ.get("BEDROCK_GATEWAY_CONFIG", "gateway.toml"))

def handler(event, context):  # an HTTP API (v2) / Function URL event
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event.get("body", "").encode()
    r = gateway.handle(event["requestContext"]["http"]["method"], event["rawPath"], event.get("rawQueryString", ""), event["headers"], body)
    return {"statusCode": r.status, "headers": r.headers, "body": base64.b64encode(b"".join(r.chunks())).decode(), "isBase64Encoded": True}
