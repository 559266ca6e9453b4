"""Every check of one call, before anything is sent: its options, its
messages and their content, the provider's key and model, what the provider
can map, and each fallback. Every mistake raises here, in the view; what
passes is a :class:`Call`: the neutral requests the providers map, and what
to do with the answer."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypedDict, Union

from ..config import (
    DISCONNECT_POLICIES,
    STREAM_FORMATS,
    Settings,
    checked_events,
    checked_fallbacks,
    checked_provider,
)
from ..errors import ConfigurationError, InvalidRequestError, UnknownOptionError
from ..parts import Answer, JSONObject, Options
from ..providers.base import ChatRequest, Provider
from ..tools import Tool
from ..tools.conversation import checked_tool_calls, checked_tool_result, paired
from .checks import REQUEST_OPTIONS, checked_content, checked_request_options, is_number

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
        "message_id",
    }
)
OPTIONS = CHAT_OPTIONS | ANSWER_OPTIONS
#: A chat id as the Vercel AI SDK makes them (nanoid-like), bounded.
CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}\Z")


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
    #: The assistant message the answer continues (a browser tool's result
    #: came back): the Vercel stream carries its id, so useChat extends it.
    message_id: str | None = None

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
    output = options.get("format") or settings.stream_format
    if any(tool.needs_approval for tool in tools.values()) and (
        output == "openai" or output == "vercel" and settings.vercel_protocol < 6
    ):
        raise ConfigurationError(
            "a tool that needs approval asks it in the aistream format, or the vercel "
            f"format from AI_VERCEL_PROTOCOL 6 on; not {output!r} here"
        )
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
    for name in ("chat_id", "message_id"):
        value = options.get(name)
        if value is not None and not (isinstance(value, str) and CHAT_ID.match(value)):
            raise InvalidRequestError(
                f"{name} must be 1 to 128 letters, digits, '-' or '_', not {value!r}"
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


class AskOptions(TypedDict, total=False):
    """The keyword options of ``ask_stream``, ``ask``, ``iter_text`` and
    ``iter_events``, for IDEs and type checkers (each is checked at run time
    too, whoever calls). ``None`` is the same as leaving an option out."""

    provider: str | None
    model: str | None
    temperature: float | None
    max_tokens: int | None
    system: str | None
    messages: Sequence[Options] | None
    fallbacks: Sequence[str] | None
    top_p: float | None
    stop: str | Sequence[str] | None
    seed: int | None
    response_format: str | Options | None
    tools: Sequence[Options | Tool[object]] | None
    max_steps: int | None
    tool_choice: str | Mapping[str, str] | None
    reasoning: Literal["low", "medium", "high"] | None
    extra_body: Options | None
    extra_headers: Mapping[str, str] | None
    on_finish: OnFinish | None
    on_disconnect: Literal["cancel", "finish"] | None
    events: Sequence[str] | None
    format: Literal["aistream", "vercel", "openai", "agui"] | None
    include_usage: bool | None
    owner: str | int | None
    chat_id: str | None
    message_id: str | None
