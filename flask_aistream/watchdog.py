"""Deadlines that hold when every thread of a stream is blocked.

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
import socket
import threading
import time
from typing import Any, Protocol

#: Seconds between two looks at the open streams.
TICK = 0.25

logger = logging.getLogger(__name__)


class StreamGuard:
    """What the watchdog knows of one stream. The generator sets
    ``writing_since`` around each write (two attribute stores a write)."""

    def __init__(
        self,
        run: Any,
        client: socket.socket | None,
        send_timeout: float | None,
        logger: logging.Logger,
    ) -> None:
        self.run = run
        self.client = client
        self.send_timeout = send_timeout
        self.logger = logger
        self.writing_since: float | None = None
        self.attached = True  # false once the generator is gone ("finish" policy)

    def check(self, now: float) -> bool:
        """Act if a limit passed; false once there is nothing left to watch."""
        run = self.run
        since = self.writing_since
        writing = since is not None and self.attached
        if run.answer is not None and not writing:
            return False  # the answer ended and nothing waits on the client
        if run.deadline is not None and now > run.deadline:
            run.cancel(run.timeout_error())
            if writing:
                self._hang_up("the total timeout passed while it read nothing")
            return not writing
        if writing and self.send_timeout and since is not None and now - since > self.send_timeout:
            run.cancel()
            self._hang_up(f"it read nothing for {self.send_timeout:g} s")
            return False
        return True

    def _hang_up(self, why: str) -> None:
        self.logger.warning("flask-aistream: closing a client's stream: %s", why)
        if self.client is not None:
            try:
                self.client.shutdown(socket.SHUT_RDWR)  # the blocked write fails now
            except OSError:
                pass


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
