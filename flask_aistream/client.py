"""The per-app client behind ``app.extensions["ai"]``, and the task builder."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, has_request_context, request

from .config import Settings
from .deployment import client_socket, warn_if_sync_worker
from .errors import ProviderError
from .providers import ChatRequest, TextStream, get_provider
from .relay import sse_response
from .retry import RetryingStream
from .upstream import Transport

ROLES = ("system", "user", "assistant")
OPTIONS = frozenset({"provider", "model", "temperature", "max_tokens", "system", "messages"})


class AIClient:
    """What ``app.extensions["ai"]`` holds: the app's settings, a connection
    pool, and the app's logger. Safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        *,
        transport: Transport | None = None,
        default_provider: str | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.transport = transport or Transport(settings.connect_timeout, settings.http_timeout)
        self.default_provider = default_provider or settings.provider

    def provider(self, name: str) -> AIClient:
        """The same interface, bound to provider ``name`` (the seed's ``app('anthropic')``)."""
        get_provider(name)
        return AIClient(self.settings, self.logger, transport=self.transport, default_provider=name)

    def blueprint(self, **options: Any) -> Blueprint:
        """A blueprint serving ``/stream`` to browsers (see :mod:`flask_aistream.blueprint`).

        Options (each defaults to its ``AI_*`` setting): ``name``,
        ``provider``, ``model``, ``system`` (server-side only: a browser cannot
        replace it), ``authorize`` (a callable taking the request; false
        answers 403, and it may ``abort(401)``), ``max_question_chars``,
        ``max_history``, ``ratelimit`` (e.g. ``"10 per minute"``; ``None``
        turns it off) and ``cors_origins`` (a list; ``None`` turns CORS off).
        """
        from .blueprint import make_blueprint

        return make_blueprint(self, **options)

    def task(self) -> Task:
        """A builder for a request: ``ai.task().system(...).prompt(...).stream()``."""
        return Task(self)

    def ask_stream(self, prompt: str | None = None, **options: Any) -> Response:
        """Stream the answer to ``prompt`` as a ``text/event-stream`` response.

        Options: ``provider``, ``model``, ``temperature``, ``max_tokens``,
        ``system`` and ``messages`` (earlier turns, before ``prompt``).
        Configuration problems raise here, in the view; provider failures
        arrive in the stream as one ``{"error": ...}`` event before ``[DONE]``.
        """
        return self.stream_chat(self._chat_options(prompt, options))

    def ask(self, prompt: str | None = None, **options: Any) -> str:
        """The whole answer as one string; raises :class:`ProviderError` on failure."""
        return "".join(self.iter_text(prompt, **options))

    def iter_text(self, prompt: str | None = None, **options: Any) -> Iterator[str]:
        """The answer's text deltas as they arrive, for code that is not a view."""
        return self.iter_chat(self._chat_options(prompt, options))

    # -- the two ways an answer leaves: as SSE, or as text ------------------

    def stream_chat(self, options: Mapping[str, Any]) -> Response:
        stream = self._answer(options)
        environ = request.environ if has_request_context() else {}
        warn_if_sync_worker(environ, self.logger)
        return sse_response(
            stream,
            self._log_failure,
            self.logger,
            heartbeat=self.settings.heartbeat_interval,
            total_timeout=self.settings.total_timeout,
            client=client_socket(environ),
        )

    def iter_chat(self, options: Mapping[str, Any]) -> Iterator[str]:
        return self._iter_text(self._answer(options))

    def _iter_text(self, stream: TextStream) -> Iterator[str]:
        try:
            for texts in stream:
                yield from texts
        except ProviderError as exc:
            exc.detail = self.settings.redact(exc.detail)
            raise
        finally:
            stream.close()

    def _answer(self, options: Mapping[str, Any]) -> RetryingStream:
        """The answer to a checked request, opened lazily, retried before its
        first token."""
        provider, chat = self._prepare(options)
        return RetryingStream(
            lambda: provider.open(chat, self.settings, self.transport),
            self.settings.max_retries,
            self.settings.retry_backoff,
            on_retry=self._log_retry,
        )

    def _log_retry(self, exc: ProviderError, delay: float) -> None:
        self.logger.info(
            "flask-aistream: provider %r failed before the first token, retrying in %.2f s: %s | %s",
            exc.provider,
            delay,
            exc.message,
            self.settings.redact(exc.detail),
        )

    def _log_failure(self, exc: ProviderError) -> ProviderError:
        exc.detail = self.settings.redact(exc.detail)
        self.logger.warning(
            "flask-aistream: provider %r failed: %s | %s", exc.provider, exc.message, exc.detail
        )
        return exc

    # -- building the request -----------------------------------------------

    def _chat_options(self, prompt: str | None, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; "
                f"expected some of {', '.join(sorted(OPTIONS))}"
            )
        options = dict(options)
        messages = list(options.pop("messages", None) or ())
        if prompt is not None:
            messages.append({"role": "user", "content": prompt})
        options["messages"] = messages
        return options

    def _prepare(self, options: Mapping[str, Any]) -> tuple[Any, ChatRequest]:
        """Check everything a call needs before anything is sent, so a mistake
        raises in the view rather than ending a stream."""
        name = options.get("provider") or self.default_provider
        provider = get_provider(name)
        if name in self.settings.providers:
            self.settings.providers[name].require_api_key()
        system_parts = [options["system"]] if options.get("system") else []
        messages = []
        for message in _checked_messages(options.get("messages") or ()):
            if message["role"] == "system":
                system_parts.append(message["content"])
            else:
                messages.append(message)
        if not messages:
            raise ValueError("nothing to ask: give a prompt or at least one user message")
        temperature = options.get("temperature")
        if temperature is None:
            temperature = self.settings.temperature
        max_tokens = options.get("max_tokens")
        if max_tokens is None:
            max_tokens = self.settings.max_tokens
        chat = ChatRequest(
            model=self.settings.model_for(name, options.get("model")),
            messages=tuple(messages),
            system="\n\n".join(system_parts) or None,
            temperature=None if temperature is None else float(temperature),
            max_tokens=None if max_tokens is None else int(max_tokens),
        )
        return provider, chat


def _checked_messages(messages: Iterable[Any]) -> Iterator[dict[str, str]]:
    for message in messages:
        if not isinstance(message, Mapping):
            raise ValueError(f"a message must be a dict with role and content, not {message!r}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"a message role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"a message's content must be a string, not {type(content).__name__}")
        yield {"role": role, "content": content}


class Task:
    """A fluent request builder, ending in ``stream()``, ``ask()`` or ``iter_text()``.

    ::

        ai.task().system("You are terse.").prompt("Why is the sky blue?").stream()
    """

    def __init__(self, client: AIClient) -> None:
        self._client = client
        self._options: dict[str, Any] = {}
        self._messages: list[dict[str, str]] = []
        self._prompt: str | None = None

    def system(self, text: str) -> Task:
        self._options["system"] = text
        return self

    def prompt(self, text: str) -> Task:
        """The question; sent last, after any earlier messages."""
        self._prompt = text
        return self

    def message(self, role: str, content: str) -> Task:
        self._messages.append({"role": role, "content": content})
        return self

    def messages(self, messages: Iterable[Mapping[str, str]]) -> Task:
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

    def stream(self) -> Response:
        return self._client.stream_chat(self._build())

    def ask(self) -> str:
        return "".join(self.iter_text())

    def iter_text(self) -> Iterator[str]:
        return self._client.iter_chat(self._build())

    def _build(self) -> dict[str, Any]:
        return self._client._chat_options(
            self._prompt, dict(self._options, messages=list(self._messages))
        )
