"""Turning a provider's answer into a ``text/event-stream`` Flask response."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Callable

from flask import Response

from .background import CLIENT_GONE, END, BackgroundReader
from .errors import ProviderError
from .providers.base import TextStream
from .sse import DONE, PING, content_event, error_event

#: An app may change any of them on the returned response. No ``Connection``
#: header: PEP 3333 forbids hop-by-hop headers (wsgiref and waitress answer
#: 500) and HTTP/2 forbids ``Connection``.
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
GENERIC_ERROR = "Something went wrong while streaming the answer."


def sse_response(
    stream: TextStream,
    on_error: Callable[[ProviderError], ProviderError],
    logger: logging.Logger,
    *,
    heartbeat: float = 0,
    total_timeout: float | None = None,
    client: socket.socket | None = None,
) -> Response:
    """A streamed response relaying ``stream``'s text as SSE events.

    The provider is called on the first read of the body, not now: a
    response that is never sent costs no tokens. Everything the generator
    needs is passed in, so it runs without a request context.

    :param heartbeat: seconds of silence after which a ``: ping`` comment is
        written (0: never). It keeps proxies from closing an idle connection
        and, since a WSGI server notices a departed client only when a write
        fails, it also bounds how long a vanished client goes unnoticed.
    :param total_timeout: seconds after which the answer is cut, or ``None``.
    :param client: the client's socket, when the server shares it: its
        closing is then noticed at once, even while the provider is silent.
    """
    return Response(
        _relay(stream, on_error, logger, heartbeat, total_timeout, client),
        content_type=SSE_CONTENT_TYPE,
        headers=SSE_HEADERS,
    )


def _relay(
    stream: TextStream,
    on_error: Callable[[ProviderError], ProviderError],
    logger: logging.Logger,
    heartbeat: float,
    total_timeout: float | None,
    client: socket.socket | None,
) -> Iterator[bytes]:
    reader = BackgroundReader(stream, client)
    deadline = None if total_timeout is None else time.monotonic() + total_timeout
    try:
        finished, error = False, None
        while not finished:
            wait = heartbeat or None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = f"The answer took longer than the {total_timeout:g} s allowed."
                    break
                wait = remaining if wait is None else min(wait, remaining)
            items = reader.wait(wait)
            if not items:
                if deadline is None or time.monotonic() < deadline:
                    yield PING
                continue
            # Everything that arrived since the last write goes out in one
            # write; each event stays whole, and nothing waits for more.
            events = []
            for item in items:
                if item.__class__ is list:
                    events += [content_event(text) for text in item]
                    continue
                if item is CLIENT_GONE:
                    return
                finished = True  # the answer's end, or its failure
                if isinstance(item, ProviderError):
                    error = on_error(item).message
                elif item is not END:
                    logger.error(
                        "flask-aistream: unexpected error while streaming an answer",
                        exc_info=item,
                    )
                    error = GENERIC_ERROR
            if events:
                yield events[0] if len(events) == 1 else b"".join(events)
        reader.stop()  # before writing: a write may block on a slow client
        if error:
            yield error_event(error)
        yield DONE
    finally:
        # Reached on GeneratorExit too: the WSGI server closes the response
        # when the client went away, and the provider must stop at once.
        reader.stop()
