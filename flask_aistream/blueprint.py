"""A chat endpoint a browser may call: validation, rate limit and CORS.

Mount it with::

    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api/chat")

``GET <prefix>/stream?question=...`` serves ``EventSource`` (which can only
GET); ``POST <prefix>/stream`` with ``{"question": ..., "history": [...]}``
serves ``fetch`` readers. Both answer with the relay's SSE stream. Anything a
browser sends wrong gets a 4xx JSON ``{"error": ...}``, never a stream.

Images are refused unless the blueprint takes them (``allow_images=True`` or
``AI_ALLOW_IMAGES``): then a POST may add ``"images": [{"data": <base64>,
"media_type": "image/png"}, ...]`` to its question (and history messages may
hold image parts), up to ``max_image_bytes`` in all.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask_cors.core import get_cors_options, set_cors_headers
from werkzeug.exceptions import HTTPException

from .client import AIClient, checked_answer_options, is_done_reconnect, owner_key
from .config import checked_provider
from .errors import ConfigurationError, InvalidRequestError
from .extension import client_of
from .providers.base import text_of
from .ratelimit import ClientLimits, Refusal, checked_limit, parsed_limit, storage_for
from .request import checked_content, image_bytes
from .resume import CHAT_ID, UNAVAILABLE, parsed_event_id

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
    limits: ClientLimits | None
    key: Callable[[], str]
    system: str | None
    max_question_chars: int
    max_history: int
    max_history_chars: int
    max_request_bytes: int
    #: The most image bytes (decoded) a request may carry; 0: no images.
    max_image_bytes: int
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
    ratelimit_key: Callable[[], Any] | None = None,
    max_streams_per_client: int | None | bool = True,
    token_budget: str | None | bool = True,
    allow_images: bool | None = None,
    max_image_bytes: int | None = None,
    providers: Any = None,
    format: str | None = None,
    owner: Callable[[], Any] | None = None,
) -> Blueprint:
    """See :meth:`AIClient.blueprint`. With no ``client``, the app's own
    (``app.extensions["ai"]``) serves each app the blueprint is registered
    on, so it can be made before any app exists, as in an app factory."""
    # Checked now, whatever the app: a mistake fails where it was written.
    answer_options = checked_answer_options(
        {"events": events, "on_finish": on_finish, "on_disconnect": on_disconnect, "format": format}
    )
    if ratelimit is not True:
        ratelimit = checked_limit(ratelimit or None, "ratelimit")
    if token_budget is not True:
        token_budget = checked_limit(token_budget or None, "token_budget", many=False)
    if max_streams_per_client not in (True, None) and (
        not isinstance(max_streams_per_client, int) or max_streams_per_client < 1
    ):
        raise ConfigurationError(
            f"max_streams_per_client must be a whole number >= 1, not {max_streams_per_client!r}."
        )
    hook = answer_options.pop("on_finish", None)
    choices = _choices(providers)
    endpoints: weakref.WeakKeyDictionary[Flask, Endpoint] = weakref.WeakKeyDictionary()
    bp = Blueprint(name, __name__)

    @bp.record_once
    def setup(state: BlueprintSetupState) -> None:
        app: Flask = state.app  # type: ignore[assignment]
        app_client = client if client is not None else client_of(app)
        for name in choices:
            checked_provider(name, app_client.providers, "providers")
        if provider is not None:
            app_client = app_client.provider(provider)
        settings = app_client.settings
        origins = settings.cors_origins if cors_origins is True else cors_origins
        origins = tuple(origins) if origins else None
        images = settings.allow_images if allow_images is None else allow_images
        image_bytes = (max_image_bytes or settings.max_image_bytes) if images else 0
        endpoints[app] = Endpoint(
            client=app_client,
            limits=client_limits(
                app, state.name, settings, ratelimit, max_streams_per_client, token_budget
            ),
            key=_key_func(app, ratelimit_key),
            system=system if system is not None else settings.system_prompt,
            max_question_chars=max_question_chars or settings.max_question_chars,
            max_history=settings.max_history if max_history is None else max_history,
            max_history_chars=settings.max_history_chars,
            # Base64 makes 3 bytes of image 4 bytes of JSON.
            max_request_bytes=settings.max_request_bytes + image_bytes * 4 // 3 + 4,
            max_image_bytes=image_bytes,
            origins=origins,
            cors=_cors_options(app, origins) if origins else None,
        )

    def endpoint() -> Endpoint:
        return endpoints[current_app._get_current_object()]  # type: ignore[attr-defined]

    def current_owner() -> Any:
        """Whose answers this request may resume or cancel (``owner=``)."""
        return owner() if owner is not None else None

    def forbidden() -> tuple[Response, int] | None:
        if authorize is not None and not authorize(request):
            return jsonify(error="You are not allowed to use this chat."), 403
        return None

    @bp.route("/stream", methods=["GET", "POST"])
    def stream() -> Response | tuple[Response, int]:
        if is_done_reconnect():
            return Response(status=204)  # an EventSource back after [DONE]: ask nothing
        conf = endpoint()
        if _cross_site_get(request, conf.origins):
            return jsonify(error="This chat cannot be started from another site."), 403
        refused = forbidden()
        if refused is not None:
            return refused
        # An EventSource reconnecting: the answer it was reading, never a new
        # one (and no count against the rate limit: it costs no tokens).
        resumed = conf.client.resume_request(current_owner())
        if resumed is not None:
            return resumed
        chat_id = None
        try:
            if request.method == "GET":
                chosen = _chosen(request.args.get("provider"), choices)
                question = _question(request.args.get("question"), conf.max_question_chars)
                history: list[dict[str, Any]] = []
                images: list[dict[str, Any]] = []
            else:
                body = json_body(request, conf.max_request_bytes)
                chosen = _chosen(body.get("provider"), choices)
                if _format(conf) == "vercel":  # what useChat sends
                    question, history, images = ui_messages(body.get("messages"), conf)
                    chat_id = _chat_id(body.get("id"))
                else:
                    question = _question(body.get("question"), conf.max_question_chars)
                    history = _history(
                        body.get("history"),
                        conf.max_history,
                        conf.max_history_chars,
                        conf.max_image_bytes,
                    )
                    images = _images(body.get("images"), conf.max_image_bytes)
                _check_image_bytes([*history, {"content": images}], conf.max_image_bytes)
        except BadInput as bad:
            return jsonify(error=bad.message), bad.status
        messages = history
        if images:
            content = [{"type": "text", "text": question}, *images]
            messages = [*history, {"role": "user", "content": content}]

        def ask(on_finish: Callable[[Any], Any] | None) -> Response:
            return conf.client.ask_stream(
                None if images else question,
                provider=chosen,
                messages=messages,
                system=conf.system,
                model=model,
                on_finish=on_finish,
                owner=current_owner(),
                chat_id=chat_id,
                **answer_options,
            )

        limits = conf.limits
        if limits is None:
            return ask(hook)
        client_key = conf.key()
        refusal = limits.admit(client_key)
        if refusal is not None:
            return _refused(refusal)

        def finished(answer: Any) -> None:
            if answer.usage is not None:
                limits.spend(client_key, answer.usage.total_tokens)
            if hook is not None:
                hook(answer)

        try:
            response = ask(finished)
        except BaseException:
            limits.release(client_key)
            raise
        # The client's stream is over when the server closes the response,
        # whether it was read to the end, left early, or never sent at all.
        response.call_on_close(lambda: limits.release(client_key))
        return response

    def _format(conf: Endpoint) -> str:
        return format or conf.client.settings.stream_format

    # useChat({resume: true}) asks ``{api}/{chat id}/stream`` on load: with
    # ``api: "<prefix>/stream"`` (as the README shows) that is the first.
    @bp.route("/stream/<chat_id>/stream", methods=["GET"])
    @bp.route("/<chat_id>/stream", methods=["GET"])
    def resume_chat(chat_id: str) -> Response | tuple[Response, int]:
        """The chat's answer still being written, from its start; 204 when
        there is none (or resume is off)."""
        refused = forbidden()
        if refused is not None:
            return refused
        client = endpoint().client
        store = client.resume_store
        if store is None or _chat_id(chat_id) is None:
            return Response(status=204)
        try:
            answer_id = store.chat_answer(f"{owner_key(current_owner())}:{chat_id}")
        except Exception as exc:  # noqa: BLE001 - the store is down: nothing to resume
            client.logger.warning("flask-aistream: the resume store is unavailable: %r", exc)
            answer_id = None
        if answer_id is None:
            return Response(status=204)
        return client.resume(answer_id, 0, owner=current_owner())

    @bp.route("/stream/<answer_id>", methods=["GET"])
    def resume(answer_id: str) -> Response | tuple[Response, int]:
        """An answer's events after ``?after=<sequence>`` (default: all), then
        the rest live, for clients that read with fetch; an EventSource
        reconnecting here resumes from its ``Last-Event-ID``."""
        refused = forbidden()
        if refused is not None:
            return refused
        after = request.args.get("after", "0")
        if not after.isdigit() or len(after) > 9:
            return jsonify(error="'after' must be an event's sequence number."), 400
        seen = parsed_event_id(request.headers.get("Last-Event-ID"))
        since = seen[1] if seen is not None and seen[0] == answer_id else int(after)
        return endpoint().client.resume(answer_id, since, owner=current_owner())

    @bp.route("/stream/<answer_id>/cancel", methods=["POST"])
    def cancel(answer_id: str) -> Response | tuple[Response, int]:
        """Stop an answer for good (the page's Stop button): 202, or 204 when
        it had already ended."""
        refused = forbidden()
        if refused is not None:
            return refused
        client = endpoint().client
        try:
            cancelled = client.cancel(answer_id, owner=current_owner())
        except PermissionError:
            return jsonify(error="This answer belongs to someone else."), 403
        except Exception as exc:  # noqa: BLE001 - the store is down
            client.logger.warning("flask-aistream: the resume store is unavailable: %r", exc)
            return jsonify(error=UNAVAILABLE), 503
        return Response(status=202 if cancelled else 204)

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
        {
            "origins": list(origins),
            "methods": ["GET", "POST"],
            "allow_headers": ["Content-Type", "Last-Event-ID"],
            # a fetch client of another origin resumes by this id
            "expose_headers": ["X-AIStream-Answer-Id"],
        },
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


def client_limits(
    app: Flask,
    scope: str,
    settings: Any,
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


def _key_func(app: Flask, ratelimit_key: Callable[[], Any] | None) -> Callable[[], str]:
    """Whom a limit counts: ``ratelimit_key`` (e.g. the signed-in user's id),
    else the app's own ``Limiter``'s key function, else the client address."""
    if ratelimit_key is not None:
        return lambda: str(ratelimit_key())
    limiter = next(iter(app.extensions.get("limiter") or ()), None)
    key_func = getattr(limiter, "_key_func", None)
    if key_func is not None:
        return lambda: str(key_func())
    return lambda: request.remote_addr or "unknown"


def _refused(refusal: Refusal) -> tuple[Response, int]:
    response = jsonify(error=refusal.message)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response, refusal.status


def json_body(req: Request, max_bytes: int) -> Mapping[str, Any]:
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


def ui_messages(
    value: Any, conf: Endpoint
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The Vercel AI SDK's UI messages (``{id, role, parts: [...]}``) as the
    question, the history before it and the question's images. Earlier
    assistant turns keep their text only (reasoning, steps, tools, sources
    and data parts are dropped; a turn left empty goes); a ``system`` message
    is refused (a browser never sets the system prompt), as is a user part
    that is not text, unless images are allowed."""
    if not isinstance(value, list) or not value:
        raise BadInput(400, "Send the conversation: 'messages' must be a list of UI messages.")
    turns: list[dict[str, Any]] = []
    for message in value:
        role = message.get("role") if isinstance(message, dict) else None
        parts = message.get("parts") if isinstance(message, dict) else None
        if role == "system":
            raise BadInput(400, "A system message cannot be sent from the browser.")
        if role not in HISTORY_ROLES or not isinstance(parts, list):
            raise BadInput(400, "Each message needs a role of 'user' or 'assistant' and parts.")
        text = "".join(
            part["text"]
            for part in parts
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
        if role == "assistant":
            if text:
                turns.append({"role": "assistant", "content": text})
            continue
        images = []
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                continue
            if kind == "file" and conf.max_image_bytes:
                images.append({"url": part.get("url"), "media_type": part.get("mediaType")})
            elif kind not in ("step-start",):
                raise BadInput(400, "Only text can be sent in a message.")
        image_parts = _images(images, conf.max_image_bytes)
        content: Any = [{"type": "text", "text": text}, *image_parts] if image_parts else text
        turns.append({"role": "user", "content": content})
    if not turns or turns[-1]["role"] != "user":
        raise BadInput(400, "The last message must be the user's question.")
    last = turns.pop()
    question = _question(text_of(last["content"]), conf.max_question_chars)
    images = (
        [part for part in last["content"] if part["type"] == "image"]
        if isinstance(last["content"], list)
        else []
    )
    if len(turns) > conf.max_history:
        raise BadInput(400, f"The history is too long (at most {conf.max_history} messages).")
    if sum(len(text_of(turn["content"])) for turn in turns) > conf.max_history_chars:
        raise BadInput(
            400, f"The history is too long (at most {conf.max_history_chars} characters)."
        )
    return question, turns, images


def _chat_id(value: Any) -> str | None:
    """useChat's chat id, if it sent a usable one (it keys the resume route)."""
    return value if isinstance(value, str) and CHAT_ID.match(value) else None


def _choices(providers: Any) -> tuple[str, ...]:
    """The providers a browser may pick from (``"provider"`` in its request)."""
    if providers is None:
        return ()
    if isinstance(providers, str) or not all(isinstance(name, str) for name in providers):
        raise ConfigurationError(f"providers must be a list of provider names, not {providers!r}.")
    return tuple(providers)


def _chosen(value: Any, choices: tuple[str, ...]) -> str | None:
    """The provider the browser picked, if it may pick one; ``None``: the
    default. Like ``system`` and ``model``, it is ignored where the server
    offers no choice."""
    if value is None or not choices:
        return None
    if value not in choices:
        raise BadInput(400, "This chat cannot use that provider.")
    return value  # type: ignore[no-any-return]


def _images(value: Any, max_bytes: int) -> list[dict[str, Any]]:
    """The images sent with the question: data only (``{"data", "media_type"}``
    or a ``data:`` URL), never a URL the provider would fetch for a stranger."""
    if value is None or value == []:
        return []
    if not max_bytes:
        raise BadInput(400, "This chat does not take images.")
    if not isinstance(value, list):
        raise BadInput(400, "'images' must be a list of images.")
    parts = [{"type": "image", **image} if isinstance(image, dict) else image for image in value]
    return [part for part in _content_parts(parts) if part["type"] == "image"]


def _content_parts(parts: Any) -> list[dict[str, Any]]:
    try:
        checked = checked_content(parts)
    except InvalidRequestError as exc:
        raise BadInput(400, f"Bad message content: {exc}") from None
    if isinstance(checked, str) or any("url" in part for part in checked):
        raise BadInput(400, "Send images as data (base64) with a media_type, not as URLs.")
    return checked


def _check_image_bytes(messages: list[dict[str, Any]], max_bytes: int) -> None:
    if sum(image_bytes(message["content"]) for message in messages) > max_bytes:
        raise BadInput(413, f"The images are too large (at most {max_bytes} bytes in all).")


def _history(
    value: Any, max_messages: int, max_chars: int, max_image_bytes: int = 0
) -> list[dict[str, Any]]:
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
        if isinstance(content, list) and max_image_bytes:
            content = _content_parts(content)
        elif not isinstance(content, str):
            raise BadInput(400, "Each history message's content must be a string.")
        total += len(text_of(content))
        history.append({"role": message["role"], "content": content})
    if total > max_chars:
        raise BadInput(400, f"The history is too long (at most {max_chars} characters).")
    return history
