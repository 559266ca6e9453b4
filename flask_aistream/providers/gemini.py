"""Google Gemini's ``streamGenerateContent?alt=sse`` wire format.

Each event is one whole ``GenerateContentResponse``: text in
``candidates[0].content.parts[].text``, thought summaries in parts marked
``"thought": true``, function calls whole (never in fragments), and
``usageMetadata`` on every chunk, cumulative. The chunk with a
``finishReason`` is the last: there is no ``[DONE]``. A prompt the provider
blocks comes as one chunk with ``promptFeedback.blockReason`` and no
candidates; an answer it blocks ends with a ``SAFETY`` (or similar) finish.
Both are errors of kind ``"blocked"``: the answer ends ``content_filter``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ERROR_KINDS, ProviderError, StreamFormatError
from ..parts import (
    JSONObject,
    Part,
    ReasoningDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallSignature,
    UsageUpdate,
)
from .base import REQUEST_OPTIONS, ChatRequest, EventReader
from .http import HTTPProvider
from .sse import ServerSentEvent
from .wire import (
    call_arguments,
    key_header,
    metadata,
    new_call_id,
    parse_json,
    reported_error,
    token_counts,
)

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
#: Finish reasons that mean the provider withheld (the rest of) the answer.
BLOCKED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
#: Thinking budgets for ``reasoning`` on Gemini 2.x, which takes a budget;
#: later models take the level itself (``thinkingLevel``).
#: The signature Google lets a client send for a call it has none for.
UNSIGNED = "skip_thought_signature_validator"
THINKING_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
#: ``google.rpc.Status`` codes worth a retry (Gemini sends no Retry-After).
RETRYABLE_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"}
)


def blocked(provider: str, reason: str) -> ProviderError:
    safe = reason if re.fullmatch(r"[A-Z_]{1,40}", reason) else "unknown"
    return ProviderError(
        f"The AI provider blocked this answer ({safe}).",
        kind="blocked",
        provider=provider,
        detail=f"blocked: {reason!r}",
    )


def usage_update(usage: Any) -> UsageUpdate | None:
    """``candidatesTokenCount`` leaves out thinking; our output counts it."""
    if not isinstance(usage, dict):
        return None
    counts = token_counts(usage)
    output = None
    if "candidatesTokenCount" in counts or "thoughtsTokenCount" in counts:
        output = counts.get("candidatesTokenCount", 0) + counts.get("thoughtsTokenCount", 0)
    return UsageUpdate(
        input_tokens=counts.get("promptTokenCount"),
        output_tokens=output,
        total_tokens=counts.get("totalTokenCount"),
        reasoning_tokens=counts.get("thoughtsTokenCount"),
        cached_input_tokens=counts.get("cachedContentTokenCount"),
    )


class GenerateContentReader(EventReader[ServerSentEvent]):
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._first = True
        self._calls = 0
        self._usage: Any = None

    def parse(self, event: ServerSentEvent, out: list[Part]) -> None:
        try:
            chunk = parse_json(event.data)
            error = chunk.get("error")
        except (ValueError, AttributeError):
            raise StreamFormatError(
                f"not a JSON object: {event.data[:200]!r}", provider=self.provider
            ) from None
        if error:
            raise stream_error(self.provider, error)
        if self._first:
            self._first = False
            out.append(metadata(chunk.get("modelVersion"), chunk.get("responseId")))
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise blocked(self.provider, str(feedback["blockReason"]))
        usage = chunk.get("usageMetadata")
        if usage != self._usage:  # on every chunk, often unchanged
            self._usage = usage
            update = usage_update(usage)
            if update is not None:
                out.append(update)
        candidates = chunk.get("candidates")
        if not candidates:
            return
        candidate = candidates[0]
        content = candidate.get("content") or {}
        for part in content.get("parts") or ():
            self._part(part, out)
        finish = candidate.get("finishReason")
        if finish:
            if finish in BLOCKED:
                raise blocked(self.provider, str(finish))
            reason = FINISH_REASONS.get(finish, "other") if isinstance(finish, str) else "other"
            if reason == "stop" and self._calls:
                reason = "tool_calls"  # Gemini ends a turn of calls with STOP
            self.stop(out, reason, finish if isinstance(finish, str) else None)
            self.done = True  # nothing follows the finish

    def _part(self, part: JSONObject, out: list[Part]) -> None:
        text = part.get("text")
        if text and isinstance(text, str):
            out.append(ReasoningDelta(text) if part.get("thought") else text)
        call = part.get("functionCall")
        if isinstance(call, dict):
            call_id = call.get("id") if isinstance(call.get("id"), str) else None
            call_id = call_id or new_call_id()
            name = str(call.get("name") or "")
            arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
            out.append(ToolCallDelta(self._calls, call_id, name, arguments))
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                out.append(ToolCallSignature(call_id, signature))
            out.append(ToolCall(call_id, name, arguments))
            self._calls += 1


def stream_error(provider: str, error: Any) -> ProviderError:
    """An error object in the stream (``google.rpc.Status``)."""
    status = error.get("status") if isinstance(error, dict) else None
    safe = status if isinstance(status, str) and re.fullmatch(r"[A-Z_]{1,40}", status) else ""
    retryable = not safe or safe in RETRYABLE_STATUSES
    kind = "rate_limit" if safe == "RESOURCE_EXHAUSTED" else "unavailable"
    if safe in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
        kind = "bad_request"
    elif safe in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        kind = "auth"
    return reported_error(provider, error, safe, kind, retryable)


def _retry_delay(error: JSONObject) -> float | None:
    """``RetryInfo.retryDelay`` ("37s"): Gemini's Retry-After."""
    for detail in error.get("details") or ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


class GeminiProvider(HTTPProvider):
    api = "gemini"
    env_keys = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    default_base_url = "https://generativelanguage.googleapis.com"
    default_model = "gemini-2.5-flash"
    supports = frozenset(REQUEST_OPTIONS)

    def url(self, chat: ChatRequest) -> str:
        model = chat.model if "/" in chat.model else f"models/{chat.model}"
        model = urllib.parse.quote(model, safe="/-._~")
        return f"{self.conf.base_url.rstrip('/')}/v1beta/{model}:streamGenerateContent?alt=sse"

    def headers(self) -> dict[str, str]:
        # The key goes in a header, never in the URL: URLs get logged.
        return {
            **key_header("x-goog-api-key", self.conf.require_api_key()),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def body(self, chat: ChatRequest) -> JSONObject:
        contents = _contents(chat.messages)
        body: JSONObject = {"contents": contents}
        if chat.system:
            body["systemInstruction"] = {"parts": [{"text": chat.system}]}
        config: JSONObject = {}
        if chat.temperature is not None:
            config["temperature"] = chat.temperature
        if chat.max_tokens is not None:
            config["maxOutputTokens"] = chat.max_tokens
        if chat.top_p is not None:
            config["topP"] = chat.top_p
        if chat.stop is not None:
            config["stopSequences"] = list(chat.stop)
        if chat.seed is not None:
            config["seed"] = chat.seed
        if chat.response_format is not None:
            config["responseMimeType"] = "application/json"
            if chat.response_format != "json":
                config["responseJsonSchema"] = chat.response_format
        if chat.reasoning is not None:
            thinking: JSONObject = {"includeThoughts": True}
            if re.search(r"gemini-2\b|gemini-2\.", chat.model):
                thinking["thinkingBudget"] = THINKING_BUDGETS[chat.reasoning]
            else:
                thinking["thinkingLevel"] = chat.reasoning
            config["thinkingConfig"] = thinking
        if config:
            body["generationConfig"] = config
        if chat.tools is not None:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {
                            "name": tool["name"],
                            **(
                                {"description": tool["description"]}
                                if "description" in tool
                                else {}
                            ),
                            **(
                                {"parametersJsonSchema": tool["parameters"]}
                                if "parameters" in tool
                                else {}
                            ),
                        }
                        for tool in chat.tools
                    ]
                }
            ]
        if chat.tool_choice is not None:
            if isinstance(chat.tool_choice, dict):
                calling = {"mode": "ANY", "allowedFunctionNames": [chat.tool_choice["name"]]}
            else:
                calling = {"mode": TOOL_MODES[chat.tool_choice]}
            body["toolConfig"] = {"functionCallingConfig": calling}
        return body

    def reader(self) -> GenerateContentReader:
        return GenerateContentReader(self.name)

    def http_error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        """Gemini answers a bad key with a 400 (``API_KEY_INVALID``), and
        puts the wait it asks for in the body, not in a header."""
        error = super().http_error(status, body, headers)
        try:
            payload = json.loads(body).get("error")
        except (ValueError, AttributeError):
            return error
        if not isinstance(payload, dict):
            return error
        if "API_KEY_INVALID" in body and status == 400:  # what others answer with 401
            return ProviderError(
                f"{ERROR_KINDS['auth'][0]} (HTTP {status})",
                kind="auth",
                provider=self.name,
                status=status,
                detail=error.detail,
            )
        if error.retry_after is None:
            error.retry_after = _retry_delay(payload)
        return error


def _contents(messages: Iterable[JSONObject]) -> list[JSONObject]:
    """Neutral turns as Gemini's contents: an assistant's tool calls as
    ``functionCall`` parts of its turn, the results that follow as
    ``functionResponse`` parts of one user turn."""
    contents: list[JSONObject] = []
    results: list[JSONObject] | None = None  # the functionResponse parts of the open user turn
    for message in messages:
        if message["role"] == "tool":
            outcome = "error" if message["error"] else "result"
            try:
                value = json.loads(message["content"])
            except ValueError:
                value = message["content"]
            part = {"functionResponse": {"name": message["name"], "response": {outcome: value}}}
            if results is None:
                results = []
                contents.append({"role": "user", "parts": results})
            results.append(part)
            continue
        results = None
        parts = _parts(message["content"])
        if message.get("tool_calls"):
            parts = [part for part in parts if part.get("text") != ""]
            parts += [_function_call(call) for call in message["tool_calls"]]
        role = "model" if message["role"] == "assistant" else "user"
        contents.append({"role": role, "parts": parts})
    return contents


def _function_call(call: JSONObject) -> JSONObject:
    """A call, replayed with its ``thoughtSignature``: Gemini 3 refuses one
    without. A call of this answer's that came unsigned (the second of
    parallel calls) stays so; one from a client's history, whose signature
    we never saw, gets the placeholder Google documents for that case."""
    part: JSONObject = {"functionCall": {"name": call["name"], "args": call_arguments(call)}}
    signature = call.get("signature", UNSIGNED)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _parts(content: Any) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[JSONObject] = []
    for part in content:
        if part["type"] == "text":
            parts.append({"text": part["text"]})
        elif "url" in part:
            file_data = {"fileUri": part["url"]}
            if part.get("media_type"):
                file_data["mimeType"] = part["media_type"]
            parts.append({"fileData": file_data})
        else:
            parts.append({"inlineData": {"mimeType": part["media_type"], "data": part["data"]}})
    return parts
