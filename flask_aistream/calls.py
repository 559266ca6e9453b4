"""Every check of one call, before anything is sent: its options, its
messages and their content, the provider's key and model, what the provider
can map, and each fallback. Every mistake raises here, in the view; what
passes is a :class:`Call`: the neutral requests the providers map, and what
to do with the answer."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from .config import (
    DISCONNECT_POLICIES,
    STREAM_FORMATS,
    Settings,
    checked_events,
    checked_fallbacks,
    checked_provider,
)
from .errors import ConfigurationError, InvalidRequestError, UnknownOptionError
from .parts import Answer, Content, JSONObject, Options
from .providers.base import REQUEST_OPTIONS as PROVIDER_OPTIONS
from .providers.base import ChatRequest, Provider
from .providers.wire import printable
from .tools import Tool
from .tools.conversation import checked_tool_calls, checked_tool_result, paired

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

#: The request options a call may pass beyond model, temperature and max tokens
#: (the ``ChatRequest`` fields of the same names; images come in messages).
REQUEST_OPTIONS = tuple(name for name in PROVIDER_OPTIONS if name != "images")
ROLES = ("system", "user", "assistant", "tool")
#: The highest temperature any provider takes (OpenAI's; Anthropic's is 1).
MAX_TEMPERATURE = 2.0
#: What the provider is asked (``fallbacks``: who else, if it fails first).
CHAT_OPTIONS = frozenset(
    {"provider", "model", "temperature", "max_tokens", "system", "messages", "fallbacks"}
    | set(REQUEST_OPTIONS)
)
#: What we do with its answer.
ANSWER_OPTIONS = frozenset(
    {
        "on_finish",
        "on_disconnect",
        "events",
        "format",
        "include_usage",
        "owner",
        "chat_id",
        "max_steps",
    }
)
OPTIONS = CHAT_OPTIONS | ANSWER_OPTIONS
#: A chat id as the Vercel AI SDK makes them (nanoid-like), bounded.
CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}\Z")
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


def _response_format(value: object) -> Any:
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


def _tool_choice(value: object) -> Any:
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


OnFinish = Callable[[Answer], Any]
#: Whose answer it is (a user id), for resume and cancel.
Owner = Union[str, int, None]


@dataclass(frozen=True)
class Call:
    """One checked call: the providers to ask in order, each with its request
    (the first, then its fallbacks), and what to do with the answer."""

    attempts: tuple[tuple[Provider, ChatRequest], ...]
    on_finish: OnFinish | None = None
    on_disconnect: str | None = None
    events: tuple[str, ...] | None = None
    format: str | None = None
    include_usage: bool = False
    owner: Owner = None
    chat_id: str | None = None
    #: The tools the call offers that are :class:`~flask_aistream.Tool`
    #: objects, by name (those with ``execute`` the server runs).
    tools: Mapping[str, Tool[object]] = field(default_factory=dict)
    #: The most provider calls the answer may make (else ``AI_MAX_STEPS``).
    max_steps: int | None = None

    @property
    def runs_tools(self) -> bool:
        """Whether the server runs any of the call's tools."""
        return any(tool.execute is not None for tool in self.tools.values())

    @property
    def provider(self) -> Provider:
        return self.attempts[0][0]

    @property
    def chat(self) -> ChatRequest:
        return self.attempts[0][1]


def call_options(prompt: str | None, options: Options) -> JSONObject:
    """The options of ``ask_*(prompt, **options)``, with the prompt as the
    last user message; an option we do not know raises."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise UnknownOptionError(
            f"unknown option(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(OPTIONS))}"
        )
    checked = dict(options)
    messages = list(checked.pop("messages", None) or ())
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError(f"the prompt must be a non-empty string, not {prompt!r}")
        messages.append({"role": "user", "content": prompt})
    checked["messages"] = messages
    return checked


def plan(
    settings: Settings,
    providers: Mapping[str, Provider],
    options: Options,
    default_provider: str | None = None,
) -> Call:
    """Check everything a call needs before anything is sent, so a mistake
    raises in the view rather than ending a stream: the provider and its
    request, then each fallback and its own."""
    name = options.get("provider") or default_provider or settings.provider
    checked_provider(name, providers, "provider")
    system_parts = [options["system"]] if options.get("system") else []
    messages = []
    for message in _checked_messages(options.get("messages") or ()):
        if message["role"] == "system":
            if not isinstance(message["content"], str):
                raise InvalidRequestError("a system message's content must be a string")
            system_parts.append(message["content"])
        else:
            messages.append(message)
    messages = paired(messages)
    if not messages:
        raise InvalidRequestError("nothing to ask: give a prompt or at least one user message")
    temperature = options.get("temperature")
    if temperature is None:
        temperature = settings.temperature
    elif not is_number(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise ConfigurationError(
            f"temperature must be a number from 0 to {MAX_TEMPERATURE}, not {temperature!r}"
        )
    max_tokens = options.get("max_tokens")
    if max_tokens is None:
        max_tokens = settings.max_tokens
    elif (
        not is_number(max_tokens)
        or not math.isfinite(max_tokens)
        or max_tokens != int(max_tokens)
        or max_tokens < 1
    ):
        raise ConfigurationError(f"max_tokens must be a whole number >= 1, not {max_tokens!r}")
    answer_options = checked_answer_options(options)
    fields = dict(
        messages=tuple(messages),
        system="\n\n".join(system_parts) or None,
        temperature=None if temperature is None else float(temperature),
        max_tokens=None if max_tokens is None else int(max_tokens),
        **checked_request_options(options),
    )
    fallbacks = settings.fallbacks
    if options.get("fallbacks") is not None:
        fallbacks = checked_fallbacks(options["fallbacks"], providers, "fallbacks")
    attempts: list[tuple[Provider, ChatRequest]] = []
    for provider_name, model in ((name, options.get("model")), *fallbacks):
        provider = providers[provider_name]
        provider.conf.require_api_key()
        chat = ChatRequest(model=settings.model_for(provider_name, model), **fields)
        if any(p is provider and c.model == chat.model for p, c in attempts):
            continue  # what failed is not its own fallback
        provider.check(chat)
        attempts.append((provider, chat))
    tools = {tool.name: tool for tool in options.get("tools") or () if isinstance(tool, Tool)}
    return Call(tuple(attempts), tools=tools, **answer_options)


def checked_answer_options(options: Options) -> JSONObject:
    """The answer options that are set, checked (a mistake raises now)."""
    on_finish = options.get("on_finish")
    if on_finish is not None and not callable(on_finish):
        raise UnknownOptionError(
            f"on_finish must be a callable taking the answer, not {on_finish!r}"
        )
    checked = {key: options[key] for key in ANSWER_OPTIONS if options.get(key) is not None}
    if "events" in checked:
        checked["events"] = checked_events(checked["events"], "events")
    output = options.get("format")
    if output is not None and output not in STREAM_FORMATS:
        raise ConfigurationError(
            f"format must be one of {', '.join(STREAM_FORMATS)}, not {output!r}."
        )
    policy = options.get("on_disconnect")
    if policy is not None and policy not in DISCONNECT_POLICIES:
        raise ConfigurationError(
            f"on_disconnect must be one of {', '.join(DISCONNECT_POLICIES)}, not {policy!r}."
        )
    owner = options.get("owner")
    if owner is not None and not isinstance(owner, (str, int)):
        raise ConfigurationError(f"owner must be a string or an int (a user id), not {owner!r}.")
    chat_id = options.get("chat_id")
    if chat_id is not None and not (isinstance(chat_id, str) and CHAT_ID.match(chat_id)):
        raise InvalidRequestError(
            f"chat_id must be 1 to 128 letters, digits, '-' or '_', not {chat_id!r}"
        )
    max_steps = options.get("max_steps")
    if max_steps is not None and (
        not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1
    ):
        raise ConfigurationError(f"max_steps must be a whole number >= 1, not {max_steps!r}")
    if "include_usage" in checked:
        checked["include_usage"] = bool(checked["include_usage"])
    return checked


def _checked_messages(messages: Iterable[object]) -> Iterator[JSONObject]:
    for message in messages:
        if not isinstance(message, Mapping):
            raise InvalidRequestError(
                f"a message must be a dict with role and content, not {message!r}"
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidRequestError(
                f"a message role must be one of {', '.join(ROLES)}, not {role!r}"
            )
        if role == "tool":
            yield checked_tool_result(message)
        elif role == "assistant" and message.get("tool_calls"):
            calls = checked_tool_calls(message["tool_calls"])
            yield {"role": role, "content": checked_content(content or ""), "tool_calls": calls}
        else:
            yield {"role": role, "content": checked_content(content)}
