"""Turning an answer into a streamed Flask response: heartbeats, the total
timeout, and what happens when the client leaves."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any, Callable, Protocol

from flask import Response

from ..answer import AnswerRun
from ..config import DISCONNECT_POLICIES
from ..parts import Answer, Finish, Part
from ..transport.watchdog import WATCHDOG
from .guard import StreamGuard
from .reader import CLIENT_GONE, END, BackgroundReader, Producer


class FormatHead(Protocol):
    """What a response needs of a format before any part: its content type and headers."""

    @property
    def content_type(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class OutputFormat(Protocol):
    """What the relay needs of an output format (``flask_aistream.formats``):
    its content type, headers and heartbeat, the bytes for parts that
    arrived together (one write), and everything after the last part."""

    @property
    def content_type(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def ping(self) -> bytes: ...

    def parts(self, parts: list[Part]) -> bytes: ...

    def end(self, answer: Answer) -> bytes: ...


#: How long a ``"finish"`` answer may run on after its client left, when
#: ``AI_TOTAL_TIMEOUT`` does not say.
DEFAULT_FINISH_TIMEOUT = 600.0


def sse_response(
    run: AnswerRun,
    output: OutputFormat,
    logger: logging.Logger,
    *,
    heartbeat: float = 0,
    client: socket.socket | None = None,
    on_disconnect: str = "cancel",
    send_timeout: float | None = None,
    producer: Producer | None = None,
) -> Response:
    """A streamed response writing ``run``'s parts in the ``output`` format.

    The provider is called on the first read of the body, not now: a
    response that is never sent costs no tokens and runs no hook. Everything
    the generator needs is passed in, so it runs without a request context.

    :param heartbeat: seconds of silence after which a ``: ping`` comment is
        written (0: never). It keeps proxies from closing an idle connection
        and, since a WSGI server notices a departed client only when a write
        fails, it also bounds how long a vanished client goes unnoticed.
    :param client: the client's socket, when the server shares it: its
        closing is then noticed at once, even while the provider is silent.
    :param on_disconnect: ``"cancel"`` hangs up on the provider when the
        client leaves; ``"finish"`` reads the answer to its end for the
        hooks, bounded by the total timeout (else ten minutes).
    :param send_timeout: seconds one write may stay blocked on a client that
        reads nothing before the stream is closed (``None``: no limit).
    :param producer: what the reader iterates instead of ``run``, when the
        events are encoded there (a resumable answer's
        :class:`~flask_aistream.resume.Recorder`): its ``bytes`` items are
        written as they are.
    """
    guard = StreamGuard(
        run, client, send_timeout, logger, outlives_client=on_disconnect == "finish"
    )
    ending = Ending()
    response = Response(
        _relay(
            run, output, logger, heartbeat, client, on_disconnect, guard, producer or run, ending
        ),
        content_type=output.content_type,
        headers=output.headers,
    )
    response.call_on_close(ending)
    return response


class Ending:
    """What is left once an answer's end was written: releasing its reader,
    which runs the hooks. The server does it when it closes the response,
    after it sent the body's end, so a slow hook holds neither the browser
    nor anything that waits for the response to end."""

    def __init__(self) -> None:
        self.action: Callable[[], None] | None = None

    def __call__(self) -> None:
        action, self.action = self.action, None
        if action is not None:
            action()


def _received(items: list[Any]) -> bool:
    """Whether ``items`` hold anything but empty reads (a provider's comments)."""
    return any(item.__class__ is not list or item for item in items)


def _relay(
    run: AnswerRun,
    output: OutputFormat,
    logger: logging.Logger,
    heartbeat: float,
    client: socket.socket | None,
    on_disconnect: str,
    guard: StreamGuard,
    producer: Producer,
    ending: Ending,
) -> Iterator[bytes]:
    # Once the answer shows, the generator reads the provider itself, unless
    # the answer must go on without it ("finish").
    # An answer whose tools run between steps keeps its reader thread: the
    # generator then watches the client while a tool runs.
    reader = BackgroundReader(
        producer,
        client,
        after=run.finish,
        hand_over=on_disconnect == DISCONNECT_POLICIES[0] and not run.runs_tools,
    )
    WATCHDOG.watch(guard)  # deadlines that hold while this generator is stuck writing
    encode = output.parts
    answer: Answer | None = None
    ended = False  # the answer's end was written
    try:
        # The total timeout is not checked here: AnswerRun checks it after each
        # read, and the watchdog while nothing is read or written.
        # A ping goes out when nothing was written for ``heartbeat`` seconds,
        # whatever the provider did meanwhile (its own comments reach nobody).
        last_write = time.monotonic()
        while answer is None:
            wait = max(0.0, last_write + heartbeat - time.monotonic()) if heartbeat else None
            items = reader.wait(wait)
            if not items or (
                heartbeat and time.monotonic() - last_write >= heartbeat and not _received(items)
            ):
                guard.writing_since = last_write = time.monotonic()
                yield output.ping
                guard.writing_since = None
                if not items:
                    continue
            # Everything that arrived since the last write goes out in one
            # write; each event stays whole, and nothing waits for more.
            chunks = []
            for item in items:
                if item.__class__ is list:
                    chunk = encode(item)
                    if chunk:
                        chunks.append(chunk)
                elif item.__class__ is bytes:  # encoded by the producer
                    chunks.append(item)
                elif item.__class__ is Finish:
                    answer = item.answer
                elif item is CLIENT_GONE:
                    return
                elif item is not END:  # AnswerRun catches everything else: a bug here
                    logger.error("flask-aistream: the answer's reader failed", exc_info=item)
                    answer = run.finish()
            if chunks:
                guard.writing_since = last_write = time.monotonic()
                yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
                guard.writing_since = None
        tail = output.end(answer)
        if tail:
            guard.writing_since = time.monotonic()
            yield tail
            guard.writing_since = None
        ended = True
        ending.action = partial(_release, reader, guard)  # once the response closed
    finally:
        # Reached on GeneratorExit too: the WSGI server closes the response
        # when the client went away, and the provider must stop at once
        # (unless the app asked for the whole answer).
        guard.writing_since = None
        if ended:
            pass  # the rest is the Ending's, when the server closes the response
        elif answer is None and on_disconnect == "finish":
            run.limit(DEFAULT_FINISH_TIMEOUT)
            guard.attached = False  # the watchdog still holds the run to its deadline
            reader.detach()
        else:
            WATCHDOG.forget(guard)
            reader.stop()


def guarded_response(
    chunks: Iterator[bytes],
    output: FormatHead,
    logger: logging.Logger,
    *,
    client: socket.socket | None = None,
    send_timeout: float | None = None,
) -> Response:
    """A response writing ``chunks`` (a stored answer's events, for a reader
    that reconnected) under the same send timeout and watchdog as a live
    stream: a reader that reads nothing is hung up on, not left holding its
    thread with megabytes queued."""
    guard = StreamGuard(None, client, send_timeout, logger)
    return Response(
        _guarded(chunks, guard), content_type=output.content_type, headers=output.headers
    )


def _guarded(chunks: Iterator[bytes], guard: StreamGuard) -> Iterator[bytes]:
    WATCHDOG.watch(guard)
    try:
        for chunk in chunks:
            guard.writing_since = time.monotonic()
            yield chunk
            guard.writing_since = None
    finally:
        guard.writing_since = None
        WATCHDOG.forget(guard)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _release(reader: BackgroundReader, guard: StreamGuard) -> None:
    """The answer's end was sent: run the hooks, then let its reader go."""
    reader.release()
    WATCHDOG.forget(guard)
    reader.stop()
