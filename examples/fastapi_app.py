import os
from contextlib import asynccontextmanager
from fastapi import FastAPI
from bedrock_gateway import ASGIApp, Gateway

gateway = Gateway.from_config(os.environ.get("BEDROCK_GATEWAY_CONFIG", "gateway.toml"))

@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    gateway.close()  # a mounted app gets no lifespan events of its own

app = FastAPI(lifespan=lifespan)

@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

app.mount("/bedrock", ASGIApp(gateway))  # clients: endpoint_url="https://<host>/bedrock"
# serve it:  uvicorn fastapi_app:app --port 8080
