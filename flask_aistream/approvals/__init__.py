"""Approvals: a call whose tool ``needs_approval`` waits, stored server-side,
for a person's decision; the decision is checked against what was stored
and fails closed.

What is stored, per answer that ended waiting (its ``answer id``): its
owner and chat, when the approvals expire, the calls waiting (by approval
id) with their arguments, and how to go on (the conversation so far, the
provider and the request options). A decision names an approval id; it
counts only if the id exists, is unexpired, undecided, and the decider is
the answer's owner; the first decision is kept atomically (``SET NX``, or a
lock in memory), so a call runs at most once, across workers. The request
that decides the last waiting call of an answer continues it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Protocol, cast

from ..errors import ConfigurationError
from ..parts import JSONObject, ToolCall, ToolResult

#: A decided or expired approval is kept this long past its expiry, to tell
#: "expired" (410) from "unknown" (404).
GRACE = 86400.0


class ApprovalStore(Protocol):
    """Where answers waiting for approval are kept."""

    def save(self, answer_id: str, record: JSONObject, ttl: float) -> None: ...

    def find(self, approval_id: str) -> tuple[str, JSONObject] | None: ...

    def decide(self, approval_id: str, decision: JSONObject, ttl: float) -> bool: ...

    def complete(self, answer_id: str) -> bool: ...

    def decisions(self, approval_ids: list[str]) -> dict[str, JSONObject]: ...


class MemoryApprovals:
    """This process's memory (``memory://``): development and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[float, JSONObject]] = {}
        self._index: dict[str, str] = {}
        self._decisions: dict[str, JSONObject] = {}
        self._left: dict[str, int] = {}

    def save(self, answer_id: str, record: JSONObject, ttl: float) -> None:
        with self._lock:
            self._records[answer_id] = (time.time() + ttl + GRACE, record)
            self._left[answer_id] = len(record["approvals"])
            for approval_id in record["approvals"]:
                self._index[approval_id] = answer_id

    def find(self, approval_id: str) -> tuple[str, JSONObject] | None:
        with self._lock:
            answer_id = self._index.get(approval_id)
            kept = self._records.get(answer_id or "")
            if answer_id is None or kept is None or kept[0] < time.time():
                return None
            return answer_id, kept[1]

    def decide(self, approval_id: str, decision: JSONObject, ttl: float) -> bool:
        with self._lock:
            if approval_id in self._decisions:
                return False
            self._decisions[approval_id] = decision
            return True

    def complete(self, answer_id: str) -> bool:
        with self._lock:
            self._left[answer_id] = self._left.get(answer_id, 1) - 1
            return self._left[answer_id] == 0

    def decisions(self, approval_ids: list[str]) -> dict[str, JSONObject]:
        with self._lock:
            return {i: self._decisions[i] for i in approval_ids if i in self._decisions}


class RedisApprovals:
    """Redis (``redis://``): every worker sees every approval."""

    PREFIX = "aistream:approval"

    def __init__(self, uri: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(uri, socket_timeout=1.0, socket_connect_timeout=1.0)

    def save(self, answer_id: str, record: JSONObject, ttl: float) -> None:
        keep = int(ttl + GRACE)
        pipe = self._redis.pipeline()
        pipe.set(f"{self.PREFIX}:answer:{answer_id}", json.dumps(record), ex=keep)
        pipe.set(f"{self.PREFIX}:left:{answer_id}", len(record["approvals"]), ex=keep)
        for approval_id in record["approvals"]:
            pipe.set(f"{self.PREFIX}:id:{approval_id}", answer_id, ex=keep)
        pipe.execute()

    def find(self, approval_id: str) -> tuple[str, JSONObject] | None:
        answer_id = self._redis.get(f"{self.PREFIX}:id:{approval_id}")
        if not isinstance(answer_id, bytes):
            return None
        raw = self._redis.get(f"{self.PREFIX}:answer:{answer_id.decode()}")
        return (answer_id.decode(), json.loads(raw)) if isinstance(raw, bytes) else None

    def decide(self, approval_id: str, decision: JSONObject, ttl: float) -> bool:
        key = f"{self.PREFIX}:decision:{approval_id}"
        return bool(self._redis.set(key, json.dumps(decision), nx=True, ex=int(ttl + GRACE)))

    def complete(self, answer_id: str) -> bool:
        return cast(int, self._redis.decr(f"{self.PREFIX}:left:{answer_id}")) == 0

    def decisions(self, approval_ids: list[str]) -> dict[str, JSONObject]:
        keys = [f"{self.PREFIX}:decision:{i}" for i in approval_ids]
        values = cast("list[bytes | None]", self._redis.mget(keys) if keys else [])
        return {i: json.loads(v) for i, v in zip(approval_ids, values) if v is not None}


def approval_store_for(uri: str | None) -> ApprovalStore:
    """The store ``AI_APPROVAL_STORAGE_URI`` (or the resume store's, else the
    rate-limit storage's) names."""
    if not uri or uri == "memory://":
        return MemoryApprovals()
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisApprovals(uri)
    raise ConfigurationError(
        "Approvals need redis://... or memory:// storage: set AI_APPROVAL_STORAGE_URI "
        f"(the storage in use is {uri.split('://')[0] + '://'!r})."
    )


@dataclass
class Outcome:
    """What a decision came to: an HTTP status for the decider, and, when
    it was the last one the answer waited for, how to go on."""

    status: int
    message: str
    record: JSONObject | None = None
    decisions: dict[str, JSONObject] | None = None


def decide(
    store: ApprovalStore,
    approval_id: str,
    owner: str,
    approved: bool,
    reason: str | None,
    ttl: float,
) -> Outcome:
    """Check a decision against what was stored, keep it (once), and say
    whether the answer can go on. Nothing the decider sent but the id, the
    yes or no and the reason counts: the arguments that run are the stored
    ones. Someone else's approval reads as unknown (no existence oracle),
    and is never consumed."""
    found = store.find(approval_id)
    if found is None or found[1].get("owner") != owner:
        return Outcome(404, "There is no such approval.")
    answer_id, record = found
    if record["expires"] < time.time():
        return Outcome(410, "This approval expired.")
    decision = {"approved": approved, "reason": reason}
    if not store.decide(approval_id, decision, ttl):
        return Outcome(409, "This approval was already decided.")
    if not store.complete(answer_id):
        return Outcome(202, "Decided; the answer waits for its other approvals.")
    return Outcome(200, "", record, store.decisions(list(record["approvals"])))


#: The most of a denial's reason the model is told.
MAX_REASON = 1000


def denial(reason: str | None) -> str:
    """What the model is told of a call a person did not approve (or that
    cannot run any more: its tool is gone)."""
    return "The user did not approve this call." + (f" Their reason: {reason}" if reason else "")


def decided_calls(
    record: JSONObject, decisions: dict[str, JSONObject], runnable: set[str]
) -> tuple[list[ToolCall], list[ToolResult]]:
    """The calls to run (with the arguments stored, never the client's) and
    the results of those that will not run."""
    go: list[ToolCall] = []
    no: list[ToolResult] = []
    for approval_id, stored in record["approvals"].items():
        call = ToolCall(stored["id"], stored["name"], stored["arguments"])
        decision = decisions.get(approval_id) or {"approved": False, "reason": None}
        if decision["approved"] and call.name in runnable:
            go.append(call)
        else:
            no.append(ToolResult(call.id, call.name, None, denial(decision["reason"])))
    return go, no


__all__ = [
    "ApprovalStore",
    "MemoryApprovals",
    "Outcome",
    "RedisApprovals",
    "approval_store_for",
    "decide",
]
