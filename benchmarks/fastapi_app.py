"""The stack a user would otherwise pick, written as its docs show: FastAPI,
one shared ``httpx.AsyncClient`` and sse-starlette, under uvicorn (uvloop,
httptools). Relays the fake provider's stream as the spec's SSE.

    FAKE_PROVIDER_URL=... uvicorn fastapi_app:app --loop uvloop --http httptools
"""

import json
import os
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from sse_starlette.sse import EventSourceResponse

UPSTREAM = os.environ["FAKE_PROVIDER_URL"] + "/v1"
client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app):
    global client
    client = httpx.AsyncClient(timeout=30, verify=os.environ.get("SSL_CERT_FILE", True))
    yield
    await client.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/ours")
async def relay(m: str):
    """sse-starlette notices a departed client itself (it cancels this
    generator); a per-line ``request.is_disconnected()``, which some examples
    show, costs 40x the CPU per token."""

    async def events():
        body = {"model": m, "messages": [], "stream": True}
        async with client.stream("POST", f"{UPSTREAM}/chat/completions", json=body) as upstream:
            async for line in upstream.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                delta = json.loads(data)["choices"][0]["delta"].get("content")
                if delta:
                    yield {"data": json.dumps({"content": delta})}
        yield {"data": "[DONE]"}

    return EventSourceResponse(events(), ping=15)
