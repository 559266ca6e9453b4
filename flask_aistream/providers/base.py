"""What every provider is: a way to open a stream of parts for a chat.

This is the provider SPI: :class:`Provider` (and ``http.HTTPProvider`` for
one streaming POST), the :class:`PartStream` it opens, the
:class:`EventReader` that gives one wire format's events meaning, and the
:class:`ChatRequest` it is asked."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..errors import ConfigurationError, UnsupportedOptionError
from ..parts import JSONObject, Part, Stop
from .wire import image_parts

if TYPE_CHECKING:
    from ..config import Settings
    from ..transport import Opening, Transport

#: An event as a decoder yields it (a ``ServerSentEvent``, an NDJSON line).
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


class Decoder(Protocol[E_co]):
    """Turns a body's bytes, as they arrive, into events; no I/O."""

    def feed(self, chunk: bytes) -> Iterable[E_co]: ...

    def flush(self) -> Iterable[E_co]: ...


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
    messages: tuple[JSONObject, ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    response_format: Any = None
    tools: tuple[JSONObject, ...] | None = None
    tool_choice: Any = None
    reasoning: str | None = None
    extra_body: JSONObject | None = None
    extra_headers: dict[str, str] | None = None

    def options_set(self) -> list[str]:
        """The names of :data:`REQUEST_OPTIONS` this request uses."""
        used = [
            name for name in REQUEST_OPTIONS if name != "images" and getattr(self, name) is not None
        ]
        if any(image_parts(message["content"]) for message in self.messages):
            used.append("images")
        return used


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
    cls: type[Provider] = field(default=None, repr=False)  # type: ignore[assignment]

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

    def __iter__(self) -> Iterator[list[Part]]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:
        self.close()

    def reading_socket(self) -> socket.socket | None:
        """The socket the next read waits on, when nothing is buffered above
        it: a caller may wait for it to become readable (with a deadline)
        rather than block in the read. ``None``: just read."""
        return None


class EventReader(Generic[E]):
    """Per-stream state that gives meaning to one provider's events.

    ``parse`` appends the parts an event holds to ``out`` (most events hold
    none or one) and raises :class:`~flask_aistream.errors.ProviderError` for
    an in-stream error. ``finished`` turns true once the provider said the
    answer is complete (a :class:`~flask_aistream.parts.Stop` part went out);
    ``done`` once nothing more will come, so the stream can hang up.
    """

    finished = False
    done = False

    def parse(self, event: E, out: list[Part]) -> None:  # pragma: no cover
        raise NotImplementedError

    def stop(self, out: list[Part], reason: str, raw: str | None) -> None:
        """Say, once, that the answer is complete."""
        if not self.finished:
            self.finished = True
            out.append(Stop(reason, raw))


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

    def __init__(self, conf: ProviderSettings, settings: Settings | None = None) -> None:
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

    def open(
        self, chat: ChatRequest, transport: Transport, opening: Opening | None = None
    ) -> PartStream:
        """Start the answer; ``opening.abort()`` (another thread) ends a call
        still being opened."""
        raise NotImplementedError  # pragma: no cover - interface
