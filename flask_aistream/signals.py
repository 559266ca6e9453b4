"""An answer's hooks: the call's ``on_finish``, then the ``answer_finished``
signal (blinker, like Flask's own: subscribe with
``answer_finished.connect(receiver, app)``), run once the answer ended, in
the asking request's context."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar

from blinker import Namespace
from flask import Flask, current_app, g, has_app_context, has_request_context
from flask.globals import request_ctx

if TYPE_CHECKING:
    from flask.ctx import RequestContext

    from .answer import AnswerRun
    from .parts import Answer
    from .providers.base import ChatRequest

R = TypeVar("R")
_signals = Namespace()

#: Sent once per answer, however it was asked for (``ask_stream``, ``ask``,
#: ``iter_text``, ``iter_events``, the blueprint) and however it ended, with
#: ``sender=app`` and ``answer=`` the :class:`~flask_aistream.Answer`, after
#: the call's own ``on_finish`` hook, inside the asking request's context:
#: one place for metering and cost logs.
answer_finished = _signals.signal("answer-finished")


#: One INFO line per finished answer, for apps without tracing.
answers_log = logging.getLogger("flask_aistream.answers")


def log_answer(answer: Answer) -> None:
    """How an answer ended, in one line: id, provider, model, finish reason,
    tokens in and out, duration and time to the first token."""
    if not answers_log.isEnabledFor(logging.INFO):
        return
    usage = answer.usage
    answers_log.info(
        "answer %s provider=%s model=%s finish=%s input_tokens=%s output_tokens=%s "
        "duration_s=%.3f first_token_s=%s",
        answer.id,
        answer.provider,
        answer.model,
        answer.finish_reason,
        usage.input_tokens if usage else None,
        usage.output_tokens if usage else None,
        answer.duration_s,
        None if answer.first_token_s is None else f"{answer.first_token_s:.3f}",
    )


class AnswerWatcher(Protocol):
    """Something that counts the answers a view starts (a client's stream
    slot and token budget): told of each one as it starts, and as it ends,
    before any hook."""

    def started(self, run: AnswerRun, chat: ChatRequest) -> None: ...

    def ended(self, answer: Answer) -> None: ...


_watcher: contextvars.ContextVar[AnswerWatcher | None] = contextvars.ContextVar(
    "flask_aistream_watcher", default=None
)


@contextmanager
def watched_by(watcher: AnswerWatcher) -> Iterator[None]:
    """Answers started in the ``with`` block (by ``ask_stream`` in a view)
    are counted by ``watcher``."""
    token = _watcher.set(watcher)
    try:
        yield
    finally:
        _watcher.reset(token)


class AskingContext:
    """The asking request's context, taken in the view (its app, a copy of
    its request context, its ``g``), for the tools and hooks that run later,
    on whichever thread, also after the client left. Each run gets a fresh
    app context, torn down after it (``teardown_appcontext`` runs, a
    ``db.session`` is removed), with that request and ``g`` in it."""

    def __init__(self, app: Flask | None, logger: logging.Logger, *, needed: bool = True) -> None:
        self.app = app or (current_app._get_current_object() if has_app_context() else None)  # type: ignore[attr-defined]
        self.logger = logger
        self._request: RequestContext | None = None
        self._g: dict[str, object] = {}
        # Copying a request costs; an answer with no tools and no hooks skips it.
        if needed and has_app_context() and self.app is current_app._get_current_object():  # type: ignore[attr-defined]
            # ``g`` of the asking request, or of the app context that asked
            # (``ask()`` in a CLI command or a job).
            self._g = dict(vars(g._get_current_object()))
            if has_request_context():
                self._request = request_ctx.copy()

    def run(self, function: Callable[..., R], *args: object) -> R | None:
        """``function(*args)`` in that context, on a copy of no context at
        all, so it never sees, nor leaks into, another request's; what it
        sets on ``g`` the next run sees. ``None`` when there is no app."""
        return contextvars.Context().run(self._run, function, *args)

    def _run(self, function: Callable[..., R], *args: object) -> R | None:
        app = self.app
        if app is None:
            self.logger.warning(
                "flask-aistream: no Flask app to run tools and hooks in; "
                "create the client with AIStream(app) or call it inside an app context"
            )
            return None
        with self._request.copy() if self._request is not None else app.app_context():
            shared = vars(g._get_current_object())
            shared.update(self._g)
            try:
                return function(*args)
            finally:
                self._g = dict(shared)


class Hooks:
    """An answer's hooks, run once the answer ended, in the asking
    request's context: the watcher that counts it, the call's ``on_finish``,
    then ``answer_finished``."""

    def __init__(
        self,
        on_finish: Callable[[Answer], object] | None,
        context: AskingContext,
    ) -> None:
        self.on_finish = on_finish
        self.context = context
        self.logger = context.logger
        #: Who counts this answer (``watched_by``), told before the hooks.
        self.watcher = _watcher.get()

    @staticmethod
    def wanted(on_finish: Callable[[Answer], object] | None) -> bool:
        """Whether an answer has hooks to run (its context is then kept)."""
        return on_finish is not None or bool(answer_finished.receivers)

    def __call__(self, answer: Answer) -> None:
        log_answer(answer)
        if self.watcher is not None:
            try:
                self.watcher.ended(answer)
            except Exception:
                self.logger.exception("flask-aistream: counting the answer failed")
        if self.on_finish is None and not answer_finished.receivers:
            return
        self.context.run(self._run, answer)

    def _run(self, answer: Answer) -> None:
        if self.on_finish is not None:
            try:
                self.on_finish(answer)
            except Exception:
                self.logger.exception("flask-aistream: the on_finish hook failed")
        try:
            answer_finished.send(self.context.app, answer=answer)
        except Exception:
            self.logger.exception("flask-aistream: an answer_finished receiver failed")
