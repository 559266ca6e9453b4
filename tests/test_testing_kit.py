"""The test kit: fake_provider in process and on the wire, for each provider
API; its failures reading exactly as the real ones; the readers against every
format; record and replay; the pytest plugin, in a pytester run."""

import json
import threading

import pytest
from flask import Flask

from fakeprovider import Reply, transcript
from flask_aistream import AIStream, ProviderError
from flask_aistream.testing import (
    fake_provider,
    read_answer,
    read_events,
    tool_call,
)

APIS = ["openai", "anthropic", "gemini", "ollama"]
MODES = [None, "wire"]


def kit_app(provider="openai", **config):
    app = Flask("kitapp")
    app.config.update(
        AI_PROVIDER=provider,
        AI_OPENAI_API_KEY="sk-kit-openai-0000000000",
        AI_ANTHROPIC_API_KEY="sk-ant-kit-00000000000",
        AI_GEMINI_API_KEY="AIzaKit000000000000000000000000000000",
        AI_MAX_RETRIES=0,
        AI_RATELIMIT=None,
    )
    app.config.update(config)
    AIStream(app)

    @app.post("/chat")
    def chat():
        from flask import request

        body = request.get_json()
        return app.extensions["ai"].ask_stream(body.pop("question"), **body)

    return app


def fake_for(app, mode, api):
    return fake_provider(app, wire=api if mode == "wire" else None)


def outcome(app, **options):
    """What an app's client sees of one answer: its events' kinds and the answer, or the error."""
    with app.app_context():
        try:
            events = list(app.extensions["ai"].iter_events("Hi", **options))
        except ProviderError as exc:
            return ("error", exc.kind, exc.message, exc.retry_after)
    answer = events[-1].answer
    usage = answer.usage and (answer.usage.input_tokens, answer.usage.output_tokens)
    calls = [(c.name, json.loads(c.arguments)) for c in answer.tool_calls]
    return (
        [e.type for e in events],
        answer.text,
        answer.reasoning,
        answer.finish_reason,
        usage,
        calls,
    )


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", MODES)
def test_a_scripted_answer_in_each_api_and_mode(api, mode):
    app = kit_app(api)
    with fake_for(app, mode, api) as fake:
        fake.reply("Hello there, world!", reasoning="Thinking.", usage=(7, 3))
        fake.reply("Let me look.", tool_call("get_weather", city="Paris"))
        first, second = outcome(app), outcome(app)
        fake.assert_all_used()
    assert first == (
        ["reasoning", "text", "text", "text", "step_finish", "finish"],
        "Hello there, world!",
        "Thinking.",
        "stop",
        (7, 3),
        [],
    )
    assert second[1] == "Let me look." and second[3] == "tool_calls"
    assert second[4] == (10, 4)  # the stated default: 10 in, one out per token and call
    assert second[5] == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("api", APIS)
def test_every_failure_reads_the_same_in_process_and_on_the_wire(api):
    """And as the same failure of a real provider of that API would: the
    app's own reader and error mapping read the API's own bytes."""
    seen = {}
    for mode in MODES:
        app = kit_app(api, AI_HTTP_TIMEOUT=0.3)
        with fake_for(app, mode, api) as fake:
            fake.fail(401).fail(429, retry_after=2).fail(500).fail("mid", after="Hel")
            fake.cut(after="Hello there").hang()
            seen[mode] = [outcome(app) for _ in range(7)]
    assert seen[None] == seen["wire"]
    auth, limited, server, mid, cut, hang, exhausted = seen[None]
    assert auth[:2] == ("error", "auth") and "(HTTP 401)" in auth[2]
    assert limited[1] == "rate_limit" and limited[3] == 2.0
    assert server[1] == "unavailable"
    assert mid[:2] == ("error", "unavailable")
    assert cut[:3] == (
        "error",
        "connection",
        "The connection to the AI provider was lost mid-answer.",
    )
    assert hang[:3] == (
        "error",
        "timeout",
        "The AI provider stopped responding (no data for 0.3 s).",
    )
    assert exhausted[2] == "fake provider script exhausted after 6 replies"


def test_the_real_providers_own_text_is_what_the_real_one_gives(make_app, fake):
    """The kit's 401 reads as our loopback fake's recorded OpenAI 401 does."""
    fake.reply = Reply.json(
        401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}
    )
    real = outcome(make_app(AI_MAX_RETRIES=0))
    app = kit_app()
    with fake_provider(app) as scripted:
        scripted.fail(401)
        assert outcome(app)[:3] == real[:3]


def test_requests_are_recorded_the_same_in_every_mode():
    seen = []
    for mode in MODES:
        app = kit_app("anthropic", AI_MODELS={"fast": "anthropic:claude-fast"})
        with fake_for(app, mode, "anthropic") as fake:
            fake.replies("One.", "Two.")
            outcome(
                app,
                system="Be brief.",
                messages=[
                    {"role": "user", "content": "Before"},
                    {"role": "assistant", "content": "Ok"},
                ],
                temperature=0.2,
                top_p=0.5,
                stop=["END"],
                tools=[{"name": "f", "parameters": {"type": "object"}}],
            )
            outcome(app, model="claude-x", max_tokens=5)
            seen.append(fake.requests)
    assert seen[0] == seen[1]
    first, second = seen[0]
    assert first.provider == "anthropic"
    assert first.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Before"},
        {"role": "assistant", "content": "Ok"},
        {"role": "user", "content": "Hi"},
    ]
    assert first.options == {"temperature": 0.2, "top_p": 0.5, "stop": ("END",)}
    assert first.tools == [{"name": "f", "parameters": {"type": "object"}}]
    assert second.model == "claude-x" and second.options == {"max_tokens": 5}


def test_named_providers_and_fallbacks_are_answered_too():
    app = kit_app(
        AI_PROVIDERS={"local": {"api": "openai", "base_url": "http://10.0.0.9/v1", "model": "q"}},
        AI_FALLBACKS=["local"],
    )
    with fake_provider(app) as fake:
        fake.fail(503).reply("From the fallback.")
        assert outcome(app)[1] == "From the fallback."
    assert [r.provider for r in fake.requests] == ["openai", "local"]


def test_an_exhausted_script_is_the_answers_error_and_the_streams():
    app = kit_app()
    with fake_provider(app) as fake:
        fake.reply("Only one.")
        assert (
            read_answer(app.test_client().post("/chat", json={"question": "a"})).text == "Only one."
        )
        answer = read_answer(app.test_client().post("/chat", json={"question": "b"}))
        with pytest.raises(AssertionError):
            fake.replies("unused").assert_all_used()
    assert answer.error == "fake provider script exhausted after 1 replies"
    assert answer.done and answer.finish_reason == "error"


@pytest.mark.system
@pytest.mark.parametrize("mode", MODES)
def test_a_client_that_leaves_a_hanging_answer_ends_it_cancelled(mode, live):
    from helpers import address_of, raw_request

    app = kit_app(AI_HTTP_TIMEOUT=30)
    ended = threading.Event()
    answers = []

    @app.post("/hooked")
    def hooked():
        return app.extensions["ai"].ask_stream(
            "Hi", on_finish=lambda a: (answers.append(a), ended.set())
        )

    url = live(app)
    with fake_for(app, mode, "openai") as fake:
        fake.hang()
        sock = raw_request(address_of(url), "/hooked")
        deadline = __import__("time").monotonic() + 10
        while not fake.requests:  # the provider was asked, and answers nothing
            assert __import__("time").monotonic() < deadline
            __import__("time").sleep(0.01)
        sock.close()
        assert ended.wait(10)
    assert answers[0].finish_reason == "cancelled" and answers[0].error is None


def test_delay_is_per_token_and_streams_each():
    app = kit_app()
    with fake_provider(app) as fake:
        fake.reply("a b c", delay=0.01)
        response = app.test_client().post("/chat", json={"question": "q"}, buffered=False)
        chunks = list(response.response)
        response.close()
    assert sum(b'"content"' in chunk for chunk in chunks) == 3  # three writes, not one


def test_a_provider_that_is_not_http_plays_the_script_as_parts():
    app = kit_app("offline")
    with fake_provider(app, wire="openai") as fake:
        fake.reply("Scripted.", tool_call("t", x=1)).fail(429, retry_after=1)
        assert outcome(app)[1:4] == ("Scripted.", "", "tool_calls")
        assert outcome(app)[:2] == ("error", "rate_limit")


# --- the readers -------------------------------------------------------------------------


def ask_in_every_format(app, **options):
    client = app.test_client()
    return {
        fmt: read_answer(client.post("/chat", json={"question": "q", "format": fmt, **options}))
        for fmt in ("aistream", "vercel", "openai")
    }


def test_the_readers_read_every_format_alike():
    app = kit_app()
    with fake_provider(app) as fake:
        for _ in range(3):
            fake.reply(
                "It is ",
                "sunny.",
                tool_call("get_weather", city="Oslo"),
                reasoning="Hm.",
                usage=(5, 4),
            )
        answers = ask_in_every_format(
            app, events=["reasoning", "tool_calls", "finish"], include_usage=True
        )
    for fmt, answer in answers.items():
        assert answer.text == "It is sunny.", fmt
        assert answer.done and answer.error is None
        assert [(c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
            ("get_weather", {"city": "Oslo"})
        ], fmt
        assert answer.finish_reason == "tool_calls", fmt
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (5, 4), fmt
    assert answers["aistream"].reasoning == answers["vercel"].reasoning == "Hm."


def test_the_readers_read_errors_and_a_stream_without_its_end():
    app = kit_app()
    with fake_provider(app) as fake:
        for _ in range(3):
            fake.fail("mid", after="Partial")
        answers = ask_in_every_format(app)
    for fmt, answer in answers.items():
        assert answer.text == "Partial", fmt
        assert answer.error.startswith("The AI provider reported an error"), fmt
        assert answer.finish_reason == "error" and answer.done, fmt
    body = b'data: {"content": "Cut"}\n\n'
    cut = read_answer(body)
    assert (cut.text, cut.done, cut.finish_reason) == ("Cut", False, "cancelled")


def test_read_events_gives_the_typed_events_steps_and_results():
    from flask import request

    from flask_aistream import tool

    @tool
    def get_weather(city: str) -> str:
        """Weather."""
        return "sunny"

    app = kit_app()

    @app.post("/tools")
    def tools():
        return app.extensions["ai"].ask_stream("q", tools=[get_weather], **request.get_json())

    with fake_provider(app) as fake:
        for _ in range(2):
            fake.reply(tool_call("get_weather", city="Oslo")).reply("Sunny.")
        client = app.test_client()
        ours = read_events(
            client.post("/tools", json={"events": ["tool_calls", "tool_results", "steps"]})
        )
        vercel = read_events(client.post("/tools", json={"format": "vercel"}))
    for events in (ours, vercel):
        kinds = [e.type for e in events]
        assert kinds == ["tool_call", "tool_result", "step_finish", "text", "step_finish", "finish"]
        assert events[1].output == "sunny" and events[1].name == "get_weather"
        assert events[-1].answer.tool_results[0].output == "sunny"
        assert events[2].step.tool_calls[0].name == "get_weather"
    assert fake.requests[1].messages[-1]["content"] == "sunny"  # the tool's result went back


def test_readers_take_requests_and_raw_bytes(live):
    import requests

    app = kit_app()
    url = live(app)
    with fake_provider(app) as fake:
        fake.replies("Over requests.", "As bytes.")
        answer = read_answer(
            requests.post(f"{url}/chat", json={"question": "q"}, stream=True, timeout=10)
        )
        raw = requests.post(f"{url}/chat", json={"question": "q"}, timeout=10).content
    assert answer.text == "Over requests." and answer.done
    assert read_answer(raw).text == "As bytes."


@pytest.mark.parametrize(
    "name",
    [
        "openai_basic.sse",
        "anthropic_thinking_tools.sse",
        "gemini_thinking_tools.sse",
        "ollama_basic.ndjson",
        "openai_midstream_error.sse",
    ],
)
def test_readers_on_recorded_real_streams_match_iter_events(tmp_path, name):
    """A real provider's recorded stream, replayed through the app: what the
    readers read from each format is what iter_events gave."""
    api = name.split("_")[0]
    urls = {
        "openai": "https://api.openai.com/v1/chat/completions",
        "anthropic": "https://api.anthropic.com/v1/messages",
        "gemini": "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "ollama": "http://localhost:11434/api/chat",
    }
    body = transcript(name).decode("utf-8")
    cassette = {
        "request": {"method": "POST", "url": urls[api], "headers": {}, "body": {}},
        "response": {
            "status": 200,
            "headers": {},
            "pieces": [{"at": 0, "text": body}],
            "cut": False,
        },
    }
    path = tmp_path / "real.json"
    path.write_text(json.dumps(cassette))
    app = kit_app()
    with fake_provider(app) as fake:
        for _ in range(4):
            fake.replay(path, pace=False)
        with app.app_context():
            try:
                events = list(app.extensions["ai"].iter_events("q"))
                expected, error = events[-1].answer, None
            except ProviderError as exc:
                expected, error = None, exc.message
        answers = ask_in_every_format(app, events=["reasoning", "tool_calls", "finish"])
    for fmt, answer in answers.items():
        if error is not None:
            assert answer.error == error, fmt
            continue
        assert answer.text == expected.text, fmt
        assert [c.name for c in answer.tool_calls] == [c.name for c in expected.tool_calls], fmt
        assert answer.finish_reason == expected.finish_reason, fmt


# --- record and replay -------------------------------------------------------------------


def test_record_then_replay_gives_the_same_events(make_app, fake, tmp_path):
    fake.reply = Reply.sse(transcript("anthropic_thinking_tools.sse"))
    record = tmp_path / "cassettes"
    app = make_app(AI_RECORD_DIR=str(record))
    with app.app_context():
        live_events = list(app.extensions["ai"].iter_events("Weather?", provider="anthropic"))
    (path,) = record.iterdir()
    cassette = json.loads(path.read_text())
    assert cassette["request"]["url"].endswith("/v1/messages")
    assert cassette["request"]["body"]["messages"][-1]["content"] == "Weather?"
    assert cassette["response"]["status"] == 200 and len(cassette["response"]["pieces"]) >= 1

    replay_app = kit_app()
    with fake_provider(replay_app) as scripted:
        scripted.replay(path).replay(path, pace=False)
        with replay_app.app_context():
            paced = list(replay_app.extensions["ai"].iter_events("anything"))
            at_once = list(replay_app.extensions["ai"].iter_events("anything"))

    def strip(events):
        return [(e.type, getattr(e, "text", None) or getattr(e, "name", None)) for e in events[:-1]]

    assert strip(paced) == strip(at_once) == strip(live_events)
    assert paced[-1].answer.text == live_events[-1].answer.text


def test_a_recorded_cut_replays_as_a_cut_and_an_error_as_its_error(make_app, fake, tmp_path):
    from fakeprovider import openai_events

    record = tmp_path / "c"
    app = make_app(AI_RECORD_DIR=str(record), AI_MAX_RETRIES=0)
    fake.reply = Reply(parts=openai_events(["Hel", "lo"], finish=False), reset=True)
    with app.app_context():
        with pytest.raises(ProviderError) as live_cut:
            list(app.extensions["ai"].iter_events("q"))
    fake.reply = Reply(
        parts=[b'{"error": {"message": "Slow down", "type": "requests"}}'],
        status=429,
        headers={"Content-Type": "application/json", "Retry-After": "7"},
        framing="length",
    )
    with app.app_context():
        with pytest.raises(ProviderError) as live_429:
            list(app.extensions["ai"].iter_events("q"))
    cut_path, error_path = sorted(record.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert json.loads(cut_path.read_text())["response"]["cut"] is True
    replay_app = kit_app()
    with fake_provider(replay_app) as scripted:
        scripted.replay(cut_path, pace=False).replay(error_path)
        replayed = [outcome(replay_app), outcome(replay_app)]
    assert replayed[0][1:3] == (live_cut.value.kind, live_cut.value.message)
    assert replayed[1][1:4] == (live_429.value.kind, live_429.value.message, 7.0)


def test_cassettes_hold_no_key_in_any_form(fake, tmp_path, monkeypatch):
    from helpers import PROVIDER_ENV

    for var in PROVIDER_ENV:
        monkeypatch.delenv(var, raising=False)
    record = tmp_path / "c"
    keys = {
        "AI_OPENAI_API_KEY": "sk-proj-SECRETopenai1234567890",
        "AI_ANTHROPIC_API_KEY": "sk-ant-SECRETanthropic123456",
        "AI_GEMINI_API_KEY": "AIzaSECRETgemini12345678901234567890",
        "AI_AZURE_API_KEY": "azureSECRETkey0123456789",
    }
    app = Flask("rec")
    app.config.update(
        keys,
        AI_RECORD_DIR=str(record),
        AI_MAX_RETRIES=0,
        AI_OPENAI_BASE_URL=fake.url + "/v1",
        AI_ANTHROPIC_BASE_URL=fake.url,
        AI_GEMINI_BASE_URL=fake.url,
        AI_AZURE_BASE_URL=fake.url + "/openai/v1",
        AI_AZURE_MODEL="dep",
        AI_PROVIDERS={
            "keyed": {
                "api": "openai",
                "base_url": fake.url + "/v1?key=AIzaURLsecret000000000000000",
                "model": "m",
            }
        },
    )
    AIStream(app)
    fake.reply = Reply.json(400, {"error": {"message": "bad key sk-proj-SECRETopenai1234567890"}})
    with app.app_context():
        for provider in ("openai", "anthropic", "gemini", "azure", "keyed"):
            with pytest.raises(ProviderError):
                list(app.extensions["ai"].iter_events("q", provider=provider))
    texts = [path.read_text() for path in record.iterdir()]
    assert len(texts) == 5
    for text in texts:
        assert "SECRET" not in text and "URLsecret" not in text
        assert "[redacted]" in text
    headers = [json.loads(t)["request"]["headers"] for t in texts]
    names = {name.lower() for h in headers for name, value in h.items() if value == "[redacted]"}
    assert {"authorization", "x-api-key", "x-goog-api-key", "api-key"} <= names


# --- the pytest plugin -------------------------------------------------------------------

PLUGIN_TESTS = """
import pytest
from flask import Flask
from flask_aistream import AIStream, ProviderError

@pytest.fixture
def app():
    app = Flask("t")
    app.config.update(AI_OPENAI_API_KEY="sk-test", AI_MAX_RETRIES=0,
                      AI_OPENAI_BASE_URL="http://provider.invalid/v1", AI_CONNECT_TIMEOUT=0.5)
    AIStream(app)
    return app

def ask(app):
    with app.app_context():
        return app.extensions["ai"].ask("Hi")

def test_fixture(app, ai_fake):
    ai_fake.reply("Scripted.")
    assert ask(app) == "Scripted."
    assert ai_fake.requests[0].messages[-1] == {"role": "user", "content": "Hi"}

def test_refused(app):
    with pytest.raises(ProviderError) as info:
        ask(app)
    assert "ai_live" in info.value.message and "provider.invalid" in info.value.message

@pytest.mark.ai_live
def test_allowed(app):
    with pytest.raises(ProviderError) as info:
        ask(app)
    assert "ai_live" not in info.value.message  # it went on to the network, and DNS said no
"""


@pytest.mark.system
def test_the_plugin_gives_the_fixture_and_guards_real_providers(pytester):
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


@pytest.mark.system
@pytest.mark.parametrize("opt_out", [["-p", "no:flask_aistream"], ["-o", "ai_live=true"]])
def test_a_suite_opts_out_of_the_guard(pytester, opt_out):
    pytester.makepyfile(
        """
from flask import Flask
from flask_aistream import AIStream, ProviderError

def test_goes_to_the_network():
    app = Flask("t")
    app.config.update(AI_OPENAI_API_KEY="sk-test", AI_MAX_RETRIES=0,
                      AI_OPENAI_BASE_URL="http://provider.invalid/v1")
    AIStream(app)
    with app.app_context():
        try:
            app.extensions["ai"].ask("Hi")
        except ProviderError as exc:
            assert "ai_live" not in exc.message
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *opt_out)
    result.assert_outcomes(passed=1)
