"""What an AG-UI client sends (``RunAgentInput``), checked and turned into a
call: its messages (tool calls and results included) as the history, its
``tools`` as browser tools, its ``context`` for the system prompt, its
``resume`` entries as decisions on waiting calls. ``state`` and
``forwardedProps`` are ignored. Anything wrong is a :class:`BadInput`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..calls import CHAT_ID
from ..calls.checks import checked_request_options
from ..errors import ConfigurationError
from ..parts import JSONObject, Options
from ..tools import Tool
from .chat_input import BadInput, InputLimits, check_history


@dataclass(frozen=True)
class Decision:
    """A resume entry: the answer to one interrupt (an approval id)."""

    id: str
    approved: bool
    reason: str | None


@dataclass
class RunInput:
    thread_id: str | None
    run_id: str | None
    history: list[JSONObject]
    tools: list[Tool[object]] = field(default_factory=list)
    context: str | None = None
    decisions: list[Decision] = field(default_factory=list)


def run_input(body: Options, conf: InputLimits) -> RunInput:
    """The run a client asked for."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadInput(400, "Send a RunAgentInput: 'messages' must be a list.")
    history = [turn for message in messages for turn in _turns(message)]
    check_history(history, conf)
    thread, run = body.get("threadId"), body.get("runId")
    return RunInput(
        thread if isinstance(thread, str) and CHAT_ID.match(thread) else None,
        run if isinstance(run, str) and CHAT_ID.match(run) else None,
        history,
        _browser_tools(body.get("tools")),
        _context(body.get("context")),
        _decisions(body.get("resume")),
    )


def _turns(message: object) -> list[JSONObject]:
    if not isinstance(message, dict):
        raise BadInput(400, "Each message must be an object with a role.")
    role = message.get("role")
    if role in ("system", "developer"):
        raise BadInput(400, "A system message cannot be sent from the browser.")
    if role == "user":
        return [{"role": "user", "content": _text(message.get("content"))}]
    if role == "assistant":
        turn: JSONObject = {"role": "assistant", "content": _text(message.get("content") or "")}
        calls = message.get("toolCalls") or []
        if not isinstance(calls, list):
            raise BadInput(400, "An assistant message's toolCalls must be a list.")
        if calls:
            turn["tool_calls"] = [_call(call) for call in calls]
        return [turn] if turn["content"] or calls else []
    if role == "tool":
        call_id, error = message.get("toolCallId"), message.get("error")
        if not isinstance(call_id, str) or not call_id:
            raise BadInput(400, "A tool message needs its toolCallId.")
        content = error if isinstance(error, str) and error else _text(message.get("content"))
        return [
            {
                "role": "tool",
                "tool_call_id": call_id,
                "name": None,
                "content": content,
                "error": bool(error),
            }
        ]
    return []  # reasoning, activity: nothing the model is sent


def _call(call: object) -> JSONObject:
    if not isinstance(call, dict) or not isinstance(call.get("id"), str):
        raise BadInput(400, "A tool call needs an id and a function.")
    function = call.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise BadInput(400, "A tool call's function needs a name and its arguments as text.")
    return {"id": call["id"], "name": name, "arguments": arguments}


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise BadInput(400, "Only text can be sent in a message.")


def _browser_tools(value: object) -> list[Tool[object]]:
    """The client's tools: the browser runs them (no function here)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(400, "'tools' must be a list of tools.")
    tools: list[Tool[object]] = []
    for item in value:
        if not isinstance(item, dict):
            raise BadInput(400, "A tool must be an object with a name.")
        parameters = item.get("parameters") or {"type": "object", "properties": {}}
        try:
            checked_request_options({"tools": [{**item, "parameters": parameters}]})
            tools.append(Tool(item["name"], str(item.get("description", "")), parameters))
        except (ConfigurationError, KeyError) as exc:
            raise BadInput(400, f"Bad tool: {exc}") from None
    return tools


def _context(value: object) -> str | None:
    if not value:
        return None
    if not isinstance(value, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("description"), str)
        and isinstance(c.get("value"), str)
        for c in value
    ):
        raise BadInput(400, "'context' must be a list of {description, value}.")
    return "\n".join(f"{c['description']}: {c['value']}" for c in value)


def _decisions(value: object) -> list[Decision]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(400, "'resume' must be a list of entries.")
    decisions = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("interruptId"), str):
            raise BadInput(400, "A resume entry needs its interruptId.")
        payload = entry.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        approved = entry.get("status") == "resolved" and payload.get("approved") is True
        reason = payload.get("reason")
        decisions.append(
            Decision(entry["interruptId"], approved, reason if isinstance(reason, str) else None)
        )
    return decisions


__all__ = ["Decision", "RunInput", "run_input"]
