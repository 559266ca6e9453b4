"""A provider with no network and no key, for demos and for users' own tests.

It answers with ``AI_OFFLINE_TEXT`` when that is set, else with an echo of
the last user message, one word at a time, ``AI_OFFLINE_DELAY`` seconds apart,
and reports usage as a real provider does, counting words as tokens.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

from ..parts import Metadata, Stop, UsageUpdate
from .base import ChatRequest, PartStream, Provider

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def offline_answer(chat: ChatRequest, text: Any) -> str:
    if text:
        return str(text)
    question = next((m["content"] for m in reversed(chat.messages) if m["role"] == "user"), "")
    return f"You asked: {question}"


def count_words(chat: ChatRequest) -> int:
    texts = [m["content"] for m in chat.messages] + [chat.system or ""]
    return sum(len(text.split()) for text in texts)


class OfflineStream(PartStream):
    def __init__(self, answer: str, delay: float, model: str, input_tokens: int) -> None:
        self._words = _WORDS.findall(answer)
        self._delay = delay
        self._model = model
        self._input_tokens = input_tokens
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[list[Any]]:
        yield [Metadata(self._model, None)]
        for word in self._words:
            if self._closed.wait(self._delay) if self._delay else self._closed.is_set():
                return
            yield [word]
        output_tokens = sum(1 for word in self._words if word.strip())
        yield [UsageUpdate(self._input_tokens, output_tokens), Stop("stop", "stop")]

    def close(self) -> None:
        self._closed.set()


class OfflineProvider(Provider):
    name = "offline"
    env_key = None
    default_model = "offline"

    def open(
        self, chat: ChatRequest, settings: Any, transport: Any, opening: Any = None
    ) -> OfflineStream:
        return OfflineStream(
            offline_answer(chat, settings.offline_text),
            settings.offline_delay,
            chat.model,
            count_words(chat),
        )
