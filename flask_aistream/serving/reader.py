"""Reading the provider on a thread of its own, so that the response
generator is free to write heartbeats and to watch the client while the
provider is silent.

A WSGI app learns that its client left only when a write fails, and a
generator blocked on the provider writes nothing. Here the generator waits
for the reader thread *and* for the client's socket, when the server shares
it: gunicorn (``gunicorn.socket``) and Werkzeug's dev server
(``werkzeug.socket``) do. Between OS threads that wait is a socket pair and a
selector. Under gevent (``threading`` patched, as gunicorn's gevent worker
does) the thread is a greenlet on the same OS thread, and the wait is a
gevent event plus a watcher on the client socket: no system call per token.

The reader is also where an answer ends: after the generator took the last
item and wrote the stream's end (:meth:`BackgroundReader.release`), or
stopped reading (:meth:`~BackgroundReader.stop`: the provider is hung up on;
:meth:`~BackgroundReader.detach`: the answer is read to its end for nobody),
the reader thread runs ``after`` (the answer's hooks), so that a slow hook
never delays the browser and an app that chose to finish answers gets them
whole.
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Callable, Protocol, Union

from ..parts import Finish, Part, shows

#: Most reads waiting for the generator. When the client reads slower than the
#: provider writes, the reader waits too, and TCP slows the provider down,
#: instead of the answer piling up in memory.
MAX_PENDING_READS = 16

#: Items the reader thread leaves for the generator, besides what the stream yields.
END = object()  # the provider finished the answer
CLIENT_GONE = object()  # the client closed its end of the connection
HAND_OVER = object()  # the reader left: the generator reads the rest itself


class SocketWakeup:
    """The reader thread wakes the generator through a socket pair, so that
    one selector waits for both it and the client socket."""

    def __init__(self, client: socket.socket | None) -> None:
        # A socket pair rather than a pipe: Windows can wait only on sockets.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)  # a full buffer already holds a wake-up
        # The reader thread may still wake us after close(): the lock keeps it
        # from writing to a descriptor number that another socket now has.
        self._lock = threading.Lock()
        self._closed = False
        self._client = client
        # A selector, not select(): select() fails on descriptors past 1024,
        # which a worker holding hundreds of streams soon reaches.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        if client is not None:
            self._selector.register(client, selectors.EVENT_READ)

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._wake_w.send(b".")
            except BlockingIOError:
                pass

    def wait(self, timeout: float | None) -> bool:
        """Wait for a wake-up, the client socket or ``timeout``; true when the
        client socket is readable."""
        ready = {key.fileobj for key, _ in self._selector.select(timeout)}
        if self._wake_r in ready:
            try:
                self._wake_r.recv(65536)
            except BlockingIOError:
                pass
        return self._client is not None and self._client in ready

    def forget_client(self) -> None:
        if self._client is not None:
            self._selector.unregister(self._client)
            self._client = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class GeventWakeup:
    """The same for greenlets: an event that the reader sets, and that a
    watcher on the client socket sets too."""

    def __init__(self, client: socket.socket | None) -> None:
        from gevent import get_hub
        from gevent.event import Event

        self._event = Event()
        self._client_readable = False
        self._watcher: Any = None
        if client is not None:
            self._watcher = get_hub().loop.io(client.fileno(), 1)  # 1: readable

    def _on_client(self) -> None:
        assert self._watcher is not None
        self._watcher.stop()  # one shot, like a select(): wait() starts it again
        self._client_readable = True
        self._event.set()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        if self._watcher is not None and not self._watcher.active:
            self._watcher.start(self._on_client)
        self._event.wait(timeout)
        self._event.clear()
        readable, self._client_readable = self._client_readable, False
        return readable

    def forget_client(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None

    close = forget_client


def _visible(item: object) -> bool:
    """A list holding text, reasoning or a tool call: past it, nothing retries."""
    return item.__class__ is list and shows(item)


def _greenlet_threads() -> bool:
    """Whether ``threading`` makes greenlets (gevent's monkey-patching)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


#: What a producer yields: a read's parts, the answer's end, or events its
#: producer already encoded (a resumable answer's ``Recorder``).
Item = Union[list[Part], Finish, bytes]


class Producer(Protocol):
    """What the reader runs: an iterable it can close, and abort from another thread."""

    def __iter__(self) -> Iterator[Item]: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class BackgroundReader:
    """Runs ``stream`` on a daemon thread (a greenlet under gevent); :meth:`wait`
    hands over what it yields. ``after``, if given, runs on that thread once
    the stream ended and the generator released it, stopped or detached.

    With ``hand_over``, the thread only opens the stream: after the first
    visible part (when no retry or fallback can open another) it leaves, and
    :meth:`wait` reads the rest in the generator's own thread, waiting on the
    provider's socket and the client's together. A token then changes hands
    no more. ``after`` runs in that thread too, on release or stop. Not for
    an answer that must outlive its client (``detach``).
    """

    def __init__(
        self,
        stream: Producer,
        client: socket.socket | None = None,
        after: Callable[[], object] | None = None,
        hand_over: bool = False,
    ) -> None:
        self._stream = stream
        self._iterator = iter(stream)
        # Under gevent the greenlet reader stays: its wake-ups cost no system
        # call, while a selector there builds watchers on every wait (measured:
        # slower at 500 slow streams).
        self._hand_over = hand_over and not _greenlet_threads()
        self._direct = False  # the generator reads the stream itself now
        self._selector: selectors.BaseSelector | None = None
        self._silent_since: float | None = None  # the provider's silence began (direct reads)
        self._provider: socket.socket | None = None  # registered in the selector
        self._reading_socket: Callable[[], socket.socket | None] = lambda: None  # at the hand-over
        self._items: deque[Any] = deque()
        self._client = client
        self._after = after
        self._room = threading.Event()  # cleared by a reader that found the queue full
        self._room.set()
        self._released = False  # the generator wants no more items
        self._release = threading.Event()  # the same, for a reader waiting to run ``after``
        self._ended = threading.Event()  # the stream ended: only ``after`` is left
        self._stopped = False
        self._wakeup: SocketWakeup | GeventWakeup
        self._thread: Any
        if _greenlet_threads():
            from gevent import spawn

            self._wakeup = GeventWakeup(client)
            # A bare greenlet: a patched Thread costs twice as much to start,
            # and its start() waits a turn of the event loop for it to run.
            self._thread = spawn(self._run)
        else:
            self._wakeup = SocketWakeup(client)
            self._thread = threading.Thread(
                target=self._run, name="flask-aistream reader", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        items, room = self._items, self._room
        handed_over = False
        try:
            for item in self._iterator:
                if self._released or not item:
                    continue  # nobody reads on, or an empty read (a provider's comment)
                # deque operations are atomic: only a full queue costs a lock.
                # Clear, then look again: a drain after the clear sets it.
                while len(items) >= MAX_PENDING_READS and not self._released:
                    room.clear()
                    if len(items) >= MAX_PENDING_READS and not self._released:
                        room.wait()
                if not self._released:
                    items.append(item)
                    if self._hand_over and _visible(item):
                        handed_over = True
                        items.append(HAND_OVER)
                        return
                    self._wakeup.wake()
            items.append(END)
        except BaseException as exc:  # noqa: BLE001 - handed to the generator, which decides
            items.append(exc)
        finally:
            if not handed_over:
                self._stream.close()
            self._wakeup.wake()
            self._ended.set()
            if self._after is not None and not handed_over:
                self._release.wait()
                self._after()

    def wait(self, timeout: float | None) -> list[Any]:
        """Everything read so far (lists of texts, then ``END`` or an
        exception); ``[CLIENT_GONE]`` when the client left; ``[]`` when
        ``timeout`` seconds passed with nothing new."""
        if self._direct:
            return self._read(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            client_readable = self._wakeup.wait(remaining)
            if client_readable and self._client_left():
                return [CLIENT_GONE]
        items = []
        while self._items:
            item = self._items.popleft()
            if item is HAND_OVER:
                self._take_over()
            else:
                items.append(item)
        if not self._room.is_set():  # the reader found the queue full: it may wait
            self._room.set()
        return items

    def _take_over(self) -> None:
        """The reader thread left after the first visible part: read on here."""
        self._thread.join()
        self._wakeup.close()
        self._direct = True
        self._reading_socket = getattr(self._stream, "reading_socket", lambda: None)
        self._selector = selectors.DefaultSelector()
        if self._client is not None:
            self._selector.register(self._client, selectors.EVENT_READ, "client")

    def _read(self, timeout: float | None) -> list[Any]:
        """One read of the stream in this thread, once the provider's socket
        has something (or the stream says a read will not wait). The
        provider's silence is held to the socket's own timeout (the idle
        timeout), counted across heartbeats."""
        deadline = None if timeout is None else time.monotonic() + timeout
        selector = self._selector
        assert selector is not None
        while True:
            sock = self._reading_socket()
            if sock is None:
                break
            now = time.monotonic()
            if self._silent_since is None:
                self._silent_since = now
            idle = sock.gettimeout()
            if idle is not None and now >= self._silent_since + idle:
                sock.settimeout(0.001)  # silent too long: the read fails at once, as it would have
                break
            waits = [t - now for t in (deadline, idle and self._silent_since + idle) if t]
            if sock is not self._provider:  # registered once: the socket stays the same
                try:
                    if self._provider is not None:
                        selector.unregister(self._provider)
                    selector.register(sock, selectors.EVENT_READ, "provider")
                except (KeyError, ValueError, OSError):
                    break  # closed: the read will tell
                self._provider = sock
            events = selector.select(max(0.0, min(waits)) if waits else None)
            ready = {key.data for key, _ in events}
            if "provider" in ready:
                break
            if "client" in ready and self._client_left():
                return [CLIENT_GONE]
            if deadline is not None and time.monotonic() >= deadline:
                return []
        self._silent_since = None
        try:
            return [next(self._iterator)]
        except StopIteration:
            return [END]
        except BaseException as exc:  # noqa: BLE001 - handed to the generator, as the thread does
            return [exc]

    def _client_left(self) -> bool:
        """A readable client socket with nothing to read has been closed.
        If it holds bytes (a pipelined request), stop watching it: the
        heartbeat will still reveal a departure."""
        assert self._client is not None
        try:
            left = self._client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except ValueError:  # a TLS socket refuses MSG_PEEK: rely on the heartbeat
            left = False
        except OSError:
            return True
        if not left:
            if self._direct and self._selector is not None:
                self._selector.unregister(self._client)
            else:
                self._wakeup.forget_client()
            self._client = None
        return left

    def release(self) -> None:
        """The generator took everything it wanted: ``after`` may run."""
        self._released = True
        self._release.set()
        self._room.set()  # a reader waiting for room: let it see the release
        if self._direct:
            self._finish_here()

    def _finish_here(self) -> None:
        """What the thread's end does, in this thread: close the stream, run ``after``."""
        self._direct = False
        try:
            self._iterator.close()  # type: ignore[attr-defined]
        finally:
            self._stream.close()
            if self._selector is not None:
                self._selector.close()
            if self._after is not None:
                self._after()

    def detach(self) -> None:
        """Hand nothing more over, but let the stream run to its end (the
        generator is going away, and the app wants the whole answer)."""
        if self._stopped:
            return
        assert not self._direct, "a handed-over stream cannot outlive its generator"
        self._stopped = True
        self.release()
        self._wakeup.close()  # a later wake() is a no-op

    def stop(self) -> None:
        """Make the reader end now, and wait for it, ``after`` included. Only
        briefly for a reader still connecting: that one ends by itself at the
        connect timeout, and runs ``after`` then."""
        if self._stopped:
            return
        self._stopped = True
        self._stream.abort()
        if self._direct:
            self.release()  # closes the stream and runs ``after`` here
            return
        self.release()
        if self._ended.wait(2):
            self._thread.join()  # ``after``: the hooks have run when this returns
        self._wakeup.close()
