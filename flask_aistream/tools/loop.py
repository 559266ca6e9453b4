"""Running the tools a step called, and asking the next step.

The answer (:class:`~flask_aistream.answer.AnswerRun`) reads one step after
another; between two it asks a :class:`ToolLoop` which calls to run, runs
them one by one in the order the model gave (in the asking request's
context), and opens the next step with the calls and their results appended
to the conversation. The loop knows neither wire formats nor output
formats: it gets :class:`~flask_aistream.ToolCall` parts and gives
:class:`~flask_aistream.ToolResult` parts and a stream of the next step's.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable

from ..errors import AIStreamError, ToolError
from ..parts import (
    ApprovalRequest,
    Data,
    JSONObject,
    Part,
    Step,
    ToolCall,
    ToolDenied,
    ToolResult,
)
from ..providers.base import PartStream
from . import Tool
from .arguments import BadArguments, NotJSON, call_with, json_value, parsed_arguments

if TYPE_CHECKING:
    from ..approvals import ApprovalStore
    from ..calls import Call
    from ..config import Settings
    from ..providers.base import ChatRequest
    from ..signals import AskingContext

#: What the model and the client are told when a tool raised something other
#: than ToolError: the exception's own text may hold internals.
TOOL_FAILED = "The tool failed."
#: Where :func:`send_data` sends, while a tool runs (``None``: no answer is).
DATA_SINK: ContextVar[Callable[[Data], None] | None] = ContextVar(
    "flask_aistream_data", default=None
)
_DATA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
#: What an answer that waits for approval keeps of its request, to go on with.
CONTINUED_OPTIONS = (
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "seed",
    "response_format",
    "tool_choice",
    "reasoning",
    "extra_body",
    "extra_headers",
)


class Waiting:
    """Where an answer's calls wait for approval, how long, and whose they
    are (the owner as stored, ``""``: anyone holding the id)."""

    def __init__(
        self, store: ApprovalStore, settings: Settings, owner: str, call: Call, chat: ChatRequest
    ) -> None:
        self.store = store
        self.ttl = settings.approval_ttl
        self.owner = owner
        self.chat_id = call.chat_id
        self.chat = chat


#: Finish reasons after which a step's calls are run (a step cut for length
#: may hold a call cut in half).
RUNS_AFTER = ("tool_calls", "stop")


class ToolLoop:
    """The server's tools for one answer, and how to ask its next step.

    ``next_step(messages, provider)`` opens the next step: the conversation
    so far plus ``messages`` (the assistant's calls and the results), asked
    of ``provider`` (the one that answered this step) and its fallbacks."""

    def __init__(
        self,
        tools: Mapping[str, Tool[object]],
        max_steps: int,
        next_step: Callable[[tuple[JSONObject, ...], str, str | None], PartStream],
        context: AskingContext,
        logger: logging.Logger,
        waiting: Waiting | None = None,
    ) -> None:
        self.tools = tools
        self.max_steps = max_steps
        self._next_step = next_step
        self.context = context
        self.logger = logger
        #: Where calls that need approval wait (``None``: no tool needs it).
        self.waiting = waiting
        self._sent: list[JSONObject] = []  # the turns each step appended

    def calls_to_run(
        self, calls: tuple[ToolCall, ...], reason: str, steps_done: int
    ) -> tuple[list[ToolCall], list[ToolCall], bool]:
        """Which of a finished step's calls the server runs now, which wait
        for a person's approval, and whether another step follows. None past
        ``max_steps``. A call the server cannot run (a client tool's, or one
        of a tool nobody offered) is the client's: the server's own calls
        still run, then the answer ends with that call pending; so it does
        when a call waits for approval."""
        if not calls or reason not in RUNS_AFTER or steps_done >= self.max_steps:
            return [], [], False
        ours = [call for call in calls if self._runs(call)]
        wait = [call for call in ours if self._waits(call)]
        now = [call for call in ours if call not in wait]
        return now, wait, len(ours) == len(calls) and not wait

    def _waits(self, call: ToolCall) -> bool:
        """Whether the call needs a person's yes; a policy that fails says yes."""
        policy = self.tools[call.name].needs_approval
        if not callable(policy):
            return bool(policy)
        try:
            return bool(self.context.run(policy, call))
        except Exception:
            self.logger.exception("flask-aistream: needs_approval of %r failed", call.name)
            return True

    def _runs(self, call: ToolCall) -> bool:
        tool = self.tools.get(call.name)
        return tool is not None and tool.execute is not None

    def run(self, call: ToolCall) -> Iterator[Data | ToolResult]:
        """One call, run on a thread of its own: the data it sends as it
        sends it (:func:`send_data`), then its result, or the error the
        model is told."""
        tool = self.tools[call.name]
        try:
            arguments = parsed_arguments(call.arguments, tool.parameters)
        except BadArguments as exc:
            yield ToolResult(call.id, call.name, None, f"Invalid arguments for {call.name}: {exc}.")
            return
        out: queue.Queue[Data | ToolResult] = queue.Queue()

        def work() -> None:
            outcome = self.context.run(self._execute, tool, call, arguments, out.put)
            out.put(outcome or ToolResult(call.id, call.name, None, TOOL_FAILED))

        threading.Thread(target=work, name="flask-aistream tool", daemon=True).start()
        while True:
            item = out.get()
            yield item
            if isinstance(item, ToolResult):
                return

    def _execute(
        self,
        tool: Tool[object],
        call: ToolCall,
        arguments: JSONObject,
        send: Callable[[Data], None],
    ) -> ToolResult:
        assert tool.execute is not None
        token = DATA_SINK.set(send)
        try:
            output = json_value(call_with(tool.execute, arguments))
        except ToolError as exc:
            return ToolResult(call.id, call.name, None, str(exc) or TOOL_FAILED)
        except NotJSON as exc:
            self.logger.error(
                "flask-aistream: tool %r returned a %s, which has no JSON form", call.name, exc
            )
            return ToolResult(
                call.id, call.name, None, f"The tool returned a {exc}, which is not JSON."
            )
        except Exception:
            self.logger.exception("flask-aistream: tool %r failed", call.name)
            return ToolResult(call.id, call.name, None, TOOL_FAILED)
        finally:
            DATA_SINK.reset(token)
        return ToolResult(call.id, call.name, output)

    def next_stream(
        self, step: Step, signatures: Mapping[str, str], provider: str, model: str | None
    ) -> PartStream:
        """The next step, asked with ``step``'s calls and results appended."""
        calls = []
        for call in step.tool_calls:
            # "" says the provider gave this call no signature (not: unknown)
            signature = signatures.get(call.id, "")
            calls.append(
                {
                    "id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                    "signature": signature,
                }
            )
        return self._next_step(self.carry(self._turns(step, signatures)), provider, model)

    def carry(self, turns: Iterable[JSONObject]) -> tuple[JSONObject, ...]:
        """Every turn the answer's steps added so far, ``turns`` last: what
        the next step is asked with, after the call's own messages."""
        self._sent += turns
        return tuple(self._sent)

    def _turns(self, step: Step, signatures: Mapping[str, str]) -> tuple[JSONObject, ...]:
        """The step as turns of the conversation: the assistant's calls,
        then the results."""
        calls = [
            # "" says the provider gave this call no signature (not: unknown)
            {
                "id": c.id,
                "name": c.name,
                "arguments": c.arguments,
                "signature": signatures.get(c.id, ""),
            }
            for c in step.tool_calls
        ]
        return (
            {"role": "assistant", "content": step.text, "tool_calls": calls},
            *(result_message(result) for result in step.tool_results),
        )

    def wait_for_approval(
        self,
        calls: list[ToolCall],
        step: Step,
        signatures: Mapping[str, str],
        provider: str,
        model: str | None,
        answer_id: str,
    ) -> list[ApprovalRequest]:
        """Keep the calls, and the conversation to go on with, until someone
        decides; the requests to send the client."""
        waiting = self.waiting
        assert waiting is not None, "a tool needs approval: the client gave the loop a store"
        requests = [ApprovalRequest(f"apr-{secrets.token_hex(16)}", call) for call in calls]
        first = waiting.chat
        record = {
            "owner": waiting.owner,
            "chat_id": waiting.chat_id,
            "expires": time.time() + waiting.ttl,
            "approvals": {r.id: r.call._asdict() for r in requests},
            "provider": provider,
            "model": model,
            "system": first.system,
            "messages": [*first.messages, *self._sent],  # whole: each call with its result
            "turns": list(self._turns(step, signatures)),  # this step's, results to come
            "options": {
                name: list(value) if isinstance(value, tuple) else value
                for name in CONTINUED_OPTIONS
                if (value := getattr(first, name)) is not None
            },
        }
        waiting.store.save(answer_id, record, waiting.ttl)
        return requests


def result_message(result: ToolResult) -> JSONObject:
    """A result as a ``tool`` turn: the error's text, a string as it is,
    any other value as its JSON text."""
    if result.error is not None:
        content = result.error
    elif isinstance(result.output, str):
        content = result.output
    else:
        content = json.dumps(result.output, ensure_ascii=False)
    return {
        "role": "tool",
        "tool_call_id": result.call_id,
        "name": result.name,
        "content": content,
        "error": result.error is not None,
    }


def send_data(name: str, value: object, id: str | None = None, transient: bool = False) -> None:
    """Send app data to the client now, from a tool while it runs: a status
    line, the sources a search found. ``name`` becomes the Vercel part's
    type (``data-<name>``), the ``data`` event's ``name`` (``aistream``, with
    ``events=["data"]``); a later value with the same ``id`` replaces the
    earlier one; a ``transient`` one reaches ``useChat``'s ``onData`` but not
    the message. It goes out in order with the answer, and is kept for
    resume. Outside a running tool it raises :class:`AIStreamError`."""
    sink = DATA_SINK.get()
    if sink is None:
        raise AIStreamError("send_data() is for a tool while it runs: no answer is running here")
    if not isinstance(name, str) or not _DATA_NAME.match(name):
        raise AIStreamError(f"a data name is 1-64 letters, digits, '_' or '-', not {name!r}")
    if id is not None and not isinstance(id, str):
        raise AIStreamError(f"a data id is a string, not {id!r}")
    try:
        value = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise AIStreamError(f"data {name!r}: the value has no JSON form") from None
    sink(Data(name, value, id, bool(transient)))


class PreludeStream(PartStream):
    """An answer that goes on after a person decided: the denied calls'
    results and the approved calls (run now, with the arguments that were
    stored) come first, then the provider is asked with all the results
    appended."""

    def __init__(
        self,
        loop: ToolLoop,
        approved: list[ToolCall],
        denied: list[ToolResult],
        turns: list[JSONObject],
        open_next: Callable[[tuple[JSONObject, ...]], PartStream],
    ) -> None:
        self._loop = loop
        self._turns = turns
        self._approved = approved
        self._denied = denied
        self._open_next = open_next
        self._current: PartStream | None = None
        self._closed = False

    def __iter__(self) -> Iterator[list[Part]]:
        results = list(self._denied)
        for result in self._denied:
            yield [ToolDenied(result.call_id), result]
        for call in self._approved:
            for item in self._loop.run(call):
                yield [item]
                if isinstance(item, ToolResult):
                    results.append(item)
            if self._closed:
                return
        turns = [*self._turns, *(result_message(r) for r in results)]
        self._current = self._open_next(self._loop.carry(turns))
        if self._closed:
            self._current.close()
            return
        yield from self._current

    def close(self) -> None:
        self._closed = True
        if self._current is not None:
            self._current.close()

    def abort(self) -> None:
        self._closed = True
        if self._current is not None:
            self._current.abort()

    def reading_socket(self) -> socket.socket | None:
        return self._current.reading_socket() if self._current is not None else None
