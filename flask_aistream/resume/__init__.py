"""Answers that outlive their connection.

With ``AI_RESUME_STORAGE_URI`` set, every event of an answer is numbered
(``id: <answer id>:<sequence>``) and kept in a store: a Redis Stream per
answer (``redis://``), or this process's memory (``memory://``, for
development and tests). A client that reconnects, to any worker on any host,
gets what it missed and then the rest live; the provider is never asked
again. The producer keeps the answer going when its client leaves, renews a
lease while it is alive, and stops when someone cancels the answer.

The order on the per-token path: the producer hands the events to its live
client first; a thread per process writes them to the store behind it, the
events of every answer that arrived within 50 ms in one command, so Redis
never delays the browser, and a thousand slow streams cost twenty round
trips a second, not ten thousand.
"""

from __future__ import annotations

from ..errors import ConfigurationError
from .ids import ANSWER_ID, is_done_reconnect, owner_key, parsed_event_id
from .recorder import (
    INTERRUPTED,
    UNAVAILABLE,
    Recorder,
    cancel,
    follow,
    recorded_response,
    resumed_response,
)
from .redis import RedisStore
from .store import MemoryStore, ResumeStore, Status
from .writer import StoreWriter


def resume_store_for(uri: str | None, ttl: float) -> ResumeStore | None:
    """The store ``AI_RESUME_STORAGE_URI`` names (``None``: resume is off)."""
    if not uri:
        return None
    if uri == "memory://":
        return MemoryStore(ttl)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(uri, ttl)
    raise ConfigurationError(
        f"AI_RESUME_STORAGE_URI must be redis://..., rediss://..., unix://... or memory://, "
        f"not {uri.split('://')[0] + '://'!r}."
    )


__all__ = [
    "ANSWER_ID",
    "INTERRUPTED",
    "UNAVAILABLE",
    "MemoryStore",
    "Recorder",
    "RedisStore",
    "ResumeStore",
    "Status",
    "StoreWriter",
    "cancel",
    "follow",
    "is_done_reconnect",
    "recorded_response",
    "resumed_response",
    "owner_key",
    "parsed_event_id",
    "resume_store_for",
]
