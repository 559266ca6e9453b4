"""The fluent request builder: ``ai.task().system(...).prompt(...).stream()``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from flask import Response

from .calls import OnFinish, call_options
from .parts import Event, JSONObject, Options, ToolCall
from .tools import Tool


class Asker(Protocol):
    """What a task asks in the end (an ``AIClient``)."""

    def stream_chat(self, options: Options) -> Response: ...

    def iter_chat(self, options: Options) -> Iterator[str]: ...

    def iter_chat_events(self, options: Options) -> Iterator[Event]: ...


class Task:
    """A fluent request builder, ending in ``stream()``, ``ask()``, ``iter_text()``
    or ``iter_events()``.

    ::

        ai.task().system("You are terse.").prompt("Why is the sky blue?").stream()
    """

    def __init__(self, client: Asker) -> None:
        self._client = client
        self._options: JSONObject = {}
        self._messages: list[JSONObject] = []
        self._prompt: str | None = None

    def system(self, text: str) -> Task:
        self._options["system"] = text
        return self

    def prompt(self, text: str) -> Task:
        """The question; sent last, after any earlier messages."""
        self._prompt = text
        return self

    def message(
        self,
        role: str,
        content: str | list[JSONObject],
        tool_calls: Iterable[ToolCall | Options] | None = None,
    ) -> Task:
        """An earlier turn; ``content`` may be a list of text and image parts;
        an assistant's turn may carry the ``tool_calls`` it made."""
        message: JSONObject = {"role": role, "content": content}
        if tool_calls is not None:
            message["tool_calls"] = list(tool_calls)
        self._messages.append(message)
        return self

    def tool_result(self, call_id: str, output: object, name: str | None = None) -> Task:
        """The result of an earlier turn's tool call ``call_id`` (text, or a
        JSON value)."""
        self._messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": output, "name": name}
        )
        return self

    def messages(self, messages: Iterable[Options]) -> Task:
        self._messages.extend(dict(m) for m in messages)
        return self

    def model(self, name: str) -> Task:
        self._options["model"] = name
        return self

    def temperature(self, value: float) -> Task:
        self._options["temperature"] = value
        return self

    def max_tokens(self, value: int) -> Task:
        self._options["max_tokens"] = value
        return self

    def provider(self, name: str) -> Task:
        self._options["provider"] = name
        return self

    def top_p(self, value: float) -> Task:
        self._options["top_p"] = value
        return self

    def stop(self, *sequences: str) -> Task:
        """Where the model stops writing (one or more strings)."""
        self._options["stop"] = list(sequences)
        return self

    def seed(self, value: int) -> Task:
        self._options["seed"] = value
        return self

    def response_format(self, value: str | JSONObject) -> Task:
        """``"json"``, or a JSON schema the answer must follow."""
        self._options["response_format"] = value
        return self

    def tools(
        self,
        *tools: Tool[object] | Options | Iterable[Tool[object] | Options],
        choice: str | Mapping[str, str] | None = None,
    ) -> Task:
        """Tools the model may call: :class:`~flask_aistream.Tool` objects
        (``@tool``; those with a function the server runs between steps) or
        dicts (``name``, ``description``, ``parameters``), one by one or in a
        list; and optionally ``tool_choice``."""
        flat: list[Tool[object] | Options] = []
        for item in tools:
            if isinstance(item, (list, tuple)):
                flat.extend(item)
            else:
                flat.append(item)  # type: ignore[arg-type]
        self._options["tools"] = flat
        if choice is not None:
            self._options["tool_choice"] = choice
        return self

    def max_steps(self, steps: int) -> Task:
        """The most provider calls the answer may make while the server runs
        its tools (default ``AI_MAX_STEPS``)."""
        self._options["max_steps"] = steps
        return self

    def tool_choice(self, choice: str | dict[str, str]) -> Task:
        """``"auto"``, ``"none"``, ``"required"`` or ``{"name": ...}``."""
        self._options["tool_choice"] = choice
        return self

    def reasoning(self, level: str) -> Task:
        """``"low"``, ``"medium"`` or ``"high"``."""
        self._options["reasoning"] = level
        return self

    def extra_body(self, fields: Options) -> Task:
        """Fields merged into the provider's JSON as they are."""
        self._options["extra_body"] = dict(fields)
        return self

    def extra_headers(self, headers: Mapping[str, str]) -> Task:
        self._options["extra_headers"] = dict(headers)
        return self

    def fallbacks(self, *providers: str) -> Task:
        """Who to ask, in order, if the provider fails before its first token
        (names, or ``"name:model"``)."""
        self._options["fallbacks"] = list(providers)
        return self

    def on_finish(self, hook: OnFinish) -> Task:
        """Call ``hook(answer)`` once the answer ended, however it ended."""
        self._options["on_finish"] = hook
        return self

    def on_disconnect(self, policy: str) -> Task:
        """``"cancel"`` or ``"finish"`` (see ``AI_ON_DISCONNECT``)."""
        self._options["on_disconnect"] = policy
        return self

    def events(self, *names: str) -> Task:
        """Optional events for :meth:`stream`: ``"reasoning"``, ``"tool_calls"``,
        ``"tool_results"``, ``"steps"``, ``"finish"``."""
        self._options["events"] = names
        return self

    def stream(self) -> Response:
        return self._client.stream_chat(self._build())

    def ask(self) -> str:
        return "".join(self.iter_text())

    def iter_text(self) -> Iterator[str]:
        return self._client.iter_chat(self._build())

    def iter_events(self) -> Iterator[Event]:
        return self._client.iter_chat_events(self._build())

    def _build(self) -> JSONObject:
        return call_options(self._prompt, dict(self._options, messages=list(self._messages)))
