"""Turning a provider's answer into a ``text/event-stream`` Flask response."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Callable

from flask import Response

from .errors import ProviderError
from .providers.base import TextStream
from .sse import DONE, content_event, error_event

#: An app may change any of them on the returned response. No ``Connection`` header: PEP 3333 forbids hop-by-hop
#: headers (wsgiref and waitress answer 500) and HTTP/2 forbids ``Connection``.
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
GENERIC_ERROR = "Something went wrong while streaming the answer."


def sse_response(
    open_stream: Callable[[], TextStream],
    on_error: Callable[[ProviderError], ProviderError],
    logger: logging.Logger,
) -> Response:
    """A streamed response relaying ``open_stream()``'s text as SSE events.

    The upstream is opened on the first read of the body, not now: a response
    that is never sent costs no tokens. Everything the generator needs is
    passed in, so it runs without a request context.
    """
    return Response(
        _relay(open_stream, on_error, logger),
        content_type=SSE_CONTENT_TYPE,
        headers=SSE_HEADERS,
    )


def _relay(
    open_stream: Callable[[], TextStream],
    on_error: Callable[[ProviderError], ProviderError],
    logger: logging.Logger,
) -> Iterator[bytes]:
    stream = None
    try:
        error = None
        try:
            stream = open_stream()
            for texts in stream:
                # Deltas that arrived in one read go out in one write; each
                # event stays whole, and nothing waits for more.
                if len(texts) == 1:
                    yield content_event(texts[0])
                else:
                    yield b"".join([content_event(text) for text in texts])
        except ProviderError as exc:
            error = on_error(exc).message
        except Exception:
            logger.exception("flask-aistream: unexpected error while streaming an answer")
            error = GENERIC_ERROR
        if stream is not None:
            stream.close()  # before writing: a write may block on a slow client
        if error is not None:
            yield error_event(error)
        yield DONE
    finally:
        # Reached on GeneratorExit too: the WSGI server closes the response
        # when the client went away, and the provider must stop at once.
        if stream is not None:
            stream.close()
