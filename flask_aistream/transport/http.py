"""The one module that talks HTTP to providers (with ``requests``).

It knows no provider: a provider hands it a URL, headers and a JSON body,
and a function that maps an error status to its own error; what comes back
is the response :class:`Body`, whose bytes a provider's stream decodes.

``requests`` is only the transport here. ``iter_lines()`` invents an empty
line when a CRLF is split between two reads (an empty line dispatches an SSE
event) and ``iter_content(n)`` waits for ``n`` bytes on a body that ends when
the connection closes, holding tokens back. So we read whatever has arrived
(a chunk of a chunked body, else ``read1``) and let the decoder split
the lines.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import requests
from urllib3.exceptions import HTTPError as URLLib3Error
from urllib3.exceptions import ReadTimeoutError

from ..errors import ProviderError
from ..parts import Options
from .opening import Opening, WatchedAdapter, attaching, hang_up
from .recording import Exchange, Recorder
from .watchdog import WATCHDOG

#: Most bytes taken from the socket in one read: more than a burst of tokens,
#: small enough that a read never waits for more than what has arrived.
READ_SIZE = 65536
#: How much of an error body we read, to log it.
MAX_ERROR_BODY = 64 * 1024
#: How long the end of the body (the chunked terminator) may take once the
#: answer is complete, for the connection to be kept for the next answer.
#: It follows at once; a provider slower than this loses its connection.
END_GRACE = 0.5
#: Connections kept per provider host (``AI_POOL_MAXSIZE``): at least as many
#: as streams run at once (one past it is closed, quietly, not returned).
DEFAULT_POOL_MAXSIZE = 256
#: What a read of a :class:`Body` raises when the provider was silent too
#: long, and when the connection broke (``ValueError``: urllib3 raises it
#: reading a response we closed).
READ_TIMEOUT = (ReadTimeoutError, socket.timeout)
CONNECTION_LOST = (URLLib3Error, OSError, ValueError)

#: Maps an error status, its body (for the log) and its headers to the
#: provider's own error.
ErrorMapper = Callable[[int, str, Mapping[str, str]], ProviderError]
#: Checks each provider URL before anything is sent, and raise to refuse it
#: (the test kit's pytest plugin refuses hosts that are not loopback).
URL_GUARDS: list[Callable[[str, str], None]] = []


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
        recorder: Recorder | None = None,
    ) -> None:
        self.timeout = (connect_timeout, idle_timeout)
        #: Saves every exchange (``AI_RECORD_DIR``), or ``None``.
        self.recorder = recorder
        #: Longest a call may take to get its response head.
        self.open_timeout = connect_timeout + idle_timeout
        self.session = requests.Session()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, WatchedAdapter(pool_maxsize=pool_maxsize))
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
        url: str,
        headers: Mapping[str, str],
        body: Options,
        opening: Opening | None = None,
        *,
        provider: str,
        on_error: ErrorMapper,
    ) -> Body:
        """Send the request and read the response head; ``opening.abort()``,
        from another thread, ends this at once in any phase. The head must
        come within the connect and idle timeouts together, however slowly it
        trickles in (the watchdog holds the call to that)."""
        for guard in URL_GUARDS:
            guard(url, provider)
        opening = opening or Opening()
        opening.deadline = time.monotonic() + self.open_timeout
        WATCHDOG.watch(opening)
        response: Body | None = None
        try:
            with attaching(opening):
                response = self._open(url, headers, body, provider, on_error)
        except ProviderError:
            if not opening.expired:
                raise
        finally:
            WATCHDOG.forget(opening)
        if opening.expired:  # cut mid-head, it may even look like a response
            if response is not None:
                response.close()
            raise ProviderError(
                f"The AI provider did not start answering within {self.open_timeout:g} s; "
                "try again later.",
                kind="timeout",
                provider=provider,
                detail=f"no complete response head in {self.open_timeout:g} s",
            )
        assert response is not None  # _open returned, or raised and we re-raised
        return response

    def _open(
        self,
        url: str,
        headers: Mapping[str, str],
        body: Options,
        name: str,
        on_error: ErrorMapper,
    ) -> Body:
        # Prepared here and sent by the adapter: the session's cookie jar,
        # hooks and redirect logic cost a tenth of a stream's setup and do
        # nothing for us. A redirect is never followed: it would take the key
        # (requests keeps x-api-key), the conversation and the system prompt
        # to another host.
        request = requests.PreparedRequest()
        request.prepare(
            method="POST", url=url, headers={**self.session.headers, **headers}, json=body
        )
        exchange = self.recorder.start(url, request.headers, body) if self.recorder else None
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

        if exchange is not None:
            exchange.respond(response.status_code, response.headers)
        if response.status_code >= 300:
            text = self._read_body(response)
            if exchange is not None:
                exchange.piece(text.encode())
                exchange.save()
            error = on_error(response.status_code, text, response.headers)
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
        return Body(response, self.timeout[1], exchange)

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


class Body:
    """A response body being read off the wire, read by read: what a
    provider's stream decodes. ``abort()`` may come from another thread."""

    def __init__(
        self, response: requests.Response, idle_timeout: float, exchange: Exchange | None = None
    ) -> None:
        self._response: requests.Response | None = response
        self.idle_timeout = idle_timeout
        self._exchange = exchange

    def reads(self) -> Iterator[bytes]:
        """What arrives, read by read, never waiting for more. A chunked body
        (the usual framing of a stream) is read a chunk at a time by urllib3's
        own chunk reader, which costs half as much per token as ``read1``; a
        chunk the provider already sent whole, in at most READ_SIZE pieces.
        Raises one of :data:`READ_TIMEOUT` or :data:`CONNECTION_LOST`."""
        assert self._response is not None, "a body is read once"
        raw = self._response.raw
        if raw.chunked and raw.supports_chunked_reads():
            reads = raw.read_chunked(READ_SIZE, decode_content=True)
        else:
            reads = iter(lambda: raw.read1(READ_SIZE, decode_content=True), b"")
        return reads if self._exchange is None else self._exchange.tee(reads, CONNECTION_LOST)

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

    def shorten_timeout(self, seconds: float) -> None:
        """Wait at most ``seconds`` for each further read."""
        sock = self._socket()
        if sock is not None:
            try:
                sock.settimeout(seconds)
            except OSError:
                pass

    def release(self, reads: Iterator[bytes]) -> None:
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
        self.shorten_timeout(END_GRACE)
        try:
            for _ in reads:
                pass  # nothing should follow the end marker; whatever does is not ours
        except CONNECTION_LOST:
            self.close()
            return
        self._response = None
        raw.release_conn()

    def abort(self) -> None:
        """Hang up and wake the thread blocked reading this body: it sees
        the end of the stream and closes it."""
        sock = self._socket()
        if sock is not None:
            hang_up(sock)
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
        if self._exchange is not None:
            self._exchange.save()
