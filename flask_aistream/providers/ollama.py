"""Ollama's native ``/api/chat``: newline-delimited JSON, not SSE.

Each line is one object: text in ``message.content``, reasoning in
``message.thinking``, tool calls whole in ``message.tool_calls`` (arguments
as a JSON object). The line with ``"done": true`` is the last and carries
``done_reason`` and the token counts (``prompt_eval_count``,
``eval_count``, each left out when zero). A failure after the answer began
is a last line ``{"error": "..."}`` under the HTTP 200.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..errors import StreamFormatError, UnsupportedOptionError
from ..parts import JSONObject, Metadata, Part, ReasoningDelta, ToolCall, ToolCallDelta, UsageUpdate
from .base import REQUEST_OPTIONS, ChatRequest, EventReader
from .http import HTTPProvider
from .ndjson import NDJSONDecoder
from .wire import (
    bearer,
    call_arguments,
    image_parts,
    in_stream_error,
    json_schema_tools,
    new_call_id,
    normalize_finish,
    parse_json,
    text_of,
)

#: ``done_reason`` values (``load`` and ``unload`` answer no chat: ``"other"``).
FINISH_REASONS = {"stop": "stop", "length": "length"}


class ChatReader(EventReader[str]):
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._first = True
        self._calls = 0

    def parse(self, event: str, out: list[Part]) -> None:
        try:
            line = parse_json(event)
            error = line.get("error")
        except (ValueError, AttributeError):
            raise StreamFormatError(
                f"not a JSON object: {event[:200]!r}", provider=self.provider
            ) from None
        if error:
            raise in_stream_error(self.provider, error)
        if self._first:
            self._first = False
            model = line.get("model")
            out.append(Metadata(model if isinstance(model, str) else None, None))
        message = line.get("message")
        if isinstance(message, dict):
            thinking = message.get("thinking")
            if thinking and isinstance(thinking, str):
                out.append(ReasoningDelta(thinking))
            content = message.get("content")
            if content and isinstance(content, str):
                out.append(content)
            for call in message.get("tool_calls") or ():
                self._tool_call(call, out)
        if line.get("done") is True:
            out.append(
                UsageUpdate(
                    input_tokens=_count(line, "prompt_eval_count"),
                    output_tokens=_count(line, "eval_count"),
                )
            )
            raw = line.get("done_reason")
            reason = normalize_finish(FINISH_REASONS, raw)
            if reason == "stop" and self._calls:
                reason = "tool_calls"
            self.stop(out, reason, raw if isinstance(raw, str) else None)
            self.done = True

    def _tool_call(self, call: Any, out: list[Part]) -> None:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            return
        call_id = call.get("id") if isinstance(call.get("id"), str) else None
        call_id = call_id or new_call_id()
        name = str(function.get("name") or "")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments or {}, ensure_ascii=False)
        out.append(ToolCallDelta(self._calls, call_id, name, arguments))
        out.append(ToolCall(call_id, name, arguments))
        self._calls += 1


def _count(line: JSONObject, key: str) -> int:
    """A token count, which Ollama leaves out when it is zero."""
    value = line.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class OllamaProvider(HTTPProvider):
    """A local Ollama (no key), or its cloud (``OLLAMA_API_KEY`` as a Bearer token)."""

    api = "ollama"
    env_keys = ("OLLAMA_API_KEY",)
    default_base_url = "http://localhost:11434"
    default_model = "llama3.2"
    path = "/api/chat"
    decoder = NDJSONDecoder
    #: Ollama cannot force a tool call.
    supports = frozenset(REQUEST_OPTIONS) - {"tool_choice"}

    def check(self, chat: ChatRequest) -> None:
        if chat.tool_choice == "auto":
            chat = replace(chat, tool_choice=None)  # what Ollama does anyway
        super().check(chat)
        for message in chat.messages:
            if any("url" in image for image in image_parts(message["content"])):
                raise UnsupportedOptionError("images", self.name, "it takes image data, not URLs")

    def headers(self) -> dict[str, str]:
        return {
            **bearer(self.conf.api_key),
            "Content-Type": "application/json",
            "Accept": "application/x-ndjson",
        }

    def body(self, chat: ChatRequest) -> JSONObject:
        messages: list[JSONObject] = []
        if chat.system:
            messages.append({"role": "system", "content": chat.system})
        for message in chat.messages:
            if message["role"] == "tool":
                messages.append(
                    {"role": "tool", "content": message["content"], "tool_name": message["name"]}
                )
                continue
            converted = {"role": message["role"], "content": text_of(message["content"])}
            images = image_parts(message["content"])
            if images:
                converted["images"] = [image["data"] for image in images]
            if message.get("tool_calls"):
                converted["tool_calls"] = [
                    {"function": {"name": call["name"], "arguments": call_arguments(call)}}
                    for call in message["tool_calls"]
                ]
            messages.append(converted)
        body: JSONObject = {"model": chat.model, "messages": messages, "stream": True}
        options: JSONObject = {}
        if chat.temperature is not None:
            options["temperature"] = chat.temperature
        if chat.max_tokens is not None:
            options["num_predict"] = chat.max_tokens
        if chat.top_p is not None:
            options["top_p"] = chat.top_p
        if chat.stop is not None:
            options["stop"] = list(chat.stop)
        if chat.seed is not None:
            options["seed"] = chat.seed
        if options:
            body["options"] = options
        if chat.response_format is not None:
            body["format"] = chat.response_format
        if chat.tools is not None:
            body["tools"] = json_schema_tools(chat.tools)
        if chat.reasoning is not None:
            body["think"] = chat.reasoning
        return body

    def reader(self) -> ChatReader:
        return ChatReader(self.name)
