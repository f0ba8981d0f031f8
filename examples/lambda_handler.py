import os
from bedrock_gateway import Gateway, LambdaHandler

# API Gateway (REST or HTTP API), ALB or function URL: the event type is detected per call.
handler = LambdaHandler(Gateway.from_config(os.environ.get("BEDROCK_GATEWAY_CONFIG", "gateway.toml")))
