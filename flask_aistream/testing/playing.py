"""A scripted item played in process: as its API's bytes from memory, read by
the provider's own :class:`HTTPStream` (or as parts, for a provider that is
not HTTP); and a recorded exchange replayed through the reader its URL names."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ProviderError
from ..parts import (
    Metadata,
    Part,
    ReasoningDelta,
    Stop,
    ToolCallDelta,
    UsageUpdate,
)
from ..providers.anthropic import MessagesProvider
from ..providers.base import ChatRequest, PartStream, Provider
from ..providers.gemini import GeminiProvider
from ..providers.http import HTTPProvider, HTTPStream
from ..providers.ollama import OllamaProvider
from ..providers.openai import OpenAIProvider
from ..providers.wire import http_error
from . import wire
from .script import TOKENS, Cut, Failure, Item, Replay, Reply

if TYPE_CHECKING:
    from ..transport import Transport


# --- in process ------------------------------------------------------------------


class ScriptBody:
    """A response body from memory, read by the provider's own
    :class:`HTTPStream`: the pieces, each after ``delay`` seconds; then the
    end, a dropped connection (``cut``), or silence until the idle timeout
    (``hang``). ``abort()`` ends it at once, as a hang-up does."""

    def __init__(
        self,
        pieces: list[bytes],
        delays: list[float],
        idle_timeout: float,
        ending: str = "end",
    ) -> None:
        self.idle_timeout = idle_timeout
        self._pieces = pieces
        self._delays = delays
        self._ending = ending
        self._closed = threading.Event()

    def reads(self) -> Iterator[bytes]:
        for piece, delay in zip(self._pieces, self._delays):
            if delay and self._closed.wait(delay) or self._closed.is_set():
                return
            yield piece
        if self._ending == "cut":
            raise ConnectionResetError("the fake provider dropped the connection")
        if self._ending == "hang" and not self._closed.wait(self.idle_timeout):
            raise socket.timeout("the fake provider sent nothing more")

    def reading_socket(self) -> None:
        return None

    def shorten_timeout(self, seconds: float) -> None:
        pass

    def release(self, reads: Iterator[bytes]) -> None:
        pass

    def abort(self) -> None:
        self._closed.set()

    close = abort


def played(
    item: Item, api: str, provider: HTTPProvider, model: str, idle_timeout: float
) -> HTTPStream:
    """A scripted item as ``provider`` reads it: its API's bytes, from memory."""
    if isinstance(item, Failure) and item.status is not None:
        # lower-case names: what requests' headers answer to, whatever the case
        headers = {"retry-after": f"{item.retry_after:g}"} if item.retry_after is not None else {}
        text = wire.error_body(api, item.status, item.message).decode()
        raise provider.http_error(item.status, text, headers)
    pieces, delays, ending = script_bytes(item, api, model)
    body = ScriptBody(pieces, delays, idle_timeout, ending)
    return HTTPStream(body, provider.decoder(), provider.reader(), provider.name)  # type: ignore[arg-type]


def script_bytes(item: Item, api: str, model: str) -> tuple[list[bytes], list[float], str]:
    """A reply, a mid-stream failure, a cut or a hang as ``api``'s pieces,
    the wait before each, and how the body ends."""
    if isinstance(item, Reply):
        answer = replace(item.answer, model=item.answer.model or model)
        pieces = wire.encode(api, answer)
        return pieces, [item.delay] * len(pieces), "end"
    if isinstance(item, Failure):
        pieces = wire.head(api, TOKENS.findall(item.after), model)
        pieces.append(wire.stream_error(api, item.message))
        return pieces, [0.0] * len(pieces), "end"
    if isinstance(item, Cut):
        pieces = wire.head(api, TOKENS.findall(item.after), model)
        return pieces, [0.0] * len(pieces), "cut"
    pieces = wire.head(api, [], model)
    return pieces, [0.0] * len(pieces), "hang"


class PartsStream(PartStream):
    """A scripted item as parts, for a provider that is not HTTP (the
    ``offline`` one, a provider class of your own)."""

    def __init__(self, item: Item, name: str, model: str, idle_timeout: float) -> None:
        self._item = item
        self._name = name
        self._model = model
        self._idle = idle_timeout
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[list[Part]]:
        item = self._item
        if isinstance(item, Failure) and item.status is not None:
            error = http_error(self._name, item.status, item.message, None)
            error.retry_after = item.retry_after
            raise error
        yield [Metadata(getattr(item, "model", None) or self._model, None)]
        if isinstance(item, Reply):
            answer = item.answer
            if answer.reasoning:
                yield [ReasoningDelta(answer.reasoning)]
            for token in answer.tokens:
                if item.delay and self._closed.wait(item.delay) or self._closed.is_set():
                    return
                yield [token]
            for position, call in enumerate(answer.tool_calls):
                yield [ToolCallDelta(position, call.id, call.name, call.arguments), call]
            yield [UsageUpdate(*answer.usage), Stop(answer.finish, answer.finish)]
            return
        text = item.after if isinstance(item, (Failure, Cut)) else ""
        if text:
            yield [text]
        if isinstance(item, Failure):
            raise ProviderError(item.message, kind="unavailable", provider=self._name)
        if isinstance(item, Cut):
            raise ProviderError(
                "The connection to the AI provider was lost mid-answer.",
                kind="connection",
                provider=self._name,
            )
        if not self._closed.wait(self._idle):
            raise ProviderError(
                f"The AI provider stopped responding (no data for {self._idle:g} s).",
                kind="timeout",
                provider=self._name,
            )

    def close(self) -> None:
        self._closed.set()


# --- replaying a recorded exchange -------------------------------------------------

#: A recorded URL's API, by what its path says.
_URL_APIS = (
    (re.compile(r":streamGenerateContent"), "gemini", GeminiProvider),
    (re.compile(r"/messages(\?|$)"), "anthropic", MessagesProvider),
    (re.compile(r"/api/chat(\?|$)"), "ollama", OllamaProvider),
    (re.compile(r""), "openai", OpenAIProvider),
)


def replayed(
    item: Replay, provider: Provider, chat: ChatRequest, transport: Transport
) -> HTTPStream:
    """A cassette through the reader of the API its URL names."""
    cassette = item.cassette
    url = cassette["request"]["url"]
    cls: type[HTTPProvider] = next(c for pattern, _, c in _URL_APIS if pattern.search(url))
    reader = cls(replace(provider.conf, api=cls.api), provider.settings)
    response = cassette["response"]
    if response["status"] >= 300:
        text = "".join(piece["text"] for piece in response["pieces"])
        headers = {name.lower(): value for name, value in response["headers"].items()}
        raise reader.http_error(response["status"], text, headers)
    pieces = [piece["text"].encode("utf-8", "surrogateescape") for piece in response["pieces"]]
    times = [piece["at"] for piece in response["pieces"]]
    delays = [b - a for a, b in zip([0.0, *times], times)] if item.pace else [0.0] * len(times)
    ending = "cut" if response.get("cut") else "end"
    body = ScriptBody(pieces, delays, transport.timeout[1], ending)
    return HTTPStream(body, reader.decoder(), reader.reader(), provider.name)  # type: ignore[arg-type]
