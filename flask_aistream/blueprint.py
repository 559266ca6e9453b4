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
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask_cors.core import get_cors_options, set_cors_headers
from werkzeug.exceptions import HTTPException

from .client import AIClient, checked_answer_options, is_done_reconnect
from .config import checked_ratelimit
from .extension import client_of

HISTORY_ROLES = ("user", "assistant")  # a browser may not send "system"


class BadInput(Exception):
    """What the browser sent is unusable; ``status`` and a message for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    """What the blueprint serves one app with, read when it is registered."""

    client: AIClient
    system: str | None
    max_question_chars: int
    max_history: int
    max_history_chars: int
    max_request_bytes: int
    origins: tuple[str, ...] | None
    cors: Any  # flask-cors' computed options, or None


def make_blueprint(
    client: AIClient | None,
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
    """See :meth:`AIClient.blueprint`. With no ``client``, the app's own
    (``app.extensions["ai"]``) serves each app the blueprint is registered
    on, so it can be made before any app exists, as in an app factory."""
    # Checked now, whatever the app: a mistake fails where it was written.
    answer_options = checked_answer_options(
        {"events": events, "on_finish": on_finish, "on_disconnect": on_disconnect}
    )
    if ratelimit is not True:
        ratelimit = checked_ratelimit(ratelimit or None)
    endpoints: weakref.WeakKeyDictionary[Flask, Endpoint] = weakref.WeakKeyDictionary()
    bp = Blueprint(name, __name__)

    @bp.record_once
    def setup(state: BlueprintSetupState) -> None:
        app: Flask = state.app  # type: ignore[assignment]
        app_client = client if client is not None else client_of(app)
        if provider is not None:
            app_client = app_client.provider(provider)
        settings = app_client.settings
        origins = settings.cors_origins if cors_origins is True else cors_origins
        origins = tuple(origins) if origins else None
        endpoints[app] = Endpoint(
            client=app_client,
            system=system if system is not None else settings.system_prompt,
            max_question_chars=max_question_chars or settings.max_question_chars,
            max_history=settings.max_history if max_history is None else max_history,
            max_history_chars=settings.max_history_chars,
            max_request_bytes=settings.max_request_bytes,
            origins=origins,
            cors=_cors_options(app, origins) if origins else None,
        )
        limit = settings.ratelimit if ratelimit is True else ratelimit
        if limit:
            _limit(app, bp, limit, settings.ratelimit_storage_uri)

    def endpoint() -> Endpoint:
        return endpoints[current_app._get_current_object()]  # type: ignore[attr-defined]

    @bp.route("/stream", methods=["GET", "POST"])
    def stream() -> Response | tuple[Response, int]:
        if is_done_reconnect():
            return Response(status=204)  # an EventSource back after [DONE]: ask nothing
        conf = endpoint()
        if _cross_site_get(request, conf.origins):
            return jsonify(error="This chat cannot be started from another site."), 403
        if authorize is not None and not authorize(request):
            return jsonify(error="You are not allowed to use this chat."), 403
        try:
            if request.method == "GET":
                question = _question(request.args.get("question"), conf.max_question_chars)
                history: list[dict[str, str]] = []
            else:
                body = _json_body(request, conf.max_request_bytes)
                question = _question(body.get("question"), conf.max_question_chars)
                history = _history(body.get("history"), conf.max_history, conf.max_history_chars)
        except BadInput as bad:
            return jsonify(error=bad.message), bad.status
        return conf.client.ask_stream(
            question, messages=history, system=conf.system, model=model, **answer_options
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

    @bp.after_request
    def cors(response: Response) -> Response:
        """Flask-CORS' headers, with the options of the app serving the request
        (known only once the blueprint is registered)."""
        conf = endpoints.get(current_app._get_current_object())  # type: ignore[attr-defined]
        if conf is not None and conf.cors is not None:
            if not response.headers.get("Access-Control-Allow-Origin"):
                set_cors_headers(response, conf.cors)
        return response

    return bp


def _cors_options(app: Any, origins: tuple[str, ...]) -> Any:
    return get_cors_options(
        app,
        {"origins": list(origins), "methods": ["GET", "POST"], "allow_headers": ["Content-Type"]},
    )


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
