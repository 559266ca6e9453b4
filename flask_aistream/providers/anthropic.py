"""Anthropic's Messages API wire format.

Events are named (``event: content_block_delta`` …) and the name equals the
``type`` inside the data. Visible text is only in ``text_delta`` deltas;
thinking, signature and tool-input deltas are not text. ``message_stop``
ends the stream and ``event: error`` reports a failure after the HTTP 200.
"""

from __future__ import annotations

from typing import Any

from ..errors import StreamFormatError
from ..sse import ServerSentEvent
from .base import ChatRequest, EventReader, HTTPProvider, in_stream_error, parse_json

API_VERSION = "2023-06-01"
#: The Messages API refuses a request without ``max_tokens``.
DEFAULT_MAX_TOKENS = 4096


class MessagesReader(EventReader):
    def __init__(self, provider: str) -> None:
        self.provider = provider

    def parse(self, event: ServerSentEvent) -> str | None:
        kind = event.event
        if kind == "ping" or kind == "content_block_start" or kind == "content_block_stop":
            return None
        try:
            payload = parse_json(event.data)
            if kind == "message":  # a relay that dropped the event names
                kind = payload.get("type")
            if kind == "content_block_delta":
                delta = payload["delta"]
                return delta.get("text") if delta.get("type") == "text_delta" else None
            if kind == "message_delta":
                if payload["delta"].get("stop_reason"):
                    self.finished = True
            elif kind == "message_stop":
                self.finished = self.done = True
            elif kind == "error":
                raise in_stream_error(self.provider, payload.get("error"))
        except (ValueError, KeyError, AttributeError, TypeError):
            raise StreamFormatError(
                f"bad {kind} event: {event.data[:200]!r}", provider=self.provider
            ) from None
        return None  # message_start and event types added after this was written


class MessagesProvider(HTTPProvider):
    name = "anthropic"
    env_key = "ANTHROPIC_API_KEY"
    default_base_url = "https://api.anthropic.com"
    default_model = "claude-sonnet-4-5"
    path = "/v1/messages"

    def headers(self, api_key: str) -> dict[str, str]:
        return {
            "x-api-key": api_key,
            "anthropic-version": API_VERSION,
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def body(self, chat: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": chat.model,
            "messages": list(chat.messages),
            "max_tokens": chat.max_tokens if chat.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if chat.system:
            body["system"] = chat.system
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        return body

    def reader(self) -> MessagesReader:
        return MessagesReader(self.name)
