"""OpenAI's chat-completion chunks, for any OpenAI client, and OpenAI's
shapes of usage and errors."""

from __future__ import annotations

import json
from collections.abc import Hashable
from json.encoder import encode_basestring_ascii
from typing import Any

from ..parts import Answer, JSONObject, ReasoningDelta, ToolCallDelta
from .sse import DONE, PING, SSE_CONTENT_TYPE, SSE_HEADERS, data_event

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
        self._tool_positions: dict[Hashable, int] = {}

    def _chunk(self, delta: JSONObject, finish_reason: str | None = None) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return data_event({**self._envelope, "choices": [choice]})

    def parts(self, parts: list[Any]) -> bytes:  # dispatched on __class__: a token is one lookup
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

    def _tool_call(self, part: ToolCallDelta) -> JSONObject:
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


def openai_usage(answer: Answer) -> JSONObject | None:
    usage = answer.usage
    if usage is None:
        return None
    counts: JSONObject = {
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


def openai_error(message: str, kind: str, code: str | None = None) -> JSONObject:
    """An error in OpenAI's shape."""
    error_type = OPENAI_ERRORS.get(kind, ("api_error", 502))[0]
    return {"error": {"message": message, "type": error_type, "code": code or kind, "param": None}}
