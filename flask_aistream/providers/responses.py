"""OpenAI's Responses API (``POST {base}/responses``): OpenAI, Azure's v1
API, and the servers of the Open Responses specification.

Each event is a JSON object with a ``type`` (an ``event:`` line may name it
too, or not: only the data is read). Text comes in
``response.output_text.delta``, reasoning in the summary and reasoning text
deltas (summary parts joined by a blank line), tool calls as a
``function_call`` output item and its argument deltas; the answer ends with
``response.completed`` (usage, model, id), ``response.incomplete`` (cut for
length, or filtered) or ``response.failed``; OpenAI sends no ``[DONE]``, the
Open Responses servers may. Every other event (hosted tools, annotations,
audio, lifecycle) is skipped.
"""

from __future__ import annotations

from ..errors import ProviderError, StreamFormatError
from ..parts import JSONObject, Part, ReasoningDelta, UsageUpdate
from .base import REQUEST_OPTIONS, ChatRequest, EventReader
from .http import HTTPProvider
from .sse import ServerSentEvent
from .wire import (
    ToolCallAssembler,
    bearer,
    data_url,
    key_header,
    metadata,
    parse_json,
    reported_error,
)

#: Error codes (or types) as our kinds, and whether trying again may help.
ERROR_KINDS = {
    "rate_limit_exceeded": ("rate_limit", True),
    "tokens": ("rate_limit", True),
    "insufficient_quota": ("quota", False),
    "server_error": ("unavailable", True),
    "overloaded": ("unavailable", True),
    "invalid_request_error": ("bad_request", False),
    "invalid_prompt": ("bad_request", False),
}
#: Why an answer is incomplete, as a finish reason.
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesReader(EventReader[ServerSentEvent]):
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._named = False  # the model and id went out
        self._refused = False
        self._calls = 0
        self._summary: tuple[object, object] | None = None  # the summary part under way
        self._tools = ToolCallAssembler()

    def parse(self, event: ServerSentEvent, out: list[Part]) -> None:
        data = event.data
        if data == "[DONE]":
            self.done = True  # an Open Responses end marker; the terminal event came first
            return
        try:
            payload = parse_json(data)
            kind = payload.get("type")
        except (ValueError, AttributeError):
            raise StreamFormatError(
                f"not a JSON object: {data[:200]!r}", provider=self.provider
            ) from None
        if kind == "response.output_text.delta":  # nearly every event: one token
            delta = payload.get("delta")
            if delta and isinstance(delta, str):
                out.append(delta)
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, payload, out)

    def _created(self, payload: JSONObject, out: list[Part]) -> None:
        response = payload.get("response")
        if isinstance(response, dict) and not self._named:
            self._named = True
            out.append(metadata(response.get("model"), response.get("id")))

    def _reasoning(self, payload: JSONObject, out: list[Part]) -> None:
        delta = payload.get("delta")
        if not delta or not isinstance(delta, str):
            return
        part = (payload.get("item_id"), payload.get("summary_index"))
        if self._summary is not None and part != self._summary:
            out.append(ReasoningDelta("\n\n"))  # the next summary part
        self._summary = part
        out.append(ReasoningDelta(delta))

    def _refusal(self, payload: JSONObject, out: list[Part]) -> None:
        self._refused = True  # its text is not the answer

    def _item_added(self, payload: JSONObject, out: list[Part]) -> None:
        item = payload.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            self._calls += 1
            self._tools.add(
                payload.get("output_index", self._calls),
                out,
                id=item.get("call_id"),
                name=item.get("name"),
                arguments=item.get("arguments") or "",
            )

    def _arguments(self, payload: JSONObject, out: list[Part]) -> None:
        self._tools.add(
            payload.get("output_index", self._calls), out, arguments=payload.get("delta")
        )

    def _item_done(self, payload: JSONObject, out: list[Part]) -> None:
        item = payload.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            self._tools.complete(payload.get("output_index", self._calls), out, empty="{}")

    def _end(self, payload: JSONObject, out: list[Part]) -> None:
        """``response.completed`` or ``response.incomplete``: usage, and how it ended."""
        response = payload.get("response")
        response = response if isinstance(response, dict) else {}
        if not self._named:
            self._created(payload, out)
        out.append(metadata(response.get("model"), response.get("id")))
        update = usage_update(response.get("usage"))
        if update is not None:
            out.append(update)
        self._tools.complete_all(out)
        if payload.get("type") == "response.incomplete":
            details = response.get("incomplete_details")
            raw = details.get("reason") if isinstance(details, dict) else None
            reason = INCOMPLETE.get(raw, "other") if isinstance(raw, str) else "other"
        else:
            raw = "completed"
            reason = "tool_calls" if self._calls else "stop"
            if self._refused and reason == "stop":
                reason = "content_filter"
        self.stop(out, reason, raw if isinstance(raw, str) else None)
        self.done = True

    def _failed(self, payload: JSONObject, out: list[Part]) -> None:
        response = payload.get("response")
        error = response.get("error") if isinstance(response, dict) else None
        raise responses_error(self.provider, error or payload)

    def _error(self, payload: JSONObject, out: list[Part]) -> None:
        error = payload.get("error")
        raise responses_error(self.provider, error if isinstance(error, dict) else payload)


_HANDLERS = {
    "response.created": ResponsesReader._created,
    "response.in_progress": ResponsesReader._created,
    "response.reasoning_summary_text.delta": ResponsesReader._reasoning,
    "response.reasoning_text.delta": ResponsesReader._reasoning,
    "response.refusal.delta": ResponsesReader._refusal,
    "response.output_item.added": ResponsesReader._item_added,
    "response.function_call_arguments.delta": ResponsesReader._arguments,
    "response.output_item.done": ResponsesReader._item_done,
    "response.completed": ResponsesReader._end,
    "response.incomplete": ResponsesReader._end,
    "response.failed": ResponsesReader._failed,
    "error": ResponsesReader._error,
}


def responses_error(provider: str, error: object) -> ProviderError:
    """A failure the Responses API reported: its kind from ``code``, else ``type``."""
    code = error.get("code") or error.get("type") if isinstance(error, dict) else None
    label = (
        code
        if isinstance(code, str) and code.replace("_", "").isalpha() and len(code) <= 40
        else ""
    )
    kind, retryable = ERROR_KINDS.get(label, ("unavailable", True))
    if "overload" in label:
        kind, retryable = "unavailable", True
    return reported_error(provider, error, label, kind, retryable)


def usage_update(usage: object) -> UsageUpdate | None:
    if not isinstance(usage, dict):
        return None
    inputs, outputs = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    return UsageUpdate(
        input_tokens=_count(usage.get("input_tokens")),
        output_tokens=_count(usage.get("output_tokens")),
        total_tokens=_count(usage.get("total_tokens")),
        reasoning_tokens=_count(
            outputs.get("reasoning_tokens") if isinstance(outputs, dict) else None
        ),
        cached_input_tokens=_count(
            inputs.get("cached_tokens") if isinstance(inputs, dict) else None
        ),
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ResponsesProvider(HTTPProvider):
    """Any server of the Responses API (``AI_PROVIDERS`` entries with
    ``"api": "responses"``). It has no ``stop`` and no ``seed``."""

    api = "responses"
    path = "/responses"
    supports = frozenset(REQUEST_OPTIONS) - {"stop", "seed"}
    #: ``store``: OpenAI keeps a response for 30 days unless told not to.
    store = False

    def headers(self) -> dict[str, str]:
        return {
            **bearer(self.conf.require_api_key()),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def body(self, chat: ChatRequest) -> JSONObject:
        body: JSONObject = {
            "model": chat.model,
            "input": [item for message in chat.messages for item in input_items(message)],
            "stream": True,
            "store": self.store,
            "stream_options": {"include_obfuscation": False},
        }
        if chat.system:
            body["instructions"] = chat.system
        if chat.max_tokens is not None:
            body["max_output_tokens"] = chat.max_tokens
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        if chat.top_p is not None:
            body["top_p"] = chat.top_p
        if chat.tools is not None:
            body["tools"] = [
                {
                    "type": "function",
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
                    "strict": bool(tool.get("strict")),
                }
                for tool in chat.tools
            ]
        if isinstance(chat.tool_choice, dict):
            body["tool_choice"] = {"type": "function", "name": chat.tool_choice["name"]}
        elif chat.tool_choice is not None:
            body["tool_choice"] = chat.tool_choice
        if chat.response_format == "json":
            body["text"] = {"format": {"type": "json_object"}}
        elif chat.response_format is not None:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": "response",
                    "schema": chat.response_format,
                }
            }
        if chat.reasoning is not None:  # summaries stream only when asked for
            body["reasoning"] = {"effort": chat.reasoning, "summary": "auto"}
        return body

    def reader(self) -> ResponsesReader:
        return ResponsesReader(self.name)


def input_items(message: JSONObject) -> list[JSONObject]:
    """A neutral turn as Responses input items."""
    role = message["role"]
    if role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message["tool_call_id"],
                "output": message["content"],
            }
        ]
    content = message["content"]
    items: list[JSONObject] = []
    if role == "assistant":  # its text as a string: OpenAI refuses input_text parts here
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        if text:
            items.append({"role": "assistant", "content": text})
        items += [
            {
                "type": "function_call",
                "call_id": c["id"],
                "name": c["name"],
                "arguments": c["arguments"],
            }
            for c in message.get("tool_calls") or ()
        ]
        return items
    if isinstance(content, list):
        content = [
            {"type": "input_text", "text": part["text"]}
            if part["type"] == "text"
            else {"type": "input_image", "image_url": data_url(part)}
            for part in content
        ]
    return [{"role": role, "content": content}]


class OpenAIResponsesProvider(ResponsesProvider):
    """OpenAI's own Responses API (provider ``openai-responses``)."""

    env_keys = ("OPENAI_API_KEY",)
    default_base_url = "https://api.openai.com/v1"
    default_model: str | None = "gpt-4o-mini"


class AzureResponsesProvider(ResponsesProvider):
    """Azure OpenAI's v1 Responses API (``AI_AZURE_API = "responses"``)."""

    api = "azure-responses"
    env_keys = ("AZURE_OPENAI_API_KEY",)

    def headers(self) -> dict[str, str]:
        return {
            **key_header("api-key", self.conf.require_api_key()),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
