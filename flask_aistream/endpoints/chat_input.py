"""What a browser sends, checked and turned into call options: the JSON
body, the question, the history (ours, or the AI SDK's UI messages), the
images, the provider it picks. Anything wrong is a :class:`BadInput` (a 4xx
with a message for the page), never a traceback."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Request

from ..calls import CHAT_ID
from ..calls.checks import checked_content, image_bytes
from ..errors import ConfigurationError, InvalidRequestError
from ..parts import Content, JSONObject, Options
from ..providers.wire import text_of
from ..tools.conversation import checked_tool_calls, checked_tool_result

HISTORY_ROLES = ("user", "assistant")  # a browser may not send "system"


@dataclass
class ChatInput:
    """A question as a blueprint is about to ask it, once what the browser
    sent was checked and ``authorize`` passed, for ``prepare=`` to shape:
    add retrieved context, a per-user system prompt, pick a model, or refuse
    with ``flask.abort()``. Limits are counted after it, the provider asked
    after that.

    ``messages`` are role/content dicts, the history then the question (a
    content may be a list of text and image parts); ``options`` are call
    options of the server's own (``temperature``, ``tools``...)."""

    messages: list[JSONObject]
    system: str | None = None
    provider: str | None = None
    model: str | None = None
    options: JSONObject = field(default_factory=dict)


class BadInput(Exception):
    """What the browser sent is unusable; ``status`` and a message for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InputLimits:
    """How much a browser may send one endpoint."""

    max_question_chars: int
    max_history: int
    max_history_chars: int
    max_request_bytes: int
    #: The most image bytes (decoded) a request may carry; 0: no images.
    max_image_bytes: int


def json_body(req: Request, max_bytes: int) -> Options:
    if not req.is_json:
        raise BadInput(415, "Send the question as JSON (Content-Type: application/json).")
    too_large = BadInput(413, f"The request is too large (at most {max_bytes} bytes).")
    if req.content_length is not None and req.content_length > max_bytes:
        raise too_large  # said up front: not read at all
    # An app that read the body already (``get_json()`` in a before_request)
    # left it in werkzeug's cache, and the stream empty: the same bounds hold.
    cached: bytes | None = getattr(req, "_cached_data", None)
    raw = cached if cached is not None else req.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large  # chunked, or a Content-Length that lied
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise BadInput(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadInput(400, 'Send a JSON object: {"question": "..."}.')
    return body


def _no_constant(name: str) -> object:
    """``NaN`` and ``Infinity`` are not JSON (Python's parser takes them)."""
    raise ValueError(f"{name} is not JSON")


def question_text(value: object, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(400, "Ask a question: 'question' must be a non-empty string.")
    question = value.strip()
    if len(question) > max_chars:
        raise BadInput(400, f"The question is too long (at most {max_chars} characters).")
    return question


@dataclass
class UIConversation:
    """What useChat sent, checked: the question (``None`` when the
    conversation ends with the results of browser tools, to continue the
    assistant message ``continues``), the history before it, its images."""

    question: str | None
    history: list[JSONObject]
    images: list[JSONObject]
    continues: str | None = None
    #: The decisions addToolApprovalResponse put in the last assistant message.
    approvals: list[ApprovalResponse] = field(default_factory=list)


@dataclass(frozen=True)
class ApprovalResponse:
    """A person's decision on a waiting call, as useChat sends it: checked
    against the server's record, never trusted for anything else."""

    id: str
    tool_call_id: str
    approved: bool
    reason: str | None


def approval_responses(message: object) -> list[ApprovalResponse]:
    """The ``approval-responded`` tool parts of a UI message."""
    parts = message.get("parts") if isinstance(message, dict) else None
    responses = []
    for part in parts if isinstance(parts, list) else ():
        approval = part.get("approval") if isinstance(part, dict) else None
        if part.get("state") != "approval-responded" or not isinstance(approval, dict):
            continue
        approval_id, approved = approval.get("id"), approval.get("approved")
        reason, call_id = approval.get("reason"), part.get("toolCallId")
        if not (
            isinstance(approval_id, str) and isinstance(approved, bool) and isinstance(call_id, str)
        ):
            raise BadInput(400, "An approval needs its id, toolCallId and approved.")
        responses.append(
            ApprovalResponse(
                approval_id, call_id, approved, reason if isinstance(reason, str) else None
            )
        )
    return responses


def ui_messages(value: object, conf: InputLimits) -> UIConversation:
    """The Vercel AI SDK's UI messages (``{id, role, parts: [...]}``) as the
    question, the history before it and the question's images. Earlier
    assistant turns keep their text and their tool calls with the results
    (a ``tool-<name>`` or ``dynamic-tool`` part in state
    ``output-available`` or ``output-error``), one assistant turn per step;
    reasoning, sources and data parts are dropped, a turn left empty goes.
    A ``system`` message is refused (a browser never sets the system
    prompt), as is a user part that is not text, unless images are allowed."""
    if not isinstance(value, list) or not value:
        raise BadInput(400, "Send the conversation: 'messages' must be a list of UI messages.")
    turns: list[JSONObject] = []
    for message in value:
        role = message.get("role") if isinstance(message, dict) else None
        parts = message.get("parts") if isinstance(message, dict) else None
        if role == "system":
            raise BadInput(400, "A system message cannot be sent from the browser.")
        if role not in HISTORY_ROLES or not isinstance(parts, list):
            raise BadInput(400, "Each message needs a role of 'user' or 'assistant' and parts.")
        if role == "assistant":
            turns += assistant_turns(parts)
            continue
        text = "".join(
            part["text"]
            for part in parts
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
        images = []
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                continue
            if kind == "file" and conf.max_image_bytes:
                images.append({"url": part.get("url"), "media_type": part.get("mediaType")})
            elif kind not in ("step-start",):
                raise BadInput(400, "Only text can be sent in a message.")
        image_parts = question_images(images, conf.max_image_bytes)
        content: Any = [{"type": "text", "text": text}, *image_parts] if image_parts else text
        turns.append({"role": "user", "content": content})
    decided = approval_responses(value[-1])
    if decided:  # the conversation that goes on is the server's, not this one
        last_id = value[-1].get("id")
        return UIConversation(None, [], [], last_id if isinstance(last_id, str) else None, decided)
    if turns and turns[-1]["role"] == "tool":
        # useChat sends the conversation again once the browser's tools gave
        # their results (addToolOutput, sendAutomaticallyWhen): the answer goes
        # on, under the id of the assistant message it continues.
        check_history(turns[:-1], conf)
        last_id = value[-1].get("id") if isinstance(value[-1], dict) else None
        return UIConversation(None, turns, [], last_id if isinstance(last_id, str) else None)
    if not turns or turns[-1]["role"] != "user":
        raise BadInput(400, "The last message must be the user's question.")
    last = turns.pop()
    question = question_text(text_of(last["content"]), conf.max_question_chars)
    images = (
        [part for part in last["content"] if part["type"] == "image"]
        if isinstance(last["content"], list)
        else []
    )
    check_history(turns, conf)
    return UIConversation(question, turns, images)


def check_history(turns: list[JSONObject], conf: InputLimits) -> None:
    if len(turns) > conf.max_history:
        raise BadInput(400, f"The history is too long (at most {conf.max_history} messages).")
    if sum(turn_chars(turn) for turn in turns) > conf.max_history_chars:
        raise BadInput(
            400, f"The history is too long (at most {conf.max_history_chars} characters)."
        )


#: A UI tool part's states that hold the tool's outcome.
TOOL_OUTCOMES = ("output-available", "output-error")


def assistant_turns(parts: list[object]) -> list[JSONObject]:
    """One UI assistant message as turns: per step (``step-start`` parts
    divide them) an assistant turn with its text and tool calls, then a
    ``tool`` turn per call's outcome. A call with no outcome yet is left
    out (with its result missing it would break the conversation)."""
    turns: list[JSONObject] = []
    text: list[str] = []
    calls: list[JSONObject] = []
    results: list[JSONObject] = []

    def close_step() -> None:
        if calls:
            turns.append({"role": "assistant", "content": "".join(text), "tool_calls": list(calls)})
        elif text:
            turns.append({"role": "assistant", "content": "".join(text)})
        turns.extend(results)
        for done in (text, calls, results):
            done.clear()

    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "step-start":
            close_step()
        elif kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool"):
            outcome = ui_tool_call(part, kind)
            if outcome is not None:
                calls.append(outcome[0])
                results.append(outcome[1])
    close_step()
    return turns


def ui_tool_call(part: JSONObject, kind: str) -> tuple[JSONObject, JSONObject] | None:
    """A UI tool part as a call and its result (``None``: no outcome yet)."""
    name = part.get("toolName") if kind == "dynamic-tool" else kind[len("tool-") :]
    call_id = part.get("toolCallId")
    state = part.get("state")
    if state not in TOOL_OUTCOMES:
        return None
    if not isinstance(name, str) or not name or not isinstance(call_id, str) or not call_id:
        raise BadInput(400, "A tool part needs a toolCallId and a tool name.")
    try:
        arguments = json.dumps(part.get("input") or {})
        if state == "output-error":
            content, error = part.get("errorText"), True
            if not isinstance(content, str):
                raise BadInput(400, "A failed tool part needs its errorText.")
        else:
            output = part.get("output")
            content, error = output if isinstance(output, str) else json.dumps(output), False
    except (TypeError, ValueError):
        raise BadInput(400, "A tool part's input and output must be JSON.") from None
    call = {"id": call_id, "name": name, "arguments": arguments}
    return call, {
        "role": "tool",
        "tool_call_id": call_id,
        "name": name,
        "content": content,
        "error": error,
    }


def turn_chars(turn: JSONObject) -> int:
    """How much text a history turn carries: its content, and its calls'
    arguments."""
    calls = turn.get("tool_calls") or ()
    return len(text_of(turn["content"])) + sum(len(call["arguments"]) for call in calls)


def usable_chat_id(value: object) -> str | None:
    """useChat's chat id, if it sent a usable one (it keys the resume route)."""
    return value if isinstance(value, str) and CHAT_ID.match(value) else None


def provider_choices(providers: Any) -> tuple[str, ...]:
    """The providers a browser may pick from (``"provider"`` in its request)."""
    if providers is None:
        return ()
    if isinstance(providers, str) or not all(isinstance(name, str) for name in providers):
        raise ConfigurationError(f"providers must be a list of provider names, not {providers!r}.")
    return tuple(providers)


def chosen_provider(value: object, choices: tuple[str, ...]) -> str | None:
    """The provider the browser picked, if it may pick one; ``None``: the
    default. Like ``system`` and ``model``, it is ignored where the server
    offers no choice."""
    if value is None or not choices:
        return None
    if value not in choices:
        raise BadInput(400, "This chat cannot use that provider.")
    return value


def question_images(value: object, max_bytes: int) -> list[JSONObject]:
    """The images sent with the question: data only (``{"data", "media_type"}``
    or a ``data:`` URL), never a URL the provider would fetch for a stranger."""
    if value is None or value == []:
        return []
    if not max_bytes:
        raise BadInput(400, "This chat does not take images.")
    if not isinstance(value, list):
        raise BadInput(400, "'images' must be a list of images.")
    parts = [{"type": "image", **image} if isinstance(image, dict) else image for image in value]
    return [part for part in content_parts(parts) if part["type"] == "image"]


def content_parts(parts: Any) -> list[JSONObject]:
    try:
        checked = checked_content(parts)
    except InvalidRequestError as exc:
        raise BadInput(400, f"Bad message content: {exc}") from None
    if isinstance(checked, str) or any("url" in part for part in checked):
        raise BadInput(400, "Send images as data (base64) with a media_type, not as URLs.")
    return checked


def check_image_bytes(messages: list[JSONObject], max_bytes: int) -> None:
    if sum(image_bytes(message["content"]) for message in messages) > max_bytes:
        raise BadInput(413, f"The images are too large (at most {max_bytes} bytes in all).")


def history_messages(
    value: object, max_messages: int, max_chars: int, max_image_bytes: int = 0
) -> list[JSONObject]:
    """Our JSON ``history``: user and assistant turns, and tool calls and
    results in OpenAI's shape (an assistant's ``tool_calls``, ``{"role":
    "tool", "tool_call_id", "content"}``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(400, "'history' must be a list of messages.")
    if len(value) > max_messages:
        raise BadInput(400, f"The history is too long (at most {max_messages} messages).")
    history, total = [], 0
    for message in value:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in (*HISTORY_ROLES, "tool"):
            raise BadInput(
                400, "Each history message needs a role of 'user' or 'assistant' and a content."
            )
        assert isinstance(message, dict)
        try:
            if role == "tool":
                turn = checked_tool_result(message)
            else:
                turn = {"role": role, "content": history_content(message, max_image_bytes)}
                if role == "assistant" and message.get("tool_calls"):
                    turn["tool_calls"] = checked_tool_calls(message["tool_calls"])
        except InvalidRequestError as exc:
            raise BadInput(400, f"Bad history: {exc}") from None
        total += turn_chars(turn)
        history.append(turn)
    if total > max_chars:
        raise BadInput(400, f"The history is too long (at most {max_chars} characters).")
    return history


def history_content(message: JSONObject, max_image_bytes: int) -> Content:
    content = message.get("content")
    if isinstance(content, list) and max_image_bytes:
        return content_parts(content)
    if content is None and message.get("tool_calls"):
        return ""  # OpenAI's shape: an assistant turn of calls only
    if not isinstance(content, str):
        raise BadInput(400, "Each history message's content must be a string.")
    return content


def cross_site_get(req: Request, origins: Any) -> bool:
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
