"""What every provider is: a way to open a stream of parts for a chat."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from json import JSONDecoder
from typing import Any, Callable

from ..errors import ERROR_KINDS, ConfigurationError, ProviderError, UnsupportedOptionError
from ..parts import Metadata, Stop, ToolCall, ToolCallDelta
from ..sse import ServerSentEvent, SSEDecoder

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


def in_stream_error(provider: str, error: Any) -> ProviderError:
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
    provider: str, error: Any, label: str, kind: str, retryable: bool
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


#: The request options beyond model, messages, temperature and max tokens.
#: Each provider says which it maps (:attr:`Provider.supports`); the others
#: are refused before anything is sent, never dropped. ``"images"`` stands
#: for image parts in a message.
REQUEST_OPTIONS = (
    "top_p",
    "stop",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
    "reasoning",
    "extra_body",
    "extra_headers",
    "images",
)


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral request. ``messages`` hold only user and assistant
    turns; the system prompt travels apart because providers put it in
    different places (a leading message for OpenAI, a top-level field for
    Anthropic and Gemini). A message's ``content`` is a string, or a list of
    neutral parts (``{"type": "text", "text"}``, ``{"type": "image", "url"}``,
    ``{"type": "image", "data", "media_type"}``). ``tools`` are neutral
    (``name``, ``description``, ``parameters``: a JSON schema);
    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or
    ``{"name": ...}``; ``response_format`` is ``"json"`` or a JSON schema."""

    model: str
    messages: tuple[dict[str, Any], ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    response_format: Any = None
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: Any = None
    reasoning: str | None = None
    extra_body: dict[str, Any] | None = None
    extra_headers: dict[str, str] | None = None

    def options_set(self) -> list[str]:
        """The names of :data:`REQUEST_OPTIONS` this request uses."""
        used = [
            name for name in REQUEST_OPTIONS if name != "images" and getattr(self, name) is not None
        ]
        if any(image_parts(message["content"]) for message in self.messages):
            used.append("images")
        return used


def printable(text: str) -> bool:
    """No control characters: a header value with a newline would be a new header."""
    return not any(ord(char) < 32 or ord(char) == 127 for char in text)


def text_of(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def image_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return []
    return [part for part in content if part["type"] == "image"]


def data_url(image: dict[str, Any]) -> str:
    """An image part as a URL: its own, or its data as a ``data:`` URL."""
    return image.get("url") or f"data:{image['media_type']};base64,{image['data']}"


@dataclass(frozen=True)
class ProviderSettings:
    """One provider as configured (a built-in, a preset, an ``AI_PROVIDERS``
    entry or a registered class); ``api`` names its wire format."""

    name: str
    api: str
    api_key: str | None
    base_url: str
    #: The configured model (``AI_<NAME>_MODEL``, an entry's ``model``), else none.
    model: str | None = None
    #: The provider's own default model, used when nothing else names one.
    default_model: str | None = None
    key_required: bool = True
    #: Where a key comes from, for the error that says one is missing.
    key_hint: str = ""
    #: Where a model comes from, for the error that says none is set.
    model_hint: str = ""
    base_url_hint: str = ""
    #: Sent with every request (an ``AI_PROVIDERS`` entry's ``headers``).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Ask for usage in the stream (``stream_options``), for formats that need asking.
    stream_usage: bool = True
    #: The :class:`Provider` class that speaks to it.
    cls: Any = field(default=None, repr=False)

    def require_api_key(self) -> str | None:
        if self.key_required and not self.api_key:
            raise ConfigurationError(
                f"No API key for the {self.name!r} provider: set {self.key_hint}."
            )
        return self.api_key


class PartStream:
    """An open answer. Iterating yields lists of parts (see
    :mod:`flask_aistream.parts`), one list per upstream read, so parts that
    arrived together can be written together. ``close()`` releases the
    upstream at once; it is safe to call twice. ``abort()`` may be called from
    another thread than the one iterating: it makes a blocked read return, so
    that thread ends the stream."""

    def __iter__(self) -> Iterator[list[Any]]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:
        self.close()

    def reading_socket(self) -> Any:
        """The socket the next read waits on, when nothing is buffered above
        it: a caller may wait for it to become readable (with a deadline)
        rather than block in the read. ``None``: just read."""
        return None


class EventReader:
    """Per-stream state that gives meaning to one provider's events.

    ``parse`` appends the parts an event holds to ``out`` (most events hold
    none or one) and raises :class:`~flask_aistream.errors.ProviderError` for
    an in-stream error. ``finished`` turns true once the provider said the
    answer is complete (a :class:`~flask_aistream.parts.Stop` part went out);
    ``done`` once nothing more will come, so the stream can hang up.
    """

    finished = False
    done = False

    def parse(self, event: ServerSentEvent, out: list[Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def stop(self, out: list[Any], reason: str, raw: str | None) -> None:
        """Say, once, that the answer is complete."""
        if not self.finished:
            self.finished = True
            out.append(Stop(reason, raw))


def metadata(model: Any, response_id: Any) -> Metadata:
    """The model and response id a provider named, where they are strings."""
    return Metadata(
        model if isinstance(model, str) else None,
        response_id if isinstance(response_id, str) else None,
    )


def token_counts(usage: Any) -> dict[str, int]:
    """The whole-number fields of a provider's usage object (none if it is not one)."""
    if not isinstance(usage, dict):
        return {}
    return {
        key: value
        for key, value in usage.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def normalize_finish(table: dict[str, str], raw: Any) -> str:
    """One of :data:`~flask_aistream.parts.FINISH_REASONS` for a provider's
    raw finish value: ``"other"`` for none, or one the table does not know."""
    return table.get(raw, "other") if isinstance(raw, str) else "other"


class ToolCallAssembler:
    """Tool calls arrive in fragments keyed by an index (OpenAI's
    ``tool_calls[].index``, Anthropic's content block index): each fragment
    goes out as a :class:`~flask_aistream.parts.ToolCallDelta` at once, and
    the call as one :class:`~flask_aistream.parts.ToolCall` once complete."""

    def __init__(self) -> None:
        self._calls: dict[Any, tuple[str, str, list[str]]] = {}

    def add(
        self, index: Any, out: list[Any], id: Any = None, name: Any = None, arguments: Any = ""
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

    def complete(self, index: Any, out: list[Any], empty: str = "") -> None:
        call = self._calls.pop(index, None)
        if call is not None:
            out.append(ToolCall(call[0], call[1], "".join(call[2]) or empty))

    def complete_all(self, out: list[Any]) -> None:
        for index in sorted(self._calls, key=str):
            self.complete(index, out)


class Provider:
    """A provider: turns a :class:`ChatRequest` into a :class:`PartStream`.

    One instance per configured name, built with that name's
    :class:`ProviderSettings` (``self.conf``) and the app's ``Settings``.
    Subclass it (or :class:`HTTPProvider`) for a provider of your own and
    register it with ``AIStream.register_provider``; the class attributes
    are the defaults its settings start from.
    """

    #: The wire format's name, as ``AI_PROVIDERS`` entries name it.
    api: str = ""
    #: The environment variables that may hold the key, in order; none: no key.
    env_keys: tuple[str, ...] = ()
    default_base_url: str = ""
    default_model: str | None = None
    #: Which of :data:`REQUEST_OPTIONS` this provider maps to its own fields.
    supports: frozenset[str] = frozenset()

    def __init__(self, conf: ProviderSettings, settings: Any = None) -> None:
        self.conf = conf
        self.settings = settings

    @property
    def name(self) -> str:
        return self.conf.name

    def check(self, chat: ChatRequest) -> None:
        """Refuse, before anything is sent, an option this provider cannot map."""
        for option in chat.options_set():
            if option not in self.supports:
                raise UnsupportedOptionError(option, self.name)

    def open(self, chat: ChatRequest, transport: Any, opening: Any = None) -> PartStream:
        """Start the answer; ``opening.abort()`` (another thread) ends a call
        still being opened."""
        raise NotImplementedError  # pragma: no cover - interface


class HTTPProvider(Provider):
    """A provider reached with one streaming POST; ``transport`` does the I/O.
    A subclass says where (:meth:`url`), with what (:meth:`headers`,
    :meth:`body`), how the body is framed (``decoder``) and what its events
    mean (:meth:`reader`); it may map its own error bodies (:meth:`http_error`)."""

    path: str = ""
    #: The framing of the streamed body: SSE, or NDJSON for Ollama.
    decoder: Callable[[], Any] = SSEDecoder

    def check(self, chat: ChatRequest) -> None:
        if not self.conf.base_url:
            raise ConfigurationError(
                f"No base URL for the {self.name!r} provider: set {self.conf.base_url_hint}."
            )
        super().check(chat)

    def url(self, chat: ChatRequest) -> str:
        return self.conf.base_url.rstrip("/") + self.path

    def headers(self) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def body(self, chat: ChatRequest) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def reader(self) -> EventReader:  # pragma: no cover
        raise NotImplementedError

    def http_error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        """The error for an HTTP status of 300 or more and its body."""
        error = http_error(
            self.name, status, body, headers.get("Location") if status < 400 else None
        )
        error.retry_after = retry_after(headers)
        return error

    def request(self, chat: ChatRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """URL, headers and JSON body, with the configured headers and the
        call's ``extra_headers`` and ``extra_body`` (merged last: the escape
        hatch wins)."""
        headers = {**self.headers(), **self.conf.headers, **(chat.extra_headers or {})}
        body = self.body(chat)
        if chat.extra_body:
            body.update(chat.extra_body)
        return self.url(chat), headers, body

    def open(self, chat: ChatRequest, transport: Any, opening: Any = None) -> PartStream:
        url, headers, body = self.request(chat)
        return transport.open(self, url, headers, body, opening)  # type: ignore[no-any-return]


def bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def key_header(name: str, api_key: str | None) -> dict[str, str]:
    """A provider's own key header; none for a keyless server."""
    return {name: api_key} if api_key else {}


def json_schema_tools(chat: ChatRequest) -> list[dict[str, Any]]:
    """The neutral tools in the shape OpenAI and Ollama take."""
    return [
        {"type": "function", "function": {key: tool[key] for key in TOOL_FIELDS if key in tool}}
        for tool in chat.tools or ()
    ]


#: The fields of a neutral tool.
TOOL_FIELDS = ("name", "description", "parameters")


#: Statuses worth a second try: timeouts, conflicts, rate limits, a gateway's
#: trouble, and Anthropic's 529 "overloaded".
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def retry_after(headers: Any) -> float | None:
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
