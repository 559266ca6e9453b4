"""A scripted answer as the bytes each provider API streams: OpenAI's chat
completion chunks, Anthropic's message events, Gemini's
``GenerateContentResponse`` events, Ollama's NDJSON lines; their error
bodies and their in-stream errors. One piece per token, as a provider sends
them, so a reader of the pieces sees the answer arrive as it would."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..parts import JSONObject, ToolCall

#: The provider APIs the kit speaks.
APIS = ("openai", "anthropic", "gemini", "ollama")

#: Our finish reasons in each API's own words.
RAW_FINISH = {
    "openai": {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
        "content_filter": "content_filter",
    },
    "anthropic": {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
    },
    "gemini": {
        "stop": "STOP",
        "length": "MAX_TOKENS",
        "tool_calls": "STOP",
        "content_filter": "SAFETY",
    },
    "ollama": {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"},
}

#: What each API says for an HTTP error status: its status word (Gemini) or error type.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class Answer:
    """One scripted step, neutral: what :func:`encode` writes in an API's words."""

    tokens: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    usage: tuple[int, int] = (10, 0)
    model: str = "fake-model"
    finish: str = "stop"


def content_type(api: str) -> str:
    return "application/x-ndjson" if api == "ollama" else "text/event-stream"


def _sse(data: JSONObject, event: str | None = None) -> bytes:
    head = b"event: %s\n" % event.encode() if event else b""
    return head + b"data: %s\n\n" % json.dumps(data).encode()


def _line(data: JSONObject) -> bytes:
    return json.dumps(data).encode() + b"\n"


def encode(api: str, answer: Answer) -> list[bytes]:
    """The answer's pieces in ``api``'s stream format, one per token."""
    return {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini, "ollama": _ollama}[api](
        answer
    )


#: How many pieces end a text-only answer: what a cut stream never sent.
_ENDS = {"openai": 3, "anthropic": 3, "gemini": 1, "ollama": 1}


def head(api: str, tokens: list[str], model: str) -> list[bytes]:
    """What a stream that fails or is cut after ``tokens`` sent: its opening
    events and the text, and no end."""
    pieces = encode(api, Answer(tokens=tokens, model=model))
    return pieces[: len(pieces) - _ENDS[api]]


def _openai(answer: Answer) -> list[bytes]:
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": answer.model,
    }

    def chunk(delta: JSONObject, finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    pieces = [chunk({"role": "assistant", "content": ""})]
    if answer.reasoning:
        pieces.append(chunk({"reasoning_content": answer.reasoning}))
    pieces += [chunk({"content": token}) for token in answer.tokens]
    for index, call in enumerate(answer.tool_calls):
        start = {"index": index, "id": call.id, "type": "function"}
        pieces.append(
            chunk({"tool_calls": [{**start, "function": {"name": call.name, "arguments": ""}}]})
        )
        pieces.append(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
        )
    pieces.append(chunk({}, RAW_FINISH["openai"][answer.finish]))
    prompt, completion = answer.usage
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    pieces.append(_sse({**base, "choices": [], "usage": usage}))
    pieces.append(b"data: [DONE]\n\n")
    return pieces


def _anthropic(answer: Answer) -> list[bytes]:
    prompt, completion = answer.usage
    message: JSONObject = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": prompt, "output_tokens": 1},
    }
    pieces = [_sse({"type": "message_start", "message": message}, "message_start")]
    index = 0

    def block(start: JSONObject, deltas: Sequence[JSONObject]) -> None:
        nonlocal index
        pieces.append(
            _sse(
                {"type": "content_block_start", "index": index, "content_block": start},
                "content_block_start",
            )
        )
        for delta in deltas:
            pieces.append(
                _sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            )
        pieces.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1

    if answer.reasoning:
        block(
            {"type": "thinking", "thinking": "", "signature": ""},
            [
                {"type": "thinking_delta", "thinking": answer.reasoning},
                {"type": "signature_delta", "signature": "fake-signature"},
            ],
        )
    if answer.tokens:
        block(
            {"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in answer.tokens]
        )
    for call in answer.tool_calls:
        block(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
            [{"type": "input_json_delta", "partial_json": call.arguments}],
        )
    delta = {"stop_reason": RAW_FINISH["anthropic"][answer.finish], "stop_sequence": None}
    pieces.append(
        _sse(
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": completion}},
            "message_delta",
        )
    )
    pieces.append(_sse({"type": "message_stop"}, "message_stop"))
    return pieces


def _gemini(answer: Answer) -> list[bytes]:
    prompt, completion = answer.usage

    def event(parts: list[JSONObject], finish: str | None = None) -> bytes:
        candidate: JSONObject = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        }
        return _sse(
            {"candidates": [candidate], "usageMetadata": usage, "modelVersion": answer.model}
        )

    pieces = []
    if answer.reasoning:
        pieces.append(event([{"text": answer.reasoning, "thought": True}]))
    pieces += [event([{"text": token}]) for token in answer.tokens]
    calls = [
        {"functionCall": {"name": call.name, "args": json.loads(call.arguments or "{}")}}
        for call in answer.tool_calls
    ]
    pieces.append(event(calls, RAW_FINISH["gemini"][answer.finish]))
    return pieces


def _ollama(answer: Answer) -> list[bytes]:
    def line(message: JSONObject, **extra: object) -> bytes:
        return _line(
            {
                "model": answer.model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", **message},
                **extra,
            }
        )

    pieces = []
    if answer.reasoning:
        pieces.append(line({"content": "", "thinking": answer.reasoning}, done=False))
    pieces += [line({"content": token}, done=False) for token in answer.tokens]
    if answer.tool_calls:
        calls = [
            {"function": {"name": call.name, "arguments": json.loads(call.arguments or "{}")}}
            for call in answer.tool_calls
        ]
        pieces.append(line({"content": "", "tool_calls": calls}, done=False))
    prompt, completion = answer.usage
    pieces.append(
        line(
            {"content": ""},
            done=True,
            done_reason=RAW_FINISH["ollama"][answer.finish],
            prompt_eval_count=prompt,
            eval_count=completion,
        )
    )
    return pieces


def stream_error(api: str, message: str) -> bytes:
    """An error the provider reports in the stream, after some text."""
    if api == "openai":
        return _sse({"error": {"message": message, "type": "server_error"}})
    if api == "anthropic":
        return _sse({"type": "error", "error": {"type": "api_error", "message": message}}, "error")
    if api == "gemini":
        return _sse({"error": {"code": 500, "message": message, "status": "INTERNAL"}})
    return _line({"error": message})


def error_body(api: str, status: int, message: str) -> bytes:
    """The JSON body ``api`` sends with an HTTP error ``status``."""
    if api == "openai":
        kind = "invalid_request_error" if status < 500 else "server_error"
        return json.dumps(
            {"error": {"message": message, "type": kind, "param": None, "code": None}}
        ).encode()
    if api == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    if api == "gemini":
        word = _GEMINI_STATUSES.get(status, "UNKNOWN")
        return json.dumps({"error": {"code": status, "message": message, "status": word}}).encode()
    return json.dumps({"error": message}).encode()
