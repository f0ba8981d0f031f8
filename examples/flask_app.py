import os
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from bedrock_gateway import Gateway, WSGIApp

gateway = Gateway.from_config(os.environ.get("BEDROCK_GATEWAY_CONFIG", "gateway.toml"))
app = Flask(__name__)

@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/bedrock": WSGIApp(gateway)})
# clients: endpoint_url="https://<host>/bedrock";  serve it:  gunicorn --threads 32 flask_app:app
