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

from ..errors import StreamFormatError
from .sse import LineBuffer


class NDJSONDecoder(LineBuffer):
    """Turns bytes, as they arrive, into complete lines of text."""

    def feed(self, chunk: bytes) -> list[str]:
        """Consume ``chunk`` and return the lines it completed, in order."""
        lines = self._lines(chunk)
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


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")
