"""The script a fake provider plays: its items, what each call asked
(:class:`FakeRequest`), and :func:`tool_call`."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Union

from ..parts import JSONObject, ToolCall
from ..providers.anthropic import MessagesProvider
from ..providers.base import REQUEST_OPTIONS, ChatRequest, Provider
from ..providers.gemini import GeminiProvider
from ..providers.http import HTTPProvider
from ..providers.ollama import OllamaProvider
from ..providers.openai import ChatCompletionsProvider
from . import wire

#: Header a request carries in wire mode: which scripted reply it is.
SCRIPT_HEADER = "X-AIStream-Fake-Reply"
#: Tokens of a scripted text: a word with the space before it, as providers cut them.
TOKENS = re.compile(r"\s*\S+|\s+")
#: What a reply says it cost when the script does not say: 10 tokens in, one
#: out per token it sends.
DEFAULT_INPUT_TOKENS = 10


def tool_call(name: str, /, **arguments: object) -> ToolCall:
    """A tool call for :meth:`FakeProvider.reply`: ``tool_call("get_weather", city="Paris")``."""
    return ToolCall(f"call_{secrets.token_hex(8)}", name, json.dumps(arguments))


# --- the script ----------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer (a step)."""

    answer: wire.Answer
    model: str | None
    delay: float


@dataclass
class Failure:
    """An HTTP error (``status``), or an error the provider reports in the
    stream after ``after`` (``status`` ``None``)."""

    status: int | None
    message: str
    retry_after: float | None = None
    after: str = ""


@dataclass
class Cut:
    """The connection drops after ``after``."""

    after: str


@dataclass
class Hang:
    """The response head comes, then nothing."""


@dataclass
class Replay:
    """A recorded exchange (see ``AI_RECORD_DIR``), played back."""

    cassette: JSONObject
    pace: bool


Item = Union[Reply, Failure, Cut, Hang, Replay]


@dataclass(frozen=True)
class FakeRequest:
    """What one provider call asked, the same in every mode: the provider's
    name, the model (aliases resolved), the messages (the system prompt
    first, tool calls and results included), the request options that were
    set, and the tools offered."""

    provider: str
    model: str
    messages: list[JSONObject]
    options: JSONObject
    tools: list[JSONObject] = field(default_factory=list)


def _request(provider: str, chat: ChatRequest) -> FakeRequest:
    messages = [{"role": "system", "content": chat.system}] if chat.system else []
    options: JSONObject = {
        name: getattr(chat, name)
        for name in ("temperature", "max_tokens", *REQUEST_OPTIONS)
        if name not in ("images", "tools") and getattr(chat, name, None) is not None
    }
    headers = {k: v for k, v in (options.get("extra_headers") or {}).items() if k != SCRIPT_HEADER}
    if headers:
        options["extra_headers"] = headers
    else:
        options.pop("extra_headers", None)
    return FakeRequest(
        provider,
        chat.model,
        messages + [dict(message) for message in chat.messages],
        options,
        [dict(tool) for tool in chat.tools or ()],
    )


def api_of(provider: Provider, default: str = "openai") -> str | None:
    """The wire format an HTTP provider reads, or ``None``: not an HTTP one."""
    if isinstance(provider, ChatCompletionsProvider):
        return "openai"
    if isinstance(provider, MessagesProvider):
        return "anthropic"
    if isinstance(provider, GeminiProvider):
        return "gemini"
    if isinstance(provider, OllamaProvider):
        return "ollama"
    return default if isinstance(provider, HTTPProvider) else None
