"""Newline-delimited JSON: an incremental line decoder for upstream streams
that are not SSE (Ollama's ``/api/chat``, ``application/x-ndjson``).

Same rules as :class:`~flask_aistream.sse.SSEDecoder`: no I/O, bytes split
anywhere (inside a multi-byte UTF-8 character too: lines are split on bytes,
where an LF can never be part of a character), each line bounded. Lines end
at LF; a CR before it is dropped, blank lines are skipped, and the last line
may come without its LF (:meth:`flush` hands it over at the end of the body).
Parsing the JSON is the reader's business: a line is handed over as text.
"""

from __future__ import annotations

from .errors import StreamFormatError
from .sse import MAX_LINE_BYTES


class NDJSONDecoder:
    """Turns bytes, as they arrive, into complete lines of text."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial: list[bytes] = []  # reads of a line whose end has not come
        self._partial_bytes = 0

    def feed(self, chunk: bytes) -> list[str]:
        """Consume ``chunk`` and return the lines it completed, in order."""
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
        for line in lines:
            if len(line) > self.max_line_bytes:
                raise StreamFormatError(f"an upstream line exceeded {self.max_line_bytes} bytes")
        return [_text(line) for line in lines if line.strip()]

    def flush(self) -> list[str]:
        """The end of the body: its last line, if it had no LF."""
        line = b"".join(self._partial)
        self._partial.clear()
        self._partial_bytes = 0
        return [_text(line)] if line.strip() else []

    def _check_line_length(self, size: int) -> None:
        if size > self.max_line_bytes:
            self._partial.clear()
            self._partial_bytes = 0
            raise StreamFormatError(f"an upstream line exceeded {self.max_line_bytes} bytes")


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")
