"""What the WSGI server tells us about itself, read from the environ in the view."""

from __future__ import annotations

import logging
import selectors
import socket
from collections.abc import Mapping

from ..parts import Options

_warned = False
_warned_memory = False


def client_socket(environ: Options) -> socket.socket | None:
    """The client's socket, where the server shares it (gunicorn, Werkzeug)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if hasattr(sock, "fileno") else None


def warn_if_sync_worker(environ: Options, logger: logging.Logger) -> None:
    """Warn once when gunicorn's sync worker serves a stream: it kills any
    request that outlives ``--timeout`` (30 s by default), mid-answer. Its
    environ is the one gunicorn environ that is not multithreaded."""
    global _warned
    if _warned or not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn"):
        return
    if not environ.get("wsgi.multithread"):
        _warned = True
        logger.warning(
            "flask-aistream: gunicorn's sync worker kills any response that runs past "
            "--timeout, streamed answers included. Run gunicorn with "
            "--worker-class gthread (or gevent) for streaming."
        )


def warn_if_memory_storage(
    environ: Options, logger: logging.Logger, storages: Mapping[str, str | None]
) -> None:
    """Warn once when a ``memory://`` storage (``storages``: setting ->
    URI) serves one of several worker processes (``wsgi.multiprocess``, as
    gunicorn sets it with ``-w 2`` or more): each worker then keeps its own,
    so a resume or a limit counted in another worker is not seen."""
    global _warned_memory
    if _warned_memory or not environ.get("wsgi.multiprocess"):
        return
    memory = [name for name, uri in storages.items() if uri == "memory://"]
    if memory:
        _warned_memory = True
        logger.warning(
            "flask-aistream: %s %s memory:// in one of several worker processes: each "
            "worker keeps its own (use redis://)",
            " and ".join(memory),
            "are" if len(memory) > 1 else "is",
        )


def client_closed(sock: socket.socket) -> bool:
    """Whether the client closed its end (readable, with nothing to read),
    looked at without waiting (a plain ``recv`` would wait under gevent,
    whose sockets retry until readable). A client that sent bytes (a
    pipelined request) has not left; a TLS socket cannot be peeked at."""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            if not selector.select(0):
                return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, ValueError):
        return False
    except OSError:
        return True
