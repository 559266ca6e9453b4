"""What the watchdog holds an open stream to.

The response generator can be parked in the server's blocking write to a
client that reads nothing, while the reader waits for the provider, or for
room the generator will never make. Then no check of theirs runs; the
process's watchdog calls :meth:`StreamGuard.check` instead."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..transport.watchdog import WATCHDOG
from .server import client_closed

if TYPE_CHECKING:
    from ..answer import AnswerRun


class StreamGuard:
    """What the watchdog knows of one stream. The generator sets
    ``writing_since`` around each write (two attribute stores a write)."""

    def __init__(
        self,
        run: AnswerRun | None,
        client: socket.socket | None,
        send_timeout: float | None,
        logger: logging.Logger,
        *,
        outlives_client: bool = False,
    ) -> None:
        #: The answer being produced (``None``: a reader of a stored answer).
        self.run = run
        self.client = client
        self.send_timeout = send_timeout
        self.logger = logger
        #: The answer goes on without its client (the ``"finish"`` policy,
        #: resume): a stalled client is hung up on, not the answer cancelled.
        self.outlives_client = outlives_client
        self.writing_since: float | None = None
        self.attached = True  # false once the generator is gone ("finish" policy)
        self._hung_up = False

    def check(self, now: float) -> bool:
        """Act if a limit passed; false once there is nothing left to watch."""
        run = self.run
        since = self.writing_since
        writing = since is not None and self.attached
        if run is None:
            pass  # a reader of a stored answer: watched until its generator ends
        elif run.answer is not None:
            if not writing:
                return False  # the answer ended and nothing waits on the client
        elif run.deadline is not None and now > run.deadline:
            run.cancel(run.timeout_error())
            if writing:
                self._hang_up("the total timeout passed while it read nothing")
            return not writing
        if writing and self.send_timeout and since is not None and now - since > self.send_timeout:
            if run is not None and not self.outlives_client:
                run.cancel()
            self._hang_up(f"it read nothing for {self.send_timeout:g} s")
            # An answer that outlives its client is still held to its deadline.
            return run is not None and self.outlives_client and run.answer is None
        return True

    def _hang_up(self, why: str) -> None:
        if self._hung_up:
            return
        self._hung_up = True
        self.logger.warning("flask-aistream: closing a client's stream: %s", why)
        if self.client is not None:
            try:
                self.client.shutdown(socket.SHUT_RDWR)  # the blocked write fails now
            except OSError:
                pass


class ClientWatch:
    """While a view reads an answer itself (before its response exists: the
    OpenAI endpoint's first token, or a whole non-streamed answer), the
    watchdog looks at the client's socket and cancels the answer once the
    client closed it: nobody pays for an answer nobody waits for."""

    def __init__(self, run: AnswerRun, client: socket.socket) -> None:
        self.run = run
        self.client = client
        self.done = False

    def check(self, now: float) -> bool:
        if self.done or self.run.answer is not None:
            return False
        if client_closed(self.client):
            self.run.cancel()
            return False
        return True


@contextmanager
def watching_client(run: AnswerRun, client: socket.socket | None) -> Iterator[None]:
    """Watch ``client`` for the ``with`` block (nothing without a socket)."""
    if client is None:
        yield
        return
    watch = ClientWatch(run, client)
    WATCHDOG.watch(watch)
    try:
        yield
    finally:
        watch.done = True
        WATCHDOG.forget(watch)
