import os
from bedrock_gateway import ASGIApp, Gateway

app = ASGIApp(Gateway.from_config(os.environ.get("BEDROCK_GATEWAY_CONFIG", "gateway.toml")))
# serve it with any ASGI server:  uvicorn asgi_app:app --port 8080
