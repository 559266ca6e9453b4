"""A provider call being opened, and the connection pools that let another
thread abort it in any phase (connecting, TLS, sending, waiting for the
head): each hands its socket to the current :class:`Opening` the moment it
exists."""

from __future__ import annotations

import contextvars
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Opening:
    """A provider call being opened (connecting, sending, waiting for the
    status line, reading an error body), so that another thread can abort it
    in any of those phases: the socket is shut down the moment it exists.
    Before this, a client that left early still paid for the whole answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.aborted = False
        self.expired = False  # aborted because the head took too long
        self.deadline: float | None = None

    def check(self, now: float) -> bool:
        """The watchdog's look: past the deadline, abort. False once done."""
        if self.deadline is not None and now > self.deadline and not self.aborted:
            self.expired = True
            self.abort()
        return not self.aborted

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            aborted = self.aborted
        if aborted:
            hang_up(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sock = self._sock
        if sock is not None:
            hang_up(sock)


#: SO_LINGER on, 0 s: closing sends a reset, not a FIN. A provider blocked
#: writing to us (our window full) sees a FIN only when it next reads; a
#: reset fails its write at once, and leaves no half-closed connection.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def hang_up(sock: socket.socket) -> None:
    """Hang up on the provider: wake a read blocked on ``sock``, and make its
    close a reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected yet, or already closed


#: The call the current thread (or greenlet) is opening, for the connections below.
_current_opening: contextvars.ContextVar[Opening | None] = contextvars.ContextVar(
    "flask_aistream_opening", default=None
)


@contextmanager
def attaching(opening: Opening) -> Iterator[Opening]:
    """Sockets this thread (or greenlet) connects or checks out meanwhile
    are handed to ``opening``."""
    token = _current_opening.set(opening)
    try:
        yield opening
    finally:
        _current_opening.reset(token)


def _attach(sock: socket.socket | None) -> None:
    opening = _current_opening.get()
    if opening is not None and sock is not None:
        opening.attach(sock)


class _AttachOnConnect:
    """A connection that hands its socket to the current :class:`Opening`
    the moment it exists: before TLS, so a handshake can be aborted too."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _attach(sock)
        return sock  # type: ignore[no-any-return]


class _AttachOnCheckout:
    """A pool that hands a kept-alive (already connected) socket over too, and
    closes a connection it has no room for without logging "pool is full"
    (the pool is a cache: a spare connection is no fault)."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _attach(getattr(conn, "sock", None))
        return conn

    def _put_conn(self, conn: Any) -> None:
        pool = getattr(self, "pool", None)
        if conn is not None and pool is not None and pool.full():
            conn.close()
            return
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedConnection(_AttachOnConnect, HTTPConnection):
    pass


class _WatchedTLSConnection(_AttachOnConnect, HTTPSConnection):
    pass


class _WatchedPool(_AttachOnCheckout, HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedTLSPool(_AttachOnCheckout, HTTPSConnectionPool):
    ConnectionCls = _WatchedTLSConnection


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedTLSPool}


class WatchedAdapter(HTTPAdapter):
    """``requests``' adapter, with pools whose sockets an :class:`Opening` can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
