"""The parts an answer is made of, and the :class:`Answer` they add up to.

Providers turn their wire format into parts; output formats turn parts into
bytes; nothing in between knows either. Parts travel in lists, one list per
upstream read.

**A text delta travels as a bare** ``str``: it is nearly every part, and
building a tuple around each token cost a third more CPU per token than the
whole relay had spent. Every other part is a small NamedTuple, trivially
serialised. At the public edge (:meth:`AIClient.iter_events`) text becomes a
:class:`TextDelta`; the other public events are :class:`ReasoningDelta`,
:class:`ToolCall` (once complete) and, last, :class:`Finish`. The rest carry
what only the :class:`AnswerBuilder` and some output formats need: tool-call
fragments as they stream, token usage, the provider's model and response id,
and the provider's word that the answer is complete.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Union

from .errors import ProviderError

#: A JSON object as ``json.loads`` gives it: what providers and browsers send,
#: and the request bodies we build. Its values are checked where they are read.
JSONObject = dict[str, Any]
#: A message's content: a string, or neutral text and image parts
#: (``{"type": "text", "text"}``, ``{"type": "image", "url" or "data", "media_type"}``).
Content = Union[str, list[JSONObject]]
#: Keyword options as a caller gives them, checked where they are read.
Options = Mapping[str, Any]

#: What ``Answer.finish_reason`` can be, whatever the provider.
FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "error", "cancelled", "other")


class TextDelta(NamedTuple):
    """A piece of the answer's visible text (inside the library: a bare ``str``)."""

    text: str

    @property
    def type(self) -> str:
        return "text"


class ReasoningDelta(NamedTuple):
    """A piece of the model's reasoning ("thinking"), never part of the text."""

    text: str

    @property
    def type(self) -> str:
        return "reasoning"


class ToolCall(NamedTuple):
    """A tool call the model made, complete. ``arguments`` is the JSON text the
    model wrote, as it wrote it: parse it yourself, it may be invalid."""

    id: str
    name: str
    arguments: str

    @property
    def type(self) -> str:
        return "tool_call"


class ToolResult(NamedTuple):
    """What a tool the server ran gave back for call ``call_id``: ``output``,
    a JSON value (a dict stays an object), or ``error``, the text the model
    and the client are shown when it failed (``output`` is then ``None``)."""

    call_id: str
    name: str
    output: Any
    error: str | None = None

    @property
    def type(self) -> str:
        return "tool_result"


class Data(NamedTuple):
    """App data a tool sent while it ran (:func:`flask_aistream.send_data`):
    a status line, the sources a search found. A later one with the same
    ``id`` replaces the earlier in a client that keeps them; a ``transient``
    one is shown, not kept."""

    name: str
    value: Any
    id: str | None = None
    transient: bool = False

    @property
    def type(self) -> str:
        return "data"


class ApprovalRequest(NamedTuple):
    """A call waits for a person's decision (its tool ``needs_approval``):
    the answer ended with it; ``id`` is what the decision names."""

    id: str
    call: ToolCall

    @property
    def type(self) -> str:
        return "approval_request"


class ToolDenied(NamedTuple):
    """The call ``call_id`` will not run: a person said no (its
    :class:`ToolResult`, with the reason the model is told, follows)."""

    call_id: str

    @property
    def type(self) -> str:
        return "tool_denied"


class StepFinish(NamedTuple):
    """One step (one provider call) of the answer ended: after its tool
    results, before the next step's first part; the last step's too."""

    step: Step

    @property
    def type(self) -> str:
        return "step_finish"


class Finish(NamedTuple):
    """The last event of every answer, however it ended."""

    answer: Answer

    @property
    def type(self) -> str:
        return "finish"


# --- parts only the builder and the output formats see ---------------------


class ToolCallDelta(NamedTuple):
    """A fragment of the tool call at ``position`` (the provider's index):
    ``id`` and ``name`` on its first fragment, then pieces of the arguments'
    JSON text."""

    position: Hashable
    id: str | None
    name: str | None
    arguments: str

    @property
    def type(self) -> str:
        return "tool_call_delta"


class UsageUpdate(NamedTuple):
    """Token counts as the provider reported them so far; ``None`` where this
    report says nothing. Later reports override earlier ones, field by field."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_input_tokens: int | None = None

    @property
    def type(self) -> str:
        return "usage"


class Metadata(NamedTuple):
    """The model that answered and the provider's id for the response."""

    model: str | None
    response_id: str | None

    @property
    def type(self) -> str:
        return "metadata"


class Source(NamedTuple):
    """A fallback took over: who is answering now (the one before failed
    before its first token)."""

    provider: str
    model: str

    @property
    def type(self) -> str:
        return "source"


class ToolCallSignature(NamedTuple):
    """An opaque token the provider gave with tool call ``call_id`` and wants
    back with it (Gemini's ``thoughtSignature``): sent on the next step,
    never to a client."""

    call_id: str
    signature: str

    @property
    def type(self) -> str:
        return "tool_call_signature"


class Stop(NamedTuple):
    """The provider said the answer is complete. ``reason`` is one of
    :data:`FINISH_REASONS`; ``raw`` the provider's own value (or ``None``)."""

    reason: str
    raw: str | None

    @property
    def type(self) -> str:
        return "stop"


#: What :meth:`AIClient.iter_events` yields.
Event = Union[
    TextDelta, ReasoningDelta, ToolCall, ToolResult, Data, ApprovalRequest, StepFinish, Finish
]

#: What a provider's stream yields, in lists, one list per read: text as a
#: bare ``str``, everything else a NamedTuple; between steps the answer adds
#: the tools' results and each step's end.
Part = Union[
    str,
    ReasoningDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallSignature,
    UsageUpdate,
    Metadata,
    Source,
    Stop,
    ToolResult,
    Data,
    ApprovalRequest,
    ToolDenied,
    StepFinish,
]

#: Parts a person sees (or a client renders): once one was handed on, a retry
#: would show a different answer glued to the first.
VISIBLE = frozenset({str, ReasoningDelta, ToolCall, ToolCallDelta})


def shows(parts: list[Part]) -> bool:
    """Whether a batch holds anything the client sees: past it, nothing may
    be retried or asked of another provider."""
    return any(part.__class__ in VISIBLE for part in parts)


#: The parts :meth:`AIClient.iter_events` yields as they are (text is wrapped).
PUBLIC = frozenset(
    {ReasoningDelta, ToolCall, ToolResult, Data, ApprovalRequest, StepFinish, Finish}
)


# --- the answer ----------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Tokens the answer cost. ``input_tokens`` counts every input token, cached
    ones included; ``cached_input_tokens`` and ``reasoning_tokens`` (part of
    ``output_tokens``) are ``None`` where the provider does not say."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    reasoning_tokens: int | None = None
    cached_input_tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)

    def __add__(self, other: Usage) -> Usage:
        """Two steps' usage together: a count either leaves out stays out
        only if both do."""

        def both(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
            both(self.reasoning_tokens, other.reasoning_tokens),
            both(self.cached_input_tokens, other.cached_input_tokens),
        )


@dataclass(frozen=True)
class Step:
    """One provider call of an answer: what it said, the tools it called
    and what they gave back, how it ended, and what it cost. An answer with
    tools the server runs has one step per round of calls, plus the last."""

    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    tool_results: tuple[ToolResult, ...]
    finish_reason: str
    raw_finish_reason: str | None
    usage: Usage | None


@dataclass(frozen=True)
class Answer:
    """One answer, as it ended. What ``on_finish`` hooks and the
    ``answer_finished`` signal receive, and the last event of ``iter_events``.

    ``finish_reason`` is one of :data:`FINISH_REASONS` (the last step's):
    ``"error"`` with ``error`` set, ``"cancelled"`` when the client left (or
    the consumer stopped reading) first; ``text`` then holds what did arrive.
    ``text``, ``tool_calls`` and ``tool_results`` are every step's, in order,
    ``usage`` their sum. ``first_token_s`` and ``duration_s`` count from the
    call that asked.
    """

    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    raw_finish_reason: str | None
    usage: Usage | None
    model: str | None
    provider: str
    response_id: str | None
    error: ProviderError | None
    first_token_s: float | None
    duration_s: float
    #: The answer's id (``X-AIStream-Answer-Id`` when resume is on).
    id: str | None = None
    #: The chat it answers in: useChat's chat id, or ``chat_id=`` (else ``None``).
    chat_id: str | None = None
    #: Its steps, one per provider call (at least one).
    steps: tuple[Step, ...] = ()
    #: What the tools the server ran gave back, every step's.
    tool_results: tuple[ToolResult, ...] = ()
