"""A resumable answer's two ends: the :class:`Recorder` that numbers the
producer's events and hands them to the live client and the store, and
:func:`follow`, what a reader that reconnects is sent."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable

from flask import Response

from ..formats import (
    FORMAT_CLASSES,
    AIStreamFormat,
    OutputFormat,
    PreEncoded,
    failure_events,
    new_id,
)
from ..formats.sse import PING, Numbering
from ..parts import Finish
from ..serving.reader import Item
from ..serving.response import guarded_response, sse_response
from ..serving.server import client_closed
from .ids import ANSWER_ID
from .store import FOLLOW_WAIT, ResumeStore
from .writer import StoreWriter

if TYPE_CHECKING:
    from ..answer import AnswerRun

#: Readers of one answer one process serves at once (each holds a thread and
#: a connection to the store): a few tabs of its user, not a crowd.
MAX_READERS_PER_ANSWER = 3
_readers: Counter[str] = Counter()
_readers_lock = threading.Lock()

#: What readers of an answer get when its producer died, or the store failed.
INTERRUPTED = "the answer was interrupted"
UNAVAILABLE = "the answer cannot be resumed right now"


class Recorder:
    """The producer of a resumable answer: turns the run's parts into
    numbered events in the answer's format and hands them on (to the live
    client, through the reader), then to the :class:`StoreWriter`. It runs to
    the end of the answer whether or not a client still reads (the
    ``"finish"`` policy)."""

    def __init__(
        self,
        run: AnswerRun,
        output: OutputFormat,
        answer_id: str,
        chat: str | None,
        writer: StoreWriter,
    ) -> None:
        self._run = run
        self._output = output
        self._answer_id = answer_id
        self._chat = chat
        self._writer = writer
        self._numbering = Numbering(answer_id)

    def __iter__(self) -> Iterator[Item]:
        self._writer.watch(self._answer_id, self._run)
        try:
            for item in self._run:
                finish = isinstance(item, Finish)
                chunk = (
                    self._output.end(item.answer)  # type: ignore[union-attr]
                    if finish
                    else self._output.parts(item)  # type: ignore[arg-type]
                )
                if chunk:
                    batch = self._numbering.number(chunk)
                    yield batch.data
                    # The reader is back for more: the live client has these.
                    if finish:
                        self._writer.write_now(self._answer_id, batch, self._chat)
                    else:
                        self._writer.write(self._answer_id, batch, self._chat)
                if finish:
                    yield item
                    return
        finally:
            self._writer.forget(self._answer_id)

    def close(self) -> None:
        self._run.close()

    def abort(self) -> None:
        self._run.abort()


def follow(
    store: ResumeStore,
    answer_id: str,
    after: int,
    format_name: str,
    heartbeat: float,
    logger: logging.Logger,
    client: socket.socket | None = None,
) -> Iterator[bytes]:
    """A reader's side: the answer's events after ``after``, as they are
    stored, until its ``[DONE]``. An answer whose producer died (its lease
    ran out) ends with :data:`INTERRUPTED`; a store that fails, with
    :data:`UNAVAILABLE`. A reader whose ``client`` socket closed is let go
    at the next wait, heartbeat or not."""
    last_write = time.monotonic()
    wait = min(FOLLOW_WAIT, heartbeat) if heartbeat else FOLLOW_WAIT
    while True:
        try:
            entries = store.read(answer_id, after, wait)
            if not entries:
                status = store.status(answer_id)
                if status is not None and status.ended:
                    return  # nothing after ``after``: it was past the end
                if status is None or not status.alive:
                    ending = Numbering(answer_id, after).number(
                        failure_events(format_name, INTERRUPTED)
                    )
                    # Expired under us, or this reader saw events the dead
                    # producer never stored (its last 50 ms): nothing in the
                    # store will ever come after ``after``, so say it here.
                    if status is None or after > status.last_seq:
                        yield ending.data
                        return
                    store.interrupt(answer_id, after, ending)
                    continue  # read what was appended, by us or by whoever came first
        except Exception as exc:  # noqa: BLE001 - a reader gets a clear end, never a hang
            logger.warning(
                "flask-aistream: cannot read answer %s from the resume store: %r", answer_id, exc
            )
            yield failure_events(format_name, UNAVAILABLE)
            return
        now = time.monotonic()
        if entries:
            after = entries[-1].seq
            last_write = now
            yield b"".join(entry.data for entry in entries)
            if entries[-1].last:
                return
        elif client is not None and client_closed(client):
            return  # the reader left while nothing came
        elif heartbeat and now - last_write >= heartbeat:
            last_write = now
            yield PING


def recorded_response(
    run: AnswerRun,
    output_for: Callable[[str], OutputFormat],
    writer: StoreWriter,
    owner: str,
    chat: str | None,
    format_name: str,
    logger: logging.Logger,
    *,
    heartbeat: float,
    client: socket.socket | None,
    send_timeout: float | None,
) -> Response | None:
    """The answer as numbered events, kept in the store as they go, produced
    to its end whether or not its client stays; ``None`` when the store
    cannot be reached (the answer then streams without). ``output_for``
    makes the answer's format for its id; the rest goes to ``sse_response``."""
    answer_id = run.id or new_id("ans")
    if not writer.begin(answer_id, owner, format_name, chat):
        return None
    output = output_for(answer_id)
    response = sse_response(
        run,
        PreEncoded(output),
        logger,
        on_disconnect="finish",  # the answer goes on for whoever resumes it
        producer=Recorder(run, output, answer_id, chat, writer),
        heartbeat=heartbeat,
        client=client,
        send_timeout=send_timeout,
    )
    response.headers["X-AIStream-Answer-Id"] = answer_id
    return response


def resumed_response(
    store: ResumeStore,
    answer_id: str,
    after: int,
    owner: str,
    logger: logging.Logger,
    *,
    heartbeat: float,
    client: socket.socket | None,
    send_timeout: float | None,
) -> Response:
    """What answer ``answer_id`` wrote after its event ``after``, then the
    rest as it is written (see ``AIClient.resume``)."""
    if not ANSWER_ID.match(answer_id):
        return Response(status=204)
    try:
        status = store.status(answer_id)
    except Exception as exc:  # noqa: BLE001 - a clear error, never a traceback
        logger.warning("flask-aistream: the resume store is unavailable: %r", exc)
        return json_error(UNAVAILABLE, 503)
    if status is None:
        return Response(status=204)
    if status.owner != owner:  # also once it ended: it is still someone else's
        return json_error("This answer belongs to someone else.", 403)
    if status.ended and after >= status.last_seq:
        return Response(status=204)
    with _readers_lock:
        if _readers[answer_id] >= MAX_READERS_PER_ANSWER:
            return json_error("This answer has too many readers; try again later.", 429)
        _readers[answer_id] += 1
    response = guarded_response(
        follow(store, answer_id, after, status.format, heartbeat, logger, client),
        FORMAT_CLASSES.get(status.format, AIStreamFormat),
        logger,
        client=client,
        send_timeout=send_timeout,
    )
    response.headers["X-AIStream-Answer-Id"] = answer_id
    response.call_on_close(lambda: _reader_left(answer_id))
    return response


def _reader_left(answer_id: str) -> None:
    with _readers_lock:
        _readers[answer_id] -= 1
        if _readers[answer_id] <= 0:
            del _readers[answer_id]


def cancel(store: ResumeStore, writer: StoreWriter | None, answer_id: str, owner: str) -> bool:
    """Stop answer ``answer_id`` for good (see ``AIClient.cancel``)."""
    if not ANSWER_ID.match(answer_id):
        return False
    status = store.status(answer_id)
    if status is None:
        return False
    if status.owner != owner:  # also once it ended
        raise PermissionError("this answer belongs to someone else")
    if status.ended:
        return False
    cancelled = store.cancel(answer_id)
    if cancelled and writer is not None:
        writer.cancel_here(answer_id)
    return cancelled


def json_error(message: str, status: int) -> Response:
    return Response(json.dumps({"error": message}), status, mimetype="application/json")
