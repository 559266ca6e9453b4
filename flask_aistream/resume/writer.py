"""The producer's side of the store: one thread per process that writes
every answer's events behind their live clients, renews their leases and
cancels those someone asked to stop."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from ..formats.sse import Batch
from .store import ResumeStore


class Cancellable(Protocol):
    """An answer being produced (an ``AnswerRun``), as the writer stops it."""

    def cancel(self) -> None: ...


#: How often the producer renews its answers' leases (``store.LEASE_SECONDS`` long).
RENEW_EVERY = 0.5
#: How far the store may trail an answer's live client: events that arrived
#: within this many seconds are written together, whatever their answer.
WRITE_EVERY = 0.05
#: After the store failed to record an answer, answers go without resume for
#: this many seconds (at once, rather than each waiting on a dead store), then
#: it is tried again.
RETRY_STORE_AFTER = 2.0


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
        self._runs: dict[str, Cancellable] = {}  # answer id -> its AnswerRun
        self._pending: list[tuple[str, Batch, str | None]] = []
        self._given_up: set[str] = set()
        self._lock = threading.Lock()  # guards the three above, and _probing
        self._writing = threading.Lock()  # one write at a time, in order
        self._work = threading.Event()  # set while any answer is produced here
        self._thread: threading.Thread | None = None
        self._down_until = 0.0  # the store failed: no resume before then
        self._renewals_failing = False
        self._probing = False  # a request is finding out whether the store is back

    def begin(self, answer_id: str, owner: str, format_name: str, chat: str | None) -> bool:
        """Record a new answer in the store; false when it cannot be (the
        answer then streams without resume), with one warning per outage.
        A failed store is skipped for ``RETRY_STORE_AFTER`` seconds, then one
        request at a time finds out whether it is back (the others skip it
        meanwhile); none waits longer than the store's command timeout."""
        with self._lock:
            probe = bool(self._down_until)
            if probe and (time.monotonic() < self._down_until or self._probing):
                return False
            self._probing = probe
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
        finally:
            if probe:
                self._probing = False
        if self._down_until:
            self._down_until = 0.0
            self._logger.warning("flask-aistream: the resume store is back")
        return True

    def watch(self, answer_id: str, run: Cancellable) -> None:
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
