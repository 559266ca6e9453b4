"""The one module that talks HTTP to providers (with ``requests``).

It knows no provider's JSON: a provider builds the request, names the
decoder its body needs (SSE, NDJSON) and maps its own error statuses; the
stream here feeds the decoder and the provider's reader.

``requests`` is only the transport here. ``iter_lines()`` invents an empty
line when a CRLF is split between two reads (an empty line dispatches an SSE
event) and ``iter_content(n)`` waits for ``n`` bytes on a body that ends when
the connection closes, holding tokens back. So we read whatever has arrived
(a chunk of a chunked body, else ``read1``) and let the decoder split
the lines.
"""

from __future__ import annotations

import contextvars
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as URLLib3Error
from urllib3.exceptions import ReadTimeoutError

from .errors import ProviderError, StreamFormatError
from .providers.base import HTTPProvider, PartStream
from .watchdog import WATCHDOG

#: Most bytes taken from the socket in one read: more than a burst of tokens,
#: small enough that a read never waits for more than what has arrived.
READ_SIZE = 65536
#: How much of an error body we read, to log it.
MAX_ERROR_BODY = 64 * 1024
#: How long the end marker may take once a finish reason came (OpenAI's usage
#: chunk and ``[DONE]`` follow at once); a provider that holds the connection
#: open longer has still given a complete answer.
FINISHED_GRACE = 2.0
#: How long the end of the body (the chunked terminator) may take once the
#: answer is complete, for the connection to be kept for the next answer.
#: It follows at once; a provider slower than this loses its connection.
END_GRACE = 0.5
#: Connections kept per provider host (``AI_POOL_MAXSIZE``): at least as many
#: as streams run at once (one past it is closed, quietly, not returned).
DEFAULT_POOL_MAXSIZE = 256


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
            _shut_down(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sock = self._sock
        if sock is not None:
            _shut_down(sock)


#: SO_LINGER on, 0 s: closing sends a reset, not a FIN. A provider blocked
#: writing to us (our window full) sees a FIN only when it next reads; a
#: reset fails its write at once, and leaves no half-closed connection.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def _shut_down(sock: socket.socket) -> None:
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


class _WatchedAdapter(HTTPAdapter):
    """``requests``' adapter, with pools whose sockets an :class:`Opening` can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class Transport:
    """Opens provider streams. One per app, holding one ``requests`` session.

    What ``requests`` would take from the environment on every call (proxies
    from ``HTTPS_PROXY``/``NO_PROXY``, a CA bundle from ``REQUESTS_CA_BUNDLE``)
    is read once per URL instead: scanning ``os.environ`` was a tenth of the
    CPU of opening a stream. ``~/.netrc`` is not read at all: a matching entry
    would replace the provider's key with Basic credentials.
    """

    def __init__(
        self,
        connect_timeout: float,
        idle_timeout: float,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
    ) -> None:
        self.timeout = (connect_timeout, idle_timeout)
        #: Longest a call may take to get its response head.
        self.open_timeout = connect_timeout + idle_timeout
        self.session = requests.Session()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _WatchedAdapter(pool_maxsize=pool_maxsize))
        self.session.trust_env = False  # the environment is read in _environment
        # A compressor buffers tokens; ask for none (and decode one if sent anyway).
        self.session.headers["Accept-Encoding"] = "identity"
        self._environments: dict[str, dict[str, Any]] = {}

    def _environment(self, url: str) -> dict[str, Any]:
        settings = self._environments.get(url)
        if settings is None:
            settings = self._environments[url] = {
                "proxies": requests.utils.get_environ_proxies(url),
                "verify": os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("CURL_CA_BUNDLE")
                or True,
            }
        return settings

    def open(
        self,
        provider: HTTPProvider,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any],
        opening: Opening | None = None,
    ) -> HTTPStream:
        """Send the request and read the response head; ``opening.abort()``,
        from another thread, ends this at once in any phase. The head must
        come within the connect and idle timeouts together, however slowly it
        trickles in (the watchdog holds the call to that)."""
        opening = opening or Opening()
        opening.deadline = time.monotonic() + self.open_timeout
        WATCHDOG.watch(opening)
        token = _current_opening.set(opening)
        stream: HTTPStream | None = None
        try:
            stream = self._open(provider, url, headers, body)
        except ProviderError:
            if not opening.expired:
                raise
        finally:
            _current_opening.reset(token)
            WATCHDOG.forget(opening)
        if opening.expired:  # cut mid-head, it may even look like a response
            if stream is not None:
                stream.close()
            raise ProviderError(
                f"The AI provider did not start answering within {self.open_timeout:g} s; "
                "try again later.",
                kind="timeout",
                provider=provider.name,
                detail=f"no complete response head in {self.open_timeout:g} s",
            )
        assert stream is not None  # _open returned, or raised and we re-raised
        return stream

    def _open(
        self, provider: HTTPProvider, url: str, headers: dict[str, str], body: dict[str, Any]
    ) -> HTTPStream:
        name = provider.name
        # Prepared here and sent by the adapter: the session's cookie jar,
        # hooks and redirect logic cost a tenth of a stream's setup and do
        # nothing for us. A redirect is never followed: it would take the key
        # (requests keeps x-api-key), the conversation and the system prompt
        # to another host.
        request = requests.PreparedRequest()
        request.prepare(
            method="POST", url=url, headers={**self.session.headers, **headers}, json=body
        )
        try:
            response = self.session.get_adapter(url).send(
                request, stream=True, timeout=self.timeout, **self._environment(url)
            )
        except requests.ConnectTimeout as exc:
            raise self._failure(
                name, "connection", exc, "Could not reach the AI provider in time; try again later."
            ) from None
        except requests.Timeout as exc:
            raise self._failure(
                name,
                "timeout",
                exc,
                f"The AI provider did not answer within {self.timeout[1]:g} s; try again later.",
            ) from None
        except requests.RequestException as exc:
            raise self._failure(name, "connection", exc) from None

        if response.status_code >= 300:
            error = provider.http_error(
                response.status_code, self._read_body(response), response.headers
            )
            response.close()
            raise error
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            # A 200 with one JSON document: the provider ignored ``stream`` or
            # reported an error the non-streaming way.
            body_text = self._read_body(response)
            response.close()
            raise ProviderError(
                "The AI provider answered with an error instead of a stream.",
                kind="bad_response",
                provider=name,
                status=response.status_code,
                detail=body_text,
            )
        return HTTPStream(response, provider, self.timeout[1])

    def _read_body(self, response: requests.Response) -> str:
        try:
            raw = response.raw.read(MAX_ERROR_BODY, decode_content=True)
        except Exception as exc:  # the body is only for the log; never mask the status
            return f"(body unreadable: {exc!r})"
        return raw.decode("utf-8", "replace")

    def _failure(
        self, provider: str, kind: str, exc: Exception, message: str | None = None
    ) -> ProviderError:
        return ProviderError(message, kind=kind, provider=provider, detail=repr(exc))


def _reads(raw: Any) -> Iterator[bytes]:
    """What arrives, read by read, never waiting for more. A chunked body
    (the usual framing of a stream) is read a chunk at a time by urllib3's
    own chunk reader, which costs half as much per token as ``read1``; a
    chunk the provider already sent whole, in at most READ_SIZE pieces."""
    if raw.chunked and raw.supports_chunked_reads():
        yield from raw.read_chunked(READ_SIZE, decode_content=True)
    else:
        yield from iter(lambda: raw.read1(READ_SIZE, decode_content=True), b"")


class HTTPStream(PartStream):
    """A provider's answer being read off the wire."""

    def __init__(
        self, response: requests.Response, provider: HTTPProvider, idle_timeout: float
    ) -> None:
        self._response: requests.Response | None = response
        self._provider = provider
        self._idle_timeout = idle_timeout

    def __iter__(self) -> Iterator[list[Any]]:
        name = self._provider.name
        reader = self._provider.reader()
        parse = reader.parse
        decoder = self._provider.decoder()
        feed = decoder.feed
        assert self._response is not None, "an HTTPStream is read once"
        reads = _reads(self._response.raw)
        waiting_for_end = False  # a finish reason came: only the end marker may follow
        while True:
            try:
                chunk = next(reads, b"")
            except (ReadTimeoutError, socket.timeout) as exc:
                if waiting_for_end:
                    break  # the answer is complete; the provider just kept the line open
                raise ProviderError(
                    f"The AI provider stopped responding (no data for {self._idle_timeout:g} s).",
                    kind="timeout",
                    provider=name,
                    detail=repr(exc),
                ) from None
            except (URLLib3Error, OSError, ValueError) as exc:
                # ValueError: urllib3 raises it reading a response we closed.
                raise ProviderError(
                    "The connection to the AI provider was lost mid-answer.",
                    kind="connection",
                    provider=name,
                    detail=repr(exc),
                ) from None
            parts: list[Any] = []
            try:
                for event in feed(chunk) if chunk else decoder.flush():
                    parse(event, parts)
                    if reader.done:
                        break
            except (ProviderError, AttributeError, TypeError, KeyError, IndexError) as exc:
                if isinstance(exc, ProviderError):
                    error = exc
                    error.provider = error.provider or name
                else:  # an event of a shape the reader did not expect
                    error = StreamFormatError(f"unexpected event shape: {exc!r}", provider=name)
                self.close()
                if parts:
                    yield parts  # what arrived before the error still counts
                raise error from None
            if reader.done:
                self._release(reads)  # keep the connection for the next answer, or hang up
            elif reader.finished and not waiting_for_end:
                waiting_for_end = True
                self._shorten_timeout(FINISHED_GRACE)
            # Even an empty list: a read that held only a comment hands control
            # back, so a caller reading directly can write its heartbeat.
            yield parts
            if reader.done:
                return
            if not chunk:
                break
        self.close()
        if not reader.finished:
            raise ProviderError(
                kind="cut_off",
                provider=name,
                detail="end of stream before the end marker or a finish reason",
            )

    def _socket(self) -> socket.socket | None:
        """The provider socket. It sits inside http.client's file object
        (urllib3 let go of it once the head was read)."""
        try:
            return self._response.raw._fp.fp.raw._sock  # type: ignore[union-attr,no-any-return]
        except AttributeError:
            return None

    def reading_socket(self) -> socket.socket | None:
        """The provider socket, if the next read would wait on it: nothing is
        left in http.client's buffer (looked at with a non-blocking peek) nor
        in the TLS layer. ``None``: a read returns at once."""
        response = self._response
        sock = self._socket()
        if response is None or sock is None:
            return None
        buffered = getattr(response.raw._fp, "fp", None)  # http.client's BufferedReader
        if buffered is None:
            return None
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return None
        # (Not a MSG_PEEK | MSG_DONTWAIT: on a socket with a timeout Python
        # waits for it to become readable first, up to that timeout.)
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0)
            waiting = buffered.peek(1)
        except (BlockingIOError, ssl.SSLWantReadError):
            waiting = b""
        except (OSError, ValueError):
            return None  # let the read itself raise it
        finally:
            try:
                sock.settimeout(timeout)
            except OSError:
                pass
        return None if waiting else sock

    def _shorten_timeout(self, seconds: float) -> None:
        """Wait at most ``seconds`` for each further read."""
        sock = self._socket()
        if sock is not None:
            try:
                sock.settimeout(seconds)
            except OSError:
                pass

    def _release(self, reads: Iterator[bytes]) -> None:
        """The answer is complete: read the end of the body (the chunked
        terminator, or what a Content-Length still counts), which follows at
        once, and hand the connection back to the pool for the next answer.
        A body that ends only with the connection, or not promptly, is
        closed instead."""
        response = self._response
        if response is None:
            return
        raw = response.raw
        framed = raw.chunked or raw.length_remaining is not None
        if not framed or response.headers.get("Connection", "").lower() == "close":
            self.close()
            return
        self._shorten_timeout(END_GRACE)
        try:
            for _ in reads:
                pass  # nothing should follow the end marker; whatever does is not ours
        except (URLLib3Error, OSError, ValueError):
            self.close()
            return
        self._response = None
        raw.release_conn()

    def abort(self) -> None:
        """Hang up and wake the thread blocked reading this stream: it sees
        the end of the stream and closes it."""
        sock = self._socket()
        if sock is not None:
            _shut_down(sock)
        elif self._response is not None:
            try:
                self._response.raw.shutdown()  # urllib3's own, where ours cannot reach
            except (ValueError, RuntimeError, OSError):
                pass  # already closed, or not connected: nothing to wake

    def close(self) -> None:
        """Close the socket itself, not hand a half-read connection back to
        the pool: a closed connection is what tells the provider to stop
        generating (and billing)."""
        response, self._response = self._response, None
        if response is not None:
            response.raw.close()
            response.close()
