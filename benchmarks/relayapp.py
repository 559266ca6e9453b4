"""The views the relay benchmark compares, served by gunicorn. Each takes the
scenario (the upstream ``model``) from ``?m=``."""

import json
import os

import requests
from flask import Flask, Response, request

from flask_aistream import AIClient, AIStream
from flask_aistream.config import Settings
from flask_aistream.formats.sse import DONE, content_event
from flask_aistream.providers.registry import provider_settings

UPSTREAM = os.environ["FAKE_PROVIDER_URL"] + "/v1"


def create_app():
    app = Flask("relaybench")
    app.config.update(AI_OPENAI_API_KEY="sk-bench", AI_OPENAI_BASE_URL=UPSTREAM, AI_MAX_RETRIES=0)
    AIStream(app)

    @app.get("/ours")
    def ours():
        return app.extensions["ai"].ask_stream("go", model=request.args["m"])

    resume_uri = os.environ.get("RESUME_STORAGE_URI")
    if resume_uri:
        config = {**app.config, "AI_RESUME_STORAGE_URI": resume_uri}
        settings = Settings.from_config(config, provider_settings(config, os.environ))
        resumable = AIClient(settings, app.logger, app=app)

        @app.get("/resume")
        def resume():
            """Ours with resume on: every event numbered and written to Redis."""
            return resumable.ask_stream("go", model=request.args["m"])

    @app.get("/iter")
    def iter_view():
        """Our transport and parser read in the response generator itself:
        what ours costs without its reader thread (and so without heartbeats
        or noticing a departed client while the provider is silent)."""
        texts = app.extensions["ai"].iter_text("go", model=request.args["m"])

        def relay():
            for text in texts:
                yield content_event(text)
            yield DONE

        return Response(relay(), content_type="text/event-stream")

    session = requests.Session()

    @app.get("/bare")
    def bare():
        """The floor for Flask + requests: one shared session (keep-alive),
        the provider's bytes passed through as they come, nothing parsed."""
        upstream = session.post(
            f"{UPSTREAM}/chat/completions",
            json={"model": request.args["m"], "messages": [], "stream": True},
            stream=True,
        )

        def relay():
            try:
                yield from upstream.iter_content(None)
            finally:
                upstream.close()

        return Response(relay(), content_type="text/event-stream")

    @app.get("/naive")
    def naive():
        """What a Flask user writes first: requests + iter_lines + yield."""
        upstream = requests.post(
            f"{UPSTREAM}/chat/completions",
            json={"model": request.args["m"], "messages": [], "stream": True},
            stream=True,
        )

        def relay():
            try:
                for line in upstream.iter_lines():
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:]
                    if data == b"[DONE]":
                        break
                    delta = json.loads(data)["choices"][0]["delta"].get("content")
                    if delta:
                        yield f"data: {json.dumps({'content': delta})}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                upstream.close()

        return Response(relay(), content_type="text/event-stream")

    @app.get("/sdk")
    def sdk():
        """The official SDK, used as its README shows (no close in a finally)."""
        from openai import OpenAI

        client = app.config.setdefault("_openai", OpenAI(base_url=UPSTREAM, api_key="sk-bench"))
        stream = client.chat.completions.create(
            model=request.args["m"], messages=[{"role": "user", "content": "go"}], stream=True
        )

        def relay():
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield f"data: {json.dumps({'content': chunk.choices[0].delta.content})}\n\n"
            yield "data: [DONE]\n\n"

        return Response(relay(), content_type="text/event-stream")

    return app
