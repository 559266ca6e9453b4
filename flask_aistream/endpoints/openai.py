"""An OpenAI-compatible endpoint: ``POST <prefix>/v1/chat/completions`` and
``GET <prefix>/v1/models``, so that any OpenAI client (the SDKs, editors,
agents) can use the app's providers, with the provider keys kept on the
server.

Clients name the app's model aliases (``models=`` or ``AI_MODELS``), prove
who they are with ``Authorization: Bearer <token>`` (checked by the app's
``authorize``), and get OpenAI's own shapes back: chunks, errors and
statuses. A failure before the first token is an HTTP error, as OpenAI's
own API answers: the endpoint waits for the provider's first part before it
answers.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from ..answer import AnswerRun
from ..calls import call_options
from ..config import checked_limit, checked_models
from ..errors import AIStreamError, ConfigurationError, ProviderError
from ..extension import client_of
from ..formats import new_id
from ..formats.openai import OPENAI_FINISH_REASONS, OpenAIFormat, openai_error, openai_usage
from ..formats.responses import ResponsesFormat, answer_items, ending, response_object
from ..parts import JSONObject, Options
from ..serving.guard import watching_client
from ..serving.server import client_socket
from .chat_input import BadInput, ChatInput, json_body
from .limits import ClientLimits, Refusal, client_limits, within_limits
from .responses_input import BadRequest, responses_options

if TYPE_CHECKING:
    from ..client import AIClient

#: Our error kinds as HTTP statuses (the provider's own auth failure is the
#: server's problem, not the client's: a 502).
STATUSES = {"bad_request": 400, "not_found": 404, "rate_limit": 429, "quota": 429, "blocked": 400}
#: What a request may hold; anything else is refused rather than ignored.
FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "stop",
        "seed",
        "n",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning_effort",
        "user",
        "metadata",
        "store",
        "parallel_tool_calls",
    }
)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def response(self) -> tuple[Response, int]:
        return jsonify(openai_error(self.message, self.kind, self.code)), self.status


@dataclass(frozen=True)
class OpenAIEndpoint:
    """What the blueprint serves one app with, read when it is registered."""

    client: AIClient
    #: alias -> (provider, model or None)
    models: Mapping[str, tuple[str, str | None]]
    limits: ClientLimits | None


def make_openai_blueprint(
    client: AIClient | None,
    *,
    authorize: Callable[[Request], bool] | None = None,
    models: Mapping[str, str] | None = None,
    name: str = "aistream_openai",
    system: str | None = None,
    ratelimit: str | None | bool = True,
    max_streams_per_client: int | None | bool = True,
    token_budget: str | None | bool = True,
    prepare: Callable[[ChatInput], object] | None = None,
) -> Blueprint:
    """See :meth:`AIClient.openai_blueprint`."""
    if authorize is None or not callable(authorize):
        raise ConfigurationError(
            "openai_blueprint() needs authorize=: a function of the request that checks the "
            "client's Bearer token (an open endpoint spends your provider key for anyone; "
            "pass authorize=lambda request: True to open it on purpose)."
        )
    if ratelimit is not True:
        ratelimit = checked_limit(ratelimit or None, "ratelimit")
    if token_budget is not True:
        token_budget = checked_limit(token_budget or None, "token_budget", many=False)
    bp = Blueprint(name, __name__)
    endpoints: weakref.WeakKeyDictionary[Flask, OpenAIEndpoint] = weakref.WeakKeyDictionary()

    @bp.record_once
    def setup(state: BlueprintSetupState) -> None:
        app: Flask = state.app  # type: ignore[assignment]
        app_client = client if client is not None else client_of(app)
        settings = app_client.settings
        aliases = (
            checked_models(models, app_client.providers, "models")
            if models is not None
            else settings.models
        )
        if not aliases:  # the default provider's model, under its own name
            default = app_client.default_provider
            aliases = {settings.model_for(default): (default, None)}
        endpoints[app] = OpenAIEndpoint(
            client=app_client,
            models=aliases,
            limits=client_limits(
                app, state.name, settings, ratelimit, max_streams_per_client, token_budget
            ),
        )

    def conf() -> OpenAIEndpoint:
        return endpoints[current_app._get_current_object()]  # type: ignore[attr-defined]

    @bp.before_request
    def check_token() -> ResponseReturnValue | None:
        if not request.headers.get("Authorization", "").startswith("Bearer ") or not authorize(
            request
        ):
            return APIError(
                401, "Incorrect or missing API key.", "auth", "invalid_api_key"
            ).response()
        return None

    @bp.errorhandler(APIError)
    def api_error(exc: APIError) -> ResponseReturnValue:
        return exc.response()

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        """Flask's own errors on these routes (a 405, an ``abort``), in OpenAI's shape."""
        status = exc.code or 500
        return APIError(status, exc.description or exc.name, "bad_request").response()

    @bp.errorhandler(Exception)
    def unexpected(exc: Exception) -> ResponseReturnValue:
        """A bug: logged with its traceback, answered in OpenAI's shape, never as HTML."""
        current_app.logger.exception("flask-aistream: the OpenAI endpoint failed")
        return APIError(500, "The server failed to handle this request.", "internal").response()

    @bp.get("/v1/models")
    def list_models() -> Response:
        return jsonify(
            object="list",
            data=[
                {"id": alias, "object": "model", "created": 0, "owned_by": provider}
                for alias, (provider, _) in conf().models.items()
            ],
        )

    @bp.route("/v1/chat/completions", methods=["GET", "PUT", "DELETE", "PATCH"])
    def other_methods() -> ResponseReturnValue:
        """Flask's own 405 would be HTML: answer it in OpenAI's shape."""
        error, status = APIError(
            405, f"Use POST, not {request.method}.", "bad_request", "method_not_allowed"
        ).response()
        error.headers["Allow"] = "POST"
        return error, status

    @bp.post("/v1/chat/completions")
    def chat_completions() -> ResponseReturnValue:
        state = conf()
        try:
            body = json_body(request, state.client.settings.max_request_bytes)
        except BadInput as bad:
            raise APIError(bad.status, bad.message, "bad_request") from None
        alias, options = _options(body, state.models, system)
        if prepare is not None:
            options = _prepared(options, prepare)
        return _limited(state, lambda: _answer(state.client, alias, options, body))

    @bp.post("/v1/responses")
    def responses() -> ResponseReturnValue:
        """The Responses API, for the clients that speak it (the AI SDK's
        default ``openai()`` provider, the OpenAI Agents SDK)."""
        state = conf()
        try:
            body = json_body(request, state.client.settings.max_request_bytes)
        except BadInput as bad:
            raise APIError(bad.status, bad.message, "bad_request") from None
        alias = body.get("model")
        if not isinstance(alias, str) or alias not in state.models:
            raise APIError(
                404, f"The model {alias!r} does not exist.", "not_found", "model_not_found"
            )
        try:
            options = responses_options(body, *state.models[alias])
        except BadRequest as bad:
            raise APIError(400, str(bad), "bad_request") from None
        if system:
            options["system"] = (
                f"{system}\n\n{options['system']}" if options.get("system") else system
            )
        if prepare is not None:
            options = _prepared(options, prepare)
        return _limited(state, lambda: _respond(state.client, alias, options, body))

    def _limited(state: OpenAIEndpoint, view: Callable[[], Response]) -> ResponseReturnValue:
        """``view`` within the client's limits; its key is its token, hashed."""
        token = request.headers["Authorization"].encode()
        return within_limits(
            state.limits, lambda: hashlib.sha256(token).hexdigest(), view, refuse=_refusal
        )

    return bp


def _refusal(refusal: Refusal) -> tuple[Response, int]:
    """A limit's refusal in OpenAI's shape."""
    error, status = APIError(
        refusal.status, refusal.message, "rate_limit", "rate_limit_exceeded"
    ).response()
    if refusal.retry_after is not None:
        error.headers["Retry-After"] = str(refusal.retry_after)
    return error, status


def _respond(client: AIClient, alias: str, options: JSONObject, body: Options) -> Response:
    """A Responses API answer: events, or (without ``stream``) one object."""
    try:
        call = client.plan(call_options(None, options))
    except AIStreamError as exc:
        raise APIError(400, str(exc), "bad_request") from None
    run = client.start(call)
    with watching_client(run, client_socket(request.environ)):
        if not body.get("stream"):
            for _ in run:
                pass
            answer = run.finish()
            if answer.error is not None:
                raise _provider_error(answer.error)
            whole = response_object(
                new_id("resp"), alias, int(time.time()), "", answer_items(answer, new_id)
            )
            ending(answer, whole)
            return jsonify(whole)
        ended = run.begin()
    if ended is not None and ended.error is not None:
        run.finish()
        raise _provider_error(ended.error)
    return client.stream(call, run, ResponsesFormat(new_id("resp"), alias, new_id))


def _prepared(options: JSONObject, prepare: Callable[[ChatInput], object]) -> JSONObject:
    """``options`` through the app's ``prepare`` (a :class:`ChatInput`)."""
    names = ("messages", "system", "provider", "model")
    rest = {key: value for key, value in options.items() if key not in names}
    chat = ChatInput(
        messages=options["messages"],
        system=options.get("system"),
        provider=options["provider"],
        model=options.get("model"),
        options=rest,
    )
    prepare(chat)
    return {
        **chat.options,
        "messages": chat.messages,
        "system": chat.system,
        "provider": chat.provider,
        "model": chat.model,
    }


def _options(
    body: Options, aliases: Mapping[str, tuple[str, str | None]], system: str | None
) -> tuple[str, JSONObject]:
    """The request as ``ask`` options; what cannot be honoured is a 400."""
    unknown = set(body) - FIELDS
    if unknown:
        raise APIError(
            400, f"Unrecognized request argument(s): {', '.join(sorted(unknown))}", "bad_request"
        )
    alias = body.get("model")
    if not isinstance(alias, str) or alias not in aliases:
        raise APIError(404, f"The model {alias!r} does not exist.", "not_found", "model_not_found")
    if body.get("n") not in (None, 1):
        raise APIError(400, "Only n=1 is supported.", "bad_request")
    provider, model = aliases[alias]
    # No app-wide fallbacks: a client may use its aliases' models, and no other.
    options: JSONObject = {"provider": provider, "model": model, "fallbacks": []}
    options["messages"] = _messages(body.get("messages"))
    if system:
        options["system"] = system  # the server's, before the client's own
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop", "stop"),
        ("seed", "seed"),
        ("tools", "tools"),
        ("reasoning", "reasoning_effort"),
    ):
        if body.get(theirs) is not None:
            options[ours] = body[theirs]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if not isinstance(function, dict):
            raise APIError(400, "tool_choice.function must be an object.", "bad_request")
        options["tool_choice"] = {"name": function.get("name")}
    elif choice is not None:
        options["tool_choice"] = choice
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise APIError(400, "response_format must be an object.", "bad_request")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            options["response_format"] = "json"
        elif kind == "json_schema":
            json_schema = response_format.get("json_schema")
            if not isinstance(json_schema, dict):
                raise APIError(400, "response_format.json_schema must be an object.", "bad_request")
            options["response_format"] = json_schema.get("schema")
        elif kind != "text":
            raise APIError(400, f"Unsupported response_format type {kind!r}.", "bad_request")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise APIError(400, "stream_options must be an object.", "bad_request")
    options["include_usage"] = bool(stream_options.get("include_usage"))
    return str(alias), options


def _messages(value: object) -> list[JSONObject]:
    if not isinstance(value, list) or not value:
        raise APIError(400, "messages must be a non-empty array.", "bad_request")
    messages = []
    for message in value:
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":  # a result, passed on as it is (checked with the call)
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": message.get("tool_call_id"),
                    "content": message.get("content"),
                }
            )
            continue
        if role not in ROLES:
            raise APIError(400, f"Unsupported message role {role!r}.", "bad_request")
        content = message.get("content")
        if isinstance(content, list):
            content = [_part(part) for part in content]
        converted: JSONObject = {"role": ROLES[role], "content": content}
        if role == "assistant" and message.get("tool_calls"):
            converted["tool_calls"] = message["tool_calls"]  # OpenAI's shape: checked later
        messages.append(converted)
    return messages


def _part(part: object) -> object:
    """OpenAI's content parts as ours."""
    if isinstance(part, dict) and part.get("type") == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict):
            raise APIError(400, "image_url must be an object with a url.", "bad_request")
        return {"type": "image", "url": image.get("url")}
    return part


def _answer(client: AIClient, alias: str, options: JSONObject, body: Options) -> Response:
    try:
        call = client.plan(call_options(None, options))
    except AIStreamError as exc:  # the request cannot be sent as it is
        raise APIError(400, str(exc), "bad_request") from None
    run = client.start(call)
    with watching_client(run, client_socket(request.environ)):
        if not body.get("stream"):
            return _completion(run, alias)
        # Up to the first visible part in the view: a failure by then is an
        # HTTP error, before any byte is sent.
        ended = run.begin()
    if ended is not None and ended.error is not None:
        run.finish()
        raise _provider_error(ended.error)
    completion = OpenAIFormat(
        new_id("chatcmpl"), alias, int(time.time()), include_usage=call.include_usage
    )
    return client.stream(call, run, completion)


def _provider_error(error: ProviderError) -> APIError:
    return APIError(STATUSES.get(error.kind, 502), error.message, error.kind)


def _completion(run: AnswerRun, alias: str) -> Response:
    """A whole ``chat.completion`` object, for a request without ``stream``."""
    for _ in run:
        pass  # the last item is the Finish; the builder holds the answer
    answer = run.finish()
    if answer.error is not None:
        raise _provider_error(answer.error)
    message: JSONObject = {"role": "assistant", "content": answer.text}
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in answer.tool_calls
        ]
    return jsonify(
        id=new_id("chatcmpl"),
        object="chat.completion",
        created=int(time.time()),
        model=alias,
        choices=[
            {
                "index": 0,
                "message": message,
                "finish_reason": OPENAI_FINISH_REASONS.get(answer.finish_reason, "stop"),
            }
        ],
        usage=openai_usage(answer),
    )
