"""Provider exchanges saved as they happen (``AI_RECORD_DIR``), one JSON
file each, to be played back in a test (``FakeProvider.replay``): the
request (method, URL, JSON body) and the response (status, headers, and the
body's bytes in the pieces they arrived, with when), every key redacted.
A bug seen in production becomes a test."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..parts import Options

#: Headers that carry a key, whatever the key is.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})
REDACTED = "[redacted]"
_URL_KEY = re.compile(r"([?&]key=)[^&#]*")


class Recorder:
    """Writes each exchange to ``directory``; ``redact`` hides the app's keys
    (and anything shaped like one) wherever they appear."""

    def __init__(self, directory: str, redact: Callable[[str], str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redact = redact

    def start(self, url: str, headers: Mapping[str, str], body: Options) -> Exchange:
        return Exchange(self, url, headers, body)


class Exchange:
    """One request and its response, saved once it ended (or failed)."""

    def __init__(
        self, recorder: Recorder, url: str, headers: Mapping[str, str], body: Options
    ) -> None:
        self._recorder = recorder
        self._started = time.monotonic()
        self._saved = False
        self._lock = threading.Lock()
        self._pieces: list[dict[str, object]] = []
        self._request = {
            "method": "POST",
            "url": _URL_KEY.sub(r"\1" + REDACTED, url),
            "headers": _headers(headers),
            "body": body,
        }
        self._response: dict[str, object] = {}

    def respond(self, status: int, headers: Mapping[str, str]) -> None:
        self._response = {"status": status, "headers": _headers(headers)}

    def piece(self, data: bytes) -> None:
        # surrogateescape keeps bytes that are not UTF-8 (a split character) exactly
        text = data.decode("utf-8", "surrogateescape")
        self._pieces.append({"at": round(time.monotonic() - self._started, 4), "text": text})

    def tee(self, reads: Iterator[bytes], lost: tuple[type[BaseException], ...]) -> Iterator[bytes]:
        """``reads``, each piece recorded; a dropped connection is recorded as a cut."""
        cut = False
        try:
            for data in reads:
                self.piece(data)
                yield data
        except lost:
            cut = True
            raise
        finally:
            self.save(cut=cut)

    def save(self, cut: bool = False) -> None:
        with self._lock:
            if self._saved:
                return
            self._saved = True
        exchange = {
            "request": self._request,
            "response": {**self._response, "pieces": self._pieces, "cut": cut},
        }
        # ASCII JSON: a byte that is not UTF-8 stays a \udcXX escape, exactly.
        text = self._recorder.redact(json.dumps(exchange, indent=1))
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.json"
        (self._recorder.directory / name).write_text(text, encoding="utf-8")


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS else value
        for name, value in headers.items()
    }
