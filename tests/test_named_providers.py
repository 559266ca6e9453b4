"""Providers by name: presets, ``AI_PROVIDERS`` entries, Azure, registered
classes (by call and by entry point), and fallbacks."""

import logging
import sys
import textwrap

import pytest
from flask import Flask

from fakeprovider import Reply, transcript
from flask_aistream import (
    AIStream,
    ConfigurationError,
    PartStream,
    Provider,
    ProviderError,
)
from flask_aistream.parts import Stop
from helpers import relayed

OPENAI_TEXT = "The sky is blue — café 🌍, 日本語, небо 🙂.\nLine two."


def openai_reply():
    return Reply.sse(transcript("openai_basic.sse"))


def ask(app, *args, **options):
    with app.app_context():
        return list(app.extensions["ai"].iter_events(*args, **options))[-1].answer


PRESETS = {
    "openrouter": ("https://openrouter.ai/api/v1", "openai/gpt-4o-mini", "OPENROUTER_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "deepseek-chat", "DEEPSEEK_API_KEY"),
    "xai": ("https://api.x.ai/v1", "grok-3-mini", "XAI_API_KEY"),
    "together": (
        "https://api.together.xyz/v1",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "TOGETHER_API_KEY",
    ),
    "fireworks": (
        "https://api.fireworks.ai/inference/v1",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
        "FIREWORKS_API_KEY",
    ),
}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_need_only_a_key(fake, monkeypatch, name):
    base_url, model, env = PRESETS[name]
    monkeypatch.setenv(env, f"{name}-key-from-env")
    app = Flask(__name__)
    AIStream(app)
    conf = app.extensions["ai"].settings.providers[name]
    assert (conf.base_url, conf.default_model, conf.api_key) == (
        base_url,
        model,
        f"{name}-key-from-env",
    )
    app.config[f"AI_{name.upper()}_BASE_URL"] = f"{fake.url}/v1"
    app.extensions.clear()
    AIStream(app)
    fake.reply = openai_reply()
    assert ask(app, "Why?", provider=name).text == OPENAI_TEXT
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.headers["authorization"] == f"Bearer {name}-key-from-env"
    assert fake.last.json()["model"] == model


@pytest.mark.parametrize(
    "name, base_url",
    [
        ("vllm", "http://localhost:8000/v1"),
        ("llamacpp", "http://localhost:8080/v1"),
        ("lmstudio", "http://localhost:1234/v1"),
    ],
)
def test_local_presets_need_no_key_but_a_model(fake, monkeypatch, name, base_url):
    app = Flask(__name__)
    AIStream(app)
    assert app.extensions["ai"].settings.providers[name].base_url == base_url
    app = Flask(__name__)
    app.config[f"AI_{name.upper()}_BASE_URL"] = f"{fake.url}/v1"
    AIStream(app)
    with app.app_context(), pytest.raises(ConfigurationError, match=f"AI_{name.upper()}_MODEL"):
        app.extensions["ai"].ask("Why?", provider=name)
    fake.reply = openai_reply()
    assert ask(app, "Why?", provider=name, model="served-model").text == OPENAI_TEXT
    assert "authorization" not in fake.last.headers
    assert fake.last.json()["model"] == "served-model"


def test_entries_beside_openai_each_reach_their_own_server(make_app, fake, monkeypatch):
    monkeypatch.setenv("MY_GATEWAY_KEY", "gw-key-123")
    app = make_app(
        AI_PROVIDERS={
            "local": {
                "api": "openai",
                "base_url": f"{fake.url}/local/v1",
                "model": "qwen2.5",
                "headers": {"X-Team": "blue"},
            },
            "gateway": {
                "api": "anthropic",
                "base_url": f"{fake.url}/gw",
                "api_key_env": "MY_GATEWAY_KEY",
                "model": "claude-x",
            },
            "big": {"api": "openai", "model": "gpt-big"},  # OpenAI itself, another default model
        },
        AI_DEEPSEEK_BASE_URL=f"{fake.url}/deepseek/v1",
        AI_DEEPSEEK_API_KEY="sk-deepseek-test-key",
    )
    fake.reply = openai_reply()
    assert ask(app, "Why?", provider="local").provider == "local"
    local = fake.last
    assert (local.path, local.json()["model"]) == ("/local/v1/chat/completions", "qwen2.5")
    assert local.headers["x-team"] == "blue" and "authorization" not in local.headers
    assert "max_tokens" not in local.json()
    ask(app, "Why?", provider="big", max_tokens=9)
    big = fake.last
    assert (big.path, big.json()["model"]) == ("/v1/chat/completions", "gpt-big")
    assert big.headers["authorization"] == "Bearer sk-proj-TESTKEY0123456789abcdefSECRET"
    assert big.json()["max_completion_tokens"] == 9  # OpenAI's own rules, as the built-in
    ask(app, "Why?", provider="deepseek")
    assert fake.last.path == "/deepseek/v1/chat/completions"
    ask(app, "Why?", provider="openai")
    assert fake.last.path == "/v1/chat/completions"
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    ask(app, "Why?", provider="gateway")
    gateway = fake.last
    assert gateway.path == "/gw/v1/messages" and gateway.headers["x-api-key"] == "gw-key-123"
    assert gateway.json()["model"] == "claude-x"


def test_a_name_works_everywhere_a_provider_name_does(make_app, fake):
    from flask_aistream import AIStream as _  # noqa: F401

    entries = {"local": {"api": "openai", "base_url": f"{fake.url}/local/v1", "model": "m"}}
    app = make_app(AI_PROVIDERS=entries, AI_PROVIDER="local")
    fake.reply = openai_reply()
    assert ask(app, "Why?").provider == "local"  # AI_PROVIDER
    with app.app_context():
        assert app.extensions["ai"].provider("local").ask("Why?") == OPENAI_TEXT
    app.register_blueprint(
        app.extensions["ai"].blueprint(provider="local", ratelimit=None), url_prefix="/api"
    )
    response = app.test_client().post("/api/stream", json={"question": "Why?"})
    assert relayed(response.get_data())[0] == OPENAI_TEXT
    assert fake.last.path == "/local/v1/chat/completions"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"api": "cohere"}, "must be one of anthropic, azure, gemini, ollama, openai"),
        ({"api": "openai", "base": "x"}, "unknown field"),
        ({"api": "openai", "api_key": "a", "api_key_env": "B"}, "not both"),
        ({"api": "openai", "base_url": "ftp://x"}, "must start with http"),
        ({"api": "openai", "headers": {"X": "a\nb"}}, "headers"),
        ("openai", "must be a dict"),
    ],
)
def test_bad_entries_fail_at_init_app(entry, message):
    app = Flask(__name__)
    app.config["AI_PROVIDERS"] = {"mine": entry}
    with pytest.raises(ConfigurationError, match=message):
        AIStream(app)


def test_a_keyless_entry_inherits_no_key_but_an_inheriting_one_needs_its_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    app = Flask(__name__)
    app.config["AI_PROVIDERS"] = {"claude": {"api": "anthropic", "model": "claude-opus"}}
    AIStream(app)
    with app.app_context(), pytest.raises(ConfigurationError, match="AI_PROVIDERS\\['claude'\\]"):
        app.extensions["ai"].ask("Why?", provider="claude")


def test_azure(make_app, fake, monkeypatch):
    fake.reply = openai_reply()
    app = make_app()
    assert ask(app, "Why?", provider="azure").text == OPENAI_TEXT
    seen = fake.last
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.headers["api-key"] == "azureTESTKEY0123456789abcdefSECRET"
    assert "authorization" not in seen.headers
    assert seen.json()["model"] == "my-deployment"  # the deployment's name
    # the resource endpoint from the environment, /openai/v1 appended
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", f"{fake.url}/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-env-key")
    app = Flask(__name__)
    app.config["AI_AZURE_MODEL"] = "dep"
    AIStream(app)
    ask(app, "Why?", provider="azure")
    assert fake.last.path == "/openai/v1/chat/completions"
    assert fake.last.headers["api-key"] == "azure-env-key"


def test_azure_without_an_endpoint_names_both_settings(monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    app = Flask(__name__)
    app.config.update(AI_AZURE_API_KEY="k", AI_AZURE_MODEL="dep")
    AIStream(app)
    with app.app_context(), pytest.raises(ConfigurationError) as failure:
        app.extensions["ai"].ask("Why?", provider="azure")
    assert "AI_AZURE_BASE_URL" in str(failure.value)
    assert "AZURE_OPENAI_ENDPOINT" in str(failure.value)
    app.config["AI_PROVIDER"] = "azure"
    app.extensions.clear()
    AIStream(app)  # not refused at start-up: the endpoint may come later, per call it is checked


# --- a provider of the app's own ---------------------------------------------------


class EchoStream(PartStream):
    def __init__(self, text):
        self.text = text

    def __iter__(self):
        yield [self.text.upper()]
        yield [Stop("stop", "done")]

    def close(self):
        pass


class EchoProvider(Provider):
    api = "echo"
    default_model = "echo-1"

    def open(self, chat, transport, opening=None):
        return EchoStream(chat.messages[-1]["content"])


def test_register_provider_before_and_after_init_app():
    ai = AIStream()
    ai.register_provider("echo", EchoProvider)
    app = Flask(__name__)
    app.config["AI_PROVIDER"] = "echo"  # known at start-up
    ai.init_app(app)
    with app.app_context():
        assert ai.ask("hello") == "HELLO"
        assert ai.client.provider("echo").ask("hi") == "HI"
    other = Flask(__name__)
    other.config["AI_PROVIDER"] = "offline"
    AIStream(other)
    other.extensions["ai"].register_provider("shout", EchoProvider)
    with other.app_context():
        answer = list(other.extensions["ai"].iter_events("x", provider="shout"))[-1].answer
    assert (answer.text, answer.provider, answer.model) == ("X", "shout", "echo-1")


def test_a_provider_refuses_options_it_does_not_declare():
    app = Flask(__name__)
    ai = AIStream()
    ai.register_provider("echo", EchoProvider)
    ai.init_app(app)
    with app.app_context(), pytest.raises(ConfigurationError, match="'echo'.*seed"):
        ai.ask("hi", provider="echo", seed=1)


def test_register_provider_refuses_what_is_not_a_provider():
    ai = AIStream()
    ai.register_provider("bad", object)
    with pytest.raises(ConfigurationError, match="Provider subclass"):
        ai.init_app(Flask(__name__))


def test_an_entry_point_provider(tmp_path, monkeypatch):
    """A package declares its class in the flask_aistream.providers group:
    installed (here: a distribution on sys.path), the name just works."""
    (tmp_path / "echo_pkg.py").write_text(
        textwrap.dedent(
            """
            from flask_aistream import PartStream, Provider
            from flask_aistream.parts import Stop

            class Stream(PartStream):
                def __init__(self, text):
                    self.text = text
                def __iter__(self):
                    yield [self.text[::-1], Stop("stop", None)]
                def close(self):
                    pass

            class Reverse(Provider):
                default_model = "rev"
                def open(self, chat, transport, opening=None):
                    return Stream(chat.messages[-1]["content"])
            """
        )
    )
    info = tmp_path / "echo_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[flask_aistream.providers]\nreverse = echo_pkg:Reverse\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Flask(__name__)
    app.config["AI_PROVIDER"] = "reverse"
    AIStream(app)
    with app.app_context():
        assert app.extensions["ai"].ask("abc") == "cba"
    sys.modules.pop("echo_pkg", None)


# --- fallbacks -----------------------------------------------------------------------


def failure(status=500):
    return Reply.json(status, {"error": {"type": "server_error", "message": "boom"}})


def test_fallbacks_are_asked_in_order(make_app, fake, log_records):
    app = make_app(AI_MAX_RETRIES=1, AI_FALLBACKS=["groq", "anthropic:claude-fallback"])
    fake.replies = [
        failure(),
        failure(503),
        failure(),
        failure(),
        Reply.sse(transcript("anthropic_basic.sse")),
    ]
    answer = ask(app, "Why?")
    assert answer.text.startswith("Hello! Rayleigh")
    assert (answer.provider, answer.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    paths = [seen.path for seen in fake.requests]
    # each provider is retried on its own first (one retry), then the next is asked
    assert paths == ["/v1/chat/completions"] * 4 + ["/v1/messages"]
    assert fake.requests[2].json()["model"] == "llama-3.1-8b-instant"
    assert fake.last.json()["model"] == "claude-fallback"
    falling = [r.getMessage() for r in log_records.records if "falling back" in r.getMessage()]
    assert len(falling) == 2
    assert "'openai'" in falling[0] and "'groq'" in falling[0] and "HTTP 503" in falling[0]
    assert "'groq'" in falling[1] and "'anthropic'" in falling[1]


def test_no_fallback_after_the_first_token(make_app, fake):
    app = make_app(AI_FALLBACKS=["anthropic"])
    fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    response = app.test_client().post("/chat", json={"question": "Why?"})
    text, error, done = relayed(response.get_data())
    assert text and error and done
    assert all(seen.path == "/v1/chat/completions" for seen in fake.requests)


def test_the_last_failure_is_the_answer_error(make_app, fake):
    app = make_app(AI_MAX_RETRIES=0)
    fake.reply = failure(401)
    with app.app_context(), pytest.raises(ProviderError) as caught:
        app.extensions["ai"].ask("Why?", fallbacks=["groq", "mistral"])
    assert caught.value.provider == "mistral" and caught.value.kind == "auth"
    assert len(fake.requests) == 3


def test_a_blocked_answer_is_not_asked_elsewhere(make_app, fake):
    app = make_app(AI_FALLBACKS=["openai"])
    fake.reply = Reply.sse(transcript("gemini_blocked_prompt.sse"))
    answers = []
    with app.app_context(), pytest.raises(ProviderError, match="blocked"):
        app.extensions["ai"].ask("Why?", provider="gemini", on_finish=answers.append)
    assert answers[0].finish_reason == "content_filter" and len(fake.requests) == 1


def test_a_fallback_that_is_the_provider_itself_is_skipped(make_app, fake):
    app = make_app(AI_MAX_RETRIES=0, AI_FALLBACKS=["openai", "openai:gpt-other"])
    fake.replies = [failure()]
    fake.reply = openai_reply()
    answer = ask(app, "Why?")
    assert len(fake.requests) == 2 and fake.last.json()["model"] == "gpt-other"
    assert answer.provider == "openai" and answer.model == "gpt-4o-mini-2024-07-18"


def test_bad_fallbacks_fail_at_init_app():
    for value, message in ((["nowhere"], "Unknown AI provider 'nowhere'"), ("openai", "a list")):
        app = Flask(__name__)
        app.config["AI_FALLBACKS"] = value
        with pytest.raises(ConfigurationError, match=message):
            AIStream(app)
    logging.getLogger(__name__).debug("checked")


def test_a_blueprint_lets_the_browser_pick_only_from_its_list(make_app, fake):
    app = make_app()
    app.register_blueprint(
        app.extensions["ai"].blueprint(providers=["openai", "offline"], ratelimit=None),
        url_prefix="/api",
    )
    client = app.test_client()
    response = client.post("/api/stream", json={"question": "Hi", "provider": "offline"})
    assert relayed(response.get_data())[0] == "You asked: Hi" and fake.requests == []
    response = client.get("/api/stream?question=Hi&provider=anthropic")
    assert response.status_code == 400 and response.get_json()["error"]
    assert fake.requests == []
    other = make_app()
    with pytest.raises(ConfigurationError, match="Unknown AI provider 'nope'"):
        other.register_blueprint(other.extensions["ai"].blueprint(providers=["nope"]))
