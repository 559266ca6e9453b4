"""The chat-completions wire format: OpenAI, and the providers that copy it
(Groq, Mistral).

Each event is one ``data:`` line holding a ``chat.completion.chunk``; the
visible text is ``choices[0].delta.content`` and ``data: [DONE]`` ends the
stream. Role-only, usage-only and empty chunks carry no text; reasoning
(``reasoning_content``, ``reasoning``, Mistral's ``thinking`` chunks) and
``tool_calls`` deltas are parts of their own, and a ``refusal`` is never text:
it turns the finish reason into ``content_filter``. Usage comes in a chunk
of its own after the finish reason (OpenAI, with ``stream_options``), on the
finish chunk (Mistral) or in ``x_groq.usage`` (Groq).
"""

from __future__ import annotations

from typing import Any

from ..errors import StreamFormatError
from ..parts import JSONObject, Part, ReasoningDelta, UsageUpdate
from .base import REQUEST_OPTIONS, ChatRequest, EventReader
from .http import HTTPProvider
from .sse import ServerSentEvent
from .wire import (
    TOOL_FIELDS,
    ToolCallAssembler,
    bearer,
    data_url,
    in_stream_error,
    json_schema_tools,
    key_header,
    metadata,
    normalize_finish,
    parse_json,
)

#: ``finish_reason`` values, normalized. ``function_call`` is the deprecated
#: name of ``tool_calls``; vLLM's ``abort`` and anything new is ``"other"``.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


def usage_update(usage: object) -> UsageUpdate | None:
    """OpenAI's usage object (Groq's ``x_groq.usage`` and Mistral's have the same fields)."""
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return UsageUpdate(
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=_count(usage.get("completion_tokens")),
        total_tokens=_count(usage.get("total_tokens")),
        reasoning_tokens=_count(completion_details.get("reasoning_tokens")),
        cached_input_tokens=_count(prompt_details.get("cached_tokens")),
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ChatCompletionsReader(EventReader[ServerSentEvent]):
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._first = True  # the first chunk names the model and the response
        self._refused = False
        self._tools = ToolCallAssembler()

    def parse(self, event: ServerSentEvent, out: list[Part]) -> None:
        data = event.data
        if data == "[DONE]":
            self._tools.complete_all(out)
            self.stop(out, "other", None)  # an end marker with no finish reason
            self.done = True
            return
        try:
            chunk = parse_json(data)
            choices = chunk.get("choices")
        except (ValueError, AttributeError):
            raise StreamFormatError(
                f"not a JSON object: {data[:200]!r}", provider=self.provider
            ) from None
        error = chunk.get("error")
        if error:
            raise in_stream_error(self.provider, error)
        if choices:  # most chunks are one token: {"content": "..."} and nothing else
            choice = choices[0]
            delta = choice.get("delta")
            if (
                delta.__class__ is dict
                and len(delta) == 1
                and choice.get("finish_reason") is None
                and choice.get("index", 0) == 0
            ):
                content = delta.get("content")
                if content.__class__ is str:
                    if content:
                        out.append(content)
                    return
        self._chunk(chunk, choices, out)

    def _chunk(self, chunk: JSONObject, choices: Any, out: list[Part]) -> None:
        """Any chunk but a plain token: the first, reasoning, tool calls, the
        finish (which always comes this way, so the model is known by then),
        usage."""
        if self._first:
            self._first = False
            out.append(metadata(chunk.get("model"), chunk.get("id")))
        usage = chunk.get("usage")
        if usage:  # OpenAI's own chunk after the finish; Mistral's on it (the last wins)
            update = usage_update(usage)
            if update is not None:
                out.append(update)
        if not choices:
            return  # a usage-only chunk, or a provider's keep-alive
        choice = choices[0]
        if choice.get("index", 0) != 0:  # n > 1: follow the first answer only
            return
        delta = choice.get("delta")
        if delta and isinstance(delta, dict):
            self._delta(delta, out)
        finish = choice.get("finish_reason")
        if finish:
            self._finish(chunk, finish, out)

    def _delta(self, delta: JSONObject, out: list[Part]) -> None:
        """Reasoning, text, tool-call fragments and refusals, in that order."""
        for key in ("reasoning_content", "reasoning"):  # DeepSeek and vLLM; OpenRouter and Groq
            reasoning = delta.get(key)
            if reasoning and isinstance(reasoning, str):
                out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if content.__class__ is str:
            if content:
                out.append(content)
        elif isinstance(content, list):  # Mistral's typed chunks
            for part in content:
                if isinstance(part, dict):
                    self._content_part(part, out)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                self._tools.add(
                    call.get("index", 0),
                    out,
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments"),
                )
        if delta.get("refusal"):
            self._refused = True  # its text is not the answer; the reason will say it

    @staticmethod
    def _content_part(part: JSONObject, out: list[Part]) -> None:
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if text and isinstance(text, str):
                out.append(text)
        elif kind == "thinking":  # Magistral: a list of text chunks (or a string)
            thinking = part.get("thinking")
            if isinstance(thinking, str):
                thinking = [{"type": "text", "text": thinking}]
            for piece in thinking or ():
                text = piece.get("text") if isinstance(piece, dict) else None
                if text and isinstance(text, str):
                    out.append(ReasoningDelta(text))

    def _finish(self, chunk: JSONObject, finish: object, out: list[Part]) -> None:
        if finish == "error":  # OpenRouter: the upstream failed mid-answer
            raise in_stream_error(self.provider, chunk.get("error") or "")
        x_groq = chunk.get("x_groq")
        if isinstance(x_groq, dict) and x_groq.get("usage"):
            update = usage_update(x_groq["usage"])
            if update is not None:
                out.append(update)
        self._tools.complete_all(out)
        reason = normalize_finish(FINISH_REASONS, finish)
        if self._refused and reason == "stop":
            reason = "content_filter"  # a refusal ends as a normal stop
        self.stop(out, reason, finish if isinstance(finish, str) else None)


class ChatCompletionsProvider(HTTPProvider):
    """Any server that speaks OpenAI's chat completions (``AI_PROVIDERS``
    entries with ``"api": "openai"``, the presets)."""

    api = "openai"
    path = "/chat/completions"
    supports = frozenset(REQUEST_OPTIONS)
    #: The max-tokens field: OpenAI renamed it (its reasoning models reject
    #: the old name); every compatible server knows ``max_tokens``.
    max_tokens_field = "max_tokens"
    seed_field = "seed"

    def headers(self) -> dict[str, str]:
        return {
            **bearer(self.conf.require_api_key()),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def body(self, chat: ChatRequest) -> JSONObject:
        messages: list[JSONObject] = []
        if chat.system:
            messages.append({"role": "system", "content": chat.system})
        messages.extend(_message(message) for message in chat.messages)
        body: JSONObject = {"model": chat.model, "messages": messages, "stream": True}
        if self.conf.stream_usage:  # else a stream reports no usage at all
            body["stream_options"] = {"include_usage": True}
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        if chat.max_tokens is not None:
            body[self.max_tokens_field] = chat.max_tokens
        if chat.top_p is not None:
            body["top_p"] = chat.top_p
        if chat.stop is not None:
            body["stop"] = list(chat.stop)
        if chat.seed is not None:
            body[self.seed_field] = chat.seed
        if chat.response_format == "json":
            body["response_format"] = {"type": "json_object"}
        elif chat.response_format is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": chat.response_format},
            }
        if chat.tools is not None:
            # ``strict``: schema adherence, which OpenAI's models can promise.
            body["tools"] = json_schema_tools(chat.tools, (*TOOL_FIELDS, "strict"))
        if isinstance(chat.tool_choice, dict):
            body["tool_choice"] = {
                "type": "function",
                "function": {"name": chat.tool_choice["name"]},
            }
        elif chat.tool_choice is not None:
            body["tool_choice"] = chat.tool_choice
        if chat.reasoning is not None:
            body["reasoning_effort"] = chat.reasoning
        return body

    def reader(self) -> ChatCompletionsReader:
        return ChatCompletionsReader(self.name)


def _message(message: JSONObject) -> JSONObject:
    """A neutral turn as a chat message: tool calls and results in OpenAI's shape."""
    if message["role"] == "tool":
        return {
            "role": "tool",
            "tool_call_id": message["tool_call_id"],
            "content": message["content"],
        }
    converted: JSONObject = {"role": message["role"], "content": _content(message["content"])}
    if message.get("tool_calls"):
        converted["content"] = converted["content"] or None
        converted["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in message["tool_calls"]
        ]
    return converted


def _content(content: Any) -> Any:
    """A neutral message content as chat completions take it."""
    if isinstance(content, str):
        return content
    return [
        {"type": "text", "text": part["text"]}
        if part["type"] == "text"
        else {"type": "image_url", "image_url": {"url": data_url(part)}}
        for part in content
    ]


class OpenAIProvider(ChatCompletionsProvider):
    env_keys = ("OPENAI_API_KEY",)
    default_base_url = "https://api.openai.com/v1"
    default_model: str | None = "gpt-4o-mini"
    max_tokens_field = "max_completion_tokens"


class AzureProvider(OpenAIProvider):
    """Azure OpenAI's v1 API: OpenAI's format, its own key header, and the
    deployment's name as the model."""

    api = "azure"
    env_keys = ("AZURE_OPENAI_API_KEY",)
    default_base_url = ""  # the resource's: AI_AZURE_BASE_URL or AZURE_OPENAI_ENDPOINT
    default_model: str | None = None  # a deployment name only the app knows

    def headers(self) -> dict[str, str]:
        return {
            **key_header("api-key", self.conf.require_api_key()),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }


class MistralProvider(ChatCompletionsProvider):
    """Mistral answers 422 to ``stream_options`` (and reports usage anyway),
    names the seed ``random_seed`` and has no reasoning effort."""

    seed_field = "random_seed"
    supports = ChatCompletionsProvider.supports - {"reasoning"}
