"""The ``AI_*`` configuration keys, their defaults, the readers that check
each value, and the settings read from them once, in ``init_app``.

A leaf: it imports nothing of the package but :mod:`~flask_aistream.errors`,
so any module may read settings without pulling in the relay or the
providers (which hand their own settings in, already read)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from limits import parse, parse_many

from .errors import ConfigurationError

#: ``app.config``, or any mapping of ``AI_*`` keys.
Config = Mapping[str, Any]


class ConfigVars:
    """Names of the configuration keys, so a typo is an ``AttributeError``."""

    PROVIDER = "AI_PROVIDER"
    MODEL = "AI_MODEL"
    TEMPERATURE = "AI_TEMPERATURE"
    MAX_TOKENS = "AI_MAX_TOKENS"
    HTTP_TIMEOUT = "AI_HTTP_TIMEOUT"
    CONNECT_TIMEOUT = "AI_CONNECT_TIMEOUT"
    TOTAL_TIMEOUT = "AI_TOTAL_TIMEOUT"
    HEARTBEAT_INTERVAL = "AI_HEARTBEAT_INTERVAL"
    MAX_RETRIES = "AI_MAX_RETRIES"
    MAX_STEPS = "AI_MAX_STEPS"
    RECORD_DIR = "AI_RECORD_DIR"
    APPROVAL_STORAGE_URI = "AI_APPROVAL_STORAGE_URI"
    APPROVAL_TTL = "AI_APPROVAL_TTL"
    #: ``"responses"``: Azure's v1 Responses API (default: chat completions).
    AZURE_API = "AI_AZURE_API"
    RETRY_BACKOFF = "AI_RETRY_BACKOFF"
    SYSTEM_PROMPT = "AI_SYSTEM_PROMPT"
    MAX_QUESTION_CHARS = "AI_MAX_QUESTION_CHARS"
    MAX_HISTORY = "AI_MAX_HISTORY"
    MAX_HISTORY_CHARS = "AI_MAX_HISTORY_CHARS"
    MAX_REQUEST_BYTES = "AI_MAX_REQUEST_BYTES"
    RATELIMIT = "AI_RATELIMIT"
    RATELIMIT_STORAGE_URI = "AI_RATELIMIT_STORAGE_URI"
    RATELIMIT_FAIL_OPEN = "AI_RATELIMIT_FAIL_OPEN"
    MAX_STREAMS_PER_CLIENT = "AI_MAX_STREAMS_PER_CLIENT"
    TOKEN_BUDGET = "AI_TOKEN_BUDGET"
    CORS_ORIGINS = "AI_CORS_ORIGINS"
    OFFLINE_TEXT = "AI_OFFLINE_TEXT"
    OFFLINE_DELAY = "AI_OFFLINE_DELAY"
    ON_DISCONNECT = "AI_ON_DISCONNECT"
    SEND_TIMEOUT = "AI_SEND_TIMEOUT"
    STREAM_EVENTS = "AI_STREAM_EVENTS"
    PROVIDERS = "AI_PROVIDERS"
    FALLBACKS = "AI_FALLBACKS"
    ALLOW_IMAGES = "AI_ALLOW_IMAGES"
    STREAM_FORMAT = "AI_STREAM_FORMAT"
    VERCEL_PROTOCOL = "AI_VERCEL_PROTOCOL"
    MODELS = "AI_MODELS"
    POOL_MAXSIZE = "AI_POOL_MAXSIZE"
    MAX_IMAGE_BYTES = "AI_MAX_IMAGE_BYTES"
    RESUME_STORAGE_URI = "AI_RESUME_STORAGE_URI"
    RESUME_TTL = "AI_RESUME_TTL"

    @staticmethod
    def api_key(provider: str) -> str:
        return f"AI_{_upper(provider)}_API_KEY"

    @staticmethod
    def base_url(provider: str) -> str:
        return f"AI_{_upper(provider)}_BASE_URL"

    @staticmethod
    def model(provider: str) -> str:
        return f"AI_{_upper(provider)}_MODEL"

    @staticmethod
    def stream_usage(provider: str) -> str:
        return f"AI_{_upper(provider)}_STREAM_USAGE"


DEFAULT_PROVIDER = "openai"
#: ``AI_ON_DISCONNECT`` values: hang up on the provider, or read the answer to
#: its end for the hooks.
DISCONNECT_POLICIES = ("cancel", "finish")
#: ``AI_STREAM_FORMAT`` values (``formats.FORMATS`` has a class for each).
STREAM_FORMATS = ("aistream", "vercel", "openai", "agui")
#: The versions of the AI SDK's UI message stream ``AI_VERCEL_PROTOCOL`` names.
VERCEL_PROTOCOLS = (5, 6, 7)
#: The events ``AI_STREAM_EVENTS`` / ``events=`` may add to the default format.
OPTIONAL_EVENTS = ("reasoning", "tool_calls", "tool_results", "steps", "data", "finish")
#: Longest silence from the provider, in seconds, before giving up. Not a cap
#: on the whole answer, which may stream for minutes.
DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds of silence before a ``: ping`` comment; the spec suggests 15, well
#: under the 60 s after which nginx and cloud load balancers drop idle streams.
DEFAULT_HEARTBEAT_INTERVAL = 15.0
#: Longest a write may stay blocked on a client that reads nothing. A reading
#: client never blocks that long: its buffers hold far more than an answer.
DEFAULT_SEND_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
#: Provider calls one answer may make when the server runs its tools.
DEFAULT_MAX_STEPS = 10
#: First wait between retries, doubled each time (the official SDKs' value).
DEFAULT_RETRY_BACKOFF = 0.5
DEFAULT_OFFLINE_DELAY = 0.05
# The blueprint's limits on what a browser may send.
DEFAULT_MAX_QUESTION_CHARS = 1000  # as in the spec's validation example
DEFAULT_MAX_HISTORY = 20
DEFAULT_MAX_HISTORY_CHARS = 20_000
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
DEFAULT_RATELIMIT = "10 per minute"  # the spec's example
DEFAULT_RATELIMIT_STORAGE_URI = "memory://"
#: Hang up on the provider when the client leaves (what a person stopping an
#: answer expects, and what saves tokens).
DEFAULT_ON_DISCONNECT = "cancel"
#: Connections kept per provider host (see transport.http.DEFAULT_POOL_MAXSIZE).
DEFAULT_POOL_MAXSIZE = 256
#: The most image bytes (decoded) one browser request may carry, when the
#: blueprint takes images at all.
DEFAULT_MAX_IMAGE_BYTES = 4 * 1024 * 1024
#: Seconds an answer stays resumable after its last event.
DEFAULT_RESUME_TTL = 600.0
#: Seconds a call waits for a person's approval.
DEFAULT_APPROVAL_TTL = 3600.0

# Shapes of provider keys, redacted from logs even when not ours (an error body
# may echo any key it was sent): Google's "AIza" and 35 more, xAI's "xai-"...
_KEY_SHAPES = re.compile(
    r"\b(?:(?:sk|gsk|sk-ant|sk-proj|sk-or|xai)[-_][A-Za-z0-9_\-]{8,}|AIza[A-Za-z0-9_\-]{20,})"
)


class ConfiguredProvider(Protocol):
    """What the settings need of a provider's own settings (``ProviderSettings``)."""

    @property
    def api_key(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def default_model(self) -> str | None: ...
    @property
    def model_hint(self) -> str: ...


@dataclass(frozen=True)
class Settings:
    provider: str = DEFAULT_PROVIDER
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    total_timeout: float | None = None
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    max_retries: int = DEFAULT_MAX_RETRIES
    max_steps: int = DEFAULT_MAX_STEPS
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    system_prompt: str | None = None
    max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS
    max_history: int = DEFAULT_MAX_HISTORY
    max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    ratelimit: str | None = DEFAULT_RATELIMIT
    ratelimit_storage_uri: str = DEFAULT_RATELIMIT_STORAGE_URI
    ratelimit_fail_open: bool = True
    max_streams_per_client: int | None = None
    token_budget: str | None = None
    cors_origins: tuple[str, ...] | None = None
    offline_text: str | None = None
    offline_delay: float = DEFAULT_OFFLINE_DELAY
    on_disconnect: str = DEFAULT_ON_DISCONNECT
    stream_events: tuple[str, ...] = ()
    #: Who to ask, in order, when the provider fails before its first token:
    #: ``(provider, model or None)`` pairs.
    fallbacks: tuple[tuple[str, str | None], ...] = ()
    allow_images: bool = False
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    pool_maxsize: int = DEFAULT_POOL_MAXSIZE
    stream_format: str = "aistream"
    vercel_protocol: int = 5
    #: Model aliases for the OpenAI-compatible endpoint: alias -> (provider, model).
    models: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: Where answers are kept for reconnecting clients (``None``: nowhere).
    resume_storage_uri: str | None = None
    resume_ttl: float = DEFAULT_RESUME_TTL
    record_dir: str | None = None  # AI_RECORD_DIR: provider exchanges saved to replay
    #: Where calls waiting for approval are kept (else the resume, then the rate-limit storage).
    approval_storage_uri: str | None = None
    approval_ttl: float = DEFAULT_APPROVAL_TTL
    #: Every provider name the app can use, with its own settings
    #: (``providers.registry.provider_settings``).
    providers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config, providers: Mapping[str, ConfiguredProvider]) -> Settings:
        """Read every ``AI_*`` key; ``providers`` are the app's providers,
        already read (``providers.registry.provider_settings``)."""
        provider = config.get(ConfigVars.PROVIDER) or DEFAULT_PROVIDER
        checked_provider(provider, providers, ConfigVars.PROVIDER)  # at start-up, not per call
        number = partial(_number, config)
        return cls(
            provider=provider,
            model=config.get(ConfigVars.MODEL),
            temperature=number(ConfigVars.TEMPERATURE, float, minimum=0, maximum=2),
            max_tokens=number(ConfigVars.MAX_TOKENS, int, minimum=1),
            http_timeout=number(ConfigVars.HTTP_TIMEOUT, float, DEFAULT_HTTP_TIMEOUT, 0.001),
            connect_timeout=number(
                ConfigVars.CONNECT_TIMEOUT, float, DEFAULT_CONNECT_TIMEOUT, 0.001
            ),
            total_timeout=number(ConfigVars.TOTAL_TIMEOUT, float, None, 0.001),
            # 0 turns it off
            send_timeout=number(ConfigVars.SEND_TIMEOUT, float, DEFAULT_SEND_TIMEOUT, 0) or None,
            heartbeat_interval=number(
                ConfigVars.HEARTBEAT_INTERVAL, float, DEFAULT_HEARTBEAT_INTERVAL, 0
            ),
            max_retries=number(ConfigVars.MAX_RETRIES, int, DEFAULT_MAX_RETRIES, 0),
            max_steps=number(ConfigVars.MAX_STEPS, int, DEFAULT_MAX_STEPS, 1),
            retry_backoff=number(ConfigVars.RETRY_BACKOFF, float, DEFAULT_RETRY_BACKOFF, 0),
            system_prompt=config.get(ConfigVars.SYSTEM_PROMPT),
            max_question_chars=number(
                ConfigVars.MAX_QUESTION_CHARS, int, DEFAULT_MAX_QUESTION_CHARS, 1
            ),
            max_history=number(ConfigVars.MAX_HISTORY, int, DEFAULT_MAX_HISTORY, 0),
            max_history_chars=number(
                ConfigVars.MAX_HISTORY_CHARS, int, DEFAULT_MAX_HISTORY_CHARS, 0
            ),
            max_request_bytes=number(
                ConfigVars.MAX_REQUEST_BYTES, int, DEFAULT_MAX_REQUEST_BYTES, 1
            ),
            # None turns the limit off, so a missing key and None differ here.
            ratelimit=checked_limit(
                config.get(ConfigVars.RATELIMIT, DEFAULT_RATELIMIT), ConfigVars.RATELIMIT
            ),
            ratelimit_storage_uri=config.get(ConfigVars.RATELIMIT_STORAGE_URI)
            or DEFAULT_RATELIMIT_STORAGE_URI,
            ratelimit_fail_open=flag(config, ConfigVars.RATELIMIT_FAIL_OPEN, True),
            max_streams_per_client=number(ConfigVars.MAX_STREAMS_PER_CLIENT, int, None, 1),
            token_budget=checked_limit(
                config.get(ConfigVars.TOKEN_BUDGET), ConfigVars.TOKEN_BUDGET, many=False
            ),
            cors_origins=_origins(config.get(ConfigVars.CORS_ORIGINS)),
            offline_text=config.get(ConfigVars.OFFLINE_TEXT),
            offline_delay=number(ConfigVars.OFFLINE_DELAY, float, DEFAULT_OFFLINE_DELAY, 0),
            on_disconnect=_choice(
                config, ConfigVars.ON_DISCONNECT, DISCONNECT_POLICIES, DEFAULT_ON_DISCONNECT
            ),
            stream_events=checked_events(
                config.get(ConfigVars.STREAM_EVENTS), ConfigVars.STREAM_EVENTS
            ),
            fallbacks=checked_fallbacks(
                config.get(ConfigVars.FALLBACKS), providers, ConfigVars.FALLBACKS
            ),
            allow_images=flag(config, ConfigVars.ALLOW_IMAGES, False),
            pool_maxsize=number(ConfigVars.POOL_MAXSIZE, int, DEFAULT_POOL_MAXSIZE, 1),
            stream_format=_choice(config, ConfigVars.STREAM_FORMAT, STREAM_FORMATS, "aistream"),
            vercel_protocol=_choice(config, ConfigVars.VERCEL_PROTOCOL, VERCEL_PROTOCOLS, 5),
            models=checked_models(config.get(ConfigVars.MODELS), providers, ConfigVars.MODELS),
            max_image_bytes=number(ConfigVars.MAX_IMAGE_BYTES, int, DEFAULT_MAX_IMAGE_BYTES, 1),
            resume_storage_uri=config.get(ConfigVars.RESUME_STORAGE_URI) or None,
            resume_ttl=number(ConfigVars.RESUME_TTL, float, DEFAULT_RESUME_TTL, 1),
            record_dir=config.get(ConfigVars.RECORD_DIR) or None,
            approval_storage_uri=config.get(ConfigVars.APPROVAL_STORAGE_URI) or None,
            approval_ttl=number(ConfigVars.APPROVAL_TTL, float, DEFAULT_APPROVAL_TTL, 1),
            providers=dict(providers),
        )

    def model_for(self, provider: str, explicit: str | None = None) -> str:
        """A call's model, else ``AI_<NAME>_MODEL`` (or the ``AI_PROVIDERS``
        entry's), else ``AI_MODEL`` (meant for the default provider only),
        else the provider's own default; with none of them, an error that
        says where to set one."""
        conf = self.providers[provider]
        model = explicit or conf.model
        if not model and provider == self.provider:
            model = self.model
        model = model or conf.default_model
        if not model:
            also = f" or app.config[{ConfigVars.MODEL!r}]" if provider == self.provider else ""
            raise ConfigurationError(
                f"No model for the {provider!r} provider: set {conf.model_hint}{also}."
            )
        return model

    def redact(self, text: str) -> str:
        """``text`` with every configured API key, in every form a log line may
        hold it (as is, ``repr``-escaped, URL-encoded), and anything shaped
        like a key, hidden."""
        for conf in self.providers.values():
            if conf.api_key:
                for form in _key_forms(conf.api_key):
                    text = text.replace(form, "[redacted]")
        return _KEY_SHAPES.sub("[redacted]", text)


def _upper(provider: str) -> str:
    """A provider's name in its keys: ``openai-responses`` -> ``OPENAI_RESPONSES``."""
    return provider.upper().replace("-", "_")


def checked_provider(name: object, providers: Config, source: str) -> str:
    if name not in providers:
        raise ConfigurationError(
            f"Unknown AI provider {name!r} ({source}); known providers: "
            f"{', '.join(sorted(providers))}."
        )
    return name  # type: ignore[return-value]


def checked_fallbacks(
    value: object, providers: Config, source: str
) -> tuple[tuple[str, str | None], ...]:
    """A list of provider names, each optionally ``"name:model"``."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"{source} must be a list of provider names, not {value!r}.")
    fallbacks = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{source}: each fallback must be a string, not {item!r}.")
        name, _, model = item.partition(":")
        fallbacks.append((checked_provider(name, providers, source), model or None))
    return tuple(fallbacks)


def _key_forms(api_key: str) -> set[str]:
    return {
        api_key,
        repr(api_key)[1:-1],
        repr(api_key.encode())[2:-1],
        urllib.parse.quote(api_key, safe=""),
        urllib.parse.quote_plus(api_key),
    }


def _origins(value: object) -> tuple[str, ...] | None:
    if not value:
        return None
    return (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]


def flag(config: Config, key: str, default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return text in ("1", "true", "yes", "on")
    raise ConfigurationError(f"{key} must be true or false, not {value!r}.")


def checked_models(
    value: object, providers: Config, source: str
) -> dict[str, tuple[str, str | None]]:
    """Model aliases: ``{"fast": "groq:llama-3.1-8b-instant", "local": "ollama"}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{source} must be a dict of alias to 'provider:model'.")
    models = {}
    for alias, target in value.items():
        if not isinstance(alias, str) or not isinstance(target, str) or not target:
            raise ConfigurationError(f"{source}[{alias!r}] must be a 'provider:model' string.")
        name, _, model = target.partition(":")
        models[alias] = (checked_provider(name, providers, f"{source}[{alias!r}]"), model or None)
    return models


def _choice(config: Config, key: str, choices: tuple[Any, ...], default: Any) -> Any:
    value = config.get(key)
    if value is None:
        return default
    if value not in choices:
        raise ConfigurationError(
            f"{key} must be one of {', '.join(map(str, choices))}, not {value!r}."
        )
    return value


def _number(
    config: Config,
    key: str,
    kind: type,
    default: Any = None,
    minimum: float = 0,
    maximum: float | None = None,
) -> Any:
    value = config.get(key)
    if value is None:
        return default
    try:
        number = None if isinstance(value, bool) else kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        within = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigurationError(f"{key} must be a number {within}, not {value!r}.")
    return number


def checked_events(value: object, source: str) -> tuple[str, ...]:
    """``value`` as a tuple of optional event names; a wrong one raises,
    naming ``source`` (the config key or the option)."""
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{source} must be a list of event names, not {value!r}.")
    unknown = sorted(set(names) - set(OPTIONAL_EVENTS))
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown event(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(OPTIONAL_EVENTS)}."
        )
    return tuple(names)


def parsed_limit(value: Any, what: str, many: bool = True) -> Any:
    """``value`` parsed as one (or several) ``limits`` items; a wrong one
    raises, naming the setting or option."""
    try:
        return parse_many(value) if many else parse(value)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f'{what} must be a limit such as "10 per minute", not {value!r}.'
        ) from None


def checked_limit(value: object, what: str, many: bool = True) -> Any:
    """``value`` as given (``None``: no limit), once it parses: checked when
    the app starts, since a limit nobody can read would be no limit at all."""
    if value is not None:
        parsed_limit(value, what, many)
    return value
