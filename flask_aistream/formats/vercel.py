"""The Vercel AI SDK's UI message stream, what ``useChat`` reads."""

from __future__ import annotations

import json
from collections.abc import Hashable
from json.encoder import encode_basestring_ascii
from typing import Any

from flask import Response

from ..parts import (
    Answer,
    ApprovalRequest,
    Data,
    JSONObject,
    ReasoningDelta,
    StepFinish,
    ToolCall,
    ToolCallDelta,
    ToolDenied,
    ToolResult,
)
from .aistream import finish_info
from .sse import DONE, PING, SSE_CONTENT_TYPE, SSE_HEADERS, data_event

VERCEL_HEADERS = {**SSE_HEADERS, "x-vercel-ai-ui-message-stream": "v1"}


#: Our finish reasons as the Vercel protocol's ``finishReason`` (6 and later).
VERCEL_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "error": "error",
}


class VercelFormat:
    """The Vercel AI SDK's UI message stream (``useChat``,
    ``DefaultChatTransport``): ``start``, ``start-step``, then text,
    reasoning and tool-input parts, ``finish-step``, ``finish`` and
    ``[DONE]``. Start and end markers come from a change of part kind.

    Clients before ai 5.0.217 / 6.0.231 / 7.0.32 reject any field they do not
    know, so only documented fields go out, and ``protocol`` (the client's
    major) gates the ones later majors added: ``finish.finishReason`` from 6
    on. Usage, model and finish reason travel in ``finish.messageMetadata``,
    which every version takes, as the same object as our ``finish`` event.
    """

    content_type = SSE_CONTENT_TYPE
    headers = VERCEL_HEADERS
    ping = PING

    def __init__(self, message_id: str, protocol: int = 5) -> None:
        self._message_id = message_id
        self._protocol = protocol
        self._started = False
        self._in_step = False
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", its id)
        self._blocks = 0
        self._tools: dict[Hashable, tuple[str, str]] = {}  # position -> (id, name)
        self._denied: set[str] = set()  # calls said "denied": no output follows

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(data_event({"type": "start", "messageId": self._message_id}))
        if not self._in_step:
            self._in_step = True
            out.append(data_event({"type": "start-step"}))

    def parts(self, parts: list[Any]) -> bytes:  # dispatched on __class__: a token is one lookup
        out: list[bytes] = []
        if not self._in_step:
            if parts and parts[0].__class__ is StepFinish:
                return self._finish_step(out)
            self._start(out)
        for part in parts:
            kind = part.__class__
            if kind is str:
                block = self._block("text", out)
                out.append(
                    b'data: {"type":"text-delta","id":"%s","delta":%s}\n\n'
                    % (block.encode(), encode_basestring_ascii(part).encode())
                )
            elif kind is ReasoningDelta:
                block = self._block("reasoning", out)
                out.append(data_event({"type": "reasoning-delta", "id": block, "delta": part.text}))
            elif kind is ToolCallDelta:
                self._close(out)
                self._tool_delta(part, out)
            elif kind is ToolCall:
                self._close(out)
                out.append(
                    data_event(
                        {
                            "type": "tool-input-available",
                            "toolCallId": part.id,
                            "toolName": part.name,
                            "input": _json_or_text(part.arguments),
                        }
                    )
                )
            elif kind is ToolDenied:
                self._close(out)
                self._denied.add(part.call_id)
                out.append(data_event({"type": "tool-output-denied", "toolCallId": part.call_id}))
            elif kind is ToolResult and part.call_id not in self._denied:
                self._close(out)
                out.append(data_event(_tool_output(part)))
            elif kind is Data:
                out.append(data_event(_data_part(part)))
            elif kind is ApprovalRequest:  # protocol 6 on: checked where the call was planned
                out.append(
                    data_event(
                        {
                            "type": "tool-approval-request",
                            "approvalId": part.id,
                            "toolCallId": part.call.id,
                        }
                    )
                )
            elif kind is StepFinish:
                self._finish_step(out)
        return b"".join(out)

    def _finish_step(self, out: list[bytes]) -> bytes:
        self._close(out)
        if self._in_step:
            out.append(data_event({"type": "finish-step"}))
            self._in_step = False
        self._tools.clear()  # the next step numbers its calls anew
        return b"".join(out)

    def _block(self, kind: str, out: list[bytes]) -> str:
        """The id of the open text or reasoning block, opening one if needed."""
        if self._open is None or self._open[0] != kind:
            self._close(out)
            self._blocks += 1
            self._open = (kind, f"{kind}-{self._blocks}")
            out.append(data_event({"type": f"{kind}-start", "id": self._open[1]}))
        return self._open[1]

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(data_event({"type": f"{self._open[0]}-end", "id": self._open[1]}))
            self._open = None

    def _tool_delta(self, part: ToolCallDelta, out: list[bytes]) -> None:
        if part.position not in self._tools:
            call = self._tools[part.position] = (
                part.id or f"call-{part.position}",
                part.name or "",
            )
            out.append(
                data_event({"type": "tool-input-start", "toolCallId": call[0], "toolName": call[1]})
            )
        if part.arguments:
            call_id = self._tools[part.position][0]
            out.append(
                data_event(
                    {
                        "type": "tool-input-delta",
                        "toolCallId": call_id,
                        "inputTextDelta": part.arguments,
                    }
                )
            )

    @staticmethod
    def error(message: str, kind: str = "") -> bytes:
        return data_event({"type": "error", "errorText": message})

    def end(self, answer: Answer) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        self._close(out)
        if answer.error is not None:
            out.append(self.error(answer.error.message))
        if self._in_step:
            out.append(data_event({"type": "finish-step"}))
        finish: JSONObject = {"type": "finish", "messageMetadata": finish_info(answer)}
        if self._protocol >= 6:
            reason = answer.finish_reason
            if reason == "cancelled":
                reason = "interrupted" if self._protocol >= 7 else "other"
            finish["finishReason"] = VERCEL_FINISH_REASONS.get(reason, reason)
        out.append(data_event(finish))
        return b"".join(out) + DONE


def _data_part(data: Data) -> JSONObject:
    part: JSONObject = {"type": f"data-{data.name}", "data": data.value}
    if data.id is not None:
        part["id"] = data.id
    if data.transient:
        part["transient"] = True
    return part


def _tool_output(result: ToolResult) -> JSONObject:
    if result.error is not None:
        return {
            "type": "tool-output-error",
            "toolCallId": result.call_id,
            "errorText": result.error,
        }
    return {"type": "tool-output-available", "toolCallId": result.call_id, "output": result.output}


def _json_or_text(arguments: str) -> object:
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments  # what the model wrote, invalid JSON and all


def denied_stream(message_id: str | None, call_ids: list[str]) -> Response:
    """A stream that only says these calls will not run (decisions that
    failed a check), ending the assistant message it continues."""
    events = [data_event({"type": "start", "messageId": message_id or "denied"})]
    events += [data_event({"type": "tool-output-denied", "toolCallId": i}) for i in call_ids]
    events += [data_event({"type": "finish"}), DONE]
    return Response(b"".join(events), content_type=SSE_CONTENT_TYPE, headers=VERCEL_HEADERS)
