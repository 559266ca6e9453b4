"""Registering the extension, reading its configuration, and the Python API."""

import pytest
from flask import Flask

import flask_aistream
from fakeprovider import Reply, openai_events, transcript
from flask_aistream import AIClient, AIStream, ConfigurationError, ConfigVars
from helpers import SECRET_KEYS, relayed


def test_public_names_are_pinned():
    assert sorted(flask_aistream.__all__) == [
        "AIClient",
        "AIStream",
        "AIStreamError",
        "Answer",
        "ChatInput",
        "ConfigVars",
        "ConfigurationError",
        "ExtensionError",
        "Finish",
        "HTTPProvider",
        "InvalidRequestError",
        "PartStream",
        "Provider",
        "ProviderError",
        "ReasoningDelta",
        "SSEDecoder",
        "ServerSentEvent",
        "Step",
        "StepFinish",
        "StreamFormatError",
        "Task",
        "TextDelta",
        "Tool",
        "ToolCall",
        "ToolError",
        "ToolResult",
        "UnknownOptionError",
        "UnsupportedOptionError",
        "Usage",
        "__version__",
        "answer_finished",
        "send_data",
        "tool",
    ]


def test_init_app_registers_a_client_and_keeps_no_app():
    ai = AIStream()
    app = Flask(__name__)
    ai.init_app(app)
    assert isinstance(app.extensions["ai"], AIClient)
    assert not any(isinstance(value, Flask) for value in vars(ai).values())


def test_one_extension_serves_several_apps(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ai = AIStream()
    first, second = Flask("first"), Flask("second")
    first.config["AI_PROVIDER"] = "offline"
    second.config["AI_PROVIDER"] = "anthropic"
    ai.init_app(first)
    ai.init_app(second)
    with first.app_context():
        assert ai.client.settings.provider == "offline"
        assert ai.ask("ping") == "You asked: ping"
    with second.app_context():
        assert ai.client.settings.provider == "anthropic"


def test_a_second_registration_is_refused():
    app = Flask(__name__)
    AIStream(app)
    with pytest.raises(RuntimeError, match="already registered"):
        AIStream(app)


def test_using_the_extension_without_init_app_says_so():
    ai = AIStream()
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match="init_app"):
        ai.ask("hi")


def test_defaults(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    app = Flask(__name__)
    AIStream(app)
    settings = app.extensions["ai"].settings
    assert settings.provider == "openai"
    assert (settings.http_timeout, settings.connect_timeout) == (30.0, 10.0)
    assert settings.temperature is None and settings.max_tokens is None
    assert settings.providers["openai"].base_url == "https://api.openai.com/v1"
    assert settings.providers["anthropic"].base_url == "https://api.anthropic.com"
    assert settings.providers["groq"].base_url == "https://api.groq.com/openai/v1"
    assert settings.providers["mistral"].base_url == "https://api.mistral.ai/v1"


def test_api_keys_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "env-openai")
    app = Flask(__name__)
    app.config[ConfigVars.api_key("openai")] = "from-config"
    AIStream(app)
    providers = app.extensions["ai"].settings.providers
    assert providers["openai"].api_key == "from-config"  # config wins
    assert providers["anthropic"].api_key == "from-env"


@pytest.mark.parametrize(
    "provider, key, env",
    [
        ("openai", "AI_OPENAI_API_KEY", "OPENAI_API_KEY"),
        ("anthropic", "AI_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        ("groq", "AI_GROQ_API_KEY", "GROQ_API_KEY"),
        ("mistral", "AI_MISTRAL_API_KEY", "MISTRAL_API_KEY"),
        ("gemini", "AI_GEMINI_API_KEY", "GEMINI_API_KEY or GOOGLE_API_KEY"),
        ("azure", "AI_AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
    ],
)
def test_a_missing_key_raises_when_a_call_needs_it(monkeypatch, provider, key, env):
    for var in env.split(" or "):
        monkeypatch.delenv(var, raising=False)
    app = Flask(__name__)
    AIStream(app)  # no error yet: the app may never use this provider
    with pytest.raises(ConfigurationError) as info:
        app.extensions["ai"].ask_stream("hi", provider=provider)
    assert key in str(info.value) and env in str(info.value)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"AI_PROVIDER": "palm"}, "Unknown AI provider 'palm'"),
        ({"AI_HTTP_TIMEOUT": "soon"}, "AI_HTTP_TIMEOUT must be a number"),
        ({"AI_HTTP_TIMEOUT": 0}, "AI_HTTP_TIMEOUT must be a number"),
        ({"AI_MAX_TOKENS": -1}, "AI_MAX_TOKENS must be a number"),
        ({"AI_TEMPERATURE": "hot"}, "AI_TEMPERATURE must be a number"),
    ],
)
def test_bad_config_fails_at_init_app(config, message):
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=message):
        AIStream(app)


def test_model_precedence(make_app, fake):
    app = make_app(AI_PROVIDER="openai", AI_MODEL="gpt-default", AI_GROQ_MODEL="llama-x")
    ai = app.extensions["ai"]
    fake.reply = Reply(parts=openai_events(["ok"]))

    def model_sent(**options):
        ai.ask("hi", **options)
        return fake.last.json()["model"]

    assert model_sent() == "gpt-default"  # AI_MODEL, for the default provider
    assert model_sent(model="gpt-call") == "gpt-call"  # a call's model wins
    assert model_sent(provider="groq") == "llama-x"  # AI_GROQ_MODEL
    assert model_sent(provider="mistral") == "mistral-small-latest"  # not AI_MODEL
    assert ai.task().provider("groq").model("llama-y").prompt("hi").ask() == "ok"
    assert fake.last.json()["model"] == "llama-y"


def test_config_defaults_for_temperature_and_max_tokens(make_app, fake):
    ai = make_app(AI_TEMPERATURE=0, AI_MAX_TOKENS=77).extensions["ai"]
    fake.reply = Reply(parts=openai_events(["ok"]))
    ai.ask("hi")
    body = fake.last.json()
    assert (body["temperature"], body["max_completion_tokens"]) == (0, 77)
    ai.ask("hi", temperature=0.5, max_tokens=5)
    body = fake.last.json()
    assert (body["temperature"], body["max_completion_tokens"]) == (0.5, 5)


def test_ask_and_iter_text(app, fake):
    ai = app.extensions["ai"]
    fake.reply = Reply.sse(transcript("groq_basic.sse"))
    assert ai.ask("hi", provider="groq") == "Hello from Groq!"
    assert list(ai.iter_text("hi", provider="groq")) == ["Hello", " from Groq!"]


def test_provider_binds_the_same_interface(app, fake):
    anthropic = app.extensions["ai"].provider("anthropic")
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    assert anthropic.ask("hi").startswith("Hello! Rayleigh")
    assert fake.last.path == "/v1/messages"
    response = anthropic.task().prompt("hi").stream()
    assert relayed(response.get_data())[0].startswith("Hello! Rayleigh")
    with pytest.raises(ConfigurationError, match="Unknown AI provider"):
        app.extensions["ai"].provider("nope")


def test_task_builder_sends_everything(app, fake):
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    response = (
        app.extensions["ai"]
        .task()
        .system("You are a helpful coding assistant")
        .message("user", "What is recursion?")
        .message("assistant", "Recursion is when a function calls itself.")
        .prompt("Can you give me an example?")
        .model("claude-test")
        .temperature(0)
        .max_tokens(300)
        .provider("anthropic")
        .stream()
    )
    assert response.mimetype == "text/event-stream"
    assert relayed(response.get_data())[2]
    body = fake.last.json()
    assert body["system"] == "You are a helpful coding assistant"
    assert body["messages"][-1] == {"role": "user", "content": "Can you give me an example?"}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("claude-test", 0, 300)


def test_task_messages_list(app, fake):
    fake.reply = Reply(parts=openai_events(["ok"]))
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert app.extensions["ai"].task().messages(history).prompt("c").iter_text().__next__() == "ok"
    assert [m["content"] for m in fake.last.json()["messages"]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda ai: ai.ask_stream("hi", tempreature=1), TypeError, "unknown option"),
        (lambda ai: ai.ask_stream(None), ValueError, "nothing to ask"),
        (
            lambda ai: ai.ask_stream("hi", messages=[{"role": "robot", "content": "x"}]),
            ValueError,
            "role",
        ),
        (
            lambda ai: ai.ask_stream("hi", messages=[{"role": "user", "content": 3}]),
            ValueError,
            "string",
        ),
        (
            lambda ai: ai.task().message("user", "x").provider("nope").stream(),
            ConfigurationError,
            "nope",
        ),
    ],
)
def test_mistakes_raise_in_the_view_not_in_the_stream(app, fake, call, error, message):
    with pytest.raises(error, match=message):
        call(app.extensions["ai"])
    assert fake.requests == []


def test_offline_provider_needs_no_network_and_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    app = Flask(__name__)
    app.config.update(AI_PROVIDER="offline", AI_OFFLINE_DELAY=0)
    AIStream(app)
    ai = app.extensions["ai"]
    assert ai.ask("What is AI?") == "You asked: What is AI?"
    assert list(ai.iter_text("a b")) == ["You ", "asked: ", "a ", "b"]
    text, error, done = relayed(ai.ask_stream("Hi there").get_data())
    assert (text, error, done) == ("You asked: Hi there", None, True)


def test_offline_provider_configured_text_and_delay():
    app = Flask(__name__)
    app.config.update(
        AI_PROVIDER="offline", AI_OFFLINE_TEXT="Fixed answer here.", AI_OFFLINE_DELAY=0.05
    )
    AIStream(app)
    import time

    started = time.monotonic()
    assert list(app.extensions["ai"].iter_text("ignored")) == ["Fixed ", "answer ", "here."]
    assert time.monotonic() - started >= 0.15


def test_a_key_read_from_a_secrets_file_is_stripped(make_app, fake):
    """A trailing newline was sent (and failed as 'could not connect', retried)."""
    fake.reply = Reply.sse(transcript("mistral_basic.sse"))
    client = make_app(AI_MISTRAL_API_KEY=SECRET_KEYS["mistral"] + "\n").test_client()
    text, error, _ = relayed(
        client.post("/chat", json={"question": "q", "provider": "mistral"}).data
    )
    assert error is None and len(fake.requests) == 1
    assert fake.last.headers["authorization"] == f"Bearer {SECRET_KEYS['mistral']}"


@pytest.mark.parametrize("bad", ["key\nwith-newline-inside", "key\x00nul", "key\twith-tab"])
def test_a_key_with_control_characters_is_refused_at_start_up(make_app, bad):
    from flask_aistream import ConfigurationError

    with pytest.raises(ConfigurationError, match="AI_MISTRAL_API_KEY") as failure:
        make_app(AI_MISTRAL_API_KEY=bad)
    assert bad not in str(failure.value)  # the error names the key, never shows it


@pytest.mark.parametrize(
    "config, message",
    [
        ({"AI_RATELIMIT": "ten a minute"}, "AI_RATELIMIT"),
        ({"AI_OPENAI_BASE_URL": "api.openai.com/v1"}, "AI_OPENAI_BASE_URL"),
        ({"AI_ANTHROPIC_BASE_URL": "ftp://x"}, "AI_ANTHROPIC_BASE_URL"),
        ({"AI_MAX_TOKENS": -5}, "AI_MAX_TOKENS"),
        ({"AI_TEMPERATURE": 3}, "AI_TEMPERATURE"),
    ],
)
def test_bad_settings_fail_at_start_up(make_app, config, message):
    from flask_aistream import AIStreamError, ConfigurationError

    with pytest.raises(ConfigurationError, match=message) as failure:
        make_app(**config)
    assert isinstance(failure.value, AIStreamError)


def test_an_unknown_ai_key_is_named_with_the_closest_known_one(make_app, log_records):
    make_app(AI_RATE_LIMIT="5 per minute", AI_OPENAI_MODLE="gpt-4o")
    warnings = [r.getMessage() for r in log_records.records if r.levelname == "WARNING"]
    assert any("AI_RATE_LIMIT" in w and "AI_RATELIMIT" in w for w in warnings), warnings
    assert any("AI_OPENAI_MODLE" in w and "AI_OPENAI_MODEL" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "call, kind, words",
    [
        (lambda ai: ai.ask_stream(""), ValueError, "prompt"),
        (lambda ai: ai.ask_stream("   \n"), ValueError, "prompt"),
        (lambda ai: ai.ask("hi", temperature="hot"), ValueError, "temperature"),
        (lambda ai: ai.ask("hi", temperature=2.5), ValueError, "temperature"),
        (lambda ai: ai.ask("hi", temperature=True), ValueError, "temperature"),
        (lambda ai: ai.ask("hi", max_tokens=0), ValueError, "max_tokens"),
        (lambda ai: ai.ask("hi", max_tokens=1.5), ValueError, "max_tokens"),
        (lambda ai: ai.ask("hi", tempreature=1), TypeError, "tempreature"),
        (lambda ai: ai.ask("hi", messages=[{"role": "robot", "content": "x"}]), ValueError, "role"),
        (lambda ai: ai.ask(None), ValueError, "nothing to ask"),
    ],
)
def test_every_mistake_in_a_call_is_an_aistream_error(app, fake, call, kind, words):
    from flask_aistream import AIStreamError

    with app.test_request_context(), pytest.raises(AIStreamError, match=words) as failure:
        call(app.extensions["ai"])
    assert isinstance(failure.value, kind)
    assert fake.requests == []


def test_extension_mistakes_are_aistream_errors():
    from flask import Flask

    from flask_aistream import AIStream, AIStreamError

    app = Flask("x")
    with app.app_context(), pytest.raises(AIStreamError, match="init_app"):
        AIStream().ask("hi")
    AIStream(app)
    with pytest.raises(AIStreamError, match="already registered") as failure:
        AIStream(app)
    assert isinstance(failure.value, RuntimeError)


def test_the_blueprint_works_in_an_app_factory(fake, monkeypatch):
    """``ai.blueprint()`` outside any app context raised "Working outside of
    application context"; the app's limit and CORS must still apply."""
    from flask import Flask

    from flask_aistream import AIStream

    ai = AIStream()  # module level, as in an app factory

    def create_app(**config):
        app = Flask("factory")
        app.config.update(
            AI_OPENAI_API_KEY=SECRET_KEYS["openai"],
            AI_OPENAI_BASE_URL=f"{fake.url}/v1",
            AI_RATELIMIT="2 per minute",
            AI_CORS_ORIGINS=["https://app.example"],
            AI_SYSTEM_PROMPT="Factory prompt.",
        )
        app.config.update(config)
        ai.init_app(app)
        app.register_blueprint(ai.blueprint(events=["finish"]), url_prefix="/api/chat")
        return app

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    first, second = create_app(), create_app(AI_SYSTEM_PROMPT="Second prompt.")
    for app, prompt in ((first, "Factory prompt."), (second, "Second prompt.")):
        client = app.test_client()
        ok = client.post(
            "/api/chat/stream", json={"question": "q"}, headers={"Origin": "https://app.example"}
        )
        assert ok.status_code == 200 and b'"finish"' in ok.data
        assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert fake.last.json()["messages"][0] == {"role": "system", "content": prompt}
        preflight = client.options(
            "/api/chat/stream",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Content-Type",
            },
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        client.post("/api/chat/stream", json={"question": "q"})
        limited = client.post("/api/chat/stream", json={"question": "q"})
        assert limited.status_code == 429  # each app's own limit, 2 per minute


def test_an_unknown_blueprint_option_is_named_with_the_valid_ones(app):
    """It was a TypeError naming make_blueprint(), an internal function."""
    from flask_aistream import AIStream, UnknownOptionError

    ai = app.extensions["ai"]
    for make in (ai.blueprint, AIStream().blueprint):
        with pytest.raises(UnknownOptionError, match="ratelimt.*expected some of .*ratelimit"):
            make(ratelimt="5 per minute")
    with pytest.raises(UnknownOptionError, match="modles.*expected some of .*models"):
        ai.openai_blueprint(authorize=lambda request: True, modles={})
