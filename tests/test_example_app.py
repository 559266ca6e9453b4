"""The example app, tested the way an app built on flask-aistream is: with
the test kit's ``ai_fake`` (the pytest plugin's fixture, on this module's
``app`` fixture) and ``read_answer``."""

import pytest

from example_app import create_app
from flask_aistream.testing import read_answer, tool_call


@pytest.fixture
def app(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return create_app({"AI_OPENAI_API_KEY": "sk-test", "AI_RATELIMIT": None, "AI_MAX_RETRIES": 0})


def ask(app, question):
    return read_answer(app.test_client().post("/api/chat/stream", json={"question": question}))


def test_an_answer_streams_with_how_it_ended(app, ai_fake):
    ai_fake.reply("Paris.", usage=(30, 2))
    answer = ask(app, "Capital of France?")
    assert answer.text == "Paris." and answer.done
    assert answer.finish_reason == "stop" and answer.usage.total_tokens == 32
    [asked] = ai_fake.requests
    assert asked.provider == "openai"
    assert asked.messages[0] == {
        "role": "system",
        "content": "You are a helpful assistant. Answer briefly.",
    }
    assert [tool["name"] for tool in asked.tools] == ["current_time"]


def allowed(app, question, approved=True):
    """Ask, then answer the demo tool's approval request as the page does."""
    client = app.test_client()  # one client: the session cookie says who decides
    first = read_answer(client.post("/api/chat/stream", json={"question": question}))
    [waiting] = first.approval_requests
    assert waiting.call.name == "current_time"
    decision = client.post(f"/api/chat/approvals/{waiting.id}", json={"approved": approved})
    return read_answer(decision)


def test_the_demo_tool_runs_once_allowed_and_its_result_is_shown(app, ai_fake):
    ai_fake.reply(tool_call("current_time", timezone_name="Europe/Paris")).reply("It is noon.")
    answer = allowed(app, "What time is it in Paris?")
    assert answer.text == "It is noon."
    [result] = answer.tool_results
    assert result.name == "current_time" and "(Europe/Paris)" in result.output


def test_a_bad_time_zone_is_the_tools_own_error(app, ai_fake):
    ai_fake.reply(tool_call("current_time", timezone_name="Mars/Olympus")).reply("Sorry.")
    answer = allowed(app, "Time on Mars?")
    assert answer.tool_results[0].error == "There is no time zone called 'Mars/Olympus'."


def test_another_visitor_cannot_allow_it(app, ai_fake):
    ai_fake.reply(tool_call("current_time"))
    first = read_answer(app.test_client().post("/api/chat/stream", json={"question": "Time?"}))
    [waiting] = first.approval_requests
    stranger = app.test_client()  # another session cookie: another visitor
    response = stranger.post(f"/api/chat/approvals/{waiting.id}", json={"approved": True})
    assert response.status_code == 404


def test_a_provider_that_refuses_the_key_is_a_readable_error(app, ai_fake):
    ai_fake.fail(401)
    answer = ask(app, "Hi")
    assert answer.error == "The AI provider refused the server's credentials. (HTTP 401)"
    assert answer.text == "" and answer.done
