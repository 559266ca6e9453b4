"""Parts to bytes: the output formats an answer can be streamed in.

A format knows nothing of providers: it gets lists of parts as they arrive
(:meth:`OutputFormat.parts`), then the finished
:class:`~flask_aistream.parts.Answer` (:meth:`OutputFormat.end`). The relay
is handed one as an object and never imports this package.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Union

from ..config import STREAM_FORMATS, Settings
from ..parts import Answer, Part
from ..serving.response import OutputFormat
from .agui import AGUIFormat
from .aistream import AIStreamFormat
from .openai import OpenAIFormat
from .sse import DONE, PING
from .vercel import VercelFormat

#: A format as a resumed answer needs it before any instance exists: its
#: content type, headers and ``error()``.
FormatClass = Union[type[AIStreamFormat], type[VercelFormat], type[OpenAIFormat], type[AGUIFormat]]


#: Each ``format=`` name's class: its content type, headers and ``error()``.
FORMAT_CLASSES: dict[str, FormatClass] = {
    "aistream": AIStreamFormat,
    "vercel": VercelFormat,
    "openai": OpenAIFormat,
    "agui": AGUIFormat,
}
#: ``AI_STREAM_FORMAT`` / ``format=`` values.
FORMATS = STREAM_FORMATS
assert tuple(FORMAT_CLASSES) == FORMATS


def new_id(prefix: str) -> str:
    """An id nobody can guess (128 bits), e.g. for a message or a completion."""
    return f"{prefix}-{secrets.token_hex(16)}"


def make(
    name: str,
    settings: Settings,
    *,
    events: Iterable[str] | None = None,
    model: str = "",
    include_usage: bool = False,
    message_id: str | None = None,
    thread_id: str | None = None,
) -> OutputFormat:
    """The output format ``name`` (``format=``, else ``AI_STREAM_FORMAT``)
    for one answer; ``events`` (checked) default to ``AI_STREAM_EVENTS``."""
    if name == "vercel":
        return VercelFormat(message_id or new_id("msg"), settings.vercel_protocol)
    if name == "agui":  # the thread is the chat; the run, the message the answer is
        return AGUIFormat(thread_id or new_id("thread"), message_id or new_id("run"), new_id)
    if name == "openai":
        return OpenAIFormat(
            new_id("chatcmpl"), model, int(time.time()), include_usage=include_usage
        )
    return AIStreamFormat(settings.stream_events if events is None else events)


def failure_events(format_name: str, message: str) -> bytes:
    """An error and ``[DONE]`` in the answer's own format, for readers of an
    answer that cannot go on."""
    return FORMAT_CLASSES[format_name].error(message, "interrupted") + DONE


class PreEncoded:
    """The output format of a resumable answer as the relay sees it: the
    :class:`Recorder` encodes every event, end included, so the relay only
    writes them (and pings)."""

    def __init__(self, output: OutputFormat) -> None:
        self.content_type = output.content_type
        self.headers = output.headers
        self.ping = output.ping

    def parts(self, parts: list[Part]) -> bytes:  # never called: items come encoded
        raise AssertionError("a recorded answer's parts are encoded by its Recorder")

    def end(self, answer: Answer) -> bytes:
        return b""


__all__ = [
    "DONE",
    "FORMATS",
    "FORMAT_CLASSES",
    "PING",
    "AGUIFormat",
    "AIStreamFormat",
    "FormatClass",
    "OpenAIFormat",
    "OutputFormat",
    "PreEncoded",
    "VercelFormat",
    "failure_events",
    "make",
    "new_id",
]
