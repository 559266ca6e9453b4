"""The app the load tests run under gunicorn: every provider call goes to the
loopback fake whose URL is in ``FAKE_PROVIDER_URL``. With ``ANSWERS_FILE``
set, each answer's ending is appended to that file as a JSON line (the
``on_finish`` hook, seen from the test's process); ``AI_ON_DISCONNECT``
comes from the environment too, as do ``AI_RESUME_STORAGE_URI`` and
``AI_RESUME_TTL``. The blueprint serves ``/api/chat`` (and its Vercel format
``/api/vercel``); an answer's owner is the ``X-User`` header."""

import gc
import json
import os
import time

from flask import Flask, request

from flask_aistream import AIStream, tool


def create_app():
    app = Flask("loadapp")
    app.config.update(
        AI_OPENAI_API_KEY="sk-load-test",
        AI_OPENAI_BASE_URL=os.environ["FAKE_PROVIDER_URL"] + "/v1",
        AI_HEARTBEAT_INTERVAL=0.5,
        AI_MAX_RETRIES=0,
        AI_ON_DISCONNECT=os.environ.get("AI_ON_DISCONNECT", "cancel"),
        AI_SEND_TIMEOUT=float(os.environ.get("AI_SEND_TIMEOUT", 30)),
        AI_RESUME_STORAGE_URI=os.environ.get("AI_RESUME_STORAGE_URI"),
        AI_RESUME_TTL=float(os.environ.get("AI_RESUME_TTL", 600)),
        AI_APPROVAL_STORAGE_URI=os.environ.get("AI_APPROVAL_STORAGE_URI"),
        AI_RATELIMIT=None,
    )
    AIStream(app)
    answers_file = os.environ.get("ANSWERS_FILE")
    ai = app.extensions["ai"]

    gate = os.environ.get("HOOK_GATE")

    def save(answer):
        record = {"text": answer.text, "finish_reason": answer.finish_reason}
        if gate:  # a slow hook: it waits (at most 30 s) for the test to open the gate
            deadline = time.monotonic() + 30
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
            record["gate_was_open"] = os.path.exists(gate)
        with open(answers_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    @app.get("/readers")
    def readers():
        """How many of our provider readers are still alive in this worker
        (threads, or greenlets under gevent): a leak shows here, and the
        worker's own pool, which load may grow, does not."""
        from flask_aistream.serving.reader import BackgroundReader

        alive = [
            obj
            for obj in gc.get_objects()
            if isinstance(obj, BackgroundReader) and not obj._ended.is_set()
        ]
        return {"alive": len(alive)}

    hook = save if answers_file else None

    def user():
        return request.headers.get("X-User")

    @tool
    def lookup(order: str) -> dict:
        """Looks an order up, slowly (a database would be slow too)."""
        time.sleep(0.05)  # gevent's patched sleep under its worker
        return {"order": order, "status": "shipped", "user": request.headers.get("X-User")}

    @app.post("/tools")
    def tools():
        return ai.ask_stream(
            request.get_json()["question"],
            tools=[lookup],
            on_finish=hook,
            events=["tool_calls", "tool_results", "steps"],
        )

    @app.post("/chat")
    def chat():
        return ai.ask_stream(request.get_json()["question"], on_finish=hook, owner=user())

    app.register_blueprint(ai.blueprint(on_finish=hook, owner=user), url_prefix="/api/chat")
    app.register_blueprint(
        ai.blueprint(name="vercel", format="vercel", on_finish=hook, owner=user),
        url_prefix="/api/vercel",
    )

    @app.get("/eventsource")
    def eventsource_page():
        """A page reading an answer with a bare EventSource (the spec's client)."""
        return """<!doctype html><pre id="out"></pre><script>
          const out = document.getElementById('out');
          const source = new EventSource('/api/chat/stream?question=' + encodeURIComponent('Hi'));
          source.onmessage = (e) => {
            if (e.data === '[DONE]') { source.close(); document.title = 'done'; return; }
            const data = JSON.parse(e.data);
            if (data.content) out.textContent += data.content;
            if (data.error) out.textContent += '[error: ' + data.error + ']';
          };
        </script>"""

    runs_file = os.environ.get("TOOL_RUNS_FILE")
    if runs_file:

        @tool(needs_approval=True)
        def refund(order_id: str) -> str:
            """Refunds an order (each run is a line of TOOL_RUNS_FILE, with its worker)."""
            with open(runs_file, "a") as f:
                f.write(f"{order_id} {os.getpid()}\n")
            if order_id == "SLOW":  # long enough for a test to kill the worker mid-tool
                time.sleep(60)
            return "refunded"

        app.register_blueprint(
            ai.blueprint(name="approve", tools=[refund], owner=user), url_prefix="/api/approve"
        )

    return app
