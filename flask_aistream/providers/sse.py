"""Server-Sent Events: an incremental decoder for upstream streams (what we
send is framed in :mod:`flask_aistream.formats`).

The decoder follows the WHATWG HTML standard, "Parsing an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
It does no I/O: feed it bytes exactly as they came off the socket, split
anywhere (inside a CRLF, inside a multi-byte UTF-8 character), and it hands
back the events that are complete.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import StreamFormatError

BOM = b"\xef\xbb\xbf"

#: Upper bound on one line of an upstream stream, and on the data lines of an
#: event still waiting for its blank line. A provider never sends anything
#: near this; more is a broken or hostile upstream, and buffering it would let
#: one stream eat the worker's memory.
MAX_LINE_BYTES = 1024 * 1024


class ServerSentEvent(NamedTuple):
    """One dispatched event. ``data`` is the joined ``data:`` lines."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


#: ``ServerSentEvent(...)`` without the generated ``__new__`` around it: half
#: the cost, and this runs once per token.
_new_event = tuple.__new__


class LineBuffer:
    """The lines of a byte stream that arrives in pieces, each bounded: what
    the SSE and NDJSON decoders share. A line's reads are kept as they are and
    joined once its LF comes (a long line arriving in small reads is then
    copied once, not once per read)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial: list[bytes] = []  # reads of a line whose end has not come
        self._partial_bytes = 0

    def _lines(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes (split at LF), the rest kept for later."""
        partial = self._partial
        if b"\n" not in chunk:
            if chunk:
                partial.append(chunk)
                self._partial_bytes += len(chunk)
                self._check_line_length(self._partial_bytes)
            return []
        if partial:
            partial.append(chunk)
            chunk = b"".join(partial)
            partial.clear()
        lines = chunk.split(b"\n")
        rest = lines.pop()
        self._partial_bytes = len(rest)
        if rest:
            partial.append(rest)
            self._check_line_length(len(rest))
        return lines

    def _check_line_length(self, size: int) -> None:
        if size > self.max_line_bytes:
            self._partial.clear()
            self._partial_bytes = 0
            raise StreamFormatError(f"an upstream line exceeded {self.max_line_bytes} bytes")


class SSEDecoder(LineBuffer):
    """Turns bytes, as they arrive, into complete :class:`ServerSentEvent`.

    Lines end at LF, CR or CRLF and nowhere else (not at U+2028 or U+0085, as
    ``str.splitlines`` would). Splitting is done on bytes, where CR and LF can
    never be part of a multi-byte character, so only whole lines are decoded.
    An event whose closing blank line never arrives is not dispatched.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes)
        self._bom_pending = True  # the stream's first bytes may be a BOM
        self._skip_lf = False  # the last feed ended in CR: a leading LF ends nothing
        self._event = b""
        self._data: list[bytes] = []
        self._data_bytes = 0  # in the data lines of an unfinished event
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completed, in order."""
        partial = self._partial
        if self._bom_pending:
            if partial:  # the start of a possible BOM, and nothing else
                chunk = partial.pop() + chunk
            if len(chunk) < 3 and BOM.startswith(chunk):
                if chunk:
                    partial.append(chunk)  # wait: these might become a BOM
                return []
            self._bom_pending = False
            if chunk.startswith(BOM):
                chunk = chunk[3:]
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            # A CR at the very end already ended its line; remember it so that
            # an LF starting the next chunk is not taken for another line end.
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = self._lines(chunk)
        if not lines:
            return []

        events: list[ServerSentEvent] = []
        data = carried = self._data
        carried_lines = len(carried)
        for line in lines:  # this loop runs twice per token: its order matters
            if not line:  # a blank line dispatches the event
                if data:
                    text = data[0] if len(data) == 1 else b"\n".join(data)
                    event = self._event.decode("utf-8", "replace") if self._event else "message"
                    events.append(
                        _new_event(
                            ServerSentEvent,
                            (event, text.decode("utf-8", "replace"), self._last_id, self._retry),
                        )
                    )
                    data = self._data = []
                self._event = b""
            elif line.startswith(b"data: "):
                data.append(line[6:])
            elif line[0] != 58:  # b":" starts a comment (often a keep-alive)
                self._field(line)
        if data:  # an event still waits for its blank line: count what it holds
            if data is not carried:
                self._data_bytes, carried_lines = 0, 0
            # Each line counts its newline too: empty data lines are not free.
            new_lines = data[carried_lines:]
            self._data_bytes += sum(map(len, new_lines)) + len(new_lines)
            if self._data_bytes > self.max_line_bytes:
                data.clear()
                self._data_bytes = 0
                raise StreamFormatError(
                    f"an unfinished upstream event exceeded {self.max_line_bytes} bytes"
                )
        elif self._data_bytes:
            self._data_bytes = 0
        return events

    def flush(self) -> list[ServerSentEvent]:
        """The end of the body. An event whose blank line never came is
        dropped, as the standard says: nothing to hand over."""
        self._partial.clear()
        self._data = []
        return []

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":  # "data" with no colon at all
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self._retry = int(value)
        # Any other field name is ignored, as the standard says.
