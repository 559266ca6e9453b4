"""SSE framing of what we send: one ``data:`` line of JSON per event, written
whole, the heartbeat, the end of an answer, and the numbering of a
resumable answer's events.

JSON with ASCII escapes cannot contain a raw CR or LF (so no event can be
split or forged by model output) nor a multi-byte character (so a browser
that decodes each network read on its own, as the spec's fetch example
does, never sees half a character).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import NamedTuple

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


#: An app may change any of them on the returned response. No ``Connection``
#: header: PEP 3333 forbids hop-by-hop headers (wsgiref and waitress answer
#: 500) and HTTP/2 forbids ``Connection``.
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}


DONE = b"data: [DONE]\n\n"


PING = b": ping\n\n"


#: The id of the last event. An ``EventSource`` that does not ``close()`` on
#: ``[DONE]`` reconnects with it as ``Last-Event-ID``; such a request gets a
#: 204, which stops it, instead of asking the provider again. It grants
#: nothing else, so it need not be signed. It comes in a block of its own
#: (an id and no data, which sets the id and dispatches nothing), so parsers
#: that take each block as one ``data:`` line still see ``[DONE]`` alone.
DONE_ID = "flask-aistream:done"


FINAL_ID = b"id: %s\n\n" % DONE_ID.encode()


def data_event(payload: object) -> bytes:
    return b"data: %s\n\n" % json.dumps(payload).encode()


def content_event(text: str) -> bytes:
    return b'data: {"content": %s}\n\n' % encode_basestring_ascii(text).encode()


def error_event(message: str) -> bytes:
    return b'data: {"error": %s}\n\n' % encode_basestring_ascii(message).encode()


#: ``retry:`` sent with a numbered answer's first event: how soon (ms) an
#: EventSource reconnects.
RETRY_MS = 1000


class Entry(NamedTuple):
    """One stored event: its number, its bytes (``id:`` line included), and
    whether it is the answer's last (``[DONE]``)."""

    seq: int
    data: bytes
    last: bool


class Batch(NamedTuple):
    """Events written together: numbered ``first`` to ``first + size - 1``,
    as one run of bytes (what the live client is sent); ``last``: it ends
    with the answer's ``[DONE]``."""

    first: int
    data: bytes
    size: int
    last: bool

    def entries(self) -> list[Entry]:
        """The batch split into its events (each one block ending in a blank line)."""
        blocks = self.data.split(b"\n\n")[:-1]
        return [
            Entry(self.first + i, block + b"\n\n", self.last and i == len(blocks) - 1)
            for i, block in enumerate(blocks)
        ]


class Numbering:
    """Gives each event of one answer its ``id:`` (and the first its
    ``retry:``). Every event our formats write is one block ending in a blank
    line (JSON never holds a raw newline), so a chunk splits into events at
    its blank lines; the end-of-answer id block of unnumbered streams is
    dropped, since every event has an id now."""

    def __init__(self, answer_id: str, seq: int = 0) -> None:
        self._prefix = f"id: {answer_id}:".encode()
        self.seq = seq

    def number(self, chunk: bytes) -> Batch:
        blocks = chunk.split(b"\n\n")
        blocks.pop()  # what follows the last blank line: nothing
        if blocks and blocks[-1] == _DONE_BLOCK and len(blocks) > 1 and blocks[-2] == _FINAL_ID:
            del blocks[-2]
        first, prefix = self.seq + 1, self._prefix
        events = [b"%s%d\n%s\n\n" % (prefix, first + i, block) for i, block in enumerate(blocks)]
        if first == 1 and events:
            events[0] = b"retry: %d\n%s" % (RETRY_MS, events[0])
        self.seq += len(events)
        return Batch(
            first, b"".join(events), len(events), bool(blocks) and blocks[-1] == _DONE_BLOCK
        )


_DONE_BLOCK = DONE[:-2]
_FINAL_ID = FINAL_ID[:-2]
