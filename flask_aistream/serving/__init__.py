"""The WSGI side: a streamed response that writes an answer's parts through
an output format it is handed, the reader thread behind it, and the
deadlines that hold while every thread of a stream is blocked. It knows no
provider and no wire format; of parts it knows only which are visible."""

from .guard import StreamGuard
from .response import guarded_response, sse_response
from .server import client_socket, warn_if_sync_worker

__all__ = [
    "StreamGuard",
    "guarded_response",
    "client_socket",
    "sse_response",
    "warn_if_sync_worker",
]
