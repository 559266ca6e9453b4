"""The per-app client behind ``app.extensions["ai"]``: the façade that wires
the stages together. Checking a call is the job of ``calls``, turning parts
into bytes of ``formats``, the streamed response of ``serving``, keeping an
answer for reconnects of ``resume``; the client only connects them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, has_request_context
from flask import request as flask_request

from . import formats, resume
from .answer import AnswerBuilder, AnswerRun
from .approvals import ApprovalStore, approval_store_for
from .calls import AskOptions, Call, Owner, call_options, plan
from .config import Settings, checked_provider
from .errors import ProviderError
from .formats import OutputFormat, new_id
from .parts import (
    PUBLIC,
    Event,
    Finish,
    JSONObject,
    Options,
    Part,
    TextDelta,
    ToolCall,
    ToolResult,
)
from .providers.base import PartStream, Provider
from .providers.registry import build_providers, provider_settings
from .resume import ResumeStore, StoreWriter, owner_key, resume_store_for
from .retry import StepOpener
from .serving import client_socket, sse_response, warn_if_sync_worker
from .serving.server import warn_if_memory_storage
from .signals import AskingContext, Hooks
from .task import Task
from .tools.loop import PreludeStream, ToolLoop, Waiting
from .transport import Transport
from .transport.recording import Recorder

if TYPE_CHECKING:
    from typing_extensions import Unpack


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
            settings.connect_timeout,
            settings.http_timeout,
            settings.pool_maxsize,
            Recorder(settings.record_dir, settings.redact) if settings.record_dir else None,
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
        #: The storages a worker should share with the others.
        self._storages = {
            "AI_RESUME_STORAGE_URI": settings.resume_storage_uri,
            "AI_RATELIMIT_STORAGE_URI": settings.ratelimit_storage_uri,
        }
        #: Opens each step's stream: retried, then its fallbacks.
        self._steps = StepOpener(self.transport, settings, logger)
        self._approvals: ApprovalStore | None = None
        self.writer = writer or (
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
            writer=self.writer,
        )

    def register_provider(self, name: str, cls: type[Provider]) -> None:
        """Add provider ``name``, spoken to by ``cls`` (a :class:`Provider`), its
        settings read from ``AI_<NAME>_*``. To name it in ``AI_PROVIDER`` or an
        ``AI_PROVIDERS`` entry, register it before ``init_app`` (or as an entry point)."""
        config = self.app.config if self.app is not None else {}
        conf = provider_settings(config, os.environ, {name: cls})[name]
        self.settings.providers[name] = conf
        self.providers[name] = cls(conf, self.settings)

    def blueprint(self, **options: Any) -> Blueprint:
        """A blueprint serving ``/stream`` to browsers (see :mod:`flask_aistream.endpoints.chat`).

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
        on, whose answers a request may resume or cancel), ``tools`` (the
        server's :class:`~flask_aistream.Tool` objects or tool dicts: a
        browser can never add one) and ``max_steps``.
        """
        from .endpoints import checked_keywords
        from .endpoints.chat import make_blueprint

        return make_blueprint(self, **checked_keywords(make_blueprint, options, "blueprint()"))

    def openai_blueprint(self, **options: Any) -> Blueprint:
        """A blueprint serving OpenAI's API (``/v1/chat/completions``,
        ``/v1/models``) to OpenAI clients (see :mod:`flask_aistream.endpoints.openai`).

        Options: ``authorize`` (required: a function of the request that
        checks its ``Authorization: Bearer`` token), ``models`` (aliases,
        ``{"fast": "groq:llama-3.1-8b-instant"}``; default ``AI_MODELS``),
        ``name`` (default ``"aistream_openai"``), ``system`` (prepended to the
        client's), ``ratelimit``, ``max_streams_per_client``, ``token_budget``.
        """
        from .endpoints import checked_keywords
        from .endpoints.openai import make_openai_blueprint

        return make_openai_blueprint(
            self, **checked_keywords(make_openai_blueprint, options, "openai_blueprint()")
        )

    def task(self) -> Task:
        """A builder for a request: ``ai.task().system(...).prompt(...).stream()``."""
        return Task(self)

    def ask_stream(self, prompt: str | None = None, **options: Unpack[AskOptions]) -> Response:
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
        return self.stream_chat(call_options(prompt, options))

    def ask(self, prompt: str | None = None, **options: Unpack[AskOptions]) -> str:
        """The whole answer as one string; raises :class:`ProviderError` on failure."""
        return "".join(self.iter_text(prompt, **options))

    def iter_text(self, prompt: str | None = None, **options: Unpack[AskOptions]) -> Iterator[str]:
        """The answer's text deltas as they arrive, for code that is not a view."""
        return self.iter_chat(call_options(prompt, options))

    def iter_events(
        self, prompt: str | None = None, **options: Unpack[AskOptions]
    ) -> Iterator[Event]:
        """The answer's events as they arrive: :class:`~flask_aistream.TextDelta`,
        :class:`~flask_aistream.ReasoningDelta`, :class:`~flask_aistream.ToolCall`
        and, last, one :class:`~flask_aistream.Finish`. A provider failure
        raises :class:`ProviderError` instead of the ``Finish``, after the
        hooks ran."""
        return self.iter_chat_events(call_options(prompt, options))

    # -- the ways an answer leaves: as a response, as events, as text -----------

    def stream_chat(self, options: Options) -> Response:
        """The streamed response for ``options`` (as
        :func:`~flask_aistream.calls.call_options` returns them), unless the
        request reconnects to an answer: then that answer, or a 204."""
        if resume.is_done_reconnect():
            return Response(status=204)  # an EventSource back after [DONE]: ask nothing
        if self.resume_store is not None:
            resumed = self.resume_request(options.get("owner"))
            if resumed is not None:
                return resumed
        return self.stream(self.plan(options))

    def stream(
        self, call: Call, run: AnswerRun | None = None, output: OutputFormat | None = None
    ) -> Response:
        """The streamed response for a checked call; ``run`` (its answer,
        already begun) and ``output`` (its format) are the endpoints' business.
        With resume on, and no ``output`` of the caller's, it is resumable."""
        run = run or self.start(call)
        environ = flask_request.environ if has_request_context() else {}
        warn_if_sync_worker(environ, self.logger)
        warn_if_memory_storage(environ, self.logger, self._storages)
        client, settings = client_socket(environ), self.settings
        # Not resumable: an endpoint's own output (OpenAI clients do not
        # resume), nor AG-UI (its clients read every line as an event).
        fmt = call.format or settings.stream_format
        if self.writer is not None and output is None and fmt != "agui":
            owner = owner_key(call.owner)
            response = resume.recorded_response(
                run,
                partial(self.output, call, run),
                self.writer,
                owner,
                # Only a user's chats are found by their id (see the chat route).
                f"{owner}:{call.chat_id}" if call.chat_id and call.owner is not None else None,
                call.format or settings.stream_format,
                self.logger,
                heartbeat=settings.heartbeat_interval,
                client=client,
                send_timeout=settings.send_timeout,
            )
            if response is not None:
                return response
        return sse_response(
            run,
            output or self.output(call, run),
            self.logger,
            heartbeat=settings.heartbeat_interval,
            client=client,
            on_disconnect=call.on_disconnect or settings.on_disconnect,
            send_timeout=settings.send_timeout,
        )

    def output(self, call: Call, run: AnswerRun, message_id: str | None = None) -> OutputFormat:
        """The output format a call asked for, else ``AI_STREAM_FORMAT``."""
        return formats.make(
            call.format or self.settings.stream_format,
            self.settings,
            events=call.events,
            model=run.requested_model or "",
            include_usage=call.include_usage,
            message_id=call.message_id or message_id,
            thread_id=call.chat_id,
        )

    # -- resumable answers ----------------------------------------------------------

    def resume_request(self, owner: Owner = None) -> Response | None:
        """The resumed answer, if the current request carries a
        ``Last-Event-ID`` of ours (an ``EventSource`` reconnecting); else ``None``."""
        if self.resume_store is None or not has_request_context():
            return None
        seen = resume.parsed_event_id(flask_request.headers.get("Last-Event-ID"))
        return None if seen is None else self.resume(seen[0], seen[1], owner=owner)

    def resume(self, answer_id: str, after: int = 0, owner: Owner = None) -> Response:
        """What answer ``answer_id`` wrote after its event ``after``, then
        the rest as it is written, from whichever worker produces it; the
        provider is not asked again. 204 when nothing is left to send (the
        answer ended, expired, never existed, or resume is off), which stops
        an ``EventSource`` from reconnecting; 403 when the answer's
        ``owner`` is someone else."""
        if self.resume_store is None:
            return Response(status=204)
        environ = flask_request.environ if has_request_context() else {}
        return resume.resumed_response(
            self.resume_store,
            answer_id,
            after,
            owner_key(owner),
            self.logger,
            heartbeat=self.settings.heartbeat_interval,
            client=client_socket(environ),
            send_timeout=self.settings.send_timeout,
        )

    def cancel(self, answer_id: str, owner: Owner = None) -> bool:
        """Stop a resumable answer for good, from any worker, within a
        second (at once in the process producing it): its readers get
        ``[DONE]`` after what was sent, its hooks see ``"cancelled"``. False
        when it had already ended (or is unknown); raises
        :class:`PermissionError` when ``owner`` is not the answer's."""
        if self.resume_store is None:
            return False
        return resume.cancel(self.resume_store, self.writer, answer_id, owner_key(owner))

    def iter_chat_events(self, options: Options) -> Iterator[Event]:
        return self._iter_events(self.start(self.plan(options)))

    def iter_chat(self, options: Options) -> Iterator[str]:
        parts = self._iter_parts(self.start(self.plan(options)))
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

    def _iter_parts(self, run: AnswerRun) -> Iterator[Part | Finish]:
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
                yield from batch  # type: ignore[misc]
        finally:
            batches.close()  # type: ignore[attr-defined]
            run.finish()

    # -- running a checked call -------------------------------------------------

    def plan(self, options: Options) -> Call:
        """``options`` checked into a :class:`~flask_aistream.calls.Call`."""
        return plan(self.settings, self.providers, options, self.default_provider)

    def start(
        self,
        call: Call,
        *,
        approved: Sequence[ToolCall] = (),
        denied: Sequence[ToolResult] = (),
        turns: Sequence[JSONObject] = (),
    ) -> AnswerRun:
        """The answer to a checked call: opened lazily, retried before its first
        token, ended once; its tools and hooks take the asking request's context
        now. ``approved``/``denied``: it goes on after a person's decisions."""
        provider, chat = call.attempts[0]
        builder = AnswerBuilder(provider.name, chat.model, id=new_id("ans"), chat_id=call.chat_id)
        context = AskingContext(
            self.app, self.logger, needed=call.runs_tools or Hooks.wanted(call.on_finish)
        )
        loop = None
        if call.runs_tools:
            waits = any(tool.needs_approval for tool in call.tools.values())
            loop = ToolLoop(  # its Waiting: where calls wait for approval
                call.tools,
                call.max_steps or self.settings.max_steps,
                partial(self._next_step, call),
                context,
                self.logger,
                Waiting(self.approval_store(), self.settings, owner_key(call.owner), call, chat)
                if waits
                else None,
            )
        stream = self._steps.open(call.attempts)
        if loop is not None and (approved or denied):
            stream = PreludeStream(
                loop,
                list(approved),
                list(denied),
                list(turns),
                partial(self._next_step, call, model=None),
            )
        hooks = Hooks(call.on_finish, context)
        run = AnswerRun(
            stream,
            builder,
            on_error=self._log_failure,
            on_end=hooks,
            logger=self.logger,
            total_timeout=self.settings.total_timeout,
            loop=loop,
        )
        if hooks.watcher is not None:
            hooks.watcher.started(run, chat)
        return run

    def approval_store(self) -> ApprovalStore:
        """Where calls wait for approval (``AI_APPROVAL_STORAGE_URI``), made at first use."""
        if self._approvals is None:
            settings = self.settings
            self._approvals = approval_store_for(
                settings.approval_storage_uri
                or settings.resume_storage_uri
                or settings.ratelimit_storage_uri
            )
        return self._approvals

    def _next_step(
        self,
        call: Call,
        messages: tuple[JSONObject, ...],
        provider: str | None = None,
        model: str | None = None,
    ) -> PartStream:
        """A step after the first: the provider that answered the last one
        (then its fallbacks; none named: the call's own), asked with
        ``messages`` appended."""
        attempts = list(call.attempts)
        answering = next(
            (i for i, (p, c) in enumerate(attempts) if p.name == provider and c.model == model), 0
        )
        return self._steps.open(
            [(p, replace(c, messages=c.messages + messages)) for p, c in attempts[answering:]]
        )

    def _log_failure(self, exc: ProviderError) -> ProviderError:
        exc.detail = self.settings.redact(exc.detail)
        self.logger.warning(
            "flask-aistream: provider %r failed: %s | %s", exc.provider, exc.message, exc.detail
        )
        return exc
