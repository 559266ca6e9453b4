"""A chat endpoint a browser may call: validation, rate limit and CORS.

Mount it with::

    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api/chat")

``GET <prefix>/stream?question=...`` serves ``EventSource`` (which can only
GET); ``POST <prefix>/stream`` with ``{"question": ..., "history": [...]}``
serves ``fetch`` readers. Both answer with the relay's SSE stream. Anything a
browser sends wrong gets a 4xx JSON ``{"error": ...}``, never a stream.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, Request, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .client import AIClient, is_done_reconnect
from .config import checked_ratelimit

HISTORY_ROLES = ("user", "assistant")  # a browser may not send "system"


class BadInput(Exception):
    """What the browser sent is unusable; ``status`` and a message for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def make_blueprint(
    client: AIClient,
    *,
    name: str = "aistream",
    provider: str | None = None,
    model: str | None = None,
    system: str | None = None,
    authorize: Callable[[Request], bool] | None = None,
    max_question_chars: int | None = None,
    max_history: int | None = None,
    ratelimit: str | None | bool = True,
    cors_origins: Any = True,
    events: Any = None,
    on_finish: Callable[[Any], Any] | None = None,
    on_disconnect: str | None = None,
) -> Blueprint:
    """See :meth:`AIClient.blueprint`."""
    settings = client.settings
    # What each answer is streamed with, checked now rather than at the first question.
    answer_options = client.checked_answer_options(
        {"events": events, "on_finish": on_finish, "on_disconnect": on_disconnect}
    )
    if provider is not None:
        client = client.provider(provider)
    system = system if system is not None else settings.system_prompt
    max_question_chars = max_question_chars or settings.max_question_chars
    max_history = settings.max_history if max_history is None else max_history
    ratelimit = settings.ratelimit if ratelimit is True else checked_ratelimit(ratelimit or None)
    origins = settings.cors_origins if cors_origins is True else cors_origins

    bp = Blueprint(name, __name__)

    @bp.route("/stream", methods=["GET", "POST"])
    def stream() -> Response | tuple[Response, int]:
        if is_done_reconnect():
            return Response(status=204)  # an EventSource back after [DONE]: ask nothing
        if _cross_site_get(request, origins):
            return jsonify(error="This chat cannot be started from another site."), 403
        if authorize is not None and not authorize(request):
            return jsonify(error="You are not allowed to use this chat."), 403
        try:
            if request.method == "GET":
                question, history = _question(request.args.get("question"), max_question_chars), []
            else:
                body = _json_body(request, settings.max_request_bytes)
                question = _question(body.get("question"), max_question_chars)
                history = _history(body.get("history"), max_history, settings.max_history_chars)
        except BadInput as bad:
            return jsonify(error=bad.message), bad.status
        return client.ask_stream(
            question, messages=history, system=system, model=model, **answer_options
        )

    @bp.route("/stream", methods=["PUT", "DELETE", "PATCH"])
    def other_methods() -> tuple[Response, int, dict[str, str]]:
        """Flask's own 405 would skip this blueprint's handlers (no JSON, no
        CORS headers): answer it here."""
        return (
            jsonify(error=f"Use GET or POST, not {request.method}."),
            405,
            {"Allow": "GET, POST, OPTIONS"},
        )

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        """Errors of this blueprint's routes (an ``authorize`` that aborts
        with 401, say) as JSON, like the rest of its answers. One that
        carries its own response (the rate limit's 429) keeps it."""
        if exc.response is not None:
            return exc.response
        return jsonify(error=exc.description), exc.code or 500

    if origins:
        from flask_cors import CORS

        CORS(bp, origins=list(origins), methods=["GET", "POST"], allow_headers=["Content-Type"])
    if ratelimit:
        bp.record_once(
            lambda state: _limit(state.app, bp, ratelimit, settings.ratelimit_storage_uri)
        )
    return bp


def _cross_site_get(req: Request, origins: Any) -> bool:
    """A GET that another site's page made: an ``<img src>`` or a link can
    start a paid stream with no script at all (and send no ``Origin``). A
    POST with JSON cannot be sent cross-site without CORS allowing it."""
    if req.method != "GET":
        return False
    origin = req.headers.get("Origin")
    if origin is not None and origins and (origin in origins or "*" in origins):
        return False  # CORS lets that site in
    if req.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    return origin is not None and urlsplit(origin).netloc != req.host


def _limit(app: Any, bp: Blueprint, ratelimit: str, storage_uri: str) -> None:
    """Limit the blueprint per client address, with the app's own
    ``Limiter`` when it has one (its storage, its key function's peers),
    else with one of ours on ``storage_uri``."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    limiters = app.extensions.get("limiter") or set()
    limiter = next(iter(limiters), None)
    if limiter is None:
        limiter = Limiter(get_remote_address, app=app, storage_uri=storage_uri)
    limiter.limit(
        ratelimit,
        key_func=get_remote_address,
        methods=["GET", "POST"],  # never count a CORS preflight
        on_breach=_too_many_requests,
        exempt_when=is_done_reconnect,  # answered with a 204, at no cost
    )(bp)


def _too_many_requests(limit: Any) -> Response:
    reset_at = limit.window[0]  # window: (reset time, remaining)
    retry_after = max(1, math.ceil(reset_at - time.time()))
    response = jsonify(
        error=f"Too many questions: the limit is {limit.limit}. Try again in {retry_after} s."
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def _json_body(req: Request, max_bytes: int) -> Mapping[str, Any]:
    if not req.is_json:
        raise BadInput(415, "Send the question as JSON (Content-Type: application/json).")
    too_large = BadInput(413, f"The request is too large (at most {max_bytes} bytes).")
    if req.content_length is not None and req.content_length > max_bytes:
        raise too_large  # said up front: not read at all
    raw = req.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large  # chunked, or a Content-Length that lied
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise BadInput(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadInput(400, 'Send a JSON object: {"question": "..."}.')
    return body


def _question(value: Any, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(400, "Ask a question: 'question' must be a non-empty string.")
    question = value.strip()
    if len(question) > max_chars:
        raise BadInput(400, f"The question is too long (at most {max_chars} characters).")
    return question


def _history(value: Any, max_messages: int, max_chars: int) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(400, "'history' must be a list of messages.")
    if len(value) > max_messages:
        raise BadInput(400, f"The history is too long (at most {max_messages} messages).")
    history, total = [], 0
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in HISTORY_ROLES:
            raise BadInput(
                400, "Each history message needs a role of 'user' or 'assistant' and a content."
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise BadInput(400, "Each history message's content must be a string.")
        total += len(content)
        history.append({"role": message["role"], "content": content})
    if total > max_chars:
        raise BadInput(400, f"The history is too long (at most {max_chars} characters).")
    return history
