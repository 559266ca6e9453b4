"""The pytest plugin installed with flask-aistream (entry point
``flask_aistream``): the ``ai_fake`` fixture, and a guard that keeps every
test suite of the project from calling a real provider by accident.

While it is active, a provider request to a host that is not loopback
(``127.0.0.0/8``, ``::1``, ``localhost``) is refused before any DNS lookup or
connect, with a :class:`~flask_aistream.ProviderError` naming
``@pytest.mark.ai_live``, which allows it for one test. A suite opts out
with ``-p no:flask_aistream`` or the ini option ``ai_live = true``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from ..errors import ProviderError
from ..transport.http import URL_GUARDS
from .fake import FakeProvider, fake_provider

if TYPE_CHECKING:
    from flask import Flask

MARKER = "ai_live"


class LiveGuard:
    """Refuses provider URLs whose host is not loopback, unless allowed."""

    def __init__(self) -> None:
        self.allowed = False

    def __call__(self, url: str, provider: str) -> None:
        if self.allowed:
            return
        host = urlsplit(url).hostname or ""
        if is_loopback(host):
            return
        raise ProviderError(
            f"A test asked the real AI provider at {host}: tests do not call real providers "
            f"(flask-aistream's pytest plugin). Mark the test @pytest.mark.{MARKER} to allow it.",
            kind="connection",
            provider=provider,
            retryable=False,
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine without asking DNS."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it would take a DNS lookup to know, and that is a request too


GUARD = LiveGuard()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        MARKER,
        "flask-aistream: let every test of this suite call real AI providers",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: this test may call real AI providers (flask-aistream)"
    )
    if not config.getini(MARKER) and GUARD not in URL_GUARDS:
        URL_GUARDS.append(GUARD)


def pytest_unconfigure(config: pytest.Config) -> None:
    if GUARD in URL_GUARDS:
        URL_GUARDS.remove(GUARD)


@pytest.fixture(autouse=True)
def _ai_live_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    GUARD.allowed = request.node.get_closest_marker(MARKER) is not None
    try:
        yield
    finally:
        GUARD.allowed = False


@pytest.fixture
def ai_fake(app: Flask) -> Iterator[FakeProvider]:
    """``fake_provider(app)`` for the test, on the project's ``app`` fixture
    (the pytest-flask convention)."""
    with fake_provider(app) as fake:
        yield fake
