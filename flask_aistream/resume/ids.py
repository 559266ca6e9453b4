"""How answers and their events are named, and who owns them."""

from __future__ import annotations

import re

from flask import has_request_context, request

from ..formats.sse import DONE_ID

ANSWER_ID = re.compile(r"ans-[0-9a-f]{32}\Z")
_EVENT_ID = re.compile(r"(ans-[0-9a-f]{32}):([1-9][0-9]{0,8})\Z")


def parsed_event_id(value: str | None) -> tuple[str, int] | None:
    """``(answer id, sequence)`` from a ``Last-Event-ID`` of ours, else ``None``."""
    match = _EVENT_ID.match(value or "")
    return (match.group(1), int(match.group(2))) if match else None


def owner_key(owner: object) -> str:
    """How an answer's owner is stored and compared ("": anyone holding its id)."""
    return "" if owner is None else str(owner)


def is_done_reconnect() -> bool:
    """Whether the current request is an ``EventSource`` reconnecting after
    the end of an answer (it sends the last event's id)."""
    return has_request_context() and request.headers.get("Last-Event-ID") == DONE_ID
