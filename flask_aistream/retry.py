"""Retrying a provider call, and falling back to another provider, but only
before the first token.

Once text (or reasoning, or a tool call) reached the client a retry would
produce a different answer glued to the first one, so from then on every
failure is final. Parts nobody sees (the model's name, usage so far) do not
count: Anthropic reports them before an ``overloaded_error`` too.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Callable

from .errors import ProviderError
from .parts import Part, Source, shows
from .providers.base import ChatRequest, PartStream, Provider
from .transport import Opening, Transport

if TYPE_CHECKING:
    from .config import Settings

#: Longest wait a provider's ``Retry-After`` may impose on a waiting person.
MAX_RETRY_AFTER = 30.0
#: Longest wait of our own exponential backoff.
MAX_BACKOFF = 8.0


def backoff(attempt: int, base: float, retry_after: float | None) -> float:
    """The wait before retry number ``attempt`` (0 for the first retry):
    the provider's ``Retry-After`` when it gave one (capped), else
    ``base * 2**attempt`` (capped) less up to a quarter of jitter, so that
    clients failed by one outage do not all come back at the same instant."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    return min(base * 2.0**attempt, MAX_BACKOFF) * (1 - 0.25 * random.random())


class _OneAtATime(PartStream):
    """A stream made of other streams, one at a time (``_current``): closing,
    aborting and the reading socket go to the current one."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._current: PartStream | None = None

    def close(self) -> None:
        stream, self._current = self._current, None
        if stream is not None:
            stream.close()

    def reading_socket(self) -> socket.socket | None:
        stream = self._current
        return stream.reading_socket() if stream is not None else None

    def abort(self) -> None:
        self._stopped.set()
        stream = self._current
        if stream is not None:
            stream.abort()


class RetryingStream(_OneAtATime):
    """A :class:`PartStream` that opens the provider again on a retryable
    failure that came before any text (a connection error, a 429 or 5xx, an
    in-stream ``overloaded_error``), up to ``max_retries`` times."""

    def __init__(
        self,
        open_stream: Callable[[Opening], PartStream],
        max_retries: int,
        base_delay: float,
        on_retry: Callable[[ProviderError, float], None] | None = None,
    ) -> None:
        super().__init__()
        self._open = open_stream
        self._max_retries = max_retries
        self._base_delay = base_delay
        self._on_retry = on_retry
        self._opening: Opening | None = None

    def __iter__(self) -> Iterator[list[Part]]:
        attempt = 0
        while True:
            shown = False
            try:
                self._opening = opening = Opening()
                if self._stopped.is_set():
                    return
                self._current = stream = self._open(opening)
                if self._stopped.is_set():
                    return
                for parts in stream:
                    if not shown:
                        shown = shows(parts)
                    yield parts
                return
            except ProviderError as exc:
                if shown or not exc.retryable or attempt >= self._max_retries:
                    raise
                if self._stopped.is_set():
                    return
                delay = backoff(attempt, self._base_delay, exc.retry_after)
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
            finally:
                self.close()
            attempt += 1
            if self._stopped.wait(delay):
                return

    def abort(self) -> None:
        opening = self._opening
        if opening is not None:
            opening.abort()  # still opening: connecting, or waiting for the status line
        super().abort()


#: Failures another provider is no way around: a content filter, and a request
#: the provider refused as it was (the caller's to fix; on the OpenAI endpoint,
#: a client's way to reach a model it was not given).
NO_FALLBACK = frozenset({"blocked", "bad_request"})


class FallbackStream(_OneAtATime):
    """Each provider in turn (each a :class:`RetryingStream`, retried on its
    own first), while the one before failed before any visible part: a
    :class:`~flask_aistream.parts.Source` part says who took over. Never
    after text was sent, and never past a provider that blocked the answer
    or refused the request as it was (:data:`NO_FALLBACK`)."""

    def __init__(
        self,
        attempts: list[tuple[str, str, Callable[[], PartStream]]],
        on_fallback: Callable[[ProviderError, str], None] | None = None,
    ) -> None:
        super().__init__()
        self._attempts = attempts  # (provider name, model, open)
        self._on_fallback = on_fallback

    def __iter__(self) -> Iterator[list[Part]]:
        for number, (provider, model, open_stream) in enumerate(self._attempts):
            self._current = stream = open_stream()
            shown = False
            try:
                # Looked at after the assignment: abort() sees the stream, or we see abort().
                if self._stopped.is_set():
                    return
                if number:
                    yield [Source(provider, model)]
                for parts in stream:
                    if not shown:
                        shown = shows(parts)
                    yield parts
                return
            except ProviderError as exc:
                last = number == len(self._attempts) - 1
                if shown or last or exc.kind in NO_FALLBACK or self._stopped.is_set():
                    raise
                if self._on_fallback is not None:
                    self._on_fallback(exc, self._attempts[number + 1][0])
            finally:
                stream.close()


class StepOpener:
    """Opens one step of an answer (one provider call): each provider in
    ``attempts`` retried, then the next one asked, before the step's first
    visible part; each retry and fallback logged, redacted."""

    def __init__(self, transport: Transport, settings: Settings, logger: logging.Logger) -> None:
        self.transport = transport
        self.settings = settings
        self.logger = logger

    def open(self, attempts: Sequence[tuple[Provider, ChatRequest]]) -> PartStream:
        provider, chat = attempts[0]
        if len(attempts) == 1:
            return self._retrying(provider, chat)
        return FallbackStream(
            [(p.name, c.model, partial(self._retrying, p, c)) for p, c in attempts],
            on_fallback=self._log_fallback,
        )

    def _retrying(self, provider: Provider, chat: ChatRequest) -> RetryingStream:
        return RetryingStream(
            lambda opening: provider.open(chat, self.transport, opening),
            self.settings.max_retries,
            self.settings.retry_backoff,
            on_retry=self._log_retry,
        )

    def _log_retry(self, exc: ProviderError, delay: float) -> None:
        self.logger.info(
            "flask-aistream: provider %r failed before the first token, retrying in %.2f s: %s | %s",
            exc.provider,
            delay,
            exc.message,
            self.settings.redact(exc.detail),
        )

    def _log_fallback(self, exc: ProviderError, fallback: str) -> None:
        self.logger.warning(
            "flask-aistream: provider %r failed before the first token, falling back to %r: %s | %s",
            exc.provider,
            fallback,
            exc.message,
            self.settings.redact(exc.detail),
        )
