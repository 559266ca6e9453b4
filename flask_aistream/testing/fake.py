"""A scripted provider for an app's tests: :func:`fake_provider` answers
every provider call of the app from a script, for the length of a ``with``.

What a scripted reply becomes is what the provider would have sent: the
bytes of its API, read by the app's own provider reader (in process, from
memory; with ``wire=``, from a loopback HTTP server through the app's whole
HTTP path). So a scripted failure reads exactly as the real one does: the
same error text, the same :class:`~flask_aistream.ProviderError` kind.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..errors import ConfigurationError, ProviderError
from ..parts import ToolCall
from ..providers.base import ChatRequest, PartStream, Provider
from ..providers.http import HTTPProvider
from . import wire
from .playing import PartsStream, played, replayed
from .script import (
    DEFAULT_INPUT_TOKENS,
    SCRIPT_HEADER,
    TOKENS,
    Cut,
    Failure,
    FakeRequest,
    Hang,
    Item,
    Replay,
    Reply,
    _request,
    api_of,
)
from .server import WireServer
from .wire import APIS

if TYPE_CHECKING:
    from flask import Flask

    from ..client import AIClient
    from ..transport import Opening, Transport

    #: A provider's own ``open``.
    OpenFunction = Callable[[ChatRequest, Transport, Union[Opening, None]], PartStream]


class FakeProvider:
    """The script every provider call of an app plays, one item per call, in
    order: :meth:`reply`, :meth:`fail`, :meth:`cut`, :meth:`hang`,
    :meth:`replay`. Each method returns the fake, so calls chain. A call with
    nothing left to play fails its answer ("fake provider script exhausted
    after N replies"). :attr:`requests` lists what each call asked."""

    def __init__(self, wire: str | None = None) -> None:
        if wire is not None and wire not in APIS:
            raise ConfigurationError(f"wire must be one of {', '.join(APIS)}, not {wire!r}")
        self.wire = wire
        self.requests: list[FakeRequest] = []
        self._script: deque[Item] = deque()
        self._played = 0
        self._lock = threading.Lock()
        self._server: WireServer | None = None

    # -- writing the script ------------------------------------------------------

    def reply(
        self,
        *parts: str | ToolCall,
        usage: tuple[int, int] | None = None,
        model: str | None = None,
        finish: str | None = None,
        reasoning: str | None = None,
        delay: float = 0,
    ) -> FakeProvider:
        """One answer: text (split into tokens as a provider would) and
        :func:`tool_call` values, in order. ``finish`` defaults to
        ``"stop"``, or ``"tool_calls"`` when it calls tools; ``usage`` is
        ``(input, output)`` tokens (default: 10 in, one out per token);
        ``model`` the model the provider says answered (default: the one
        asked for); ``delay`` seconds before each token."""
        tokens: list[str] = []
        calls: list[ToolCall] = []
        for part in parts:
            if isinstance(part, ToolCall):
                calls.append(part)
            elif isinstance(part, str):
                tokens += TOKENS.findall(part)
            else:
                raise TypeError(f"a reply's parts are text and tool_call() values, not {part!r}")
        finish = finish or ("tool_calls" if calls else "stop")
        if finish not in wire.RAW_FINISH["openai"]:
            raise ValueError(f"finish must be one of {', '.join(wire.RAW_FINISH['openai'])}")
        if usage is None:
            usage = (DEFAULT_INPUT_TOKENS, len(tokens) + len(calls))
        answer = wire.Answer(tokens, calls, reasoning, usage, model or "", finish)
        return self._add(Reply(answer, model, delay))

    def replies(
        self, *replies: str | tuple[str | ToolCall, ...] | list[str | ToolCall]
    ) -> FakeProvider:
        """Several answers at once: each a text, or a list of parts."""
        for item in replies:
            self.reply(*(item if isinstance(item, (list, tuple)) else (item,)))
        return self

    def fail(
        self,
        status: int | str,
        *,
        after: str = "",
        retry_after: float | None = None,
        message: str | None = None,
    ) -> FakeProvider:
        """An HTTP error before the first token (``fail(429,
        retry_after=2)``: ``Retry-After: 2``), or with ``"mid"`` an error the
        provider reports in the stream after the text ``after``."""
        if status == "mid":
            return self._add(Failure(None, message or "The server had an error.", after=after))
        if not isinstance(status, int) or not 300 <= status <= 599:
            raise ValueError(f'status must be an HTTP error status or "mid", not {status!r}')
        return self._add(Failure(status, message or f"Fake provider error {status}.", retry_after))

    def cut(self, after: str = "") -> FakeProvider:
        """The connection drops after the text ``after`` (kind ``connection``)."""
        return self._add(Cut(after))

    def hang(self) -> FakeProvider:
        """The answer starts and nothing more arrives: the app's
        ``AI_HTTP_TIMEOUT`` error, unless the client leaves first."""
        return self._add(Hang())

    def replay(self, path: str | Path, pace: bool = True) -> FakeProvider:
        """A recorded exchange (``AI_RECORD_DIR``), byte for byte, through
        the reader of the API its URL names, at its recorded pace or (with
        ``pace=False``) at once."""
        return self._add(Replay(json.loads(Path(path).read_text()), pace))

    def _add(self, item: Item) -> FakeProvider:
        with self._lock:
            self._script.append(item)
        return self

    def assert_all_used(self) -> None:
        """Fail unless every scripted item was played."""
        with self._lock:
            left = list(self._script)
        assert not left, f"{len(left)} scripted replies were never asked for: {left!r}"

    # -- playing it ----------------------------------------------------------------

    def _next(self, name: str) -> Item:
        with self._lock:
            if self._script:
                self._played += 1
                return self._script.popleft()
            played = self._played
        raise ProviderError(
            f"fake provider script exhausted after {played} replies",
            kind="bad_request",
            provider=name,
            retryable=False,
        )

    def _open(
        self,
        provider: Provider,
        real_open: OpenFunction,
        chat: ChatRequest,
        transport: Transport,
        opening: Opening | None,
    ) -> PartStream:
        self.requests.append(_request(provider.name, chat))
        item = self._next(provider.name)
        api = api_of(provider, self.wire or "openai")
        if isinstance(item, Replay):
            return replayed(item, provider, chat, transport)
        if api is None:
            return PartsStream(item, provider.name, chat.model, transport.timeout[1])
        assert isinstance(provider, HTTPProvider)
        if self._server is not None:
            token = self._server.expect(item, api, chat.model)
            headers = {**(chat.extra_headers or {}), SCRIPT_HEADER: token}
            return real_open(replace(chat, extra_headers=headers), transport, opening)
        provider.request(chat)  # what the provider would send: a mistake raises as it would
        return played(item, api, provider, chat.model, transport.timeout[1])


# --- for the length of a with --------------------------------------------------------


@contextmanager
def fake_provider(app: Flask, wire: str | None = None) -> Iterator[FakeProvider]:
    """Answer every provider call of ``app`` (named providers and fallbacks
    included) from a script, for the ``with`` block: ``wire=None`` reads
    the script's bytes from memory; ``wire="openai"`` (or ``"anthropic"``,
    ``"gemini"``, ``"ollama"``) serves them from a loopback HTTP server that
    every HTTP provider of the app is pointed at (each gets its own API's
    bytes; ``wire`` is the format of a provider class of your own)."""
    client: AIClient = app.extensions["ai"]
    fake = FakeProvider(wire)
    if wire is not None:
        fake._server = WireServer()
    saved: list[tuple[Provider, object]] = []
    try:
        for provider in list(client.providers.values()):
            saved.append((provider, provider.conf))
            real_open = provider.open
            if fake._server is not None and isinstance(provider, HTTPProvider):
                provider.conf = replace(provider.conf, base_url=fake._server.url)
            provider.open = _bound(fake, provider, real_open)  # type: ignore[method-assign,assignment]
        yield fake
    finally:
        for provider, conf in saved:
            provider.conf = conf  # type: ignore[assignment]
            del provider.open  # the class's own again
        if fake._server is not None:
            fake._server.close()


def _bound(fake: FakeProvider, provider: Provider, real_open: OpenFunction) -> OpenFunction:
    def open(chat: ChatRequest, transport: Transport, opening: Opening | None = None) -> PartStream:
        return fake._open(provider, real_open, chat, transport, opening)

    return open
