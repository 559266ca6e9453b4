"""The tests' fixtures: the loopback fake provider, apps wired to it, real
servers, Redis and a browser; tests that use the last kinds are ``system``."""

import logging
import threading
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from fakeprovider import FakeProvider
from flask_aistream import AIStream
from helpers import BASE_PATHS, CHROMIUM, PROVIDER_ENV, SECRET_KEYS, ClosingClient, RedisServer


@pytest.fixture
def fake():
    """A provider on loopback; set ``fake.reply`` to script its answer."""
    server = FakeProvider()
    yield server
    server.close()


@pytest.fixture
def make_app(fake, monkeypatch):
    """Build an app whose providers all point at the fake, with test keys."""
    for var in PROVIDER_ENV:
        monkeypatch.delenv(var, raising=False)

    def build(**config):
        app = Flask("testapp")
        app.test_client_class = ClosingClient
        for name in [*SECRET_KEYS, "ollama"]:
            if name in SECRET_KEYS:
                app.config[f"AI_{name.upper()}_API_KEY"] = SECRET_KEYS[name]
            app.config[f"AI_{name.upper()}_BASE_URL"] = fake.url + BASE_PATHS.get(name, "/v1")
        app.config["AI_AZURE_MODEL"] = "my-deployment"
        app.config["AI_HTTP_TIMEOUT"] = 5
        app.config["AI_RETRY_BACKOFF"] = 0.01  # retries, but quick ones
        app.config.update(config)
        AIStream(app)

        @app.post("/chat")
        def chat():
            from flask import request

            body = request.get_json()
            return app.extensions["ai"].ask_stream(body.pop("question"), **body)

        return app

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def log_records(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def live():
    """Run apps on real threaded Werkzeug servers: ``live(app)`` starts one
    and returns its base URL."""
    servers = []

    def start(app):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is needed (apt-get install chromium; .ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


#: Fixtures that start a real server, browser or Redis: a test using one is
#: ``system`` (``pytest -m "not system"`` is the quick inner loop).
SYSTEM_FIXTURES = {
    "live",
    "serve",
    "gunicorn",
    "page",
    "browser",
    "site",
    "redis_url",
    "redis_server",
    "node",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.system)
