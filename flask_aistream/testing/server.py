"""The loopback HTTP server of ``fake_provider(app, wire=...)``."""

from __future__ import annotations

import secrets
import socket
import struct
import threading

from . import wire
from .playing import script_bytes
from .script import SCRIPT_HEADER, Failure, Item

# --- on the wire ---------------------------------------------------------------------


class WireServer:
    """A loopback HTTP server that sends each call its scripted reply as its
    API's bytes (chunked, a piece per chunk): the app's whole HTTP path,
    decoders and timeouts run."""

    def __init__(self) -> None:
        self._expected: dict[str, tuple[Item, str, str]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)  # accept() wakes up to see the server stopped
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="flask-aistream fake", daemon=True)
        self._thread.start()

    def expect(self, item: Item, api: str, model: str) -> str:
        token = secrets.token_hex(8)
        with self._lock:
            self._expected[token] = (item, api, model)
        return token

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                head = self._read_request(conn)
                with self._lock:
                    item, api, model = self._expected.pop(head.get(SCRIPT_HEADER.lower(), ""))
                self._send(conn, item, api, model)
            except (OSError, KeyError, ValueError):
                return

    @staticmethod
    def _read_request(conn: socket.socket) -> dict[str, str]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("no request")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            body += conn.recv(65536)
        return headers

    def _send(self, conn: socket.socket, item: Item, api: str, model: str) -> None:
        if isinstance(item, Failure) and item.status is not None:
            body = wire.error_body(api, item.status, item.message)
            extra = f"Retry-After: {item.retry_after:g}\r\n" if item.retry_after is not None else ""
            conn.sendall(
                f"HTTP/1.1 {item.status} Error\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return
        pieces, delays, ending = script_bytes(item, api, model)
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: {wire.content_type(api)}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        for piece, delay in zip(pieces, delays):
            if delay and self._stopped.wait(delay):
                return
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        if ending == "cut":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closed with a reset: the connection dropped mid-answer
        if ending == "hang":
            while not self._stopped.wait(0.05):
                if _peer_closed(conn):
                    return
            return
        conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        self._stopped.set()
        self._sock.close()
        self._thread.join(5)


def _peer_closed(conn: socket.socket) -> bool:
    try:
        conn.settimeout(0)
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
