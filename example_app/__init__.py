"""A chat page on flask-aistream.

Run it with ``flask --app example_app run``. With no API key in the
environment it answers through the offline provider; set ``OPENAI_API_KEY``
(or ``AI_PROVIDER=anthropic`` and ``ANTHROPIC_API_KEY``, and so on) to use a
real one.
"""

import os

from flask import Flask, render_template

from flask_aistream import AIStream

KEY_VARS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
}


def create_app(config=None):
    app = Flask(__name__)
    provider = os.environ.get("AI_PROVIDER", "openai")
    if provider != "offline" and not os.environ.get(KEY_VARS.get(provider, "")):
        provider = "offline"  # no key: a demo that still streams
    app.config.update(
        AI_PROVIDER=provider,
        AI_OFFLINE_DELAY=0.06,
        AI_SYSTEM_PROMPT="You are a helpful assistant. Answer briefly.",
        AI_RATELIMIT="10 per minute",
        # The page shows the reasoning (collapsed) and a line on how each answer ended.
        AI_STREAM_EVENTS=["reasoning", "finish"],
    )
    app.config.update(config or {})
    AIStream(app)
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api/chat")

    @app.get("/")
    def index():
        return render_template("index.html", provider=app.config["AI_PROVIDER"])

    return app
