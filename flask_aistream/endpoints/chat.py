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

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_cors.core import get_cors_options, set_cors_headers
from werkzeug.exceptions import HTTPException

from ..calls import OnFinish, Owner, checked_answer_options
from ..calls.checks import checked_request_options
from ..config import checked_limit, checked_provider
from ..errors import ConfigurationError
from ..extension import client_of
from ..parts import Content, JSONObject
from ..resume import UNAVAILABLE, is_done_reconnect, owner_key, parsed_event_id
from ..tools import Tool
from .agui_input import run_input
from .approval_routes import ApprovalRoutes
from .chat_input import (
    BadInput,
    ChatInput,
    InputLimits,
    check_image_bytes,
    chosen_provider,
    cross_site_get,
    history_messages,
    json_body,
    provider_choices,
    question_images,
    question_text,
    ui_messages,
    usable_chat_id,
)
from .limits import (
    ClientLimits,
    client_limits,
    key_func,
    within_limits,
)

if TYPE_CHECKING:
    from ..client import AIClient


@dataclass(frozen=True)
class Endpoint(InputLimits):
    """What the blueprint serves one app with, read when it is registered."""

    client: AIClient
    limits: ClientLimits | None
    key: Callable[[], str]
    system: str | None
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
    cors_origins: Iterable[str] | bool | None = True,
    events: Iterable[str] | None = None,
    on_finish: OnFinish | None = None,
    on_disconnect: str | None = None,
    ratelimit_key: Callable[[], object] | None = None,
    max_streams_per_client: int | None | bool = True,
    token_budget: str | None | bool = True,
    allow_images: bool | None = None,
    max_image_bytes: int | None = None,
    providers: Iterable[str] | None = None,
    format: str | None = None,
    owner: Callable[[], Owner] | None = None,
    prepare: Callable[[ChatInput], object] | None = None,
    tools: Iterable[Tool[object] | JSONObject] | None = None,
    max_steps: int | None = None,
) -> Blueprint:
    """See :meth:`AIClient.blueprint`. With no ``client``, the app's own
    (``app.extensions["ai"]``) serves each app the blueprint is registered
    on, so it can be made before any app exists, as in an app factory."""
    # Checked now, whatever the app: a mistake fails where it was written.
    answer_options = checked_answer_options(
        {
            "events": events,
            "on_finish": on_finish,
            "on_disconnect": on_disconnect,
            "format": format,
            "max_steps": max_steps,
        }
    )
    # The server's tools, checked now; a browser can never add one.
    tools = list(tools) if tools is not None else None
    checked_request_options({"tools": tools})
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
    choices = provider_choices(providers)
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
        if (format or settings.stream_format) == "vercel" and settings.vercel_protocol < 6:
            if any(isinstance(t, Tool) and t.needs_approval for t in tools or ()):
                raise ConfigurationError(
                    "useChat asks approvals from AI_VERCEL_PROTOCOL 6 on: set it, or the "
                    "aistream format, for a blueprint whose tools need approval."
                )
        images = settings.allow_images if allow_images is None else allow_images
        image_bytes = (max_image_bytes or settings.max_image_bytes) if images else 0
        if owner is None and app_client.resume_store is not None:
            app.logger.warning(
                "flask-aistream: blueprint %r has no owner=: its answers can be resumed by "
                "anyone holding their id, and useChat's chat resume route stays off (a chat "
                "id is chosen by the browser: it would let anyone read another's answer)",
                state.name,
            )
        endpoints[app] = Endpoint(
            client=app_client,
            limits=client_limits(
                app, state.name, settings, ratelimit, max_streams_per_client, token_budget
            ),
            key=key_func(app, ratelimit_key),
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

    def current_owner() -> Owner:
        """Whose answers this request may resume or cancel (``owner=``)."""
        return owner() if owner is not None else None

    def reader(resume: Callable[[], Response]) -> Response | tuple[Response, int]:
        """A reader of a stored answer: it holds a thread (and a connection
        to the store) while it follows, so it counts against the client's
        open streams, though not against the questions it may ask."""
        conf = endpoint()
        return within_limits(conf.limits, conf.key, resume, reader=True)

    def forbidden() -> tuple[Response, int] | None:
        if authorize is not None and not authorize(request):
            return jsonify(error="You are not allowed to use this chat."), 403
        return None

    @bp.route("/stream", methods=["GET", "POST"])
    def stream() -> Response | tuple[Response, int]:
        if is_done_reconnect():
            return Response(status=204)  # an EventSource back after [DONE]: ask nothing
        conf = endpoint()
        if cross_site_get(request, conf.origins):
            return jsonify(error="This chat cannot be started from another site."), 403
        refused = forbidden()
        if refused is not None:
            return refused
        # An EventSource reconnecting: the answer it was reading, never a new
        # one (and no count against the rate limit: it costs no tokens).
        seen = parsed_event_id(request.headers.get("Last-Event-ID"))
        if seen is not None and conf.client.resume_store is not None:
            user = current_owner()
            return reader(lambda: conf.client.resume(seen[0], seen[1], owner=user))
        chat_id = continued = context = None
        extra_tools: list[Tool[object]] = []  # a client's own (AG-UI's browser tools)
        question: str | None
        try:
            if request.method == "GET":
                chosen = chosen_provider(request.args.get("provider"), choices)
                question = question_text(request.args.get("question"), conf.max_question_chars)
                history: list[JSONObject] = []
                images: list[JSONObject] = []
            else:
                body = json_body(request, conf.max_request_bytes)
                chosen = chosen_provider(body.get("provider"), choices)
                if _format(conf) == "agui":  # what an AG-UI client sends
                    run = run_input(body, conf)
                    if run.decisions:
                        return approvals.agui_decisions(conf, run)
                    if not run.history or run.history[-1]["role"] not in ("user", "tool"):
                        raise BadInput(400, "The last message must be the user's or a tool's.")
                    question, history, images = None, run.history, []
                    chat_id, continued, extra_tools = run.thread_id, run.run_id, run.tools
                    context = run.context
                elif _format(conf) == "vercel":  # what useChat sends
                    ui = ui_messages(body.get("messages"), conf)
                    if ui.approvals:
                        return approvals.vercel_decisions(conf, ui)
                    question, history, images = ui.question, ui.history, ui.images
                    chat_id = usable_chat_id(body.get("id"))
                    continued = usable_chat_id(ui.continues)
                else:
                    question = question_text(body.get("question"), conf.max_question_chars)
                    history = history_messages(
                        body.get("history"),
                        conf.max_history,
                        conf.max_history_chars,
                        conf.max_image_bytes,
                    )
                    images = question_images(body.get("images"), conf.max_image_bytes)
                check_image_bytes([*history, {"content": images}], conf.max_image_bytes)
        except BadInput as bad:
            return jsonify(error=bad.message), bad.status
        asked: list[JSONObject] = []  # nothing new when browser tools' results came back
        if question is not None:
            content: Content = question
            if images:
                content = [{"type": "text", "text": question}, *images]
            asked.append({"role": "user", "content": content})
        system = conf.system
        if context:  # AG-UI's context: what the page says it is showing
            system = f"{system}\n\n{context}" if system else context
        chat = ChatInput(
            messages=[*history, *asked],
            system=system,
            provider=chosen,
            model=model,
        )
        if prepare is not None:
            prepare(chat)  # may change it, or abort()

        def ask() -> Response:
            options = {
                "tools": [*(tools or ()), *extra_tools] or None,
                **chat.options,
                "provider": chat.provider,
                "model": chat.model,
                "system": chat.system,
                "messages": chat.messages,
                "on_finish": hook,
                "owner": current_owner(),
                "chat_id": chat_id,
                "message_id": continued,
                **answer_options,
            }
            return conf.client.ask_stream(None, **options)

        return within_limits(conf.limits, conf.key, ask)

    approvals = ApprovalRoutes(endpoint, current_owner, forbidden, tools, hook, answer_options)
    bp.add_url_rule("/approvals/<approval_id>", view_func=approvals.decision, methods=["POST"])

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
        user = current_owner()
        # A chat id is the browser's choice, no secret: without a user to
        # tie it to, it would let anyone read (and replace) another's answer.
        if store is None or user is None or usable_chat_id(chat_id) is None:
            return Response(status=204)
        try:
            answer_id = store.chat_answer(f"{owner_key(user)}:{chat_id}")
        except Exception as exc:  # noqa: BLE001 - the store is down: nothing to resume
            client.logger.warning("flask-aistream: the resume store is unavailable: %r", exc)
            answer_id = None
        if answer_id is None:
            return Response(status=204)
        return reader(lambda: client.resume(answer_id, 0, owner=user))

    @bp.route("/stream/<answer_id>", methods=["GET"])
    def resume(answer_id: str) -> Response | tuple[Response, int]:
        """An answer's events after ``?after=<sequence>`` (default: all), then
        the rest live, for clients that read with fetch; an EventSource
        reconnecting here resumes from its ``Last-Event-ID``."""
        refused = forbidden()
        if refused is not None:
            return refused
        after = request.args.get("after", "0")
        if not (after.isascii() and after.isdigit()) or len(after) > 9:  # not "²"
            return jsonify(error="'after' must be an event's sequence number."), 400
        seen = parsed_event_id(request.headers.get("Last-Event-ID"))
        since = seen[1] if seen is not None and seen[0] == answer_id else int(after)
        user = current_owner()
        return reader(lambda: endpoint().client.resume(answer_id, since, owner=user))

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
    def http_error(exc: HTTPException) -> ResponseReturnValue:
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
