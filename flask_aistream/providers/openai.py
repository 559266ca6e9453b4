"""The chat-completions wire format: OpenAI, and the providers that copy it
(Groq, Mistral).

Each event is one ``data:`` line holding a ``chat.completion.chunk``; the
visible text is ``choices[0].delta.content`` and ``data: [DONE]`` ends the
stream. Role-only, usage-only and empty chunks carry no text; ``refusal``,
``reasoning`` and ``tool_calls`` deltas are other channels and never text.
"""

from __future__ import annotations

from typing import Any

from ..errors import StreamFormatError
from ..sse import ServerSentEvent
from .base import ChatRequest, EventReader, HTTPProvider, in_stream_error, parse_json


class ChatCompletionsReader(EventReader):
    def __init__(self, provider: str) -> None:
        self.provider = provider

    def parse(self, event: ServerSentEvent) -> str | None:
        data = event.data
        if data == "[DONE]":
            self.finished = self.done = True
            return None
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
        if not choices:
            return None  # a usage-only chunk, or a provider's keep-alive
        choice = choices[0]
        if choice.get("index", 0) != 0:  # n > 1: follow the first answer only
            return None
        finish = choice.get("finish_reason")
        if finish:
            if finish == "error":
                raise in_stream_error(self.provider, chunk.get("error") or "")
            self.finished = True
        delta = choice.get("delta")
        if not delta:
            return None
        content = delta.get("content")
        if content.__class__ is str:
            return content
        if isinstance(content, list):  # Mistral's typed chunks: keep "text" only
            return "".join(
                part.get("text") or ""
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
        return None


class ChatCompletionsProvider(HTTPProvider):
    path = "/chat/completions"
    #: OpenAI renamed ``max_tokens`` (its reasoning models reject the old name);
    #: Groq and Mistral document ``max_tokens``.
    max_tokens_field = "max_tokens"

    def __init__(
        self,
        name: str,
        env_key: str,
        base_url: str,
        model: str,
        max_tokens_field: str = "max_tokens",
    ) -> None:
        self.name = name
        self.env_key = env_key
        self.default_base_url = base_url
        self.default_model = model
        self.max_tokens_field = max_tokens_field

    def headers(self, api_key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def body(self, chat: ChatRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if chat.system:
            messages.append({"role": "system", "content": chat.system})
        messages.extend(chat.messages)
        body: dict[str, Any] = {"model": chat.model, "messages": messages, "stream": True}
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        if chat.max_tokens is not None:
            body[self.max_tokens_field] = chat.max_tokens
        return body

    def reader(self) -> ChatCompletionsReader:
        return ChatCompletionsReader(self.name)
