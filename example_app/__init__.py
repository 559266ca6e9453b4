"""A chat page on flask-aistream.

Run it with ``flask --app example_app run``. With no API key in the
environment it answers through the offline provider; set ``OPENAI_API_KEY``
(or ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``, ``AI_OLLAMA_BASE_URL``...) to
use a real one. Any ``AI_*`` environment variable is read as a setting
(JSON values too, as in ``AI_PROVIDERS='{"local": {...}}'``). The page's
picker offers every provider that is configured; ``AI_PROVIDER`` picks the
first one.
"""

import json
import os
import secrets
from datetime import datetime, timezone

from flask import Flask, render_template, session

from flask_aistream import AIStream, ToolError, tool


@tool(needs_approval=True)  # the page asks you first: a demo of approvals
def current_time(timezone_name: str = "UTC") -> str:
    """The current date and time. Ask "what time is it?" to see the model call it.

    Args:
        timezone_name: An IANA time zone such as "Europe/Paris".
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = timezone.utc if timezone_name == "UTC" else ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"There is no time zone called {timezone_name!r}.") from None
    return datetime.now(zone).strftime(f"%A %d %B %Y, %H:%M ({timezone_name})")


def settings_from_environment():
    """``AI_*`` variables as settings, parsed as JSON where they are JSON."""
    settings = {}
    for key, value in os.environ.items():
        if key.startswith("AI_"):
            try:
                settings[key] = json.loads(value)
            except ValueError:
                settings[key] = value
    return settings


def configured_providers(app):
    """The providers that have what they need: a key where one is needed,
    or, for local servers, an address set on purpose; the offline one last."""
    providers = app.extensions["ai"].settings.providers
    entries = app.config.get("AI_PROVIDERS") or {}
    names = []
    for name, conf in providers.items():
        if name == "offline":
            continue
        has_key = conf.key_required and conf.api_key
        local = not conf.key_required and f"AI_{name.upper()}_BASE_URL" in app.config
        if (has_key or local or name in entries) and conf.base_url:
            names.append(name)
    return [*names, "offline"]


def visitor():
    """Whose answers a request may resume or cancel: here an id kept in the
    browser's session cookie; in an app with logins, the user's id."""
    return session.setdefault("visitor", secrets.token_hex(8))


def create_app(config=None):
    app = Flask(__name__)
    # Sessions sign the visitor's id; set SECRET_KEY to keep them across restarts.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(16)
    app.config.update(
        AI_OFFLINE_DELAY=0.06,
        AI_SYSTEM_PROMPT="You are a helpful assistant. Answer briefly.",
        AI_RATELIMIT="10 per minute",
        # The page shows the reasoning (collapsed) and a line on how each answer ended.
        # and the tools the server ran (ask "what time is it?").
        AI_STREAM_EVENTS=["reasoning", "tool_results", "finish"],
        # A reload in the middle of an answer continues it. One process here;
        # AI_RESUME_STORAGE_URI=redis://... for several workers or hosts.
        AI_RESUME_STORAGE_URI="memory://",
    )
    app.config.update(settings_from_environment())
    app.config.update(config or {})
    app.config["AI_PROVIDER"] = "offline"  # until we know what is configured
    AIStream(app)
    choices = configured_providers(app)
    wanted = (config or {}).get("AI_PROVIDER") or os.environ.get("AI_PROVIDER")
    default = wanted if wanted in choices else choices[0]  # no key: a demo that still streams
    client = app.extensions["ai"].provider(default)
    app.register_blueprint(
        client.blueprint(providers=choices, owner=visitor, tools=[current_time]),
        url_prefix="/api/chat",
    )

    @app.get("/")
    def index():
        return render_template("index.html", provider=default, providers=choices)

    return app
