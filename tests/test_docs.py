"""The docs' examples run as written (a guide whose code fails is worse than none)."""

import sys
import types
from pathlib import Path

from flask import Flask

from flask_aistream import AIStream

DOCS = Path(__file__).resolve().parent.parent / "docs"


def code_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    blocks = []
    for chunk in text.split(".. code-block:: python\n\n")[1:]:
        lines = []
        for line in chunk.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        blocks.append("\n".join(lines))
    return blocks


def test_the_testing_page_examples_pass(monkeypatch):
    """Every example of the testing page, run as pytest would run it: the
    ``app`` fixture from an app factory taking a config (the README's), the
    plugin's ``ai_fake`` as ``fake_provider(app)``."""
    import inspect

    from flask_aistream import tool
    from flask_aistream.testing import fake_provider

    ai = AIStream()

    @tool
    def order_status(order_id: str) -> dict:
        """Where an order is."""
        return {"order_id": order_id, "status": "shipped"}

    def create_app(config=None):  # what the page's ``myapp`` stands for: the README's factory
        app = Flask("myapp")
        app.config.update(config or {})
        ai.init_app(app)
        app.saved = []

        def save(answer):
            app.saved.append((answer.text, answer.usage and answer.usage.total_tokens))

        app.register_blueprint(
            ai.blueprint(system="Be brief.", tools=[order_status], on_finish=save),
            url_prefix="/api/chat",
        )
        return app

    monkeypatch.setitem(sys.modules, "myapp", types.SimpleNamespace(create_app=create_app))
    namespace: dict = {"saved_messages": lambda app: app.saved}
    for block in code_blocks("testing.rst"):
        exec(compile(block, "docs/testing.rst", "exec"), namespace)
    tests = [name for name in namespace if name.startswith("test_")]
    assert tests == [
        "test_the_answer_is_streamed_and_saved",
        "test_a_rate_limited_provider_reaches_the_page",
        "test_the_tool_was_called_with_these_arguments",
        "test_the_system_prompt_and_the_history_reach_the_provider",
        "test_a_summary_job",
        "test_the_answer_that_broke_the_page",
        "test_the_real_model_still_answers",
    ]
    live = namespace["test_the_real_model_still_answers"]
    assert [mark.name for mark in live.pytestmark] == ["ai_live"]  # not run: it bills
    for name in tests[:-1]:
        app = namespace["app"].__wrapped__()  # the fixture's function, called as pytest would
        if "ai_fake" in inspect.signature(namespace[name]).parameters:
            with fake_provider(app) as fake:
                namespace[name](app, fake)
                fake.assert_all_used()
        else:
            namespace[name](app)


def test_the_tools_page_examples_run(make_app, fake, capsys):
    """The Tools page as written: its tools, offered by a view and the
    blueprint, their loop read as events, and a history with tool turns."""
    import json

    from flask import g, request
    from test_tool_loop import calls_step

    from fakeprovider import Reply, openai_events

    blocks = code_blocks("tools.rst")
    namespace: dict = {}
    exec(compile(blocks[0], "docs/tools.rst", "exec"), namespace)
    assert namespace["get_weather"].parameters["properties"]["unit"] == {
        "enum": ["celsius", "fahrenheit"],
        "type": "string",
        "description": "The temperature unit.",
        "default": "celsius",
    }
    app = Flask("docs")  # the page's own /chat view: an app without the tests' one
    app.config.update({k: v for k, v in make_app().config.items() if k.startswith("AI_")})
    AIStream(app)
    app.before_request(lambda: setattr(g, "user", "ann"))
    namespace.update(app=app, ai=app.extensions["ai"], request=request)
    exec(compile(blocks[1], "docs/tools.rst", "exec"), namespace)

    fake.replies = [
        calls_step(
            "openai",
            [("c1", "order_status", {"order_id": "A1"}), ("c2", "get_weather", {"city": "Paris"})],
        ),
        Reply(parts=openai_events(["It has ", "shipped."])),
    ]
    with app.test_client().post("/chat", json={"question": "Where is A1?"}) as response:
        body = response.data
    assert b"It has " in body and len(fake.requests) == 2
    results = fake.requests[1].json()["messages"][-2:]
    assert json.loads(results[0]["content"]) == {"order_id": "A1", "status": "shipped"}
    assert json.loads(results[1]["content"]) == {"city": "Paris", "sky": "sunny", "celsius": 21.0}

    fake.replies = [
        calls_step("openai", [("c1", "order_status", {"order_id": "B2"})]),
        Reply(parts=openai_events(["Not found."])),
    ]
    with app.test_request_context("/"):
        g.user = "ann"
        exec(compile(blocks[2], "docs/tools.rst", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "calling order_status" in printed
    assert "result There is no order B2 on your account." in printed
    assert "step ended: tool_calls" in printed and "Not found." in printed

    fake.replies = [Reply(parts=openai_events(["Tomorrow."]))]
    with app.test_request_context("/"):
        exec(compile(blocks[3], "docs/tools.rst", "exec"), namespace)
        response = namespace["ai"].ask_stream("When?", messages=namespace["history"])
        response.get_data()
        response.close()  # as a server does: the answer's reader ends with it
    sent = fake.last.json()["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "order_status"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'}


def test_the_approvals_page_examples_run(make_app):
    """Its tools and blueprint as written; a refund waits, is allowed, runs;
    a small credit runs at once; a tool's data reaches the stream."""
    from flask import request

    from flask_aistream.testing import fake_provider, read_answer, tool_call

    blocks = code_blocks("approvals.rst")
    app = make_app(AI_RATELIMIT=None)
    namespace: dict = {"app": app, "ai": app.extensions["ai"], "request": request}
    exec(compile(blocks[0], "docs/approvals.rst", "exec"), namespace)
    exec(compile(blocks[1], "docs/approvals.rst", "exec"), namespace)
    ask = app.extensions["ai"]

    @app.post("/docs-search")
    def docs_search():
        return ask.ask_stream("Billing?", tools=[namespace["search_docs"]], events=["data"])

    client = app.test_client()
    headers = {"X-User": "ann"}
    with fake_provider(app) as kit:
        kit.reply(
            tool_call("refund", order_id="A1", amount=30),
            tool_call("credit", order_id="A1", amount=5),
        )
        kit.reply("Done.")
        first = read_answer(
            client.post("/api/chat/stream", json={"question": "Refund"}, headers=headers)
        )
        [waiting] = first.approval_requests
        assert waiting.call.name == "refund"
        go_on = client.post(
            f"/api/chat/approvals/{waiting.id}", json={"approved": True}, headers=headers
        )
        answer = read_answer(go_on)
    assert answer.text == "Done."
    tool_turns = [m["content"] for m in kit.requests[1].messages if m["role"] == "tool"]
    assert tool_turns == ["credited", '{"refunded": "A1", "amount": 30}']

    with fake_provider(app) as kit:
        kit.reply(tool_call("search_docs", query="billing")).reply("See Billing.")
        searched = read_answer(app.test_client().post("/docs-search"))
    assert [(d.name, d.value) for d in searched.data] == [
        ("status", "Searching…"),
        ("sources", [{"title": "Billing", "url": "/docs/billing"}]),
    ]
