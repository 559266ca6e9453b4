"""A Responses API request (``POST <prefix>/v1/responses``) as call options:
``instructions``, ``input`` (text, images, function calls and their
outputs), ``max_output_tokens``, ``tools``, ``tool_choice``, ``text.format``
and ``reasoning``. Nothing is stored: a request that needs a stored
response (``previous_response_id``, ``conversation``, ``background``) is
refused; harmless fields a client always sends (``store``, ``include``...)
are ignored."""

from __future__ import annotations

from collections.abc import Mapping

from ..parts import JSONObject, Options

#: What a request may hold and we map.
MAPPED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "max_output_tokens",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
    }
)
#: What a client sends that changes nothing here.
IGNORED = frozenset(
    {
        "store",
        "include",
        "metadata",
        "user",
        "truncation",
        "parallel_tool_calls",
        "service_tier",
        "stream_options",
        "prompt_cache_key",
        "safety_identifier",
        "top_logprobs",
    }
)
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class BadRequest(ValueError):
    """The request cannot be honoured: the message says why (a 400)."""


def responses_options(body: Options, provider: str, model: str | None) -> JSONObject:
    """The request as ``ask`` options for ``provider`` and ``model``."""
    unknown = set(body) - MAPPED - IGNORED
    if unknown:
        raise BadRequest(f"Unsupported parameter(s): {', '.join(sorted(unknown))}")
    options: JSONObject = {"provider": provider, "model": model, "fallbacks": []}
    options["messages"] = input_messages(body.get("input"))
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        options["system"] = body["instructions"]
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_tokens", "max_output_tokens"),
    ):
        if body.get(theirs) is not None:
            options[ours] = body[theirs]
    if body.get("tools"):
        options["tools"] = [_tool(tool) for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        options["tool_choice"] = {"name": choice.get("name")}
    elif choice is not None:
        options["tool_choice"] = choice
    text = body.get("text")
    form = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(form, Mapping) and form.get("type") == "json_object":
        options["response_format"] = "json"
    elif isinstance(form, Mapping) and form.get("type") == "json_schema":
        options["response_format"] = form.get("schema")
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and reasoning.get("effort"):
        effort = reasoning["effort"]
        options["reasoning"] = "low" if effort == "minimal" else effort
    return options


def input_messages(value: object) -> list[JSONObject]:
    """``input`` as our messages: a string is one user turn; items map one
    by one, a function call joining the assistant turn before it."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise BadRequest("input must be a string or a non-empty array of items.")
    messages: list[JSONObject] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise BadRequest("Each input item must be an object.")
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "name": item.get("name"),
                "arguments": item.get("arguments"),
            }
            if not messages or messages[-1]["role"] != "assistant":
                messages.append({"role": "assistant", "content": ""})
            messages[-1].setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
            )
        elif kind == "message":
            role = ROLES.get(str(item.get("role")))
            if role is None:
                raise BadRequest(f"Unsupported role {item.get('role')!r}.")
            messages.append({"role": role, "content": _content(item.get("content"))})
        elif kind != "reasoning":  # reasoning items carry nothing a provider is sent
            raise BadRequest(f"Unsupported input item type {kind!r}.")
    return messages


def _content(content: object) -> object:
    if isinstance(content, str) or not isinstance(content, list):
        return content
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text")})
        elif kind == "input_image":
            parts.append({"type": "image", "url": part.get("image_url")})
        elif kind != "refusal":
            raise BadRequest(f"Unsupported content part type {kind!r}.")
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] or "" for part in parts)
    return parts


def _tool(tool: object) -> JSONObject:
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        raise BadRequest("Only function tools are supported.")
    checked: JSONObject = {"name": tool.get("name"), "parameters": tool.get("parameters")}
    if tool.get("description") is not None:
        checked["description"] = tool["description"]
    if tool.get("strict"):
        checked["strict"] = True
    return checked
