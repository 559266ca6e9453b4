"""What every provider is: a way to open a stream of parts for a chat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from json import JSONDecoder
from typing import Any

from ..errors import ProviderError
from ..parts import Stop, ToolCall, ToolCallDelta
from ..sse import ServerSentEvent

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
    return ProviderError(
        "The AI provider reported an error during the answer"
        + (f" ({safe_kind})" if safe_kind else "")
        + ("; try again." if retryable else "."),
        kind=error_kind,
        provider=provider,
        retryable=retryable,
        detail=repr(error),
    )


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral request. ``messages`` hold only user and assistant
    turns; the system prompt travels apart because providers put it in
    different places (a leading message for OpenAI, a top-level field for
    Anthropic)."""

    model: str
    messages: tuple[dict[str, str], ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


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
    """A named provider. HTTP providers build a request and an
    :class:`EventReader`; others (``offline``) produce parts themselves."""

    name: str = ""
    #: The environment variable holding the key, or ``None`` when no key is needed.
    env_key: str | None = None
    default_base_url: str = ""
    default_model: str = ""

    def open(
        self, chat: ChatRequest, settings: Any, transport: Any, opening: Any = None
    ) -> PartStream:
        """Start the answer; ``opening.abort()`` (another thread) ends a call
        still being opened."""
        raise NotImplementedError  # pragma: no cover - interface


class HTTPProvider(Provider):
    """A provider reached with one streaming POST; ``transport`` does the I/O."""

    path: str = ""

    def url(self, base_url: str) -> str:
        return base_url.rstrip("/") + self.path

    def headers(self, api_key: str) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def body(self, chat: ChatRequest, conf: Any) -> dict[str, Any]:  # pragma: no cover
        """The JSON to send; ``conf`` is this provider's ``ProviderSettings``."""
        raise NotImplementedError

    def reader(self) -> EventReader:  # pragma: no cover
        raise NotImplementedError

    def open(
        self, chat: ChatRequest, settings: Any, transport: Any, opening: Any = None
    ) -> PartStream:
        conf = settings.providers[self.name]
        return transport.open(
            self,
            self.url(conf.base_url),
            self.headers(conf.require_api_key()),
            self.body(chat, conf),
            opening,
        )
