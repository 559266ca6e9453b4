"""AG-UI, the protocol of CopilotKit's ``@ag-ui/client``: one JSON event per
``data:`` line (camelCase keys, only fields the event's schema has), a
run opened by ``RUN_STARTED`` and closed by ``RUN_FINISHED`` (its outcome
``success``, or ``interrupt`` with a call waiting for approval) or
``RUN_ERROR``; no ``[DONE]``: the client parses every data line."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Response

from ..parts import (
    Answer,
    ApprovalRequest,
    Data,
    JSONObject,
    Part,
    ReasoningDelta,
    StepFinish,
    ToolCall,
    ToolCallDelta,
    ToolDenied,
    ToolResult,
)
from .sse import PING, SSE_CONTENT_TYPE, SSE_HEADERS, data_event


class AGUIFormat:
    """One run of an AG-UI agent: text and reasoning messages, tool calls and
    their results, a step per provider call, app data as ``CUSTOM`` events."""

    content_type = SSE_CONTENT_TYPE
    headers = SSE_HEADERS
    ping = PING

    def __init__(self, thread_id: str, run_id: str, new_id: Callable[[str], str]) -> None:
        self._thread = thread_id
        self._run = run_id
        self._new_id = new_id  # makes message ids
        self._started = False
        self._steps = 0
        self._in_step = False
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", message id)
        self._calls: dict[object, str] = {}  # a call's position -> its id (this step)
        self._ended_calls: set[str] = set()
        self._interrupts: list[JSONObject] = []
        self._client_calls: list[str] = []  # calls left for the client (browser tools)
        self._results: set[str] = set()

    def _begin(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(
                data_event({"type": "RUN_STARTED", "threadId": self._thread, "runId": self._run})
            )
        if not self._in_step:
            self._in_step = True
            self._steps += 1
            out.append(data_event({"type": "STEP_STARTED", "stepName": f"step-{self._steps}"}))

    def parts(self, parts: list[Part]) -> bytes:
        out: list[bytes] = []
        for part in parts:
            if isinstance(part, StepFinish):
                self._finish_step(out)
                continue
            self._begin(out)
            if isinstance(part, str):
                message = self._message("text", out)
                out.append(
                    data_event(
                        {"type": "TEXT_MESSAGE_CONTENT", "messageId": message, "delta": part}
                    )
                )
            elif isinstance(part, ReasoningDelta):
                message = self._message("reasoning", out)
                out.append(
                    data_event(
                        {
                            "type": "REASONING_MESSAGE_CONTENT",
                            "messageId": message,
                            "delta": part.text,
                        }
                    )
                )
            elif isinstance(part, ToolCallDelta):
                self._close(out)
                self._call_delta(part, out)
            elif isinstance(part, ToolCall):
                self._close(out)
                self._call(part, out)
            elif isinstance(part, ToolResult):
                self._close(out)
                self._results.add(part.call_id)
                content = part.error if part.error is not None else part.output
                out.append(
                    data_event(
                        {
                            "type": "TOOL_CALL_RESULT",
                            "messageId": self._new_id("msg"),
                            "toolCallId": part.call_id,
                            "content": content if isinstance(content, str) else json.dumps(content),
                            "role": "tool",
                        }
                    )
                )
            elif isinstance(part, Data):
                out.append(data_event({"type": "CUSTOM", "name": part.name, "value": part.value}))
            elif isinstance(part, ApprovalRequest):
                self._interrupts.append(
                    {"id": part.id, "reason": "tool_approval", "toolCallId": part.call.id}
                )
            elif isinstance(part, ToolDenied):
                pass  # its ToolResult says why
        return b"".join(out)

    def _message(self, kind: str, out: list[bytes]) -> str:
        if self._open is None or self._open[0] != kind:
            self._close(out)
            self._open = (kind, self._new_id("msg"))
            message = self._open[1]
            if kind == "text":
                out.append(
                    data_event(
                        {"type": "TEXT_MESSAGE_START", "messageId": message, "role": "assistant"}
                    )
                )
            else:
                out.append(data_event({"type": "REASONING_START", "messageId": message}))
                out.append(
                    data_event(
                        {
                            "type": "REASONING_MESSAGE_START",
                            "messageId": message,
                            "role": "reasoning",
                        }
                    )
                )
        return self._open[1]

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        kind, message = self._open
        self._open = None
        if kind == "text":
            out.append(data_event({"type": "TEXT_MESSAGE_END", "messageId": message}))
        else:
            out.append(data_event({"type": "REASONING_MESSAGE_END", "messageId": message}))
            out.append(data_event({"type": "REASONING_END", "messageId": message}))

    def _call_delta(self, part: ToolCallDelta, out: list[bytes]) -> None:
        if part.position not in self._calls:
            call_id = self._calls[part.position] = part.id or f"call-{part.position}"
            out.append(
                data_event(
                    {
                        "type": "TOOL_CALL_START",
                        "toolCallId": call_id,
                        "toolCallName": part.name or "",
                    }
                )
            )
        if part.arguments:
            call_id = self._calls[part.position]
            out.append(
                data_event(
                    {"type": "TOOL_CALL_ARGS", "toolCallId": call_id, "delta": part.arguments}
                )
            )

    def _call(self, call: ToolCall, out: list[bytes]) -> None:
        if call.id not in self._calls.values():  # it came whole: open it now
            out.append(
                data_event(
                    {"type": "TOOL_CALL_START", "toolCallId": call.id, "toolCallName": call.name}
                )
            )
            out.append(
                data_event(
                    {"type": "TOOL_CALL_ARGS", "toolCallId": call.id, "delta": call.arguments}
                )
            )
        out.append(data_event({"type": "TOOL_CALL_END", "toolCallId": call.id}))
        self._ended_calls.add(call.id)

    def _finish_step(self, out: list[bytes]) -> None:
        self._close(out)
        if self._in_step:
            self._in_step = False
            out.append(data_event({"type": "STEP_FINISHED", "stepName": f"step-{self._steps}"}))
        self._calls.clear()

    @staticmethod
    def error(message: str, kind: str = "") -> bytes:
        event: JSONObject = {"type": "RUN_ERROR", "message": message}
        if kind:
            event["code"] = kind
        return data_event(event)

    def end(self, answer: Answer) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._begin(out)
        self._finish_step(out)
        if answer.error is not None:
            return b"".join(out) + self.error(answer.error.message, answer.error.kind)
        finished: JSONObject = {
            "type": "RUN_FINISHED",
            "threadId": self._thread,
            "runId": self._run,
        }
        waiting = {i["toolCallId"] for i in self._interrupts}
        pending = [
            c for c in sorted(self._ended_calls) if c not in self._results and c not in waiting
        ]
        if self._interrupts:
            finished["outcome"] = {"type": "interrupt", "interrupts": self._interrupts}
        elif answer.finish_reason == "cancelled":
            finished["outcome"] = {"type": "cancelled"}
        else:
            finished["outcome"] = {"type": "success"}
            if pending and answer.finish_reason == "tool_calls":
                finished["outcome"]["pendingToolCallIds"] = pending
        if answer.usage is not None:
            usage = answer.usage
            entry: JSONObject = {
                "provider": answer.provider,
                "inputTokens": usage.input_tokens,
                "outputTokens": usage.output_tokens,
                "totalTokens": usage.total_tokens,
            }
            if answer.model:
                entry["model"] = answer.model
            if usage.reasoning_tokens is not None:
                entry["reasoningTokens"] = usage.reasoning_tokens
            if usage.cached_input_tokens is not None:
                entry["cachedInputTokens"] = usage.cached_input_tokens
            finished["usage"] = [entry]
        out.append(data_event(finished))
        return b"".join(out)


def agui_empty_run(thread_id: str | None, run_id: str | None) -> Response:
    """A run with nothing to do (its resume entries named no waiting call)."""
    ids = {"threadId": thread_id or "thread", "runId": run_id or "run"}
    events = [data_event({"type": "RUN_STARTED", **ids})]
    events.append(data_event({"type": "RUN_FINISHED", **ids, "outcome": {"type": "success"}}))
    return Response(b"".join(events), content_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS)
