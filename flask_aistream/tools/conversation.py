"""Tool calls and their results in a conversation's history, checked into the
neutral shape every provider maps: an assistant turn may carry
``tool_calls`` (``[{"id", "name", "arguments"}]``, arguments as JSON text),
and a ``tool`` turn answers one call (``{"role": "tool", "tool_call_id",
"name", "content", "error"}``). A call without a result, or a result without
its call, is dropped with one log line: a provider refuses a conversation
that holds one (the user pressed Stop mid-tool)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from ..errors import InvalidRequestError
from ..parts import JSONObject, Options, ToolCall

logger = logging.getLogger("flask_aistream")


def checked_tool_calls(value: object) -> list[JSONObject]:
    """An assistant turn's tool calls: neutral dicts, OpenAI's shape
    (``{"id", "type": "function", "function": {"name", "arguments"}}``), or
    :class:`~flask_aistream.ToolCall` values."""
    if not isinstance(value, (list, tuple)):
        raise InvalidRequestError("tool_calls must be a list of tool calls")
    calls = []
    for call in value:
        if isinstance(call, ToolCall):
            call = call._asdict()
        if isinstance(call, Mapping) and isinstance(call.get("function"), Mapping):
            call = {"id": call.get("id"), **call["function"]}
        if not isinstance(call, Mapping):
            raise InvalidRequestError(f"a tool call must be a dict, not {call!r}")
        call_id, name, arguments = call.get("id"), call.get("name"), call.get("arguments")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise InvalidRequestError("a tool call needs an id and a name")
        if isinstance(arguments, Mapping):
            arguments = json.dumps(arguments)
        if not isinstance(arguments, str):
            raise InvalidRequestError(f"tool call {call_id}: arguments must be JSON text or a dict")
        calls.append({"id": call_id, "name": name, "arguments": arguments or "{}"})
    return calls


def checked_tool_result(message: Options) -> JSONObject:
    """A ``tool`` turn: the result of one call, as text (a JSON value is sent
    as its JSON text)."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError("a tool message needs the tool_call_id it answers")
    content = message.get("content")
    if not isinstance(content, str):
        try:
            content = json.dumps(content)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"tool result {call_id}: the content must be text or a JSON value"
            ) from None
    result: JSONObject = {"role": "tool", "tool_call_id": call_id, "content": content}
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequestError(f"tool result {call_id}: name must be a string")
    result["name"] = name
    result["error"] = bool(message.get("error") or message.get("is_error"))
    return result


def paired(messages: list[JSONObject]) -> list[JSONObject]:
    """``messages`` with every tool call answered by a result and every
    result answering a call; a result takes its call's name. What is not
    paired is dropped, said once in the log."""
    called = {
        call["id"]: call["name"] for message in messages for call in message.get("tool_calls") or ()
    }
    answered = {message["tool_call_id"] for message in messages if message["role"] == "tool"}
    dropped = set(called) ^ answered
    if not called and not answered:
        return messages
    if dropped:
        logger.warning(
            "flask-aistream: dropped tool calls or results without their pair: %s",
            ", ".join(sorted(dropped)),
        )
    kept = []
    for message in messages:
        if message["role"] == "tool":
            if message["tool_call_id"] in called:
                kept.append({**message, "name": message["name"] or called[message["tool_call_id"]]})
            continue
        calls = [call for call in message.get("tool_calls") or () if call["id"] in answered]
        if "tool_calls" in message:
            message = {**message, "tool_calls": calls}
            if not calls:
                del message["tool_calls"]
                if not message["content"]:
                    continue  # it held nothing but calls that went unanswered
        kept.append(message)
    return kept
