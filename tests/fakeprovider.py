"""A real HTTP server on loopback that plays an AI provider.

It answers every request with the current :class:`Reply`: exact bytes, split
into parts that are written (and flushed) separately, framed chunked,
close-delimited (HTTP/1.0 style: no length, the end of the body is the end of
the connection) or with a Content-Length. It records each request and the
moment its client hung up, so tests can see that we stopped the provider.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


def split_every(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@dataclass
class Reply:
    parts: list[bytes] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "text/event-stream; charset=utf-8"}
    )
    framing: str = "chunked"  # or "close", or "length"
    delay: float = 0.0  # seconds before each part
    hold: bool = False  # after the parts, keep the connection open until the client leaves
    #: replace b"@NOW@" in each part by time.monotonic() at the moment it is sent,
    #: so a reader in the same process can measure each token's delay
    stamp: bool = False
    reset: bool = False  # after the parts, abort the connection with a TCP RST
    head_delay: float = 0.0  # seconds before the status line (a provider slow to start)
    trickle_head: bool = False  # the status line, then one header byte every 0.2 s, for ever
    #: seconds between the last part and the chunked terminator
    end_delay: float = 0.0
    #: after the reply, close the kept-alive connection (as a provider does
    #: with an idle one) this many seconds later
    close_after: float | None = None
    #: a threading.Semaphore: each part after the first waits for a release
    #: (the test's "I received the last one"), so nothing can be sent ahead
    gate: object = None

    @classmethod
    def sse(cls, body: bytes, **kwargs) -> Reply:
        return cls(parts=[body], **kwargs)

    @classmethod
    def ndjson(cls, body: bytes, **kwargs) -> Reply:
        kwargs.setdefault("headers", {"Content-Type": "application/x-ndjson"})
        return cls(parts=[body], **kwargs)

    @classmethod
    def json(cls, status: int, payload: object, **kwargs) -> Reply:
        return cls(
            parts=[json.dumps(payload, indent=4).encode() + b"\n"],
            status=status,
            headers={"Content-Type": "application/json"},
            framing="length",
            **kwargs,
        )


@dataclass
class Seen:
    """One request as the provider saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    parts_sent: int = 0
    hung_up_at: float | None = None  # time.monotonic() when the client left
    head_sent: bool = False  # the status line went out (after any head_delay)
    stalled: bool = False  # a gated part waited in vain: the last one never arrived

    def json(self) -> dict:
        return json.loads(self.body)


class FakeProvider:
    def __init__(self, tls: object = None) -> None:
        #: an ssl.SSLContext to serve TLS with (see ``trustme`` in the tests)
        self.tls = tls
        self.reply = Reply()
        #: replies for the next requests, in order; then ``reply`` for the rest
        self.replies: list[Reply] = []
        self.requests: list[Seen] = []
        self.hangup = threading.Condition()
        #: Answer with keep-alive (chunked and length-framed replies): the
        #: client may send its next request on the same connection.
        self.keep_alive = False
        #: Connections accepted so far.
        self.connections = 0
        #: Set once a reply's ``close_after`` closed its kept-alive connection.
        self.idle_closed = threading.Event()
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                fake._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 512  # many clients connect at once in the load tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def last(self) -> Seen:
        return self.requests[-1]

    def reply_for(self, seen: Seen) -> Reply:
        """The reply to ``seen``: the next queued one, else ``reply``."""
        return self.replies.pop(0) if self.replies else self.reply

    def wait_for_hangup(self, seen: Seen, timeout: float = 5.0) -> float | None:
        with self.hangup:
            self.hangup.wait_for(lambda: seen.hung_up_at is not None, timeout)
        return seen.hung_up_at

    # -- the server side ------------------------------------------------------

    def _handle(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except OSError:
                return  # the client gave up during the handshake
        with self.hangup:
            self.connections += 1
        while self._serve_one(sock):
            pass  # keep-alive: the next request on the same connection

    def _serve_one(self, sock: socket.socket) -> bool:
        """Answer one request; true if the connection stays open for another."""
        seen = self._read_request(sock)
        if seen is None:
            return False
        self.requests.append(seen)
        reply = self.reply_for(seen)
        if reply.head_delay and self._client_left(sock, reply.head_delay):
            self._hung_up(seen)
            return False
        if reply.trickle_head:
            try:
                sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self._client_left(sock, 0.2):
                    sock.sendall(b"x")
            except OSError:
                pass
            self._hung_up(seen)
            return False
        head = [f"HTTP/1.1 {reply.status} X"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        elif reply.framing == "length":
            head.append(f"Content-Length: {sum(map(len, reply.parts))}")
        keep = (
            self.keep_alive
            and reply.framing != "close"
            and not (reply.hold or reply.reset)
            and seen.headers.get("connection", "").lower() != "close"
        )
        if not keep:
            head.append("Connection: close")
        seen.head_sent = True
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for index, part in enumerate(reply.parts):
                if reply.delay and self._client_left(sock, reply.delay):
                    self._hung_up(seen)
                    return False
                if reply.gate is not None and index and not reply.gate.acquire(timeout=10):
                    seen.stalled = True
                if reply.stamp:
                    part = part.replace(b"@NOW@", b"%.6f" % time.monotonic())
                if reply.framing == "chunked":
                    part = b"%x\r\n%s\r\n" % (len(part), part)
                sock.sendall(part)
                seen.parts_sent += 1
            if reply.reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                self._hung_up(seen)
                return False
            if reply.hold:
                while not self._client_left(sock, 30):
                    pass
                self._hung_up(seen)
                return False
            if reply.framing == "chunked":
                if reply.end_delay:
                    time.sleep(reply.end_delay)
                sock.sendall(b"0\r\n\r\n")
            if keep and reply.close_after is not None:
                time.sleep(reply.close_after)
                sock.close()  # idle too long: the provider hangs up
                self.idle_closed.set()
                return False
            if keep:
                return True
            # Let the client read to the end before the socket goes.
            sock.shutdown(socket.SHUT_WR)
            self._client_left(sock, 5)
            return False
        except OSError:  # broken pipe or reset: the client left mid-write
            self._hung_up(seen)
            return False

    def _hung_up(self, seen: Seen) -> None:
        with self.hangup:
            seen.hung_up_at = time.monotonic()
            self.hangup.notify_all()

    @staticmethod
    def _client_left(sock: socket.socket, wait: float) -> bool:
        """Wait up to ``wait`` s; true if the client closed its end meanwhile."""
        if not (getattr(sock, "pending", None) and sock.pending()):
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                return False
        try:
            if hasattr(sock, "pending"):  # TLS cannot peek: nothing else is expected here
                return sock.recv(65536) == b""
            return sock.recv(65536, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    @staticmethod
    def _read_request(sock: socket.socket) -> Seen | None:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(65536)
            except OSError:  # reset, or a TLS client that went away
                return None
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            body += sock.recv(65536)
        return Seen(method, path, headers, body)


def openai_events(texts, finish: bool = True) -> list[bytes]:
    """One chat-completion chunk per text, each as its own part."""
    parts = [
        b'data: {"choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}\n\n'
        % json.dumps(text).encode()
        for text in texts
    ]
    if finish:
        parts.append(
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
        )
    return parts
