"""The value checks of one call: each request option, and a message's
content (text and image parts). A mistake raises here, in the view."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidRequestError
from ..parts import Content, JSONObject, Options
from ..providers.base import REQUEST_OPTIONS as PROVIDER_OPTIONS
from ..providers.wire import printable
from ..tools import Tool

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

#: The request options a call may pass beyond model, temperature and max tokens
#: (the ``ChatRequest`` fields of the same names; images come in messages).
REQUEST_OPTIONS = tuple(name for name in PROVIDER_OPTIONS if name != "images")
REASONING_LEVELS = ("low", "medium", "high")
TOOL_CHOICES = ("auto", "none", "required")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: OpenAI's rule for tool names, which the other providers accept too.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+);base64,(.*)", re.DOTALL)


def checked_request_options(options: Options) -> JSONObject:
    """The request options that are set, checked and normalized."""
    checked: JSONObject = {}
    for name in REQUEST_OPTIONS:
        value = options.get(name)
        if value is not None:
            checked[name] = _CHECKS[name](value)
    choice = checked.get("tool_choice")
    if isinstance(choice, dict) or choice == "required":
        names = {tool["name"] for tool in checked.get("tools") or ()}
        if choice == "required" and not names:
            raise ConfigurationError('tool_choice "required" needs tools')
        if isinstance(choice, dict) and choice["name"] not in names:
            raise ConfigurationError(f"tool_choice names {choice['name']!r}, which is not in tools")
    return checked


def _top_p(value: object) -> float:
    if not is_number(value) or not 0 <= value <= 1:
        raise ConfigurationError(f"top_p must be a number from 0 to 1, not {value!r}")
    return float(value)


def _stop(value: object) -> tuple[str, ...]:
    stops = (value,) if isinstance(value, str) else value
    if (
        not isinstance(stops, (list, tuple))
        or not stops
        or not all(isinstance(stop, str) and stop for stop in stops)
    ):
        raise ConfigurationError(f"stop must be a string or a list of strings, not {value!r}")
    return tuple(stops)


def _seed(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"seed must be a whole number, not {value!r}")
    return value


def _response_format(value: object) -> object:
    if value == "json":
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigurationError(
        f'response_format must be "json" or a JSON schema (a dict), not {value!r}'
    )


def _tools(value: object) -> tuple[JSONObject, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"tools must be a list of tools, not {value!r}")
    tools = tuple(_tool(tool) for tool in value)
    names = [tool["name"] for tool in tools]
    if len(set(names)) < len(names):
        raise ConfigurationError(f"two tools have the same name: {names}")
    return tools


def _tool(tool: object) -> JSONObject:
    """A neutral tool: a :class:`~flask_aistream.Tool` (``@tool``), or a dict;
    OpenAI's shape (``{"type": "function", "function": {...}}``) is taken
    too, as code moving from the SDK will pass it."""
    if isinstance(tool, Tool):
        return tool.definition()
    if isinstance(tool, Mapping) and tool.get("type") == "function" and "function" in tool:
        tool = tool["function"]
    if not isinstance(tool, Mapping):
        raise ConfigurationError(f"a tool must be a dict with a name, not {tool!r}")
    unknown = set(tool) - {"name", "description", "parameters", "strict"}
    if unknown:
        raise ConfigurationError(
            f"a tool has unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
            "expected name, description, parameters and strict"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise ConfigurationError(
            f"a tool's name must be 1-64 letters, digits, '_', '.' or '-', not {name!r}"
        )
    checked: JSONObject = {"name": name}
    if tool.get("description") is not None:
        if not isinstance(tool["description"], str):
            raise ConfigurationError(f"tool {name!r}: the description must be a string")
        checked["description"] = tool["description"]
    if tool.get("parameters") is not None:
        if not isinstance(tool["parameters"], Mapping):
            raise ConfigurationError(f"tool {name!r}: parameters must be a JSON schema (a dict)")
        checked["parameters"] = dict(tool["parameters"])
    if tool.get("strict"):
        checked["strict"] = True
    return checked


def _tool_choice(value: object) -> object:
    if value in TOOL_CHOICES:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and len(value) == 1:
        return {"name": value["name"]}
    raise ConfigurationError(
        f'tool_choice must be "auto", "none", "required" or {{"name": ...}}, not {value!r}'
    )


def _reasoning(value: object) -> str:
    if value not in REASONING_LEVELS:
        raise ConfigurationError(
            f"reasoning must be one of {', '.join(REASONING_LEVELS)}, not {value!r}"
        )
    return value


def _extra_body(value: object) -> JSONObject:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"extra_body must be a dict, not {value!r}")
    return dict(value)


def _extra_headers(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and printable(k + v)
        for k, v in value.items()
    ):
        raise ConfigurationError("extra_headers must be a dict of header names to strings")
    return dict(value)


_CHECKS = {
    "top_p": _top_p,
    "stop": _stop,
    "seed": _seed,
    "response_format": _response_format,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "reasoning": _reasoning,
    "extra_body": _extra_body,
    "extra_headers": _extra_headers,
}


def checked_content(content: object) -> Content:
    """A message's content: a string, or a list of text and image parts.
    An image given as a ``data:`` URL becomes data and a media type, the one
    shape every provider takes."""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)) or not content:
        raise InvalidRequestError(
            f"a message's content must be a string or a list of parts, not {type(content).__name__}"
        )
    return [_part(part) for part in content]


def _part(part: Any) -> JSONObject:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind == "text" and isinstance(part.get("text"), str) and set(part) == {"type", "text"}:
        return {"type": "text", "text": part["text"]}
    if kind != "image":
        raise InvalidRequestError(
            'a content part must be {"type": "text", "text": ...} or {"type": "image", ...}'
        )
    url = part.get("url")
    if isinstance(url, str):
        match = _DATA_URL.fullmatch(url)
        if match:
            return _image_data(match.group(2), match.group(1))
        if not url.startswith(("https://", "http://")) or set(part) - {"type", "url", "media_type"}:
            raise InvalidRequestError("an image URL must start with https:// or http://")
        image = {"type": "image", "url": url}
        if isinstance(part.get("media_type"), str):
            image["media_type"] = part["media_type"]
        return image
    return _image_data(part.get("data"), part.get("media_type"))


def _image_data(data: object, media_type: object) -> JSONObject:
    if media_type not in IMAGE_TYPES:
        raise InvalidRequestError(
            f"an image's media_type must be one of {', '.join(IMAGE_TYPES)}, not {media_type!r}"
        )
    if not isinstance(data, str) or not data:
        raise InvalidRequestError("an image needs a url, or data (base64) and a media_type")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("an image's data must be base64") from None
    return {"type": "image", "data": data, "media_type": media_type}


def image_bytes(content: Content) -> int:
    """How many bytes the images of a content carry, decoded."""
    if isinstance(content, str):
        return 0
    return sum(
        len(part["data"]) * 3 // 4 for part in content if part["type"] == "image" and "data" in part
    )


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
