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

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import ConfigurationError
from .formats import DONE, FINAL_ID, FORMAT_CLASSES, PING
from .parts import Finish

#: ``retry:`` sent with an answer's first event: how soon (ms) EventSource reconnects.
RETRY_MS = 1000
#: How long a producer's lease lasts; it renews it every ``RENEW_EVERY`` seconds.
#: Readers of an answer whose lease ran out while it had not ended report it
#: interrupted: its process died.
LEASE_SECONDS = 3.0
RENEW_EVERY = 0.5
#: How far the store may trail an answer's live client: events that arrived
#: within this many seconds are written together, whatever their answer.
WRITE_EVERY = 0.05
#: After the store failed to record an answer, answers go without resume for
#: this many seconds (at once, rather than each waiting on a dead store), then
#: it is tried again.
RETRY_STORE_AFTER = 2.0
#: Longest a reader waits on the store before it looks at the lease again.
FOLLOW_WAIT = 1.0
#: What readers of an answer get when its producer died, or the store failed.
INTERRUPTED = "the answer was interrupted"
UNAVAILABLE = "the answer cannot be resumed right now"
KEY_PREFIX = "flask-aistream"

ANSWER_ID = re.compile(r"ans-[0-9a-f]{32}\Z")
_EVENT_ID = re.compile(r"(ans-[0-9a-f]{32}):([1-9][0-9]{0,8})\Z")
#: A chat id as the Vercel AI SDK makes them (nanoid-like), bounded.
CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}\Z")


def parsed_event_id(value: str | None) -> tuple[str, int] | None:
    """``(answer id, sequence)`` from a ``Last-Event-ID`` of ours, else ``None``."""
    match = _EVENT_ID.match(value or "")
    return (match.group(1), int(match.group(2))) if match else None


class Entry(NamedTuple):
    """One stored event: its number, its bytes (``id:`` line included), and
    whether it is the answer's last (``[DONE]``)."""

    seq: int
    data: bytes
    last: bool


@dataclass
class Status:
    """What a store knows of an answer when a reader comes."""

    owner: str
    format: str
    last_seq: int
    ended: bool
    alive: bool


class Batch(NamedTuple):
    """Events written together: numbered ``first`` to ``first + size - 1``,
    as one run of bytes (what the live client is sent); ``last``: it ends
    with the answer's ``[DONE]``."""

    first: int
    data: bytes
    size: int
    last: bool

    def entries(self) -> list[Entry]:
        """The batch split into its events (each one block ending in a blank line)."""
        blocks = self.data.split(b"\n\n")[:-1]
        return [
            Entry(self.first + i, block + b"\n\n", self.last and i == len(blocks) - 1)
            for i, block in enumerate(blocks)
        ]


class Numbering:
    """Gives each event of one answer its ``id:`` (and the first its
    ``retry:``). Every event our formats write is one block ending in a blank
    line (JSON never holds a raw newline), so a chunk splits into events at
    its blank lines; the end-of-answer id block of unnumbered streams is
    dropped, since every event has an id now."""

    def __init__(self, answer_id: str, seq: int = 0) -> None:
        self._prefix = f"id: {answer_id}:".encode()
        self.seq = seq

    def number(self, chunk: bytes) -> Batch:
        blocks = chunk.split(b"\n\n")
        blocks.pop()  # what follows the last blank line: nothing
        if blocks and blocks[-1] == _DONE_BLOCK and len(blocks) > 1 and blocks[-2] == _FINAL_ID:
            del blocks[-2]
        first, prefix = self.seq + 1, self._prefix
        events = [b"%s%d\n%s\n\n" % (prefix, first + i, block) for i, block in enumerate(blocks)]
        if first == 1 and events:
            events[0] = b"retry: %d\n%s" % (RETRY_MS, events[0])
        self.seq += len(events)
        return Batch(
            first, b"".join(events), len(events), bool(blocks) and blocks[-1] == _DONE_BLOCK
        )


_DONE_BLOCK = DONE[:-2]
_FINAL_ID = FINAL_ID[:-2]


def failure_events(format_name: str, message: str) -> bytes:
    """An error and ``[DONE]`` in the answer's own format, for readers of an
    answer that cannot go on."""
    return FORMAT_CLASSES[format_name].error(message, "interrupted") + DONE


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
        f"not {uri.split('://')[0]!r}://."
    )


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


# -- Redis ----------------------------------------------------------------------

#: Adds a batch's events to an answer's stream, entry ``0-<sequence>`` each:
#: the batch comes as the bytes the live client got, split here, so a read of
#: fifty tokens is one short argument (a pipeline of XADDs costs redis-py
#: several times the CPU per event). False if Redis refused one (an answer
#: already ended by a reader who found its producer dead).
_ADD_BATCH = """
local function add_batch(events, data, seq, ends)
  local pos = 1
  while pos <= #data do
    local stop = string.find(data, '\\n\\n', pos, true)
    local last = (ends == '1' and stop + 1 == #data) and '1' or '0'
    local added = redis.pcall(
      'XADD', events, '0-' .. seq, 'd', string.sub(data, pos, stop + 1), 'l', last)
    if type(added) == 'table' and added.err then return false end
    pos = stop + 2
    seq = seq + 1
  end
  return true
end
"""

#: The batches of many answers in one command (one flush of the writer), as
#: one argument: per answer a line ``<answer id> <first sequence> <ends: 0|1>
#: <chat key length> <batch length>``, then the chat key and the batch
#: (redis-py packs a command's every argument at a cost: one argument keeps a
#: flush of a thousand answers cheap). After an answer's last batch it
#: expires in TTL seconds, and its lease, cancel request and chat entry (if
#: still this answer's) go. ARGV: the key prefix, the TTL, the batches.
#: Returns the answers that failed.
_APPEND = (
    _ADD_BATCH
    + """
local prefix, ttl, blob = ARGV[1], ARGV[2], ARGV[3]
local failed = {}
local pos = 1
while pos <= #blob do
  local eol = string.find(blob, '\\n', pos, true)
  local answer, first, ends, chat_size, size = string.match(
    string.sub(blob, pos, eol - 1), '^(%S+) (%d+) (%d) (%d+) (%d+)$')
  chat_size, size = tonumber(chat_size), tonumber(size)
  local chat = string.sub(blob, eol + 1, eol + chat_size)
  local data = string.sub(blob, eol + chat_size + 1, eol + chat_size + size)
  pos = eol + chat_size + size + 1
  local key = prefix .. ':' .. answer .. ':'
  if not add_batch(key .. 'events', data, tonumber(first), ends) then
    table.insert(failed, answer)
  elseif ends == '1' then
    redis.call('EXPIRE', key .. 'events', ttl)
    redis.call('EXPIRE', key .. 'meta', ttl)
    redis.call('DEL', key .. 'lease', key .. 'cancel')
    if chat ~= '' and redis.call('GET', chat) == answer then redis.call('DEL', chat) end
  end
end
return failed
"""
)

#: Appends the interruption if, and only if, the answer's lease is gone and its
#: last event is the one the reader saw. KEYS: events, lease; ARGV: the
#: batch, the last id seen, the TTL.
_INTERRUPT = (
    _ADD_BATCH
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
if last_id ~= ARGV[4] then return 0 end
add_batch(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
)


#: Renews the leases of a process's answers (space-separated ids) in one
#: command, keeps their events and meta from expiring, and returns those
#: with a cancel request. ARGV: the key prefix, the lease in ms, the TTL, the ids.
_RENEW = """
local prefix, lease, ttl = ARGV[1], ARGV[2], ARGV[3]
local cancelled = {}
for answer in string.gmatch(ARGV[4], '%S+') do
  local key = prefix .. ':' .. answer .. ':'
  redis.call('SET', key .. 'lease', 1, 'PX', lease)
  redis.call('EXPIRE', key .. 'events', ttl)
  redis.call('EXPIRE', key .. 'meta', ttl)
  if redis.call('EXISTS', key .. 'cancel') == 1 then table.insert(cancelled, answer) end
end
return cancelled
"""


class RedisStore(ResumeStore):
    """A Redis Stream per answer: entry ``0-<sequence>`` holds one event. Its
    meta (owner, format) is a hash; the producer's lease and a cancel request
    are keys of their own; a chat's active answer is one more."""

    def __init__(self, uri: str, ttl: float) -> None:
        super().__init__(ttl)
        import redis

        # Short timeouts: a Redis that is down must not hold an answer up.
        self._redis: Any = redis.Redis.from_url(
            uri, socket_connect_timeout=2, socket_timeout=FOLLOW_WAIT + 4
        )
        self._append = self._redis.register_script(_APPEND)
        self._renew = self._redis.register_script(_RENEW)
        self._interrupt = self._redis.register_script(_INTERRUPT)
        self._ttl = max(1, int(ttl))

    @staticmethod
    def _key(answer_id: str, what: str) -> str:
        return f"{KEY_PREFIX}:{answer_id}:{what}"

    @staticmethod
    def _chat_key(chat: str) -> str:
        return f"{KEY_PREFIX}:chat:{chat}"

    def begin(self, answer_id: str, owner: str, format_name: str, chat: str | None) -> None:
        pipe = self._redis.pipeline(transaction=False)
        meta = self._key(answer_id, "meta")
        pipe.hset(meta, mapping={"owner": owner, "format": format_name})
        pipe.expire(meta, self._ttl)
        pipe.set(self._key(answer_id, "lease"), 1, px=int(LEASE_SECONDS * 1000))
        if chat:
            pipe.set(self._chat_key(chat), answer_id, ex=self._ttl)
        pipe.execute()

    def append_many(self, batches: list[tuple[str, Batch, str | None]]) -> dict[str, BaseException]:
        """Every answer's batch in one command."""
        records = []
        for answer_id, batch, chat in batches:
            chat_key = self._chat_key(chat).encode() if chat else b""
            head = b"%s %d %d %d %d\n" % (
                answer_id.encode(),
                batch.first,
                batch.last,
                len(chat_key),
                len(batch.data),
            )
            records += [head, chat_key, batch.data]
        failed = self._append(args=[KEY_PREFIX, self._ttl, b"".join(records)])
        return {
            answer.decode(): LookupError(f"answer {answer.decode()} was already ended")
            for answer in failed
        }

    def read(self, answer_id: str, after: int, timeout: float) -> list[Entry]:
        events = self._key(answer_id, "events")
        found = self._redis.xread({events: f"0-{after}"}, block=max(1, int(timeout * 1000)))
        return [_entry(entry_id, fields) for _, items in found for entry_id, fields in items]

    def status(self, answer_id: str) -> Status | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._key(answer_id, "meta"))
        pipe.xrevrange(self._key(answer_id, "events"), count=1)
        pipe.exists(self._key(answer_id, "lease"))
        meta, last, alive = pipe.execute()
        if not meta:
            return None
        entry = _entry(*last[0]) if last else None
        return Status(
            meta[b"owner"].decode(),
            meta[b"format"].decode(),
            entry.seq if entry else 0,
            bool(entry and entry.last),
            bool(alive),
        )

    def renew(self, answer_ids: list[str]) -> set[str]:
        cancelled = self._renew(
            args=[KEY_PREFIX, int(LEASE_SECONDS * 1000), self._ttl, " ".join(answer_ids)]
        )
        return {answer.decode() for answer in cancelled}

    def cancel(self, answer_id: str) -> bool:
        status = self.status(answer_id)
        if status is None or status.ended:
            return False
        self._redis.set(self._key(answer_id, "cancel"), 1, ex=self._ttl)
        return True

    def chat_answer(self, chat: str) -> str | None:
        answer_id = self._redis.get(self._chat_key(chat))
        if answer_id is None:
            return None
        status = self.status(answer_id.decode())
        return answer_id.decode() if status is not None and not status.ended else None

    def interrupt(self, answer_id: str, after: int, batch: Batch) -> bool:
        keys = [self._key(answer_id, "events"), self._key(answer_id, "lease")]
        args: list[Any] = [batch.data, batch.first, int(batch.last), f"0-{after}", self._ttl]
        return bool(self._interrupt(keys=keys, args=args))


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(int(entry_id.split(b"-")[1]), fields[b"d"], fields.get(b"l") == b"1")


# -- the producer's side -----------------------------------------------------------


class StoreWriter:
    """This process's side of the store, on one thread per store: it writes
    the events of every answer this process produces, behind their live
    clients, all that arrived in the last ``WRITE_EVERY`` seconds in one
    round trip (a round trip per token would cost a slow stream more than
    relaying it); renews their leases every ``RENEW_EVERY`` seconds; and
    cancels those someone asked to stop, from any worker.

    An answer whose events could not be written is given up: its lease is no
    longer renewed, so its readers are told it was interrupted; its live
    client is not affected.
    """

    def __init__(self, store: ResumeStore, logger: logging.Logger) -> None:
        self._store = store
        self._logger = logger
        self._runs: dict[str, Any] = {}  # answer id -> its AnswerRun
        self._pending: list[tuple[str, Batch, str | None]] = []
        self._given_up: set[str] = set()
        self._lock = threading.Lock()  # guards the three above
        self._writing = threading.Lock()  # one write at a time, in order
        self._work = threading.Event()  # set while any answer is produced here
        self._thread: threading.Thread | None = None
        self._down_until = 0.0  # the store failed: no resume before then
        self._renewals_failing = False

    def begin(self, answer_id: str, owner: str, format_name: str, chat: str | None) -> bool:
        """Record a new answer in the store; false when it cannot be (the
        answer then streams without resume), with one warning per outage."""
        if self._down_until and time.monotonic() < self._down_until:
            return False
        try:
            self._store.begin(answer_id, owner, format_name, chat)
        except Exception as exc:  # noqa: BLE001 - fail open, like the rate limit
            if not self._down_until:
                self._logger.warning(
                    "flask-aistream: the resume store is unavailable; answers stream without "
                    "resume until it is back: %r",
                    exc,
                )
            self._down_until = time.monotonic() + RETRY_STORE_AFTER
            return False
        if self._down_until:
            self._down_until = 0.0
            self._logger.warning("flask-aistream: the resume store is back")
        return True

    def watch(self, answer_id: str, run: Any) -> None:
        with self._lock:
            self._runs[answer_id] = run
            self._work.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="flask-aistream resume store", daemon=True
                )
                self._thread.start()

    def forget(self, answer_id: str) -> None:
        with self._lock:
            self._runs.pop(answer_id, None)
            self._given_up.discard(answer_id)

    def write(self, answer_id: str, batch: Batch, chat: str | None) -> None:
        """Queue ``batch`` for the next write (the live client already has it)."""
        with self._lock:
            if answer_id not in self._given_up:
                self._pending.append((answer_id, batch, chat))

    def write_now(self, answer_id: str, batch: Batch, chat: str | None) -> None:
        """Write ``batch`` (an answer's end) and everything queued before it,
        before returning: once an answer is over, any reader finds it whole."""
        self.write(answer_id, batch, chat)
        self._flush()

    def cancel_here(self, answer_id: str) -> bool:
        """Cancel the answer at once if this process produces it."""
        with self._lock:
            run = self._runs.get(answer_id)
        if run is not None:
            run.cancel()
        return run is not None

    def _loop(self) -> None:
        renewed = time.monotonic()
        while True:
            self._work.wait()
            time.sleep(WRITE_EVERY)
            self._flush()
            if time.monotonic() - renewed >= RENEW_EVERY:
                renewed = time.monotonic()
                self._renew()
            with self._lock:
                if not self._runs and not self._pending:
                    self._work.clear()

    def _flush(self) -> None:
        with self._writing:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            batches = _joined(pending)
            try:
                failed = self._store.append_many(batches)
            except Exception as exc:  # noqa: BLE001 - the live clients keep their answers
                failed = dict.fromkeys((answer_id for answer_id, _, _ in batches), exc)
            for answer_id, error in failed.items():
                self._give_up(answer_id, error)

    def _give_up(self, answer_id: str, exc: BaseException) -> None:
        with self._lock:
            if answer_id not in self._runs or answer_id in self._given_up:
                return
            self._given_up.add(answer_id)
        self._logger.warning(
            "flask-aistream: lost the resume store mid-answer (answer %s); it goes on for "
            "the live client only: %r",
            answer_id,
            exc,
        )

    def _renew(self) -> None:
        with self._lock:
            runs = {a: r for a, r in self._runs.items() if a not in self._given_up}
        if not runs:
            return
        try:
            cancelled = self._store.renew(list(runs))
        except Exception as exc:  # noqa: BLE001 - the store failing must not stop the answers
            if not self._renewals_failing:  # once per outage, not twice a second
                self._logger.warning("flask-aistream: cannot renew answer leases: %r", exc)
            self._renewals_failing = True
            return
        self._renewals_failing = False
        for answer_id in cancelled:
            runs[answer_id].cancel()


def _joined(pending: list[tuple[str, Batch, str | None]]) -> list[tuple[str, Batch, str | None]]:
    """Consecutive batches of one answer as one (their events are numbered in a row)."""
    joined: dict[str, tuple[str, Batch, str | None]] = {}
    for answer_id, batch, chat in pending:
        before = joined.get(answer_id)
        if before is not None:
            first = before[1]
            batch = Batch(first.first, first.data + batch.data, first.size + batch.size, batch.last)
        joined[answer_id] = (answer_id, batch, chat)
    return list(joined.values())


class Recorder:
    """The producer of a resumable answer: turns the run's parts into
    numbered events in the answer's format and hands them on (to the live
    client, through the reader), then to the :class:`StoreWriter`. It runs to
    the end of the answer whether or not a client still reads (the
    ``"finish"`` policy)."""

    def __init__(
        self,
        run: Any,
        output: Any,
        answer_id: str,
        chat: str | None,
        writer: StoreWriter,
    ) -> None:
        self._run = run
        self._output = output
        self._answer_id = answer_id
        self._chat = chat
        self._writer = writer
        self._numbering = Numbering(answer_id)

    def __iter__(self) -> Iterator[Any]:
        self._writer.watch(self._answer_id, self._run)
        try:
            for item in self._run:
                finish = item.__class__ is Finish
                chunk = self._output.end(item.answer) if finish else self._output.parts(item)
                if chunk:
                    batch = self._numbering.number(chunk)
                    yield batch.data
                    # The reader is back for more: the live client has these.
                    if finish:
                        self._writer.write_now(self._answer_id, batch, self._chat)
                    else:
                        self._writer.write(self._answer_id, batch, self._chat)
                if finish:
                    yield item
                    return
        finally:
            self._writer.forget(self._answer_id)

    def close(self) -> None:
        self._run.close()

    def abort(self) -> None:
        self._run.abort()


def follow(
    store: ResumeStore,
    answer_id: str,
    after: int,
    format_name: str,
    heartbeat: float,
    logger: logging.Logger,
) -> Iterator[bytes]:
    """A reader's side: the answer's events after ``after``, as they are
    stored, until its ``[DONE]``. An answer whose producer died (its lease
    ran out) ends with :data:`INTERRUPTED`; a store that fails, with
    :data:`UNAVAILABLE`."""
    last_write = time.monotonic()
    wait = min(FOLLOW_WAIT, heartbeat) if heartbeat else FOLLOW_WAIT
    while True:
        try:
            entries = store.read(answer_id, after, wait)
            if not entries:
                status = store.status(answer_id)
                if status is not None and status.ended:
                    return  # nothing after ``after``: it was past the end
                if status is None or not status.alive:
                    ending = Numbering(answer_id, after).number(
                        failure_events(format_name, INTERRUPTED)
                    )
                    if status is None:  # expired under us: nothing left to append to
                        yield ending.data
                        return
                    store.interrupt(answer_id, after, ending)
                    continue  # read what was appended, by us or by whoever came first
        except Exception as exc:  # noqa: BLE001 - a reader gets a clear end, never a hang
            logger.warning(
                "flask-aistream: cannot read answer %s from the resume store: %r", answer_id, exc
            )
            yield failure_events(format_name, UNAVAILABLE)
            return
        now = time.monotonic()
        if entries:
            after = entries[-1].seq
            last_write = now
            yield b"".join(entry.data for entry in entries)
            if entries[-1].last:
                return
        elif heartbeat and now - last_write >= heartbeat:
            last_write = now
            yield PING


class Encoded:
    """The output format of a resumable answer as the relay sees it: the
    :class:`Recorder` encodes every event, end included, so the relay only
    writes them (and pings)."""

    def __init__(self, output: Any) -> None:
        self.content_type = output.content_type
        self.headers = output.headers
        self.ping = output.ping

    def parts(self, parts: list[Any]) -> bytes:  # never called: items come encoded
        raise AssertionError("a recorded answer's parts are encoded by its Recorder")

    def end(self, answer: Any) -> bytes:
        return b""
