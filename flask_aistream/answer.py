"""One answer, from the call that asked for it to the hooks that see how it ended."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Callable

from .errors import ProviderError
from .parts import Answer, AnswerBuilder, Finish, Part, StepFinish, ToolCall, shows
from .providers.base import PartStream
from .tools.loop import ToolLoop


class AnswerRun:
    """Reads an answer's stream, adds its parts up, and ends it exactly once.

    Iterating yields the stream's part lists as they arrive and then, last,
    one :class:`~flask_aistream.parts.Finish` (not a list) whose answer holds
    the failure, if any: iterating never raises a provider's error, so every
    consumer (the relay, ``iter_events``) ends the same way. :meth:`finish`
    runs the hooks, once, whoever calls it first; an answer that stopped being
    read before its end is ``"cancelled"``.
    """

    def __init__(
        self,
        stream: PartStream,
        builder: AnswerBuilder,
        *,
        on_error: Callable[[ProviderError], ProviderError],
        on_end: Callable[[Answer], None],
        logger: logging.Logger,
        total_timeout: float | None = None,
        loop: ToolLoop | None = None,
    ) -> None:
        self._stream = stream
        #: Runs the tools a step calls (``None``: no tool of the server's).
        self._loop = loop
        self._next: PartStream | None = None  # the next step, once asked for
        self._builder = builder
        self._on_error = on_error
        self._on_end = on_end
        self._logger = logger
        self.total_timeout = total_timeout
        #: ``time.monotonic()`` past which the answer is cut, or ``None``.
        self.deadline = None if total_timeout is None else builder.started + total_timeout
        self.answer: Answer | None = None
        self._cancelled = False
        self._cancel_error: ProviderError | None = None
        self._hooks_ran = False
        self._begun: Iterator[list[Part] | Finish] | None = None
        #: Someone began reading it (a response that is never sent never does).
        self.started = False
        self._read: list[list[Part] | Finish] = []

    @property
    def id(self) -> str | None:
        """The answer's id (``Answer.id``; the resume id when resume is on)."""
        return self._builder.id

    @property
    def provider(self) -> str:
        return self._builder.provider

    @property
    def requested_model(self) -> str | None:
        """The model asked for (the provider may answer with a dated name)."""
        return self._builder.requested_model

    def __iter__(self) -> Iterator[list[Part] | Finish]:
        self.started = True
        if self._begun is None:
            return self._parts()
        return self._after_begin(self._begun)

    def begin(self) -> Answer | None:
        """Read up to the first visible part, or the end (then its answer is
        returned: one that failed before it showed anything, say), so a
        caller can answer a failure before any byte is sent; iterating then
        yields what was read first."""
        self.started = True
        self._begun = self._parts()
        for item in self._begun:
            self._read.append(item)
            if item.__class__ is Finish:
                return item.answer
            if shows(item):  # type: ignore[arg-type]
                break
        return None

    def _after_begin(self, rest: Iterator[list[Part] | Finish]) -> Iterator[list[Part] | Finish]:
        read, self._read = self._read, []
        yield from read
        yield from rest

    def _parts(self) -> Iterator[list[Part] | Finish]:
        builder = self._builder
        add = builder.add
        error: ProviderError | None = None
        try:
            while True:
                for parts in self._stream:
                    add(parts)
                    yield parts
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        self.cancel(self.timeout_error())
                self._stream.close()
                if self._cancelled:
                    break
                yield from self._between_steps()
                if self._next is None:
                    break
                self._stream, self._next = self._next, None
                if self.cancelled:  # since the check above (another thread may cancel)
                    break
        except ProviderError as exc:
            if not self._cancelled:  # what an abort causes (a cut-off stream) is no failure
                error = self._on_error(exc)
        except Exception as exc:  # a bug: never shown, always logged
            self._logger.error(
                "flask-aistream: unexpected error while streaming an answer", exc_info=exc
            )
            error = ProviderError(kind="internal", provider=self.provider, detail=repr(exc))
        finally:
            self._stream.close()
        self.answer = self._conclude(error)
        yield Finish(self.answer)

    def _between_steps(self) -> Iterator[list[Part]]:
        """A step ended: run the tools it called, one result at a time, say
        the step finished, and get the next one ready (``_next``) if its
        results go back to the model. A client that left during a tool (with
        the cancel policy) ends the answer before the next step is asked."""
        builder, loop = self._builder, self._loop
        calls: list[ToolCall] = []
        more = False
        if loop is not None and builder.complete:
            calls, more = loop.calls_to_run(
                builder.step_tool_calls, builder.step_finish_reason, len(builder.steps) + 1
            )
        for call in calls:
            assert loop is not None
            result = loop.run(call)
            builder.add([result])
            yield [result]
            if self._past_deadline():  # or cancelled meanwhile: no next step
                builder.end_step(more=True)  # what was under way is "cancelled"
                return
        step = builder.end_step(more)
        yield [StepFinish(step)]
        if more and loop is not None:
            self._next = loop.next_stream(
                step, builder.signatures, builder.provider, builder.requested_model
            )

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def runs_tools(self) -> bool:
        """Whether tools of the server's may run between its steps."""
        return self._loop is not None

    def _past_deadline(self) -> bool:
        """Whether the answer is cancelled, or its deadline passed (which
        cancels it)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.cancel(self.timeout_error())
        return self._cancelled

    def _conclude(self, error: ProviderError | None) -> Answer:
        if self._cancelled and self._cancel_error is not None:
            error = self._on_error(self._cancel_error)
        return self._builder.build(error, cancelled=self._cancelled)

    def limit(self, seconds: float) -> None:
        """Cut the answer ``seconds`` from now, unless a total timeout already does."""
        if self.deadline is None:
            self.total_timeout = seconds
            self.deadline = time.monotonic() + seconds

    def timeout_error(self) -> ProviderError:
        return ProviderError(
            f"The answer took longer than the {self.total_timeout:g} s allowed.",
            kind="timeout",
            provider=self.provider,
            retryable=False,
            detail="AI_TOTAL_TIMEOUT",
        )

    def cancel(self, error: ProviderError | None = None) -> None:
        """Stop the answer now (from any thread): it ends ``"cancelled"``, or
        as failed with ``error``. Nothing once it ended."""
        if self.answer is not None or self._cancelled:
            return
        self._cancel_error = error
        self._cancelled = True
        self._stream.abort()

    abort = cancel  # what a reader thread's stop() calls

    def close(self) -> None:
        self._stream.close()

    def reading_socket(self) -> socket.socket | None:
        return self._stream.reading_socket()

    def finish(self) -> Answer:
        """Run the hooks (once) and return the answer as it ended."""
        if self.answer is None:  # left before the end: nothing more will be read
            self._cancelled = True
            self.answer = self._builder.build(self._cancel_error, cancelled=True)
        if not self._hooks_ran:
            self._hooks_ran = True
            self._on_end(self.answer)
        return self.answer
