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
    ai = AIStream()

    def create_app(config):  # what the page's ``myapp`` stands for: an app factory
        app = Flask("myapp")
        app.config.update(config)
        ai.init_app(app)
        app.register_blueprint(ai.blueprint(), url_prefix="/api/chat")
        return app

    monkeypatch.setitem(sys.modules, "myapp", types.SimpleNamespace(create_app=create_app))
    namespace: dict = {}
    for block in code_blocks("testing.rst"):
        exec(compile(block, "docs/testing.rst", "exec"), namespace)
    app = namespace["app"].__wrapped__()  # the fixture's function, called as pytest would
    tests = [name for name in namespace if name.startswith("test_")]
    assert tests == ["test_chat_streams_the_answer", "test_the_answer_is_metered"]
    for name in tests:
        namespace[name](app)
