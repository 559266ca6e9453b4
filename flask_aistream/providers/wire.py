"""Helpers for a provider's body and reader: fast JSON for one event,
tool-call assembly, usage and finish mapping, message content, key headers,
and the mapping of HTTP and in-stream errors to :class:`ProviderError`.
Every built-in provider uses them; a provider of your own may."""

from __future__ import annotations

import json
import secrets
from collections.abc import Hashable, Iterable, Mapping
from json import JSONDecoder
from typing import Any

from ..errors import ERROR_KINDS, ProviderError
from ..parts import Content, JSONObject, Metadata, Options, Part, ToolCall, ToolCallDelta

_scan_once = JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner, minus raw_decode


_JSON_WHITESPACE = " \t\n\r"  # exactly what JSON allows around a value (str.isspace is wider)


def parse_json(text: str) -> Any:
    """``json.loads`` for one event's data, minus its per-call overhead (this
    runs once per token). Raises ``ValueError`` on anything but one JSON value
    with optional surrounding whitespace."""
    try:
        value, end = _scan_once(text, 0)
    except RecursionError:
        raise ValueError("JSON nested deeper than Python can parse") from None
    except StopIteration:  # the scanner takes no leading whitespace: rare, so tried second
        stripped = text.lstrip(_JSON_WHITESPACE)
        if stripped is text or not stripped:
            raise ValueError(f"not JSON: {text[:20]!r}") from None
        return parse_json(stripped)
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise ValueError(f"extra data after the JSON value: {text[end : end + 20]!r}")
    return value


#: In-stream error types worth a new request (before any text was sent):
#: OpenAI's and Groq's, then Anthropic's (its 500 and 429; "overloaded_error",
#: its 529, is matched by "overload" below).
_RETRYABLE_ERROR_TYPES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "overloaded",
        "service_unavailable",
        "timeout",
        "api_error",
        "rate_limit_error",
    }
)


def in_stream_error(provider: str, error: object) -> ProviderError:
    """The error a provider reported after the HTTP 200 (the answer had begun)."""
    kind = ""
    if isinstance(error, dict):
        kind = str(error.get("type") or error.get("code") or "")
    elif isinstance(error, str):
        kind = error
    safe_kind = kind if kind.replace("_", "").isalpha() and len(kind) <= 40 else ""
    retryable = not kind or kind in _RETRYABLE_ERROR_TYPES or "overload" in kind
    if "rate_limit" in kind:
        error_kind = "rate_limit"
    elif "invalid_request" in kind:
        error_kind = "bad_request"
    elif "authentication" in kind or "permission" in kind:
        error_kind = "auth"
    else:
        error_kind = "unavailable"
    return reported_error(provider, error, safe_kind, error_kind, retryable)


def reported_error(
    provider: str, error: object, label: str, kind: str, retryable: bool
) -> ProviderError:
    """A failure the provider reported mid-answer, told the client safely:
    only ``label`` (a type or status already checked to be a bare word) of
    what the provider sent is shown."""
    return ProviderError(
        "The AI provider reported an error during the answer"
        + (f" ({label})" if label else "")
        + ("; try again." if retryable else "."),
        kind=kind,
        provider=provider,
        retryable=retryable,
        detail=repr(error),
    )


def printable(text: str) -> bool:
    """No control characters: a header value with a newline would be a new header."""
    return not any(ord(char) < 32 or ord(char) == 127 for char in text)


def text_of(content: Content) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def image_parts(content: Content) -> list[JSONObject]:
    if isinstance(content, str):
        return []
    return [part for part in content if part["type"] == "image"]


def data_url(image: JSONObject) -> str:
    """An image part as a URL: its own, or its data as a ``data:`` URL."""
    return image.get("url") or f"data:{image['media_type']};base64,{image['data']}"


def metadata(model: object, response_id: object) -> Metadata:
    """The model and response id a provider named, where they are strings."""
    return Metadata(
        model if isinstance(model, str) else None,
        response_id if isinstance(response_id, str) else None,
    )


def token_counts(usage: object) -> dict[str, int]:
    """The whole-number fields of a provider's usage object (none if it is not one)."""
    if not isinstance(usage, dict):
        return {}
    return {
        key: value
        for key, value in usage.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def normalize_finish(table: dict[str, str], raw: object) -> str:
    """One of :data:`~flask_aistream.parts.FINISH_REASONS` for a provider's
    raw finish value: ``"other"`` for none, or one the table does not know."""
    return table.get(raw, "other") if isinstance(raw, str) else "other"


class ToolCallAssembler:
    """Tool calls arrive in fragments keyed by an index (OpenAI's
    ``tool_calls[].index``, Anthropic's content block index): each fragment
    goes out as a :class:`~flask_aistream.parts.ToolCallDelta` at once, and
    the call as one :class:`~flask_aistream.parts.ToolCall` once complete."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, tuple[str, str, list[str]]] = {}

    def add(
        self,
        index: Hashable,
        out: list[Part],
        id: object = None,
        name: object = None,
        arguments: object = "",
    ) -> None:
        id = id if isinstance(id, str) else None
        name = name if isinstance(name, str) else None
        if isinstance(arguments, dict):  # Mistral may send the arguments parsed
            arguments = json.dumps(arguments)
        arguments = arguments if isinstance(arguments, str) else ""
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = (id or "", name or "", [])
        elif id or name:
            call = self._calls[index] = (id or call[0], name or call[1], call[2])
        if arguments:
            call[2].append(arguments)
        out.append(ToolCallDelta(index, id, name, arguments))

    def complete(self, index: Hashable, out: list[Part], empty: str = "") -> None:
        call = self._calls.pop(index, None)
        if call is not None:
            out.append(ToolCall(call[0], call[1], "".join(call[2]) or empty))

    def complete_all(self, out: list[Part]) -> None:
        for index in sorted(self._calls, key=str):
            self.complete(index, out)


def bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def key_header(name: str, api_key: str | None) -> dict[str, str]:
    """A provider's own key header; none for a keyless server."""
    return {name: api_key} if api_key else {}


#: The fields of a neutral tool (``strict`` aside, which only some take).
TOOL_FIELDS = ("name", "description", "parameters")


def json_schema_tools(
    tools: Iterable[Options] | None, fields: tuple[str, ...] = TOOL_FIELDS
) -> list[JSONObject]:
    """The neutral tools in the shape OpenAI and Ollama take."""
    return [
        {"type": "function", "function": {key: tool[key] for key in fields if key in tool}}
        for tool in tools or ()
    ]


#: Statuses worth a second try: timeouts, conflicts, rate limits, a gateway's
#: trouble, and Anthropic's 529 "overloaded".
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a provider asked for: OpenAI's ``retry-after-ms``, else the
    standard ``Retry-After`` in seconds (an HTTP date is not worth parsing
    here: providers send seconds)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if seconds >= 0:
                return seconds
    return None


def http_error(provider: str, status: int, body: str, location: str | None = None) -> ProviderError:
    """Map an HTTP error status to a short message a person can act on.

    The provider's own message is kept for the log only: OpenAI's 401 body
    echoes part of the key, and 400 bodies quote the request.
    """
    code = ""
    try:
        error = json.loads(body).get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or error.get("type") or "")
    except (ValueError, AttributeError):
        pass
    kind = status_kind(status, code)
    detail = f"HTTP {status}: {body}"
    if location is not None:
        detail = f"HTTP {status} to {location!r}: {body}"
    return ProviderError(
        f"{ERROR_KINDS[kind][0]} (HTTP {status})",
        kind=kind,
        provider=provider,
        status=status,
        # Some statuses of a kind are worth a retry, some not (a 409 conflict is).
        retryable=status in RETRYABLE_STATUSES and kind != "quota",
        detail=detail,
    )


def status_kind(status: int, code: str = "") -> str:
    if status < 400:
        return "redirect"
    if status in (401, 403):
        return "auth"
    if status == 402 or (status == 429 and code == "insufficient_quota"):
        return "quota"  # billing, not load: waiting will not help
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    if status in (409, 429):
        return "rate_limit"
    if status >= 500:
        return "unavailable"
    return "bad_request"


def new_call_id() -> str:
    """An id for a tool call the provider gave none (Gemini, Ollama): unique
    within the answer, as clients merge tool parts by id."""
    return f"call_{secrets.token_hex(8)}"


def call_arguments(call: Options) -> object:
    """An earlier tool call's arguments as the object Anthropic, Gemini and
    Ollama take back (``{}`` if they were not a JSON object: the model's own
    mistake, replayed as no arguments)."""
    try:
        value = json.loads(call["arguments"])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
