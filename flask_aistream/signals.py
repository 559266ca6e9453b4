"""An answer's hooks: the call's ``on_finish``, then the ``answer_finished``
signal (blinker, like Flask's own: subscribe with
``answer_finished.connect(receiver, app)``), run once the answer ended, in
the asking request's context."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Protocol

from blinker import Namespace
from flask import Flask, current_app, g, has_app_context, has_request_context
from flask.globals import request_ctx

if TYPE_CHECKING:
    from flask.ctx import RequestContext

    from .answer import AnswerRun
    from .parts import Answer
    from .providers.base import ChatRequest

_signals = Namespace()

#: Sent once per answer, however it was asked for (``ask_stream``, ``ask``,
#: ``iter_text``, ``iter_events``, the blueprint) and however it ended, with
#: ``sender=app`` and ``answer=`` the :class:`~flask_aistream.Answer`, after
#: the call's own ``on_finish`` hook, inside the asking request's context:
#: one place for metering and cost logs.
answer_finished = _signals.signal("answer-finished")


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


class Hooks:
    """An answer's hooks, and the context they run in: taken in the view
    that asked (its app, a copy of its request context and of ``g``: the
    user a ``before_request`` loaded is there), run once the answer ended,
    on whichever thread ends it, also after the client left."""

    def __init__(
        self,
        on_finish: Callable[[Answer], object] | None,
        app: Flask | None,
        logger: logging.Logger,
    ) -> None:
        self.on_finish = on_finish
        self.app = app or (current_app._get_current_object() if has_app_context() else None)  # type: ignore[attr-defined]
        self.logger = logger
        #: Who counts this answer (``watched_by``), told before the hooks.
        self.watcher = _watcher.get()
        self._request: RequestContext | None = None
        self._g: dict[str, object] = {}
        hooked = on_finish is not None or bool(answer_finished.receivers)
        if hooked and has_request_context() and self.app is request_ctx.app:
            self._request = request_ctx.copy()
            self._g = dict(vars(g._get_current_object()))

    def __call__(self, answer: Answer) -> None:
        """Run them, on a copy of no context at all, so a hook never sees,
        nor leaks into, another request's."""
        if self.watcher is not None:
            try:
                self.watcher.ended(answer)
            except Exception:
                self.logger.exception("flask-aistream: counting the answer failed")
        if self.on_finish is None and not answer_finished.receivers:
            return
        contextvars.Context().run(self._run, answer)

    def _run(self, answer: Answer) -> None:
        app = self.app
        if app is None:
            self.logger.warning(
                "flask-aistream: no Flask app to run the answer's hooks in; "
                "create the client with AIStream(app) or call it inside an app context"
            )
            return
        with self._request if self._request is not None else app.app_context():
            vars(g._get_current_object()).update(self._g)
            if self.on_finish is not None:
                try:
                    self.on_finish(answer)
                except Exception:
                    self.logger.exception("flask-aistream: the on_finish hook failed")
            try:
                answer_finished.send(app, answer=answer)
            except Exception:
                self.logger.exception("flask-aistream: an answer_finished receiver failed")
