"""The app the load tests run under gunicorn: every provider call goes to the
loopback fake whose URL is in ``FAKE_PROVIDER_URL``. With ``ANSWERS_FILE``
set, each answer's ending is appended to that file as a JSON line (the
``on_finish`` hook, seen from the test's process); ``AI_ON_DISCONNECT``
comes from the environment too."""

import gc
import json
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
        AI_ON_DISCONNECT=os.environ.get("AI_ON_DISCONNECT", "cancel"),
        AI_SEND_TIMEOUT=float(os.environ.get("AI_SEND_TIMEOUT", 30)),
    )
    AIStream(app)
    answers_file = os.environ.get("ANSWERS_FILE")

    def save(answer):
        with open(answers_file, "a") as f:
            f.write(json.dumps({"text": answer.text, "finish_reason": answer.finish_reason}) + "\n")

    @app.get("/readers")
    def readers():
        """How many of our provider readers are still alive in this worker
        (threads, or greenlets under gevent): a leak shows here, and the
        worker's own pool, which load may grow, does not."""
        from flask_aistream.background import BackgroundReader

        alive = [
            obj
            for obj in gc.get_objects()
            if isinstance(obj, BackgroundReader) and not obj._ended.is_set()
        ]
        return {"alive": len(alive)}

    @app.post("/chat")
    def chat():
        hook = save if answers_file else None
        return app.extensions["ai"].ask_stream(request.get_json()["question"], on_finish=hook)

    return app
