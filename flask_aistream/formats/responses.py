"""OpenAI's Responses API, served: an answer as Responses events
(``response.created``, output items and their content parts, text, reasoning
summary and function-call argument deltas, the ``...done`` events, then
``response.completed``, ``response.incomplete`` or ``response.failed``),
each with its ``sequence_number``; and as one ``response`` object."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..parts import Answer, JSONObject, Part, ReasoningDelta, ToolCall, ToolCallDelta
from .sse import PING, SSE_CONTENT_TYPE, SSE_HEADERS, data_event


def usage_object(answer: Answer) -> JSONObject | None:
    usage = answer.usage
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens or 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    response_id: str, model: str, created: int, status: str, output: list[JSONObject]
) -> JSONObject:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }


def answer_items(answer: Answer, new_id: Callable[[str], str]) -> list[JSONObject]:
    """The answer's output items, as a non-streamed response holds them."""
    items: list[JSONObject] = []
    if answer.reasoning:
        items.append(
            {
                "id": new_id("rs"),
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": answer.reasoning}],
            }
        )
    if answer.text:
        items.append(_message(new_id("msg"), answer.text, "completed"))
    items += [
        _function_call(new_id("fc"), c.id, c.name, c.arguments, "completed")
        for c in answer.tool_calls
    ]
    return items


def ending(answer: Answer, body: JSONObject) -> str:
    """The terminal event's type, and ``body`` (a response object) filled in."""
    body["usage"] = usage_object(answer)
    if answer.error is not None:
        body["status"] = "failed"
        body["error"] = {"code": answer.error.kind, "message": answer.error.message}
        return "response.failed"
    if answer.finish_reason in ("length", "content_filter"):
        body["status"] = "incomplete"
        reason = "max_output_tokens" if answer.finish_reason == "length" else "content_filter"
        body["incomplete_details"] = {"reason": reason}
        return "response.incomplete"
    body["status"] = "completed"
    return "response.completed"


def _message(item_id: str, text: str, status: str) -> JSONObject:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _function_call(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> JSONObject:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


class ResponsesFormat:
    """The events of one streamed response."""

    content_type = SSE_CONTENT_TYPE
    headers = SSE_HEADERS
    ping = PING

    def __init__(self, response_id: str, model: str, new_id: Callable[[str], str]) -> None:
        self._id = response_id
        self._model = model
        self._new_id = new_id
        self._created = int(time.time())
        self._sequence = 0
        self._started = False
        self._open: JSONObject | None = None  # the message or reasoning item under way
        self._text: list[str] = []
        self._calls: dict[object, JSONObject] = {}  # position -> its function_call item
        self._output: list[JSONObject] = []  # items done

    def _event(self, kind: str, **fields: object) -> bytes:
        event = data_event({"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1
        return b"event: " + kind.encode() + b"\n" + event

    def _where(self, item: JSONObject) -> JSONObject:
        """Where an event of a message or reasoning item points: the item,
        its place in the output, and its one content or summary part."""
        part = "content_index" if item["type"] == "message" else "summary_index"
        return {"item_id": item["id"], "output_index": len(self._output), part: 0}

    def _response(self, status: str) -> JSONObject:
        return response_object(self._id, self._model, self._created, status, list(self._output))

    def parts(self, parts: list[Part]) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(self._event("response.created", response=self._response("in_progress")))
            out.append(self._event("response.in_progress", response=self._response("in_progress")))
        for part in parts:
            if isinstance(part, str):
                item = self._item("message", out)
                self._text.append(part)
                out.append(
                    self._event(
                        "response.output_text.delta",
                        **self._where(item),
                        delta=part,
                        logprobs=[],
                    )
                )
            elif isinstance(part, ReasoningDelta):
                item = self._item("reasoning", out)
                self._text.append(part.text)
                out.append(
                    self._event(
                        "response.reasoning_summary_text.delta",
                        **self._where(item),
                        delta=part.text,
                    )
                )
            elif isinstance(part, ToolCallDelta):
                self._close(out)
                self._call_delta(part, out)
            elif isinstance(part, ToolCall):
                self._close(out)
                self._call_done(part, out)
        return b"".join(out)

    def _item(self, kind: str, out: list[bytes]) -> JSONObject:
        """The open message or reasoning item, opened if need be."""
        if self._open is not None and self._open["type"] == kind:
            return self._open
        self._close(out)
        index = len(self._output)
        if kind == "message":
            item = {
                "id": self._new_id("msg"),
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            out.append(self._event("response.output_item.added", output_index=index, item=item))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(
                self._event(
                    "response.content_part.added",
                    **self._where(item),
                    part=part,
                )
            )
        else:
            item = {"id": self._new_id("rs"), "type": "reasoning", "summary": []}
            out.append(self._event("response.output_item.added", output_index=index, item=item))
            part = {"type": "summary_text", "text": ""}
            out.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    **self._where(item),
                    part=part,
                )
            )
        self._open = item
        return item

    def _close(self, out: list[bytes]) -> None:
        item, self._open = self._open, None
        if item is None:
            return
        text, index = "".join(self._text), len(self._output)
        self._text = []
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(
                self._event(
                    "response.output_text.done",
                    **self._where(item),
                    text=text,
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done",
                    **self._where(item),
                    part=part,
                )
            )
            done = _message(item["id"], text, "completed")
        else:
            summary = {"type": "summary_text", "text": text}
            out.append(
                self._event(
                    "response.reasoning_summary_text.done",
                    **self._where(item),
                    text=text,
                )
            )
            out.append(
                self._event(
                    "response.reasoning_summary_part.done",
                    **self._where(item),
                    part=summary,
                )
            )
            done = {"id": item["id"], "type": "reasoning", "summary": [summary]}
        out.append(self._event("response.output_item.done", output_index=index, item=done))
        self._output.append(done)

    def _call_delta(self, part: ToolCallDelta, out: list[bytes]) -> None:
        item = self._calls.get(part.position)
        index = len(self._output)
        if item is None:
            item = self._calls[part.position] = _function_call(
                self._new_id("fc"),
                part.id or f"call_{part.position}",
                part.name or "",
                "",
                "in_progress",
            )
            out.append(
                self._event("response.output_item.added", output_index=index, item=dict(item))
            )
        if part.arguments:
            item["arguments"] += part.arguments
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=part.arguments,
                )
            )

    def _call_done(self, call: ToolCall, out: list[bytes]) -> None:
        item = next((i for i in self._calls.values() if i["call_id"] == call.id), None)
        index = len(self._output)
        if item is None:  # it came whole
            item = _function_call(self._new_id("fc"), call.id, call.name, "", "in_progress")
            out.append(
                self._event("response.output_item.added", output_index=index, item=dict(item))
            )
        item.update(arguments=call.arguments, status="completed")
        out.append(
            self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=call.arguments,
            )
        )
        out.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        self._output.append(dict(item))
        self._calls = {k: v for k, v in self._calls.items() if v is not item}

    def error(self, message: str, kind: str = "") -> bytes:
        return self._event("error", code=kind or "server_error", message=message, param=None)

    def end(self, answer: Answer) -> bytes:
        out: list[bytes] = []
        if not self._started:
            out.append(self.parts([]))
        self._close(out)
        body = self._response("in_progress")
        kind = ending(answer, body)
        out.append(self._event(kind, response=body))
        return b"".join(out)
