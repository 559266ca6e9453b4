"""What we send: SSE framing, and the output formats that turn parts into bytes.

Every event is one ``data:`` line of JSON, written whole. JSON with ASCII
escapes cannot contain a raw CR or LF (so no event can be split or forged by
model output) nor a multi-byte character (so a browser that decodes each
network read on its own, as the spec's fetch example does, never sees half a
character).

An output format knows nothing of providers: it gets lists of parts as they
arrive (:meth:`~AIStreamFormat.parts`), then the finished
:class:`~flask_aistream.parts.Answer` (:meth:`~AIStreamFormat.end`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

from .errors import ConfigurationError
from .parts import Answer, ReasoningDelta, ToolCall

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
#: An app may change any of them on the returned response. No ``Connection``
#: header: PEP 3333 forbids hop-by-hop headers (wsgiref and waitress answer
#: 500) and HTTP/2 forbids ``Connection``.
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
#: The id of the last event. An ``EventSource`` that does not ``close()`` on
#: ``[DONE]`` reconnects with it as ``Last-Event-ID``; such a request gets a
#: 204, which stops it, instead of asking the provider again. It grants
#: nothing else, so it need not be signed. It comes in a block of its own
#: (an id and no data, which sets the id and dispatches nothing), so parsers
#: that take each block as one ``data:`` line still see ``[DONE]`` alone.
DONE_ID = "flask-aistream:done"
FINAL_ID = b"id: %s\n\n" % DONE_ID.encode()

#: The events ``AI_STREAM_EVENTS`` / ``events=`` may add to the default format.
OPTIONAL_EVENTS = ("reasoning", "tool_calls", "finish")


def data_event(payload: Any) -> bytes:
    return b"data: %s\n\n" % json.dumps(payload).encode()


def content_event(text: str) -> bytes:
    return b'data: {"content": %s}\n\n' % encode_basestring_ascii(text).encode()


def error_event(message: str) -> bytes:
    return b'data: {"error": %s}\n\n' % encode_basestring_ascii(message).encode()


def finish_info(answer: Answer) -> dict[str, Any]:
    """How an answer ended, as the ``finish`` event (and other formats' metadata) says it."""
    return {
        "reason": answer.finish_reason,
        "usage": answer.usage.as_dict() if answer.usage is not None else None,
        "model": answer.model,
    }


def checked_events(value: Any, source: str) -> tuple[str, ...]:
    """``value`` as a tuple of optional event names; a wrong one raises,
    naming ``source`` (the config key or the option)."""
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{source} must be a list of event names, not {value!r}.")
    unknown = sorted(set(names) - set(OPTIONAL_EVENTS))
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown event(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(OPTIONAL_EVENTS)}."
        )
    return tuple(names)


class AIStreamFormat:
    """The original specification's format, byte for byte: one
    ``{"content"}`` event per text delta, one ``{"error"}`` event if the
    answer failed, then ``[DONE]``. ``events`` adds ``{"reasoning"}`` per
    reasoning delta, ``{"tool_call"}`` per complete tool call, and one
    ``{"finish"}`` right before ``[DONE]``; clients that only know the
    original events skip them."""

    content_type = SSE_CONTENT_TYPE
    headers = SSE_HEADERS
    ping = PING

    def __init__(self, events: Iterable[str] = ()) -> None:
        events = set(events)
        self._reasoning = "reasoning" in events
        self._tool_calls = "tool_calls" in events
        self._finish = "finish" in events
        self._text_only = not (self._reasoning or self._tool_calls)

    def parts(self, parts: list[Any]) -> bytes:
        """The bytes for parts that arrived together: one write."""
        if self._text_only:
            events = [content_event(part) for part in parts if part.__class__ is str]
        else:
            events = [event for event in map(self._event, parts) if event]
        if not events:
            return b""
        return events[0] if len(events) == 1 else b"".join(events)

    def _event(self, part: Any) -> bytes:
        kind = part.__class__
        if kind is str:
            return content_event(part)
        if kind is ReasoningDelta and self._reasoning:
            return data_event({"reasoning": part.text})
        if kind is ToolCall and self._tool_calls:
            return data_event(
                {"tool_call": {"id": part.id, "name": part.name, "arguments": part.arguments}}
            )
        return b""

    def end(self, answer: Answer) -> bytes:
        """Everything after the last part, in one write."""
        tail = error_event(answer.error.message) if answer.error is not None else b""
        if self._finish:
            tail += data_event({"finish": finish_info(answer)})
        return tail + FINAL_ID + DONE
