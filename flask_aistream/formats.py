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
from .parts import Answer, ReasoningDelta, ToolCall, ToolCallDelta

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

    @staticmethod
    def error(message: str, kind: str = "") -> bytes:
        """A failure, as this format tells it (the same safe text everywhere)."""
        return error_event(message)

    def end(self, answer: Answer) -> bytes:
        """Everything after the last part, in one write."""
        tail = self.error(answer.error.message) if answer.error is not None else b""
        if self._finish:
            tail += data_event({"finish": finish_info(answer)})
        return tail + FINAL_ID + DONE


#: The Vercel AI SDK majors ``AI_VERCEL_PROTOCOL`` may name.
VERCEL_PROTOCOLS = (5, 6, 7)
VERCEL_HEADERS = {**SSE_HEADERS, "x-vercel-ai-ui-message-stream": "v1"}
#: Our finish reasons as the Vercel protocol's ``finishReason`` (6 and later).
VERCEL_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "error": "error",
}


class VercelFormat:
    """The Vercel AI SDK's UI message stream (``useChat``,
    ``DefaultChatTransport``): ``start``, ``start-step``, then text,
    reasoning and tool-input parts, ``finish-step``, ``finish`` and
    ``[DONE]``. Start and end markers come from a change of part kind.

    Clients before ai 5.0.217 / 6.0.231 / 7.0.32 reject any field they do not
    know, so only documented fields go out, and ``protocol`` (the client's
    major) gates the ones later majors added: ``finish.finishReason`` from 6
    on. Usage, model and finish reason travel in ``finish.messageMetadata``,
    which every version takes, as the same object as our ``finish`` event.
    """

    content_type = SSE_CONTENT_TYPE
    headers = VERCEL_HEADERS
    ping = PING

    def __init__(self, message_id: str, protocol: int = 5) -> None:
        self._message_id = message_id
        self._protocol = protocol
        self._started = False
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", its id)
        self._blocks = 0
        self._tools: dict[Any, tuple[str, str]] = {}  # position -> (id, name)

    def _start(self) -> bytes:
        self._started = True
        return data_event({"type": "start", "messageId": self._message_id}) + data_event(
            {"type": "start-step"}
        )

    def parts(self, parts: list[Any]) -> bytes:
        out = [] if self._started else [self._start()]
        for part in parts:
            kind = part.__class__
            if kind is str:
                block = self._block("text", out)
                out.append(
                    b'data: {"type":"text-delta","id":"%s","delta":%s}\n\n'
                    % (block.encode(), encode_basestring_ascii(part).encode())
                )
            elif kind is ReasoningDelta:
                block = self._block("reasoning", out)
                out.append(data_event({"type": "reasoning-delta", "id": block, "delta": part.text}))
            elif kind is ToolCallDelta:
                self._close(out)
                self._tool_delta(part, out)
            elif kind is ToolCall:
                self._close(out)
                out.append(
                    data_event(
                        {
                            "type": "tool-input-available",
                            "toolCallId": part.id,
                            "toolName": part.name,
                            "input": _json_or_text(part.arguments),
                        }
                    )
                )
        return b"".join(out)

    def _block(self, kind: str, out: list[bytes]) -> str:
        """The id of the open text or reasoning block, opening one if needed."""
        if self._open is None or self._open[0] != kind:
            self._close(out)
            self._blocks += 1
            self._open = (kind, f"{kind}-{self._blocks}")
            out.append(data_event({"type": f"{kind}-start", "id": self._open[1]}))
        return self._open[1]

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(data_event({"type": f"{self._open[0]}-end", "id": self._open[1]}))
            self._open = None

    def _tool_delta(self, part: ToolCallDelta, out: list[bytes]) -> None:
        if part.position not in self._tools:
            call = self._tools[part.position] = (
                part.id or f"call-{part.position}",
                part.name or "",
            )
            out.append(
                data_event({"type": "tool-input-start", "toolCallId": call[0], "toolName": call[1]})
            )
        if part.arguments:
            call_id = self._tools[part.position][0]
            out.append(
                data_event(
                    {
                        "type": "tool-input-delta",
                        "toolCallId": call_id,
                        "inputTextDelta": part.arguments,
                    }
                )
            )

    @staticmethod
    def error(message: str, kind: str = "") -> bytes:
        return data_event({"type": "error", "errorText": message})

    def end(self, answer: Answer) -> bytes:
        out = [] if self._started else [self._start()]
        self._close(out)
        if answer.error is not None:
            out.append(self.error(answer.error.message))
        out.append(data_event({"type": "finish-step"}))
        finish: dict[str, Any] = {"type": "finish", "messageMetadata": finish_info(answer)}
        if self._protocol >= 6:
            reason = answer.finish_reason
            if reason == "cancelled":
                reason = "interrupted" if self._protocol >= 7 else "other"
            finish["finishReason"] = VERCEL_FINISH_REASONS.get(reason, reason)
        out.append(data_event(finish))
        return b"".join(out) + DONE


def _json_or_text(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments  # what the model wrote, invalid JSON and all


#: Our finish reasons as OpenAI's (``error`` is never one: it is an error object).
OPENAI_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
}


class OpenAIFormat:
    """OpenAI's chat-completion chunks, for any OpenAI client: every chunk a
    full envelope, ``role`` in the first delta, a last chunk with a
    ``finish_reason``, a usage chunk (``choices: []``) only when asked, and a
    failure as ``{"error": {...}}`` (never disguised as a ``stop``), then
    ``[DONE]``."""

    content_type = SSE_CONTENT_TYPE
    headers = SSE_HEADERS
    ping = PING

    def __init__(
        self, completion_id: str, model: str, created: int, include_usage: bool = False
    ) -> None:
        self._envelope = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        head = json.dumps(self._envelope)[:-1].encode()
        self._text_head = head + b', "choices": [{"index": 0, "delta": {"content": '
        self._include_usage = include_usage
        self._role_sent = False
        self._tool_positions: dict[Any, int] = {}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return data_event({**self._envelope, "choices": [choice]})

    def parts(self, parts: list[Any]) -> bytes:
        out = []
        for part in parts:
            kind = part.__class__
            if kind is str:
                if self._role_sent:  # the hot path: one token
                    out.append(
                        b'data: %s%s}, "finish_reason": null}]}\n\n'
                        % (self._text_head, encode_basestring_ascii(part).encode())
                    )
                else:
                    out.append(self._chunk({"content": part}))
            elif kind is ReasoningDelta:
                out.append(self._chunk({"reasoning_content": part.text}))
            elif kind is ToolCallDelta:
                out.append(self._chunk({"tool_calls": [self._tool_call(part)]}))
        return b"".join(out)

    def _tool_call(self, part: ToolCallDelta) -> dict[str, Any]:
        index = self._tool_positions.get(part.position)
        if index is not None:
            return {"index": index, "function": {"arguments": part.arguments}}
        index = self._tool_positions[part.position] = len(self._tool_positions)
        return {
            "index": index,
            "id": part.id or f"call_{index}",
            "type": "function",
            "function": {"name": part.name or "", "arguments": part.arguments},
        }

    @staticmethod
    def error(message: str, kind: str = "") -> bytes:
        return data_event(openai_error(message, kind))

    def end(self, answer: Answer) -> bytes:
        if answer.error is not None:
            return self.error(answer.error.message, answer.error.kind) + DONE
        reason = OPENAI_FINISH_REASONS.get(answer.finish_reason, "stop")
        out = [self._chunk({}, reason)]
        if self._include_usage:
            out.append(data_event({**self._envelope, "choices": [], "usage": openai_usage(answer)}))
        return b"".join(out) + DONE


#: Each ``format=`` name's class: its content type, headers and ``error()``.
FORMAT_CLASSES: dict[str, Any] = {
    "aistream": AIStreamFormat,
    "vercel": VercelFormat,
    "openai": OpenAIFormat,
}
#: ``AI_STREAM_FORMAT`` / ``format=`` values.
FORMATS = tuple(FORMAT_CLASSES)


def openai_usage(answer: Answer) -> dict[str, Any] | None:
    usage = answer.usage
    if usage is None:
        return None
    counts: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.reasoning_tokens is not None:
        counts["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if usage.cached_input_tokens is not None:
        counts["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    return counts


#: Our error kinds as OpenAI's error ``type`` and HTTP status.
OPENAI_ERRORS = {
    "auth": ("authentication_error", 502),
    "rate_limit": ("rate_limit_error", 429),
    "quota": ("insufficient_quota", 429),
    "bad_request": ("invalid_request_error", 400),
    "not_found": ("invalid_request_error", 404),
    "timeout": ("timeout", 504),
    "blocked": ("content_filter", 400),
}


def openai_error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape."""
    error_type = OPENAI_ERRORS.get(kind, ("api_error", 502))[0]
    return {"error": {"message": message, "type": error_type, "code": code or kind, "param": None}}
