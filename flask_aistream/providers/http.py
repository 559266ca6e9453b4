"""Providers reached with one streaming POST: :class:`HTTPProvider` builds
the request, and :class:`HTTPStream` turns the response :class:`Body` into
parts: bytes fed to its decoder (SSE, NDJSON), each event given meaning by
its :class:`~flask_aistream.providers.base.EventReader`, with the rules for
an answer that ends early or never quite ends."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from typing import Any, Callable

from ..errors import ConfigurationError, ProviderError, StreamFormatError
from ..parts import JSONObject, Part
from ..transport import CONNECTION_LOST, READ_TIMEOUT, Body, Opening, Transport
from .base import ChatRequest, Decoder, EventReader, PartStream, Provider
from .sse import SSEDecoder
from .wire import http_error, retry_after

#: How long the end marker may take once a finish reason came (OpenAI's usage
#: chunk and ``[DONE]`` follow at once); a provider that holds the connection
#: open longer has still given a complete answer.
FINISHED_GRACE = 2.0


class HTTPStream(PartStream):
    """A provider's answer being read off the wire."""

    def __init__(
        self, body: Body, decoder: Decoder[Any], reader: EventReader[Any], name: str
    ) -> None:
        self._body = body
        self._decoder = decoder
        self._reader = reader
        self._name = name

    def __iter__(self) -> Iterator[list[Part]]:
        name = self._name
        reader = self._reader
        parse = reader.parse
        decoder = self._decoder
        feed = decoder.feed
        body = self._body
        reads = body.reads()
        waiting_for_end = False  # a finish reason came: only the end marker may follow
        while True:
            try:
                chunk = next(reads, b"")
            except READ_TIMEOUT as exc:
                if waiting_for_end:
                    break  # the answer is complete; the provider just kept the line open
                raise ProviderError(
                    f"The AI provider stopped responding (no data for {body.idle_timeout:g} s).",
                    kind="timeout",
                    provider=name,
                    detail=repr(exc),
                ) from None
            except CONNECTION_LOST as exc:
                raise ProviderError(
                    "The connection to the AI provider was lost mid-answer.",
                    kind="connection",
                    provider=name,
                    detail=repr(exc),
                ) from None
            parts: list[Part] = []
            try:
                for event in feed(chunk) if chunk else decoder.flush():
                    parse(event, parts)
                    if reader.done:
                        break
            except (ProviderError, AttributeError, TypeError, KeyError, IndexError) as exc:
                if isinstance(exc, ProviderError):
                    error = exc
                    error.provider = error.provider or name
                else:  # an event of a shape the reader did not expect
                    error = StreamFormatError(f"unexpected event shape: {exc!r}", provider=name)
                self.close()
                if parts:
                    yield parts  # what arrived before the error still counts
                raise error from None
            if reader.done:
                body.release(reads)  # keep the connection for the next answer, or hang up
            elif reader.finished and not waiting_for_end:
                waiting_for_end = True
                body.shorten_timeout(FINISHED_GRACE)
            # Even an empty list: a read that held only a comment hands control
            # back, so a caller reading directly can write its heartbeat.
            yield parts
            if reader.done:
                return
            if not chunk:
                break
        self.close()
        if not reader.finished:
            raise ProviderError(
                kind="cut_off",
                provider=name,
                detail="end of stream before the end marker or a finish reason",
            )

    def reading_socket(self) -> socket.socket | None:
        return self._body.reading_socket()

    def abort(self) -> None:
        self._body.abort()

    def close(self) -> None:
        self._body.close()


class HTTPProvider(Provider):
    """A provider reached with one streaming POST; ``transport`` does the I/O.
    A subclass says where (:meth:`url`), with what (:meth:`headers`,
    :meth:`body`), how the body is framed (``decoder``) and what its events
    mean (:meth:`reader`); it may map its own error bodies (:meth:`http_error`)."""

    path: str = ""
    #: The framing of the streamed body: SSE, or NDJSON for Ollama.
    decoder: Callable[[], Decoder[Any]] = SSEDecoder

    def check(self, chat: ChatRequest) -> None:
        if not self.conf.base_url:
            raise ConfigurationError(
                f"No base URL for the {self.name!r} provider: set {self.conf.base_url_hint}."
            )
        super().check(chat)

    def url(self, chat: ChatRequest) -> str:
        return self.conf.base_url.rstrip("/") + self.path

    def headers(self) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def body(self, chat: ChatRequest) -> JSONObject:  # pragma: no cover
        raise NotImplementedError

    def reader(self) -> EventReader[Any]:  # pragma: no cover
        raise NotImplementedError

    def http_error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        """The error for an HTTP status of 300 or more and its body."""
        error = http_error(
            self.name, status, body, headers.get("Location") if status < 400 else None
        )
        error.retry_after = retry_after(headers)
        return error

    def request(self, chat: ChatRequest) -> tuple[str, dict[str, str], JSONObject]:
        """URL, headers and JSON body, with the configured headers and the
        call's ``extra_headers`` and ``extra_body`` (merged last: the escape
        hatch wins)."""
        headers = {**self.headers(), **self.conf.headers, **(chat.extra_headers or {})}
        body = self.body(chat)
        if chat.extra_body:
            body.update(chat.extra_body)
        return self.url(chat), headers, body

    def open(
        self, chat: ChatRequest, transport: Transport, opening: Opening | None = None
    ) -> HTTPStream:
        url, headers, body = self.request(chat)
        response = transport.open(
            url, headers, body, opening, provider=self.name, on_error=self.http_error
        )
        return HTTPStream(response, self.decoder(), self.reader(), self.name)
