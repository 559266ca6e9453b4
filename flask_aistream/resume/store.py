"""Where answers' events are kept: the store interface, and one process's
memory (``memory://``, for development and tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..formats.sse import Batch, Entry

#: How long a producer's lease lasts; it renews it every ``writer.RENEW_EVERY``
#: seconds. Readers of an answer whose lease ran out while it had not ended
#: report it interrupted: its process died.
LEASE_SECONDS = 3.0
#: Longest a reader waits on the store before it looks at the lease again.
FOLLOW_WAIT = 1.0


@dataclass
class Status:
    """What a store knows of an answer when a reader comes."""

    owner: str
    format: str
    last_seq: int
    ended: bool
    alive: bool


class ResumeStore:
    """Where answers' events are kept. ``ttl``: seconds an answer stays
    resumable after its last write."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    def begin(self, answer_id: str, owner: str, format_name: str, chat: str | None) -> None:
        """Record a new answer (raises if the store cannot be reached)."""
        raise NotImplementedError

    def append_many(self, batches: list[tuple[str, Batch, str | None]]) -> dict[str, BaseException]:
        """Add each ``(answer id, batch, chat)``; after an answer's last event
        it is over (its chat is free). Returns the answers that failed."""
        raise NotImplementedError

    def read(self, answer_id: str, after: int, timeout: float) -> list[Entry]:
        """The events after ``after``, waiting up to ``timeout`` for one."""
        raise NotImplementedError

    def status(self, answer_id: str) -> Status | None:
        """``None``: unknown, or expired."""
        raise NotImplementedError

    def renew(self, answer_ids: list[str]) -> set[str]:
        """Renew these answers' leases; return those that were cancelled."""
        raise NotImplementedError

    def cancel(self, answer_id: str) -> bool:
        """Ask the answer's producer to stop; false when it already ended."""
        raise NotImplementedError

    def chat_answer(self, chat: str) -> str | None:
        """The answer being written for ``chat``, if any."""
        raise NotImplementedError

    def interrupt(self, answer_id: str, after: int, batch: Batch) -> bool:
        """Append ``batch`` (the interruption) only if the answer's lease is
        gone and its last event is still ``after``: exactly one reader writes
        it, and a producer that was merely slow is not cut short."""
        raise NotImplementedError


# -- memory ---------------------------------------------------------------------


@dataclass
class _Record:
    owner: str
    format: str
    entries: list[Entry] = field(default_factory=list)
    lease_until: float = 0.0
    expires: float = 0.0
    cancelled: bool = False

    @property
    def ended(self) -> bool:
        return bool(self.entries) and self.entries[-1].last


class MemoryStore(ResumeStore):
    """One process's answers (a reconnect must come back to it)."""

    def __init__(self, ttl: float) -> None:
        super().__init__(ttl)
        self._answers: dict[str, _Record] = {}
        self._chats: dict[str, str] = {}
        self._changed = threading.Condition()

    def _get(self, answer_id: str) -> _Record | None:
        record = self._answers.get(answer_id)
        if record is not None and record.expires < time.monotonic():
            del self._answers[answer_id]
            return None
        return record

    def _expire_old(self) -> None:
        now = time.monotonic()
        for answer_id in [a for a, r in self._answers.items() if r.expires < now]:
            del self._answers[answer_id]
        for chat in [c for c, a in self._chats.items() if a not in self._answers]:
            del self._chats[chat]

    def begin(self, answer_id: str, owner: str, format_name: str, chat: str | None) -> None:
        now = time.monotonic()
        with self._changed:
            self._expire_old()
            self._answers[answer_id] = _Record(
                owner, format_name, lease_until=now + LEASE_SECONDS, expires=now + self.ttl
            )
            if chat:
                self._chats[chat] = answer_id

    def append_many(self, batches: list[tuple[str, Batch, str | None]]) -> dict[str, BaseException]:
        failed: dict[str, BaseException] = {}
        for answer_id, batch, chat in batches:
            try:
                self.append(answer_id, batch, chat)
            except LookupError as exc:
                failed[answer_id] = exc
        return failed

    def append(self, answer_id: str, batch: Batch, chat: str | None) -> None:
        entries = batch.entries()
        with self._changed:
            record = self._get(answer_id)
            if record is None:
                raise LookupError(f"answer {answer_id} expired")
            if entries and record.entries and entries[0].seq <= record.entries[-1].seq:
                raise LookupError(f"answer {answer_id} was already ended")
            record.entries.extend(entries)
            record.expires = time.monotonic() + self.ttl
            if record.ended and chat and self._chats.get(chat) == answer_id:
                del self._chats[chat]
            self._changed.notify_all()

    def read(self, answer_id: str, after: int, timeout: float) -> list[Entry]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                record = self._get(answer_id)
                entries = [] if record is None else record.entries[after:]
                remaining = deadline - time.monotonic()
                if entries or remaining <= 0:
                    return entries
                self._changed.wait(remaining)

    def status(self, answer_id: str) -> Status | None:
        with self._changed:
            record = self._get(answer_id)
            if record is None:
                return None
            last = record.entries[-1].seq if record.entries else 0
            alive = record.lease_until > time.monotonic()
            return Status(record.owner, record.format, last, record.ended, alive)

    def renew(self, answer_ids: list[str]) -> set[str]:
        cancelled = set()
        with self._changed:
            now = time.monotonic()
            for answer_id in answer_ids:
                record = self._get(answer_id)
                if record is not None:
                    record.lease_until = now + LEASE_SECONDS
                    record.expires = now + self.ttl
                    if record.cancelled:
                        cancelled.add(answer_id)
        return cancelled

    def cancel(self, answer_id: str) -> bool:
        with self._changed:
            record = self._get(answer_id)
            if record is None or record.ended:
                return False
            record.cancelled = True
            return True

    def chat_answer(self, chat: str) -> str | None:
        with self._changed:
            answer_id = self._chats.get(chat)
            record = self._get(answer_id) if answer_id else None
            return answer_id if record is not None and not record.ended else None

    def interrupt(self, answer_id: str, after: int, batch: Batch) -> bool:
        entries = batch.entries()
        with self._changed:
            record = self._get(answer_id)
            if record is None or record.lease_until > time.monotonic():
                return False
            if (record.entries[-1].seq if record.entries else 0) != after:
                return False
            record.entries.extend(entries)
            self._changed.notify_all()
            return True

    def expire_lease(self, answer_id: str) -> None:
        """As if the producer's process had died (for tests)."""
        with self._changed:
            record = self._get(answer_id)
            if record is not None:
                record.lease_until = 0.0
