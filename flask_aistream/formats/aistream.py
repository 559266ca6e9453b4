"""The original specification's format, and the default: ``{"content"}``
per text delta, opt-in ``{"reasoning"}``, ``{"tool_call"}`` and
``{"finish"}`` events, ``{"error"}``, then ``[DONE]``."""

from __future__ import annotations

from collections.abc import Iterable

from ..parts import (
    Answer,
    ApprovalRequest,
    Data,
    JSONObject,
    Part,
    ReasoningDelta,
    Step,
    StepFinish,
    ToolCall,
    ToolResult,
)
from .sse import (
    DONE,
    FINAL_ID,
    PING,
    SSE_CONTENT_TYPE,
    SSE_HEADERS,
    content_event,
    data_event,
    error_event,
)


def step_info(step: Step) -> JSONObject:
    """How a step ended, as the ``steps`` event says it."""
    return {
        "finish_reason": step.finish_reason,
        "usage": step.usage.as_dict() if step.usage is not None else None,
    }


def result_info(result: ToolResult) -> JSONObject:
    """A tool's result, as the ``tool_results`` event says it."""
    info: JSONObject = {"id": result.call_id, "name": result.name}
    if result.error is not None:
        info["error"] = result.error
    else:
        info["output"] = result.output
    return info


def finish_info(answer: Answer) -> JSONObject:
    """How an answer ended, as the ``finish`` event (and other formats' metadata) says it."""
    return {
        "reason": answer.finish_reason,
        "usage": answer.usage.as_dict() if answer.usage is not None else None,
        "model": answer.model,
    }


class AIStreamFormat:
    """The original specification's format, byte for byte: one
    ``{"content"}`` event per text delta, one ``{"error"}`` event if the
    answer failed, then ``[DONE]``. ``events`` adds ``{"reasoning"}`` per
    reasoning delta, ``{"tool_call"}`` per complete tool call, and one
    ``{"finish"}`` right before ``[DONE]``; clients that only know the
    original events skip them. ``tool_results`` adds ``{"tool_result"}`` per
    result of a tool the server ran, ``steps`` one ``{"step"}`` after each
    step (one provider call), the last included; ``data`` one ``{"data":
    {"name", "id", "value"}}`` per :func:`~flask_aistream.send_data`."""

    content_type = SSE_CONTENT_TYPE
    headers = SSE_HEADERS
    ping = PING

    def __init__(self, events: Iterable[str] = ()) -> None:
        events = set(events)
        self._reasoning = "reasoning" in events
        self._tool_calls = "tool_calls" in events
        self._finish = "finish" in events
        self._tool_results = "tool_results" in events
        self._steps = "steps" in events
        self._data = "data" in events
        self._text_only = not (
            self._reasoning or self._tool_calls or self._tool_results or self._steps or self._data
        )

    def parts(self, parts: list[Part]) -> bytes:
        """The bytes for parts that arrived together: one write."""
        if self._text_only:
            events = [
                content_event(part) if part.__class__ is str else self._event(part)
                for part in parts
                if part.__class__ is str or part.__class__ is ApprovalRequest
            ]
        else:
            events = [event for event in map(self._event, parts) if event]
        if not events:
            return b""
        return events[0] if len(events) == 1 else b"".join(events)

    def _event(self, part: Part) -> bytes:
        if type(part) is str:
            return content_event(part)
        if type(part) is ReasoningDelta and self._reasoning:
            return data_event({"reasoning": part.text})
        if type(part) is ToolCall and self._tool_calls:
            return data_event(
                {"tool_call": {"id": part.id, "name": part.name, "arguments": part.arguments}}
            )
        if type(part) is ToolResult and self._tool_results:
            return data_event({"tool_result": result_info(part)})
        if type(part) is StepFinish and self._steps:
            return data_event({"step": step_info(part.step)})
        if type(part) is ApprovalRequest:  # always: without it the answer just stops
            call = part.call
            return data_event(
                {
                    "approval_request": {
                        "id": part.id,
                        "tool_call": {
                            "id": call.id,
                            "name": call.name,
                            "arguments": call.arguments,
                        },
                    }
                }
            )
        if type(part) is Data and self._data:
            return data_event({"data": {"name": part.name, "id": part.id, "value": part.value}})
        return b""

    @staticmethod
    def error(message: str, kind: str = "") -> bytes:
        """A failure, as this format tells it (the same safe text everywhere)."""
        return error_event(message)

    def end(self, answer: Answer) -> bytes:
        """Everything after the last part, in one write."""
        tail = self.error(answer.error.message) if answer.error is not None else b""
        if self._finish:
            tail += data_event({"finish": finish_info(answer)})
        return tail + FINAL_ID + DONE
