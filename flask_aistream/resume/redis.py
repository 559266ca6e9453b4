"""Answers kept in Redis: a Redis Stream per answer, written and leased by
Lua scripts so that a batch of events, a round of lease renewals, or an
interruption is one command."""

from __future__ import annotations

from typing import Any

from ..formats.sse import Batch, Entry
from .store import FOLLOW_WAIT, LEASE_SECONDS, ResumeStore, Status

KEY_PREFIX = "flask-aistream"
#: Longest a command may take on the request path or the writer's thread.
COMMAND_TIMEOUT = 1.0
#: Connections one process's readers may hold at once, each in a blocking
#: XREAD; a reader that finds none free within FOLLOW_WAIT is told the answer
#: cannot be resumed right now.
MAX_BLOCKED_READS = 64

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
#: flush of a thousand answers cheap). Its events expire TTL seconds after
#: its last batch; after its last batch its meta does too, and its lease,
#: cancel request and chat entry (if still this answer's) go. ARGV: the key prefix, the TTL, the batches.
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
  else
    -- XADD made the stream: it expires from its first batch on, should the
    -- producer die before its lease renewal sets the TTL.
    redis.call('EXPIRE', key .. 'events', ttl)
  end
  if ends == '1' and failed[#failed] ~= answer then
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
        # Commands on the request path and the writer's: a hung Redis must not
        # hold a question up for more than a second (the rate limit's bound).
        self._redis: Any = redis.Redis.from_url(
            uri, socket_connect_timeout=COMMAND_TIMEOUT, socket_timeout=COMMAND_TIMEOUT
        )
        # Readers block in XREAD for up to FOLLOW_WAIT: a pool of their own,
        # bounded, so that readers cannot take every connection Redis has.
        self._blocking: Any = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                uri,
                max_connections=MAX_BLOCKED_READS,
                timeout=FOLLOW_WAIT,
                socket_connect_timeout=COMMAND_TIMEOUT,
                socket_timeout=FOLLOW_WAIT + COMMAND_TIMEOUT,
            )
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
        found = self._blocking.xread({events: f"0-{after}"}, block=max(1, int(timeout * 1000)))
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
