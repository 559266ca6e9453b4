"""The app the load tests run under gunicorn: every provider call goes to the
loopback fake whose URL is in ``FAKE_PROVIDER_URL``."""

import os

from flask import Flask, request

from flask_aistream import AIStream


def create_app():
    app = Flask("loadapp")
    app.config.update(
        AI_OPENAI_API_KEY="sk-load-test",
        AI_OPENAI_BASE_URL=os.environ["FAKE_PROVIDER_URL"] + "/v1",
        AI_HEARTBEAT_INTERVAL=0.5,
        AI_MAX_RETRIES=0,
    )
    AIStream(app)

    @app.post("/chat")
    def chat():
        return app.extensions["ai"].ask_stream(request.get_json()["question"])

    return app
