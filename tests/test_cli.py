"""``flask ai``: check, ask, models, through Flask's CliRunner; ``check --url``
against a deployment behind a proxy that buffers and one that does not."""

import socket
import threading

import pytest
from flask import Flask

from fakeprovider import Reply, openai_events
from flask_aistream import AIStream


def offline_app(**config):
    app = Flask("cliapp")
    app.config.update(AI_PROVIDER="offline", AI_OFFLINE_DELAY=0.02, AI_RATELIMIT=None, **config)
    AIStream(app)
    return app


def test_check_passes_for_a_working_configuration():
    result = offline_app().test_cli_runner().invoke(args=["ai", "check", "--live"])
    assert result.exit_code == 0, result.output
    assert "ok       offline (live): answered 'You asked: Say OK.'" in result.output
    assert "No problems." in result.output


def test_check_fails_and_names_what_is_missing(make_app, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    app = Flask("cliapp")
    app.config.update(AI_PROVIDER="openai", AI_OPENAI_API_KEY="sk-test-0123456789SECRETKEY")
    app.config["AI_FALLBACKS"] = ["anthropic"]
    AIStream(app)
    result = app.test_cli_runner().invoke(args=["ai", "check"])
    assert result.exit_code == 1
    assert "ok       openai: key set" in result.output
    assert "PROBLEM  anthropic: No API key" in result.output
    assert "SECRETKEY" not in result.output  # a key is said to be set, never shown


def test_check_reaches_the_storages(make_app, fake, redis_server):
    app = make_app(
        AI_RESUME_STORAGE_URI=redis_server.url, AI_RATELIMIT_STORAGE_URI=redis_server.url
    )
    ok = app.test_cli_runner().invoke(args=["ai", "check"])
    assert "ok       resume store: redis://" in ok.output
    assert "ok       rate-limit storage: redis://" in ok.output
    assert str(redis_server.port) not in ok.output  # hosts and credentials stay off the terminal
    redis_server.stop()
    down = app.test_cli_runner().invoke(args=["ai", "check"])
    assert down.exit_code == 1
    assert "PROBLEM  resume store: redis:// cannot be reached" in down.output


def test_memory_storage_with_several_workers_is_a_problem(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    result = offline_app().test_cli_runner().invoke(args=["ai", "check"])
    assert result.exit_code == 1 and "each worker counts apart" in result.output


def test_ask_streams_the_answer_and_says_how_it_ended(make_app, fake):
    fake.reply = Reply(parts=openai_events(["Blue ", "light ", "scatters."]))
    result = make_app().test_cli_runner().invoke(args=["ai", "ask", "Why is the sky blue?"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Blue light scatters.\n[stop")
    assert fake.last.json()["messages"][-1]["content"] == "Why is the sky blue?"


def test_ask_reports_a_provider_failure_without_a_traceback(make_app, fake):
    fake.reply = Reply(status=401, parts=[b'{"error": {"message": "bad key"}}'])
    result = make_app(AI_MAX_RETRIES=0).test_cli_runner().invoke(args=["ai", "ask", "hi"])
    assert result.exit_code == 1
    assert "Error: The AI provider refused the server's credentials." in result.output


def test_models_lists_providers_and_aliases():
    app = offline_app(AI_MODELS={"fast": "offline"})
    result = app.test_cli_runner().invoke(args=["ai", "models"])
    assert result.exit_code == 0
    assert "offline      offline    offline  (default)" in result.output
    assert "alias fast -> offline:offline" in result.output


def proxy(upstream: tuple[str, int], buffer: bool) -> tuple[str, int]:
    """A one-connection-at-a-time HTTP proxy on loopback: it passes bytes on
    as they come, or (``buffer``) holds the whole response and sends it at
    once, as a misconfigured nginx does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def forward(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(upstream)
            threading.Thread(target=forward, args=(client, server), daemon=True).start()
            held = b""
            while chunk := server.recv(65536):
                if buffer:
                    held += chunk
                    if held.endswith(b"0\r\n\r\n"):
                        break
                else:
                    client.sendall(chunk)
                    if chunk.endswith(b"0\r\n\r\n"):
                        break
            client.sendall(held)
            client.close()
            server.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()


@pytest.mark.parametrize("buffer", [False, True])
def test_check_url_tells_a_buffering_proxy(live, buffer):
    from helpers import address_of

    app = offline_app()
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api/chat")
    host, port = proxy(address_of(live(app)), buffer)
    url = f"http://{host}:{port}/api/chat/stream"
    result = app.test_cli_runner().invoke(args=["ai", "check", "--url", url])
    if buffer:
        assert result.exit_code == 1
        assert "PROBLEM  buffering:" in result.output
    else:
        assert result.exit_code == 0, result.output
        assert "ok       streaming:" in result.output
