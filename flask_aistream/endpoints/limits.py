"""The blueprint's limits per client: questions per period, streams open at
once, and tokens per period (from the answers' usage).

They are counted with ``limits``, the library under Flask-Limiter, in the
storage its URI names (``memory://`` per process, ``redis://`` shared by
every worker and host), or in the app's own ``Limiter``'s storage when it has
one. When that storage fails (Redis down or hung), a question is let through
and one warning is logged for the whole outage (fail open, like
Flask-Limiter's ``swallow_errors``), or, with ``AI_RATELIMIT_FAIL_OPEN =
False``, refused with a 503.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from flask import Flask, Response, jsonify, make_response, request
from flask.typing import ResponseReturnValue
from limits import RateLimitItem
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from ..config import Settings, parsed_limit
from ..parts import Answer, JSONObject
from ..providers.wire import text_of
from ..signals import watched_by

if TYPE_CHECKING:
    from ..answer import AnswerRun
    from ..providers.base import ChatRequest

#: Seconds to wait for Redis to connect or answer: a hung Redis must not hang
#: every question (redis-py waits for ever by default).
REDIS_TIMEOUT = 1.0
#: An open-streams count expires this long after the last stream it counted
#: started, should the worker holding them die without releasing them.
STREAMS_EXPIRY = 15 * 60


@dataclass(frozen=True)
class Refusal:
    """Why a question is refused: the status, a message, and when to retry."""

    status: int
    message: str
    retry_after: int | None = None


def storage_for(uri: str) -> Storage:
    options: JSONObject = {}
    if uri.startswith(("redis://", "rediss://", "redis+")):
        options = {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}
    return storage_from_string(uri, **options)  # type: ignore[return-value]  # never async here


class ClientLimits:
    """The limits of one blueprint on one app."""

    def __init__(
        self,
        storage: Storage,
        *,
        scope: str,
        rate: list[RateLimitItem],
        max_streams: int | None,
        token_budget: RateLimitItem | None,
        fail_open: bool,
        logger: logging.Logger,
    ) -> None:
        self.storage = storage
        self.window = FixedWindowRateLimiter(storage)
        self.scope = scope  # one blueprint's counts apart from another's
        self.rate = rate
        self.max_streams = max_streams
        self.token_budget = token_budget
        self.fail_open = fail_open
        self.logger = logger
        self._down = False
        self._lock = threading.Lock()

    def admit(self, client: str) -> Refusal | None:
        """Count a question from ``client`` and open a stream for it; a
        refusal if a limit says no (then nothing was counted as open)."""
        try:
            refusal = self._check(client)
        except Exception as exc:  # the storage failed: redis-py's errors, limits' own
            return self._outage(exc)
        self._recovered()
        return refusal

    def _check(self, client: str) -> Refusal | None:
        if self.token_budget is not None:
            reset_at, remaining = self.window.get_window_stats(
                self.token_budget, self.scope, "tokens", client
            )
            if remaining <= 0:
                return _too_many(
                    f"Token budget used up: {self.token_budget} for each client.", reset_at
                )
        for item in self.rate:
            if not self.window.hit(item, self.scope, "questions", client):
                reset_at, _ = self.window.get_window_stats(item, self.scope, "questions", client)
                return _too_many(f"Too many questions: the limit is {item}.", reset_at)
        return self._open_stream(client)

    def _open_stream(self, client: str) -> Refusal | None:
        if self.max_streams is None:
            return None
        key = self._streams_key(client)
        if self.storage.incr(key, STREAMS_EXPIRY) > self.max_streams:
            self._decr(key)
            return Refusal(
                429,
                f"Too many answers at once: at most {self.max_streams} per client. "
                "Wait for one to finish.",
                retry_after=5,
            )
        return None

    def admit_stream(self, client: str) -> Refusal | None:
        """Open a stream for ``client`` that asks nothing (a reader of a
        stored answer): counted against ``max_streams`` only."""
        if self.max_streams is None:
            return None
        try:
            refusal = self._open_stream(client)
        except Exception as exc:
            return self._outage(exc)
        self._recovered()
        return refusal

    def release(self, client: str) -> None:
        """One of ``client``'s streams ended."""
        if self.max_streams is None:
            return
        try:
            self._decr(self._streams_key(client))
        except Exception as exc:
            self._outage(exc)

    def spend(self, client: str, tokens: int) -> None:
        """Count an answer's tokens against ``client``'s budget."""
        if self.token_budget is None or tokens <= 0:
            return
        try:  # counted whole, past the budget too: the next question is refused
            self.window.hit(self.token_budget, self.scope, "tokens", client, cost=tokens)
        except Exception as exc:
            self._outage(exc)

    def _streams_key(self, client: str) -> str:
        return f"flask-aistream/{self.scope}/streams/{client}"

    def _decr(self, key: str) -> None:
        decr = getattr(self.storage, "decr", None)
        if decr is not None:
            decr(key)
        else:  # a storage with no decrement: count down by a negative increment
            self.storage.incr(key, STREAMS_EXPIRY, amount=-1)

    def _outage(self, exc: Exception) -> Refusal | None:
        with self._lock:
            first, self._down = not self._down, True
        if first:
            self.logger.warning(
                "flask-aistream: the rate-limit storage failed (%r); %s until it is back",
                exc,
                "letting questions through" if self.fail_open else "refusing questions",
            )
        if self.fail_open:
            return None
        return Refusal(503, "The chat is unavailable right now; try again in a moment.", 5)

    def _recovered(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                self.logger.warning("flask-aistream: the rate-limit storage is back")


class StreamTicket:
    """One stream a client was admitted for (an :class:`AnswerWatcher`):
    counted open until its answer ends (which may be after its response
    closed: the "finish" policy, resume), then charged the answer's tokens;
    a response that never started its answer ends it when it closes."""

    def __init__(self, limits: ClientLimits, client: str) -> None:
        self.limits = limits
        self.client = client
        self.prompt_chars = 0
        self._runs: list[AnswerRun] = []
        self._released = threading.Lock()

    def started(self, run: AnswerRun, chat: ChatRequest) -> None:
        self._runs.append(run)
        self.prompt_chars = len(chat.system or "") + sum(
            len(text_of(message["content"])) for message in chat.messages
        )

    def ended(self, answer: Answer) -> None:
        self.release()  # the answer is over: so is its stream, before any hook runs
        self.limits.spend(self.client, tokens_to_charge(answer, self.prompt_chars))

    def release(self) -> None:
        """Count the stream closed, once, whoever calls first."""
        if self._released.acquire(blocking=False):
            self.limits.release(self.client)

    def closed(self) -> None:
        """The response closed: a stream whose answer never started ends now."""
        if not any(run.started for run in self._runs):
            self.release()


def counted(view: Callable[[], ResponseReturnValue], ticket: StreamTicket) -> Response:
    """The response of ``view`` (which asks for an answer), its stream
    counted by ``ticket`` until the answer ends."""
    with watched_by(ticket):
        try:
            response = make_response(view())
        except BaseException:
            ticket.release()
            raise
    response.call_on_close(ticket.closed)
    return response


def tokens_to_charge(answer: Answer, prompt_chars: int) -> int:
    """What an answer costs a client's budget: its usage, or, when it ended
    before the provider reported it (a client that left just before the
    last chunk, a failure), an estimate that counts what was asked and what
    came (about four characters a token), whichever is more."""
    reported = answer.usage.total_tokens if answer.usage is not None else 0
    if answer.usage is not None and answer.finish_reason not in ("cancelled", "error"):
        return reported
    came = len(answer.text) + len(answer.reasoning)
    if answer.error is not None and not came:
        return reported  # failed before it answered: nothing was generated
    return max(reported, math.ceil(prompt_chars / 4) + math.ceil(came / 4))


def _too_many(message: str, reset_at: float) -> Refusal:
    retry_after = max(1, math.ceil(reset_at - time.time()))
    return Refusal(429, f"{message} Try again in {retry_after} s.", retry_after)


def client_limits(
    app: Flask,
    scope: str,
    settings: Settings,
    ratelimit: Any,  # a limit string (checked when the blueprint was made), None, or True
    max_streams: int | None | bool,
    token_budget: Any,  # likewise
) -> ClientLimits | None:
    """A blueprint's limits on ``app`` (``True``: the setting's), counted in
    the app's own ``Limiter``'s storage when it has one, else in
    ``AI_RATELIMIT_STORAGE_URI``."""
    if ratelimit is True:
        ratelimit = settings.ratelimit
    if max_streams is True:
        max_streams = settings.max_streams_per_client
    if token_budget is True:
        token_budget = settings.token_budget
    if not (ratelimit or max_streams or token_budget):
        return None
    limiter = next(iter(app.extensions.get("limiter") or ()), None)
    storage = (
        limiter.storage if limiter is not None else storage_for(settings.ratelimit_storage_uri)
    )
    return ClientLimits(
        storage,
        scope=scope,
        rate=parsed_limit(ratelimit, "ratelimit") if ratelimit else [],
        max_streams=max_streams,
        token_budget=parsed_limit(token_budget, "token_budget", many=False)
        if token_budget
        else None,
        fail_open=settings.ratelimit_fail_open,
        logger=app.logger,
    )


def key_func(app: Flask, ratelimit_key: Callable[[], Any] | None) -> Callable[[], str]:
    """Whom a limit counts: ``ratelimit_key`` (e.g. the signed-in user's id),
    else the app's own ``Limiter``'s key function, else the client address."""
    if ratelimit_key is not None:
        return lambda: str(ratelimit_key())
    limiter = next(iter(app.extensions.get("limiter") or ()), None)
    key_func = getattr(limiter, "_key_func", None)
    if key_func is not None:
        return lambda: str(key_func())
    return lambda: request.remote_addr or "unknown"


def refusal_response(refusal: Refusal) -> tuple[Response, int]:
    response = jsonify(error=refusal.message)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response, refusal.status


def within_limits(
    limits: ClientLimits | None,
    key: Callable[[], str],
    view: Callable[[], ResponseReturnValue],
    *,
    reader: bool = False,
    refuse: Callable[[Refusal], tuple[Response, int]] | None = None,
) -> Response | tuple[Response, int]:
    """``view``'s response when the client is within its limits (a new
    question; with ``reader``, only an open stream: it asks nothing), its
    stream counted until its answer ends; else the refusal, as ``refuse``
    words it (by default our JSON error)."""
    if limits is None:
        return make_response(view())
    client_key = key()
    refusal = limits.admit_stream(client_key) if reader else limits.admit(client_key)
    if refusal is not None:
        return (refuse or refusal_response)(refusal)
    return counted(view, StreamTicket(limits, client_key))
