"""The public API is typed for the people who call it: an IDE completes the
call options, and mypy catches a misspelt one before it raises at run time."""

import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy comes with the test extra")

APP = """
from flask import Flask
from flask_aistream import AIStream

app = Flask(__name__)
ai = AIStream(app)

@app.get("/ok")
def ok():
    return ai.ask_stream("Why?", temperature=0.2, max_tokens=100, format="vercel")

@app.get("/typo")
def typo():
    return ai.client.ask_stream("Why?", temprature=0.2)

def wrong_kind() -> str:
    return ai.ask("Why?", max_tokens="many")
"""


def test_mypy_catches_a_misspelt_or_mistyped_option(tmp_path):
    source = tmp_path / "chat_app.py"
    source.write_text(textwrap.dedent(APP))
    out, err, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out + err
    assert any('"temprature"' in line and ":14:" in line for line in errors), out
    assert any("max_tokens" in line and ":17:" in line for line in errors), out
    assert not any(":10:" in line for line in errors), out  # the right call passes
