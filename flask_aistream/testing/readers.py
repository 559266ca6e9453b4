"""Reading a streamed answer back in a test, whatever its format: ours
(``aistream``, with or without optional events and ids), the Vercel UI
message stream, OpenAI's chat completion chunks; from the Flask test
client, ``requests`` or raw bytes. The readers read to the end and close
the response, so the answer's hooks have run when they return."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Union

from ..parts import (
    ApprovalRequest,
    Data,
    JSONObject,
    ReasoningDelta,
    Step,
    StepFinish,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from ..providers.sse import SSEDecoder

#: The Vercel protocol's finish reasons, as ours.
_VERCEL_REASONS = {
    "tool-calls": "tool_calls",
    "content-filter": "content_filter",
    "interrupted": "cancelled",
}


@dataclass
class StreamedAnswer:
    """An answer as a client received it: ``error`` is the text it was
    shown, ``done`` whether the stream's end (``[DONE]``) came."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_results: list[ToolResult] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    error: str | None = None
    done: bool = False
    #: The steps the stream said ended (with the ``steps`` event, or Vercel's ``finish-step``).
    steps: list[Step] = field(default_factory=list)
    #: The app data sent (``send_data``), in order.
    data: list[Data] = field(default_factory=list)
    #: The calls the answer ended waiting for a person's approval of.
    approval_requests: list[ApprovalRequest] = field(default_factory=list)


class ErrorEvent(NamedTuple):
    """The error a client was shown."""

    text: str

    @property
    def type(self) -> str:
        return "error"


class StreamFinish(NamedTuple):
    """The last event: the answer as the client received it."""

    answer: StreamedAnswer

    @property
    def type(self) -> str:
        return "finish"


ReadEvent = Union[
    TextDelta,
    ReasoningDelta,
    ToolCall,
    ToolResult,
    Data,
    ApprovalRequest,
    StepFinish,
    ErrorEvent,
    StreamFinish,
]


def read_events(response: object) -> list[ReadEvent]:
    """The stream's events, typed as ``iter_events`` yields them (text,
    reasoning, tool_call, tool_result, step_finish; ``error``), ending with
    a ``finish`` whose ``answer`` is :func:`read_answer`'s."""
    reader = _Reader()
    for data in _datas(response):
        reader.data(data)
    return [*reader.events, StreamFinish(reader.finish())]


def read_answer(response: object) -> StreamedAnswer:
    """The whole answer as the client received it (see :class:`StreamedAnswer`)."""
    event = read_events(response)[-1]
    assert isinstance(event, StreamFinish)
    return event.answer


def _datas(response: object) -> Iterable[str]:
    """Each event's data, the response read to its end and closed."""
    decoder = SSEDecoder()
    for chunk in _chunks(response):
        for event in decoder.feed(chunk):
            yield event.data
    for event in decoder.flush():
        yield event.data


def _chunks(response: object) -> Iterable[bytes]:
    if isinstance(response, (bytes, bytearray)):
        yield bytes(response)
        return
    if isinstance(response, str):
        yield response.encode()
        return
    try:
        if hasattr(response, "iter_content"):  # requests
            yield from response.iter_content(None)
        elif hasattr(response, "get_data"):  # Flask's test client, a Response
            yield response.get_data()
        else:
            raise TypeError(f"cannot read a stream from {type(response).__name__}")
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()  # the server's part: the answer's hooks run now


class _Reader:
    """Turns each event's data into typed events, whichever format it is in."""

    def __init__(self) -> None:
        self.events: list[ReadEvent] = []
        self.answer = StreamedAnswer()
        self._step_text: list[str] = []
        self._step_reasoning: list[str] = []
        self._step_calls: list[ToolCall] = []
        self._step_results: list[ToolResult] = []
        self._names: dict[str, str] = {}  # a tool call's id -> its name (Vercel)
        self._openai_calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self._texts: list[str] = []
        self._reasoning: list[str] = []

    def data(self, data: str) -> None:
        if data == "[DONE]":
            self.answer.done = True
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if "type" in event:
            self._vercel(event)
        elif "choices" in event or event.get("object") == "chat.completion.chunk":
            self._openai(event)
        else:
            self._ours(event)

    # -- the events, whatever the format ----------------------------------------------

    def _text(self, text: str) -> None:
        self._texts.append(text)
        self._step_text.append(text)
        self.events.append(TextDelta(text))

    def _thought(self, text: str) -> None:
        self._reasoning.append(text)
        self._step_reasoning.append(text)
        self.events.append(ReasoningDelta(text))

    def _call(self, call: ToolCall) -> None:
        self.answer.tool_calls.append(call)
        self._step_calls.append(call)
        self.events.append(call)

    def _result(self, result: ToolResult) -> None:
        self.answer.tool_results.append(result)
        self._step_results.append(result)
        self.events.append(result)

    def _data(self, data: Data) -> None:
        self.answer.data.append(data)
        self.events.append(data)

    def _approval(self, request: ApprovalRequest) -> None:
        self.answer.approval_requests.append(request)
        self.events.append(request)

    def _error(self, text: str) -> None:
        self.answer.error = text
        self.events.append(ErrorEvent(text))

    def _step(self, reason: str | None, usage: Usage | None) -> None:
        step = Step(
            "".join(self._step_text),
            "".join(self._step_reasoning),
            tuple(self._step_calls),
            tuple(self._step_results),
            reason or "other",
            None,
            usage,
        )
        self.answer.steps.append(step)
        self.events.append(StepFinish(step))
        for kept in (self._step_text, self._step_reasoning, self._step_calls, self._step_results):
            kept.clear()

    def _finish_info(self, info: JSONObject) -> None:
        self.answer.finish_reason = info.get("reason") or self.answer.finish_reason
        self.answer.usage = _usage(info.get("usage")) or self.answer.usage
        self.answer.model = info.get("model") or self.answer.model

    # -- ours -------------------------------------------------------------------------------

    def _ours(self, event: JSONObject) -> None:
        if isinstance(event.get("content"), str):
            self._text(event["content"])
        elif isinstance(event.get("reasoning"), str):
            self._thought(event["reasoning"])
        elif isinstance(event.get("tool_call"), dict):
            call = event["tool_call"]
            self._call(ToolCall(call["id"], call["name"], call.get("arguments", "")))
        elif isinstance(event.get("tool_result"), dict):
            result = event["tool_result"]
            self._result(
                ToolResult(result["id"], result["name"], result.get("output"), result.get("error"))
            )
        elif isinstance(event.get("step"), dict):
            self._step(event["step"].get("finish_reason"), _usage(event["step"].get("usage")))
        elif isinstance(event.get("finish"), dict):
            self._finish_info(event["finish"])
        elif isinstance(event.get("approval_request"), dict):
            asked = event["approval_request"]
            call = asked["tool_call"]
            request = ApprovalRequest(
                asked["id"], ToolCall(call["id"], call["name"], call["arguments"])
            )
            self.answer.approval_requests.append(request)
            self.events.append(request)
        elif isinstance(event.get("data"), dict):
            data = event["data"]
            self._data(Data(data.get("name", ""), data.get("value"), data.get("id")))
        elif "error" in event:
            self._error(_error_text(event["error"]))

    # -- Vercel's UI message stream ---------------------------------------------------------

    def _vercel(self, event: JSONObject) -> None:
        kind = event["type"]
        if kind == "text-delta":
            self._text(event.get("delta", ""))
        elif kind == "reasoning-delta":
            self._thought(event.get("delta", ""))
        elif kind == "tool-input-available":
            arguments = event.get("input")
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            self._names[event["toolCallId"]] = event.get("toolName", "")
            self._call(ToolCall(event["toolCallId"], event.get("toolName", ""), text))
        elif kind in ("tool-output-available", "tool-output-error"):
            call_id = event["toolCallId"]
            name = self._names.get(call_id, "")
            if kind == "tool-output-error":
                self._result(ToolResult(call_id, name, None, event.get("errorText", "")))
            else:
                self._result(ToolResult(call_id, name, event.get("output")))
        elif kind == "tool-approval-request":
            call_id = event.get("toolCallId")
            call = next((c for c in self.answer.tool_calls if c.id == call_id), None)
            if call is not None:
                self._approval(ApprovalRequest(event.get("approvalId", ""), call))
        elif kind == "finish-step":
            self._step(None, None)
        elif kind == "finish":
            metadata = event.get("messageMetadata")
            if isinstance(metadata, dict):
                self._finish_info(metadata)
            reason = event.get("finishReason")
            if isinstance(reason, str) and self.answer.finish_reason is None:
                self.answer.finish_reason = _VERCEL_REASONS.get(reason, reason)
        elif kind == "error":
            self._error(event.get("errorText", ""))
        elif kind.startswith("data-"):
            self._data(
                Data(kind[5:], event.get("data"), event.get("id"), bool(event.get("transient")))
            )

    # -- OpenAI's chat completion chunks -------------------------------------------------

    def _openai(self, event: JSONObject) -> None:
        if "error" in event:
            self._error(_error_text(event["error"]))
            return
        self.answer.model = event.get("model") or self.answer.model
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.answer.usage = Usage(
                usage.get("prompt_tokens", 0),
                usage.get("completion_tokens", 0),
                usage.get("total_tokens", 0),
            )
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._text(delta["content"])
            if delta.get("reasoning_content"):
                self._thought(delta["reasoning_content"])
            for fragment in delta.get("tool_calls") or ():
                call = self._openai_calls.setdefault(fragment.get("index", 0), ["", "", ""])
                function = fragment.get("function") or {}
                call[0] = fragment.get("id") or call[0]
                call[1] = function.get("name") or call[1]
                call[2] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                for call_id, name, arguments in self._openai_calls.values():
                    self._call(ToolCall(call_id, name, arguments))
                self._openai_calls.clear()
                self.answer.finish_reason = choice["finish_reason"]

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> StreamedAnswer:
        answer = self.answer
        answer.text = "".join(self._texts)
        answer.reasoning = "".join(self._reasoning)
        if answer.finish_reason is None:
            if answer.error is not None:
                answer.finish_reason = "error"
            else:
                answer.finish_reason = "stop" if answer.done else "cancelled"
        return answer


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    input_tokens = value.get("input_tokens", value.get("prompt_tokens", 0)) or 0
    output_tokens = value.get("output_tokens", value.get("completion_tokens", 0)) or 0
    return Usage(
        input_tokens,
        output_tokens,
        value.get("total_tokens") or input_tokens + output_tokens,
        value.get("reasoning_tokens"),
        value.get("cached_input_tokens"),
    )


def _error_text(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("message", ""))
    return str(value)
