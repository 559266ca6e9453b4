"""Deadlines that hold when every thread of a stream is blocked: one
watchdog per process, for provider calls being opened (an ``Opening``) and
for open streams (``serving.guard.StreamGuard``).

The response generator can be parked in the server's blocking write to a
client that reads nothing, while the reader waits for the provider, or for
room the generator will never make. Then no check of theirs runs, and the
thread, the provider connection and the answer's cost last as long as the
client keeps its socket. One watchdog per process (a thread; a greenlet under
gevent) looks at every open stream a few times a second and, past its total
timeout or when one write has been blocked longer than ``AI_SEND_TIMEOUT``,
cancels the answer (which closes the provider connection) and shuts the
client's socket down, so that the pending write fails and the server ends
the response.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

#: Seconds between two looks at the open streams.
TICK = 0.25

logger = logging.getLogger(__name__)


class Watched(Protocol):
    def check(self, now: float) -> bool: ...


class Watchdog:
    """Looks at everything watched (a stream's :class:`StreamGuard`, a
    provider call's ``Opening``) a few times a second; each says whether it
    still needs watching."""

    def __init__(self) -> None:
        self._guards: set[Watched] = set()
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._pid = 0  # the process whose thread runs: a fork has none

    def watch(self, guard: Watched) -> None:
        with self._lock:
            self._guards.add(guard)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(
                    target=self._loop, name="flask-aistream watchdog", daemon=True
                ).start()
        self._work.set()

    def forget(self, guard: Watched) -> None:
        with self._lock:
            self._guards.discard(guard)

    def _loop(self) -> None:
        while True:
            self._work.wait()
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                guards = list(self._guards)
                if not guards:
                    self._work.clear()
            for guard in guards:
                try:
                    keep = guard.check(now)
                except Exception:  # never let one stream stop the watch of the others
                    logger.exception("flask-aistream: the stream watchdog failed")
                    keep = False
                if not keep:
                    self.forget(guard)


WATCHDOG = Watchdog()
