"""One answer, from the call that asked for it to the hooks that see how it
ended: the :class:`AnswerBuilder` that adds its parts up, step by step, and
the :class:`AnswerRun` that reads it."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Callable

from .errors import ProviderError
from .parts import (
    Answer,
    Finish,
    Metadata,
    Part,
    ReasoningDelta,
    Source,
    Step,
    StepFinish,
    Stop,
    ToolCall,
    ToolCallSignature,
    ToolResult,
    Usage,
    UsageUpdate,
    shows,
)
from .providers.base import PartStream
from .tools.loop import ToolLoop

#: Text pieces kept apart before they are joined into one: a long answer
#: then costs about its size in memory, not a string object per token.
JOIN_EVERY = 4096


class AnswerBuilder:
    """Adds parts up into an :class:`Answer`, step by step. Per text part it
    does one append; everything else is rare."""

    def __init__(
        self,
        provider: str,
        model: str | None,
        started: float | None = None,
        *,
        id: str | None = None,
        chat_id: str | None = None,
    ) -> None:
        self.id = id
        self.chat_id = chat_id
        self.provider = provider
        self.requested_model = model
        self.started = time.monotonic() if started is None else started
        self.first_text_at: float | None = None
        self._steps: list[Step] = []
        #: The last ended step asked for another (its calls' results went out).
        self._more = False
        #: What providers want back with their calls (call id -> token).
        self.signatures: dict[str, str] = {}
        self._model: str | None = None
        self._response_id: str | None = None
        self._new_step()

    def _new_step(self) -> None:
        self._opened = False  # a part of this step arrived
        self._texts: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: list[ToolCall] = []
        self._results: list[ToolResult] = []
        self._usage: dict[str, int] = {}
        self._stop: Stop | None = None

    @property
    def complete(self) -> bool:
        """The provider said this step is complete."""
        return self._stop is not None

    @property
    def step_tool_calls(self) -> tuple[ToolCall, ...]:
        """The complete tool calls of the step under way."""
        return tuple(self._tool_calls)

    @property
    def step_finish_reason(self) -> str:
        """How the provider said the step under way ended (``"other"``: it did not)."""
        return self._stop.reason if self._stop is not None else "other"

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps that ended."""
        return tuple(self._steps)

    def add(self, parts: list[Part]) -> None:
        texts = self._texts
        self._opened = True
        for part in parts:
            if part.__class__ is str:
                texts.append(part)
            else:
                self._add_other(part)
        if len(texts) > JOIN_EVERY:
            texts[:] = ["".join(texts)]
        if self.first_text_at is None and texts:
            self.first_text_at = time.monotonic()

    def _add_other(self, part: Part) -> None:
        if isinstance(part, ReasoningDelta):
            self._reasoning.append(part.text)
        elif isinstance(part, ToolCall):
            self._tool_calls.append(part)
        elif isinstance(part, ToolResult):
            self._results.append(part)
        elif isinstance(part, ToolCallSignature):
            self.signatures[part.call_id] = part.signature
        elif isinstance(part, UsageUpdate):
            for name, value in zip(UsageUpdate._fields, part):
                if value is not None:
                    self._usage[name] = value
        elif isinstance(part, Metadata):
            self._model = part.model or self._model
            self._response_id = part.response_id or self._response_id
        elif isinstance(part, Stop):
            self._stop = part
        elif isinstance(part, Source):  # nothing of the provider that failed counts
            self.provider, self.requested_model = part.provider, part.model
            self._model = self._response_id = None
            self._usage.clear()

    def end_step(self, more: bool) -> Step:
        """Close the step under way (its parts and tool results were added);
        ``more``: another step follows."""
        stop = self._stop
        step = self._step(stop.reason if stop else "other", stop.raw if stop else None)
        self._steps.append(step)
        self._more = more
        self._new_step()
        return step

    def _step(self, reason: str, raw: str | None) -> Step:
        return Step(
            text="".join(self._texts),
            reasoning="".join(self._reasoning),
            tool_calls=tuple(self._tool_calls),
            tool_results=tuple(self._results),
            finish_reason=reason,
            raw_finish_reason=raw,
            usage=self._build_usage(),
        )

    def build(self, error: ProviderError | None = None, cancelled: bool = False) -> Answer:
        """The answer so far. An error decides first; a complete answer keeps
        its own reason even when the client left right after it; one left
        between two steps is cancelled."""
        steps = list(self._steps)
        under_way = self._opened or not steps
        stop = self._stop
        if not under_way:  # the last step ended: its own reason, unless more was to come
            stop = (
                None if self._more else Stop(steps[-1].finish_reason, steps[-1].raw_finish_reason)
            )
        if error is not None:
            # A provider that withheld the answer for its content says so.
            reason = "content_filter" if error.kind == "blocked" else "error"
        elif stop is not None:
            reason = stop.reason
        else:
            reason = "cancelled" if cancelled else "other"
        raw = stop.raw if stop is not None else None
        if under_way:
            steps.append(self._step(reason, raw))
        usages = [step.usage for step in steps if step.usage is not None]
        return Answer(
            text="".join(step.text for step in steps),
            reasoning="".join(step.reasoning for step in steps),
            tool_calls=tuple(call for step in steps for call in step.tool_calls),
            finish_reason=reason,
            raw_finish_reason=raw,
            usage=sum(usages[1:], usages[0]) if usages else None,
            model=self._model or self.requested_model,
            provider=self.provider,
            response_id=self._response_id,
            error=error,
            first_token_s=None if self.first_text_at is None else self.first_text_at - self.started,
            duration_s=time.monotonic() - self.started,
            id=self.id,
            chat_id=self.chat_id,
            steps=tuple(steps),
            tool_results=tuple(result for step in steps for result in step.tool_results),
        )

    def _build_usage(self) -> Usage | None:
        usage = self._usage
        if not usage:
            return None
        input_tokens = usage.get("input_tokens", 0)
        output_tokens = usage.get("output_tokens", 0)
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=usage.get("total_tokens", input_tokens + output_tokens),
            reasoning_tokens=usage.get("reasoning_tokens"),
            cached_input_tokens=usage.get("cached_input_tokens"),
        )


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
        waiting: list[ToolCall] = []  # calls that wait for a person's approval
        more = False
        if loop is not None and builder.complete:
            calls, waiting, more = loop.calls_to_run(
                builder.step_tool_calls, builder.step_finish_reason, len(builder.steps) + 1
            )
        for call in calls:
            assert loop is not None
            for item in loop.run(call):  # data the tool sends, then its result
                builder.add([item])
                yield [item]
            if self._past_deadline():  # or cancelled meanwhile: no next step
                builder.end_step(more=True)  # what was under way is "cancelled"
                return
        step = builder.end_step(more)
        if waiting and loop is not None:  # part of the step: before its end
            yield list(
                loop.wait_for_approval(
                    waiting,
                    step,
                    builder.signatures,
                    builder.provider,
                    builder.requested_model,
                    builder.id or "",
                )
            )
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
