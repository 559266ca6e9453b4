"""The per-app client behind ``app.extensions["ai"]``, and the task builder."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app, has_app_context, has_request_context
from flask import request as flask_request

from .answer import AnswerRun
from .config import Settings, checked_fallbacks, checked_provider
from .deployment import client_socket, warn_if_sync_worker
from .errors import (
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    UnknownOptionError,
)
from .formats import (
    DONE_ID,
    FORMAT_CLASSES,
    FORMATS,
    AIStreamFormat,
    OpenAIFormat,
    VercelFormat,
    checked_events,
)
from .parts import PUBLIC, Answer, AnswerBuilder, Event, Finish, TextDelta
from .providers import ChatRequest, PartStream, Provider, build_providers, provider_settings
from .relay import DISCONNECT_POLICIES, sse_response
from .request import REQUEST_OPTIONS, checked_content, checked_request_options, is_number
from .resume import (
    ANSWER_ID,
    CHAT_ID,
    UNAVAILABLE,
    Encoded,
    Recorder,
    ResumeStore,
    StoreWriter,
    follow,
    parsed_event_id,
    resume_store_for,
)
from .retry import FallbackStream, RetryingStream
from .signals import answer_finished
from .upstream import Transport

ROLES = ("system", "user", "assistant")
#: The highest temperature any provider takes (OpenAI's; Anthropic's is 1).
MAX_TEMPERATURE = 2.0
#: What the provider is asked (``fallbacks``: who else, if it fails first).
CHAT_OPTIONS = frozenset(
    {"provider", "model", "temperature", "max_tokens", "system", "messages", "fallbacks"}
    | set(REQUEST_OPTIONS)
)
#: What we do with its answer.
ANSWER_OPTIONS = frozenset(
    {"on_finish", "on_disconnect", "events", "format", "include_usage", "owner", "chat_id"}
)
OPTIONS = CHAT_OPTIONS | ANSWER_OPTIONS

OnFinish = Callable[[Answer], Any]


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
        app: Flask | None = None,
        providers: dict[str, Provider] | None = None,
        resume_store: ResumeStore | None = None,
        writer: StoreWriter | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.transport = transport or Transport(
            settings.connect_timeout, settings.http_timeout, settings.pool_maxsize
        )
        self.default_provider = default_provider or settings.provider
        #: The app whose context the hooks run in (else the current app at call time).
        self.app = app
        #: Every provider this app can name, built once from its settings.
        self.providers = (
            providers if providers is not None else build_providers(settings, settings.providers)
        )
        #: Where answers are kept for clients that reconnect (``None``: resume
        #: is off), and the thread writing this process's answers to it.
        self.resume_store = resume_store or resume_store_for(
            settings.resume_storage_uri, settings.resume_ttl
        )
        self._writer = writer or (
            StoreWriter(self.resume_store, logger) if self.resume_store is not None else None
        )

    def provider(self, name: str) -> AIClient:
        """The same interface, bound to provider ``name`` (the seed's ``app('anthropic')``)."""
        checked_provider(name, self.providers, "provider")
        return AIClient(
            self.settings,
            self.logger,
            transport=self.transport,
            default_provider=name,
            app=self.app,
            providers=self.providers,
            resume_store=self.resume_store,
            writer=self._writer,
        )

    def register_provider(self, name: str, cls: type[Provider]) -> None:
        """Add provider ``name``, spoken to by ``cls`` (a :class:`Provider`
        subclass), to this app: its key, base URL and model are read from
        ``AI_<NAME>_*`` and its class defaults. To name it in ``AI_PROVIDER``
        or as an ``AI_PROVIDERS`` entry's ``api``, register it before
        ``init_app`` (:meth:`AIStream.register_provider`) or as an entry point."""
        config = self.app.config if self.app is not None else {}
        conf = provider_settings(config, os.environ, {name: cls})[name]
        self.settings.providers[name] = conf
        self.providers[name] = cls(conf, self.settings)

    def blueprint(self, **options: Any) -> Blueprint:
        """A blueprint serving ``/stream`` to browsers (see :mod:`flask_aistream.blueprint`).

        Options (each defaults to its ``AI_*`` setting): ``name``,
        ``provider``, ``model``, ``system`` (server-side only: a browser cannot
        replace it), ``authorize`` (a callable taking the request; false
        answers 403, and it may ``abort(401)``), ``max_question_chars``,
        ``max_history``, ``ratelimit`` (e.g. ``"10 per minute"``; ``None``
        turns it off), ``cors_origins`` (a list; ``None`` turns CORS off),
        ``events`` (optional events of the stream), ``on_finish`` (a hook
        for every answer it serves), ``on_disconnect``, and ``allow_images``
        with ``max_image_bytes`` (images a browser may send, decoded, in all),
        ``providers`` (names a browser may pick with ``"provider"``),
        ``format`` (``"vercel"``: it then takes what ``useChat`` sends), and
        ``owner`` (a function returning the current user's id: with resume
        on, whose answers a request may resume or cancel).
        """
        from .blueprint import make_blueprint

        return make_blueprint(self, **options)

    def openai_blueprint(self, **options: Any) -> Blueprint:
        """A blueprint serving OpenAI's API (``/v1/chat/completions``,
        ``/v1/models``) to OpenAI clients (see :mod:`flask_aistream.openai_api`).

        Options: ``authorize`` (required: a function of the request that
        checks its ``Authorization: Bearer`` token), ``models`` (aliases,
        ``{"fast": "groq:llama-3.1-8b-instant"}``; default ``AI_MODELS``),
        ``name`` (default ``"aistream_openai"``), ``system`` (prepended to the
        client's), ``ratelimit``, ``max_streams_per_client``, ``token_budget``.
        """
        from .openai_api import make_openai_blueprint

        return make_openai_blueprint(self, **options)

    def task(self) -> Task:
        """A builder for a request: ``ai.task().system(...).prompt(...).stream()``."""
        return Task(self)

    def ask_stream(self, prompt: str | None = None, **options: Any) -> Response:
        """Stream the answer to ``prompt`` as a ``text/event-stream`` response.

        Options: ``provider``, ``model``, ``temperature``, ``max_tokens``,
        ``system`` and ``messages`` (earlier turns, before ``prompt``; a
        content may be a list of text and image parts); the request options
        ``top_p``, ``stop``, ``seed``, ``response_format``, ``tools``,
        ``tool_choice``, ``reasoning``, ``extra_body`` and ``extra_headers``
        (one the provider cannot map raises
        :class:`~flask_aistream.UnsupportedOptionError`); ``fallbacks``
        (providers to ask if this one fails before its first token);
        ``on_finish`` (called with the :class:`~flask_aistream.Answer` once it
        ended, however it ended), ``on_disconnect`` (``"cancel"`` or
        ``"finish"``), ``events`` (optional events to add to the stream) and
        ``format``. With resume on (``AI_RESUME_STORAGE_URI``), ``owner``
        (e.g. the user's id) ties the answer to whoever may resume it, and
        ``chat_id`` lets the Vercel resume route find it; a request carrying a
        ``Last-Event-ID`` of ours resumes that answer instead of asking anew.
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

    def iter_events(self, prompt: str | None = None, **options: Any) -> Iterator[Event]:
        """The answer's events as they arrive: :class:`~flask_aistream.TextDelta`,
        :class:`~flask_aistream.ReasoningDelta`, :class:`~flask_aistream.ToolCall`
        and, last, one :class:`~flask_aistream.Finish`. A provider failure
        raises :class:`ProviderError` instead of the ``Finish``, after the
        hooks ran."""
        return self.iter_chat_events(self._chat_options(prompt, options))

    # -- the ways an answer leaves: as a response, as events, as text -----------

    def stream_chat(
        self, options: Mapping[str, Any], run: AnswerRun | None = None, output: Any = None
    ) -> Response:
        """The streamed response for ``options``; ``run`` (an answer already
        begun) and ``output`` (a format object) are the blueprints' business."""
        if is_done_reconnect():
            return Response(status=204)  # an EventSource back after [DONE]: ask nothing
        # A blueprint that brings its own output (the OpenAI endpoint) is not
        # resumable: OpenAI clients do not resume.
        resumable = self.resume_store is not None and output is None
        if resumable:
            resumed = self.resume_request(options.get("owner"))
            if resumed is not None:
                return resumed
        run = run or self._run(options)
        environ = flask_request.environ if has_request_context() else {}
        warn_if_sync_worker(environ, self.logger)
        if resumable:
            response = self._resumable_response(run, options, environ)
            if response is not None:
                return response
        return sse_response(
            run,
            output or self._format(options, run),
            self.logger,
            heartbeat=self.settings.heartbeat_interval,
            client=client_socket(environ),
            on_disconnect=self._on_disconnect(options),
            send_timeout=self.settings.send_timeout,
        )

    # -- resumable answers ----------------------------------------------------------

    def _resumable_response(
        self, run: AnswerRun, options: Mapping[str, Any], environ: Mapping[str, Any]
    ) -> Response | None:
        """The answer as numbered events, kept in the resume store as they
        go, produced to its end whether or not its client stays; ``None``
        when the store cannot be reached (the answer then streams without)."""
        writer = self._writer
        assert writer is not None
        answer_id = new_id("ans")
        owner = owner_key(options.get("owner"))
        chat = f"{owner}:{options['chat_id']}" if options.get("chat_id") else None
        format_name = options.get("format") or self.settings.stream_format
        if not writer.begin(answer_id, owner, format_name, chat):
            return None
        output = self._format(options, run, message_id=answer_id)
        response = sse_response(
            run,
            Encoded(output),
            self.logger,
            heartbeat=self.settings.heartbeat_interval,
            client=client_socket(environ),
            on_disconnect="finish",  # the answer goes on for whoever resumes it
            send_timeout=self.settings.send_timeout,
            producer=Recorder(run, output, answer_id, chat, writer),
        )
        response.headers["X-AIStream-Answer-Id"] = answer_id
        return response

    def resume_request(self, owner: Any = None) -> Response | None:
        """The resumed answer, if the current request carries a
        ``Last-Event-ID`` of ours (an ``EventSource`` reconnecting); else ``None``."""
        if self.resume_store is None or not has_request_context():
            return None
        seen = parsed_event_id(flask_request.headers.get("Last-Event-ID"))
        return None if seen is None else self.resume(seen[0], seen[1], owner=owner)

    def resume(self, answer_id: str, after: int = 0, owner: Any = None) -> Response:
        """What answer ``answer_id`` wrote after its event ``after``, then
        the rest as it is written, from whichever worker produces it; the
        provider is not asked again. 204 when nothing is left to send (the
        answer ended, expired, never existed, or resume is off), which stops
        an ``EventSource`` from reconnecting; 403 when the answer's
        ``owner`` is someone else."""
        store = self.resume_store
        if store is None or not ANSWER_ID.match(answer_id):
            return Response(status=204)
        try:
            status = store.status(answer_id)
        except Exception as exc:  # noqa: BLE001 - a clear error, never a traceback
            self.logger.warning("flask-aistream: the resume store is unavailable: %r", exc)
            return _json_error(UNAVAILABLE, 503)
        if status is None or (status.ended and after >= status.last_seq):
            return Response(status=204)
        if status.owner != owner_key(owner):
            return _json_error("This answer belongs to someone else.", 403)
        output = FORMAT_CLASSES.get(status.format, AIStreamFormat)
        response = Response(
            follow(
                store,
                answer_id,
                after,
                status.format,
                self.settings.heartbeat_interval,
                self.logger,
            ),
            content_type=output.content_type,
            headers=output.headers,
        )
        response.headers["X-AIStream-Answer-Id"] = answer_id
        return response

    def cancel(self, answer_id: str, owner: Any = None) -> bool:
        """Stop a resumable answer for good, from any worker, within a
        second (at once in the process producing it): its readers get
        ``[DONE]`` after what was sent, its hooks see ``"cancelled"``. False
        when it had already ended (or is unknown); raises
        :class:`PermissionError` when ``owner`` is not the answer's."""
        store = self.resume_store
        if store is None or not ANSWER_ID.match(answer_id):
            return False
        status = store.status(answer_id)
        if status is None or status.ended:
            return False
        if status.owner != owner_key(owner):
            raise PermissionError("this answer belongs to someone else")
        cancelled = store.cancel(answer_id)
        if cancelled and self._writer is not None:
            self._writer.cancel_here(answer_id)
        return cancelled

    def iter_chat_events(self, options: Mapping[str, Any]) -> Iterator[Event]:
        return self._iter_events(self._run(options))

    def iter_chat(self, options: Mapping[str, Any]) -> Iterator[str]:
        parts = self._iter_parts(self._run(options))
        try:
            for part in parts:
                if part.__class__ is str:
                    yield part
        finally:
            parts.close()  # type: ignore[attr-defined]

    def _iter_events(self, run: AnswerRun) -> Iterator[Event]:
        parts = self._iter_parts(run)
        try:
            for part in parts:
                if part.__class__ is str:
                    yield TextDelta(part)
                elif part.__class__ in PUBLIC:
                    yield part  # type: ignore[misc]
        finally:
            parts.close()  # type: ignore[attr-defined]

    def _iter_parts(self, run: AnswerRun) -> Iterator[Any]:
        """The run's parts one by one, ending in its ``Finish``; the hooks run
        before the caller sees the end (a failure raises, after them), or when
        the caller stops reading (the answer then ends "cancelled")."""
        batches = iter(run)
        try:
            for batch in batches:
                if batch.__class__ is Finish:
                    answer = run.finish()
                    if answer.error is not None:
                        raise answer.error
                    yield batch
                    return
                yield from batch
        finally:
            batches.close()  # type: ignore[attr-defined]
            run.finish()

    def _run(self, options: Mapping[str, Any]) -> AnswerRun:
        """The answer to a checked request: opened lazily, retried before its
        first token, ended once."""
        attempts = self._prepare(options)
        provider, chat = attempts[0]
        builder = AnswerBuilder(provider.name, chat.model)
        on_finish = options.get("on_finish")
        app = self.app or (current_app._get_current_object() if has_app_context() else None)  # type: ignore[attr-defined]
        stream: PartStream = self._retrying(provider, chat)
        if len(attempts) > 1:
            stream = FallbackStream(
                [(p.name, c.model, partial(self._retrying, p, c)) for p, c in attempts],
                on_fallback=self._log_fallback,
            )
        return AnswerRun(
            stream,
            builder,
            on_error=self._log_failure,
            on_end=lambda answer: self._finished(answer, on_finish, app),
            logger=self.logger,
            total_timeout=self.settings.total_timeout,
        )

    def _retrying(self, provider: Provider, chat: ChatRequest) -> RetryingStream:
        return RetryingStream(
            lambda opening: provider.open(chat, self.transport, opening),
            self.settings.max_retries,
            self.settings.retry_backoff,
            on_retry=self._log_retry,
        )

    def _finished(self, answer: Answer, on_finish: OnFinish | None, app: Flask | None) -> None:
        """Run the call's hook, then the app's signal, in an app context of
        their own: not the request's (which may be gone), on a copy of no
        context at all, so a hook never sees or leaks another one."""
        if on_finish is None and not answer_finished.receivers:
            return
        contextvars.Context().run(self._run_hooks, answer, on_finish, app)

    def _run_hooks(self, answer: Answer, on_finish: OnFinish | None, app: Flask | None) -> None:
        if app is None:
            self.logger.warning(
                "flask-aistream: no Flask app to run the answer's hooks in; "
                "create the client with AIStream(app) or call it inside an app context"
            )
            return
        with app.app_context():
            if on_finish is not None:
                try:
                    on_finish(answer)
                except Exception:
                    self.logger.exception("flask-aistream: the on_finish hook failed")
            try:
                answer_finished.send(app, answer=answer)
            except Exception:
                self.logger.exception("flask-aistream: an answer_finished receiver failed")

    def _format(
        self, options: Mapping[str, Any], run: AnswerRun, message_id: str | None = None
    ) -> Any:
        """The output format a call asked for, else ``AI_STREAM_FORMAT``."""
        name = options.get("format") or self.settings.stream_format
        if name == "vercel":
            return VercelFormat(message_id or new_id("msg"), self.settings.vercel_protocol)
        if name == "openai":
            return OpenAIFormat(
                new_id("chatcmpl"),
                run.requested_model or "",
                int(time.time()),
                include_usage=bool(options.get("include_usage")),
            )
        return AIStreamFormat(self._events(options))

    def _events(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        if options.get("events") is None:
            return self.settings.stream_events
        return checked_events(options["events"], "events")

    def _on_disconnect(self, options: Mapping[str, Any]) -> str:
        return options.get("on_disconnect") or self.settings.on_disconnect  # type: ignore[no-any-return]

    def _log_retry(self, exc: ProviderError, delay: float) -> None:
        self.logger.info(
            "flask-aistream: provider %r failed before the first token, retrying in %.2f s: %s | %s",
            exc.provider,
            delay,
            exc.message,
            self.settings.redact(exc.detail),
        )

    def _log_fallback(self, exc: ProviderError, fallback: str) -> None:
        self.logger.warning(
            "flask-aistream: provider %r failed before the first token, falling back to %r: %s | %s",
            exc.provider,
            fallback,
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
            raise UnknownOptionError(
                f"unknown option(s) {', '.join(sorted(unknown))}; "
                f"expected some of {', '.join(sorted(OPTIONS))}"
            )
        options = dict(options)
        messages = list(options.pop("messages", None) or ())
        if prompt is not None:
            if not isinstance(prompt, str) or not prompt.strip():
                raise InvalidRequestError(f"the prompt must be a non-empty string, not {prompt!r}")
            messages.append({"role": "user", "content": prompt})
        options["messages"] = messages
        return options

    def _prepare(self, options: Mapping[str, Any]) -> list[tuple[Provider, ChatRequest]]:
        """Check everything a call needs before anything is sent, so a mistake
        raises in the view rather than ending a stream: the provider and its
        request, then each fallback and its own."""
        name = options.get("provider") or self.default_provider
        checked_provider(name, self.providers, "provider")
        system_parts = [options["system"]] if options.get("system") else []
        messages = []
        for message in _checked_messages(options.get("messages") or ()):
            if message["role"] == "system":
                if not isinstance(message["content"], str):
                    raise InvalidRequestError("a system message's content must be a string")
                system_parts.append(message["content"])
            else:
                messages.append(message)
        if not messages:
            raise InvalidRequestError("nothing to ask: give a prompt or at least one user message")
        temperature = options.get("temperature")
        if temperature is None:
            temperature = self.settings.temperature
        elif not is_number(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
            raise ConfigurationError(
                f"temperature must be a number from 0 to {MAX_TEMPERATURE}, not {temperature!r}"
            )
        max_tokens = options.get("max_tokens")
        if max_tokens is None:
            max_tokens = self.settings.max_tokens
        elif not is_number(max_tokens) or max_tokens != int(max_tokens) or max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be a whole number >= 1, not {max_tokens!r}")
        checked_answer_options(options)
        fields = dict(
            messages=tuple(messages),
            system="\n\n".join(system_parts) or None,
            temperature=None if temperature is None else float(temperature),
            max_tokens=None if max_tokens is None else int(max_tokens),
            **checked_request_options(options),
        )
        fallbacks = self.settings.fallbacks
        if options.get("fallbacks") is not None:
            fallbacks = checked_fallbacks(options["fallbacks"], self.providers, "fallbacks")
        attempts: list[tuple[Provider, ChatRequest]] = []
        for provider_name, model in ((name, options.get("model")), *fallbacks):
            provider = self.providers[provider_name]
            provider.conf.require_api_key()
            chat = ChatRequest(model=self.settings.model_for(provider_name, model), **fields)
            if any(p is provider and c.model == chat.model for p, c in attempts):
                continue  # what failed is not its own fallback
            provider.check(chat)
            attempts.append((provider, chat))
        return attempts


def checked_answer_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The answer options that are set, checked (a mistake raises now)."""
    on_finish = options.get("on_finish")
    if on_finish is not None and not callable(on_finish):
        raise UnknownOptionError(
            f"on_finish must be a callable taking the answer, not {on_finish!r}"
        )
    if options.get("events") is not None:
        checked_events(options["events"], "events")
    output = options.get("format")
    if output is not None and output not in FORMATS:
        raise ConfigurationError(f"format must be one of {', '.join(FORMATS)}, not {output!r}.")
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
    return {key: options[key] for key in ANSWER_OPTIONS if options.get(key) is not None}


def owner_key(owner: Any) -> str:
    """How an answer's owner is stored and compared ("": anyone holding its id)."""
    return "" if owner is None else str(owner)


def _json_error(message: str, status: int) -> Response:
    return Response(json.dumps({"error": message}), status, mimetype="application/json")


def new_id(prefix: str) -> str:
    """An id nobody can guess (128 bits), e.g. for a message or a completion."""
    return f"{prefix}-{secrets.token_hex(16)}"


def is_done_reconnect() -> bool:
    """Whether the current request is an ``EventSource`` reconnecting after
    the end of an answer (it sends the last event's id)."""
    return has_request_context() and flask_request.headers.get("Last-Event-ID") == DONE_ID


def _checked_messages(messages: Iterable[Any]) -> Iterator[dict[str, Any]]:
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
        yield {"role": role, "content": checked_content(content)}


class Task:
    """A fluent request builder, ending in ``stream()``, ``ask()``, ``iter_text()``
    or ``iter_events()``.

    ::

        ai.task().system("You are terse.").prompt("Why is the sky blue?").stream()
    """

    def __init__(self, client: AIClient) -> None:
        self._client = client
        self._options: dict[str, Any] = {}
        self._messages: list[dict[str, Any]] = []
        self._prompt: str | None = None

    def system(self, text: str) -> Task:
        self._options["system"] = text
        return self

    def prompt(self, text: str) -> Task:
        """The question; sent last, after any earlier messages."""
        self._prompt = text
        return self

    def message(self, role: str, content: str | list[dict[str, Any]]) -> Task:
        """An earlier turn; ``content`` may be a list of text and image parts."""
        self._messages.append({"role": role, "content": content})
        return self

    def messages(self, messages: Iterable[Mapping[str, Any]]) -> Task:
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

    def response_format(self, value: str | dict[str, Any]) -> Task:
        """``"json"``, or a JSON schema the answer must follow."""
        self._options["response_format"] = value
        return self

    def tools(self, tools: Iterable[Mapping[str, Any]], choice: Any = None) -> Task:
        """Tools the model may call (``name``, ``description``, ``parameters``),
        and optionally ``tool_choice``."""
        self._options["tools"] = list(tools)
        if choice is not None:
            self._options["tool_choice"] = choice
        return self

    def tool_choice(self, choice: str | dict[str, str]) -> Task:
        """``"auto"``, ``"none"``, ``"required"`` or ``{"name": ...}``."""
        self._options["tool_choice"] = choice
        return self

    def reasoning(self, level: str) -> Task:
        """``"low"``, ``"medium"`` or ``"high"``."""
        self._options["reasoning"] = level
        return self

    def extra_body(self, fields: Mapping[str, Any]) -> Task:
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
        """Optional events for :meth:`stream`: ``"reasoning"``, ``"tool_calls"``, ``"finish"``."""
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

    def _build(self) -> dict[str, Any]:
        return self._client._chat_options(
            self._prompt, dict(self._options, messages=list(self._messages))
        )
