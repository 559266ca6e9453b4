"""Anthropic's Messages API wire format.

Events are named (``event: content_block_delta`` …) and the name equals the
``type`` inside the data. Visible text is only in ``text_delta`` deltas;
``thinking_delta`` is reasoning, a ``tool_use`` block's ``input_json_delta``
fragments are its arguments, and signature deltas are nobody's business.
``message_start`` says the model and the input tokens, ``message_delta`` the
stop reason and the output tokens so far; ``message_stop`` ends the stream
and ``event: error`` reports a failure after the HTTP 200.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import StreamFormatError, UnsupportedOptionError
from ..parts import JSONObject, Metadata, Part, ReasoningDelta, UsageUpdate
from .base import REQUEST_OPTIONS, ChatRequest, EventReader
from .http import HTTPProvider
from .sse import ServerSentEvent
from .wire import (
    ToolCallAssembler,
    call_arguments,
    in_stream_error,
    key_header,
    normalize_finish,
    parse_json,
    token_counts,
)

API_VERSION = "2023-06-01"
#: The Messages API refuses a request without ``max_tokens``.
DEFAULT_MAX_TOKENS = 4096

#: ``stop_reason`` values, normalized (``pause_turn`` and anything new: ``"other"``).
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def usage_update(usage: Any) -> UsageUpdate | None:
    """Anthropic counts cache reads and writes apart from ``input_tokens``;
    ours counts every input token, cached ones included."""
    if not isinstance(usage, dict):
        return None
    counts = token_counts(usage)
    input_tokens = None
    if "input_tokens" in counts:
        input_tokens = (
            counts["input_tokens"]
            + counts.get("cache_read_input_tokens", 0)
            + counts.get("cache_creation_input_tokens", 0)
        )
    return UsageUpdate(
        input_tokens=input_tokens,
        output_tokens=counts.get("output_tokens"),
        cached_input_tokens=counts.get("cache_read_input_tokens"),
    )


class MessagesReader(EventReader[ServerSentEvent]):
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._tools = ToolCallAssembler()

    def parse(self, event: ServerSentEvent, out: list[Part]) -> None:
        kind = event.event
        if kind == "ping":
            return
        try:
            payload = parse_json(event.data)
            if kind == "message":  # a relay that dropped the event names
                kind = payload.get("type")
            if kind == "content_block_delta":
                delta = payload["delta"]
                delta_type = delta.get("type")
                if delta_type == "text_delta":
                    text = delta.get("text")
                    if text:
                        out.append(text)
                elif delta_type == "thinking_delta":
                    if delta.get("thinking"):
                        out.append(ReasoningDelta(delta["thinking"]))
                elif delta_type == "input_json_delta":
                    self._tools.add(payload.get("index"), out, arguments=delta.get("partial_json"))
            elif kind == "content_block_start":
                block = payload["content_block"]
                if block.get("type") == "tool_use":
                    self._tools.add(payload.get("index"), out, id=block["id"], name=block["name"])
            elif kind == "content_block_stop":
                self._tools.complete(payload.get("index"), out, empty="{}")
            elif kind == "message_start":
                message = payload["message"]
                out.append(Metadata(message.get("model"), message.get("id")))
                self._usage(message.get("usage"), out)
            elif kind == "message_delta":
                self._usage(payload.get("usage"), out)
                stop_reason = payload["delta"].get("stop_reason")
                if stop_reason:
                    self.stop(out, normalize_finish(FINISH_REASONS, stop_reason), stop_reason)
            elif kind == "message_stop":
                self._tools.complete_all(out)
                self.stop(out, "other", None)  # an end with no stop reason
                self.done = True
            elif kind == "error":
                raise in_stream_error(self.provider, payload.get("error"))
        except (ValueError, KeyError, AttributeError, TypeError):
            raise StreamFormatError(
                f"bad {kind} event: {event.data[:200]!r}", provider=self.provider
            ) from None
        # Event types added after this was written are ignored.

    @staticmethod
    def _usage(usage: Any, out: list[Part]) -> None:
        update = usage_update(usage)
        if update is not None:
            out.append(update)


#: Thinking budgets for ``reasoning``: the API takes 1,024 tokens at least.
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


class MessagesProvider(HTTPProvider):
    api = "anthropic"
    env_keys = ("ANTHROPIC_API_KEY",)
    default_base_url = "https://api.anthropic.com"
    default_model = "claude-sonnet-4-5"
    path = "/v1/messages"
    #: No ``seed``; JSON output only with a schema (checked below).
    supports = frozenset(REQUEST_OPTIONS) - {"seed"}

    def check(self, chat: ChatRequest) -> None:
        super().check(chat)
        if chat.response_format == "json":
            raise UnsupportedOptionError(
                "response_format", self.name, 'it takes a JSON schema, not "json"'
            )
        if chat.reasoning is not None and chat.temperature not in (None, 1):
            raise UnsupportedOptionError(
                "temperature", self.name, "with reasoning on, the temperature must be 1"
            )

    def headers(self) -> dict[str, str]:
        return {
            **key_header("x-api-key", self.conf.require_api_key()),
            "anthropic-version": API_VERSION,
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def body(self, chat: ChatRequest) -> JSONObject:
        max_tokens = chat.max_tokens if chat.max_tokens is not None else DEFAULT_MAX_TOKENS
        body: JSONObject = {
            "model": chat.model,
            "messages": _messages(chat.messages),
            "max_tokens": max_tokens,
            "stream": True,
        }
        if chat.system:
            body["system"] = chat.system
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        if chat.top_p is not None:
            body["top_p"] = chat.top_p
        if chat.stop is not None:
            body["stop_sequences"] = list(chat.stop)
        if chat.response_format is not None:
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": chat.response_format}
            }
        if chat.tools is not None:
            body["tools"] = [
                {
                    "name": tool["name"],
                    **({"description": tool["description"]} if "description" in tool else {}),
                    "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
                }
                for tool in chat.tools
            ]
        if isinstance(chat.tool_choice, dict):
            body["tool_choice"] = {"type": "tool", "name": chat.tool_choice["name"]}
        elif chat.tool_choice is not None:
            body["tool_choice"] = TOOL_CHOICES[chat.tool_choice]
        if chat.reasoning is not None:
            budget = THINKING_BUDGETS[chat.reasoning]
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            if max_tokens <= budget:  # the budget must be below max_tokens: room to answer too
                body["max_tokens"] = budget + max_tokens
        return body

    def reader(self) -> MessagesReader:
        return MessagesReader(self.name)


def _messages(messages: Iterable[JSONObject]) -> list[JSONObject]:
    """Neutral turns as the Messages API takes them: an assistant's tool calls
    as ``tool_use`` blocks, and every result of one turn as ``tool_result``
    blocks of the one user message that follows it."""
    converted: list[JSONObject] = []
    results: list[JSONObject] | None = None  # the tool_result blocks of the open user turn
    for message in messages:
        if message["role"] == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": message["content"],
            }
            if message["error"]:
                block["is_error"] = True
            if results is None:
                results = []
                converted.append({"role": "user", "content": results})
            results.append(block)
            continue
        results = None
        content = _content(message["content"])
        if message.get("tool_calls"):
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            content = [block for block in blocks if block.get("text") != ""] + [
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["name"],
                    "input": call_arguments(call),
                }
                for call in message["tool_calls"]
            ]
        converted.append({"role": message["role"], "content": content})
    return converted


def _content(content: Any) -> Any:
    """A neutral message content as the Messages API takes it."""
    if isinstance(content, str):
        return content
    blocks = []
    for part in content:
        if part["type"] == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif "url" in part:
            blocks.append({"type": "image", "source": {"type": "url", "url": part["url"]}})
        else:
            source = {"type": "base64", "media_type": part["media_type"], "data": part["data"]}
            blocks.append({"type": "image", "source": source})
    return blocks
