"""A provider with no network and no key, for demos and for users' own tests.

It answers with ``AI_OFFLINE_TEXT`` when that is set, else with an echo of
the last user message, one word at a time, ``AI_OFFLINE_DELAY`` seconds apart,
and reports usage as a real provider does, counting words as tokens.

It takes every request option, so an app's own tests never need a network:
with ``reasoning`` it thinks aloud first (a reasoning part), and with a
``tool_choice`` naming a tool (or ``"required"``: the first tool) it calls
that tool with ``{}`` and ends with ``"tool_calls"``. Asked "what time is
it" with a tool whose name holds "time" on offer, it calls that tool; given
a tool's result last, it answers with it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

from ..parts import Metadata, Part, ReasoningDelta, Stop, ToolCall, ToolCallDelta, UsageUpdate
from ..transport import Opening, Transport
from .base import REQUEST_OPTIONS, ChatRequest, PartStream, Provider
from .wire import new_call_id, text_of

_WORDS = re.compile(r"\s*\S+\s*|\s+")


#: What makes the offline model reach for a time tool by itself.
_TIME_QUESTION = re.compile(r"\bwhat time is it\b", re.IGNORECASE)


def offline_answer(chat: ChatRequest, text: str | None) -> str:
    if text:
        return str(text)
    last = chat.messages[-1] if chat.messages else None
    if last is not None and last["role"] == "tool":
        return f"{last['name']} says: {last['content']}"
    question = next(
        (text_of(m["content"]) for m in reversed(chat.messages) if m["role"] == "user"), ""
    )
    return f"You asked: {question}"


def count_words(chat: ChatRequest) -> int:
    texts = [text_of(m["content"]) for m in chat.messages] + [chat.system or ""]
    return sum(len(text.split()) for text in texts)


def tool_called(chat: ChatRequest) -> str | None:
    """The tool a request makes the offline model call, if any."""
    if isinstance(chat.tool_choice, dict):
        return chat.tool_choice["name"]  # type: ignore[no-any-return]
    if chat.tool_choice == "required" and chat.tools:
        return chat.tools[0]["name"]  # type: ignore[no-any-return]
    last = chat.messages[-1] if chat.messages else None
    if chat.tool_choice != "none" and last is not None and last["role"] == "user":
        if _TIME_QUESTION.search(text_of(last["content"])):
            names = [tool["name"] for tool in chat.tools or () if "time" in tool["name"].lower()]
            return names[0] if names else None
    return None


class OfflineStream(PartStream):
    def __init__(self, chat: ChatRequest, answer: str, delay: float) -> None:
        self._chat = chat
        self._tool = tool_called(chat)
        if self._tool is not None and chat.tool_choice is None:
            answer = ""  # it chose the tool itself: it only calls it
        self._words = _WORDS.findall(answer)
        self._delay = delay
        self._closed = threading.Event()

    def _wait(self) -> bool:
        """Between two tokens; true once closed."""
        return self._closed.wait(self._delay) if self._delay else self._closed.is_set()

    def __iter__(self) -> Iterator[list[Part]]:
        chat = self._chat
        yield [Metadata(chat.model, None)]
        if chat.reasoning is not None:
            if self._wait():
                return
            yield [ReasoningDelta(f"Thinking ({chat.reasoning}) about the question.")]
        for word in self._words:
            if self._wait():
                return
            yield [word]
        output_tokens = sum(1 for word in self._words if word.strip())
        tool = self._tool
        if tool is not None:
            call_id = new_call_id()
            yield [ToolCallDelta(0, call_id, tool, "{}"), ToolCall(call_id, tool, "{}")]
            output_tokens += 1
        usage = UsageUpdate(count_words(chat), output_tokens)
        yield [usage, Stop("tool_calls", "tool_calls") if tool else Stop("stop", "stop")]

    def close(self) -> None:
        self._closed.set()


class OfflineProvider(Provider):
    api = "offline"
    default_model = "offline"
    supports = frozenset(REQUEST_OPTIONS)

    def open(
        self, chat: ChatRequest, transport: Transport, opening: Opening | None = None
    ) -> OfflineStream:
        settings = self.settings
        assert settings is not None, "built by build_providers, with the app's settings"
        return OfflineStream(
            chat, offline_answer(chat, settings.offline_text), settings.offline_delay
        )
