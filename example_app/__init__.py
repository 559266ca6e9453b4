"""A minimal chat page on flask-aistream.

Run it with ``flask --app example_app run``. With no API key in the
environment it answers through the offline provider; set ``OPENAI_API_KEY``
(or ``AI_PROVIDER=anthropic`` and ``ANTHROPIC_API_KEY``, and so on) to use a
real one.
"""

import os

from flask import Flask, jsonify, render_template, request

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
        provider = "offline"
    app.config.update(AI_PROVIDER=provider, AI_OFFLINE_DELAY=0.08)
    app.config.update(config or {})
    AIStream(app)

    @app.get("/")
    def index():
        return render_template("index.html", provider=app.config["AI_PROVIDER"])

    @app.post("/api/chat/stream")
    def chat_stream():
        body = request.get_json(silent=True) or {}
        question = body.get("question")
        if not isinstance(question, str) or not question.strip() or len(question) > 1000:
            return jsonify(error="Ask a question of 1 to 1000 characters."), 400
        return app.extensions["ai"].ask_stream(
            question, system="You are a helpful assistant. Answer briefly."
        )

    return app
