"""Every provider an app can name: the built-ins, the presets, the app's own
``AI_PROVIDERS`` entries and registered classes, resolved once per app from
its config (:func:`provider_settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigVars, Settings, flag
from ..errors import ConfigurationError
from ..parts import Options
from .anthropic import MessagesProvider
from .base import Provider, ProviderSettings
from .gemini import GeminiProvider
from .offline import OfflineProvider
from .ollama import OllamaProvider
from .openai import AzureProvider, ChatCompletionsProvider, MistralProvider, OpenAIProvider
from .responses import AzureResponsesProvider, OpenAIResponsesProvider, ResponsesProvider
from .wire import printable

#: The entry point group a package names its provider classes in.
ENTRY_POINT_GROUP = "flask_aistream.providers"


@dataclass(frozen=True)
class Preset:
    """A provider known by name: its wire format and where it lives."""

    cls: type[Provider]
    base_url: str
    model: str | None
    env_keys: tuple[str, ...]
    key_required: bool = True
    stream_usage: bool = True

    @classmethod
    def of(cls, provider: type[Provider], key_required: bool = True) -> Preset:
        return cls(
            provider,
            provider.default_base_url,
            provider.default_model,
            provider.env_keys,
            key_required=key_required and bool(provider.env_keys),
        )


def _compatible(
    base_url: str, model: str | None, env_key: str, key_required: bool = True
) -> Preset:
    return Preset(ChatCompletionsProvider, base_url, model, (env_key,), key_required)


BUILT_IN: dict[str, Preset] = {
    "openai": Preset.of(OpenAIProvider),
    "anthropic": Preset.of(MessagesProvider),
    "gemini": Preset.of(GeminiProvider),
    "ollama": Preset.of(OllamaProvider, key_required=False),
    "azure": Preset.of(AzureProvider),
    # OpenAI's Responses API: OpenAI's key and base URL unless its own are set.
    "openai-responses": Preset.of(OpenAIResponsesProvider),
    "groq": _compatible("https://api.groq.com/openai/v1", "llama-3.1-8b-instant", "GROQ_API_KEY"),
    "mistral": Preset(
        MistralProvider,
        "https://api.mistral.ai/v1",
        "mistral-small-latest",
        ("MISTRAL_API_KEY",),
        stream_usage=False,  # it answers 422 to stream_options, and reports usage anyway
    ),
    # OpenAI-compatible services that need only a key.
    "openrouter": _compatible(
        "https://openrouter.ai/api/v1", "openai/gpt-4o-mini", "OPENROUTER_API_KEY"
    ),
    "deepseek": _compatible("https://api.deepseek.com/v1", "deepseek-chat", "DEEPSEEK_API_KEY"),
    "xai": _compatible("https://api.x.ai/v1", "grok-3-mini", "XAI_API_KEY"),
    "together": _compatible(
        "https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "TOGETHER_API_KEY"
    ),
    "fireworks": _compatible(
        "https://api.fireworks.ai/inference/v1",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
        "FIREWORKS_API_KEY",
    ),
    # Local servers: no key (one is sent if set), and the model is whatever they serve.
    "vllm": _compatible("http://localhost:8000/v1", None, "VLLM_API_KEY", key_required=False),
    "llamacpp": _compatible(
        "http://localhost:8080/v1", None, "LLAMACPP_API_KEY", key_required=False
    ),
    "lmstudio": _compatible(
        "http://localhost:1234/v1", None, "LMSTUDIO_API_KEY", key_required=False
    ),
    "offline": Preset.of(OfflineProvider, key_required=False),
}

#: The wire formats an ``AI_PROVIDERS`` entry may name with a base URL of its
#: own, and the built-in whose defaults an entry without one takes.
APIS: dict[str, tuple[type[Provider], str]] = {
    "openai": (ChatCompletionsProvider, "openai"),
    "anthropic": (MessagesProvider, "anthropic"),
    "gemini": (GeminiProvider, "gemini"),
    "ollama": (OllamaProvider, "ollama"),
    "azure": (AzureProvider, "azure"),
    "responses": (ResponsesProvider, "openai-responses"),
}
ENTRY_FIELDS = ("api", "base_url", "api_key", "api_key_env", "model", "headers", "stream_usage")


def entry_point_providers() -> dict[str, type[Provider]]:
    """Provider classes other packages declare under :data:`ENTRY_POINT_GROUP`."""
    from importlib.metadata import entry_points

    return {entry.name: entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)}


def provider_settings(
    config: Options,
    environ: Mapping[str, str],
    registered: Mapping[str, type[Provider]] = {},
) -> dict[str, ProviderSettings]:
    """Every provider name the app can use, with its settings: built-ins and
    presets (each read from ``AI_<NAME>_*`` keys and its environment
    variables), registered classes (the same way), then ``AI_PROVIDERS``
    entries, which may replace any of them."""
    presets = dict(BUILT_IN)
    for name, cls in registered.items():
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise ConfigurationError(f"provider {name!r} must be a Provider subclass, not {cls!r}")
        presets[name] = Preset.of(cls)
    providers: dict[str, ProviderSettings] = {}
    if config.get(ConfigVars.AZURE_API) == "responses":
        presets["azure"] = Preset.of(AzureResponsesProvider)
    elif config.get(ConfigVars.AZURE_API) not in (None, "chat"):
        raise ConfigurationError(f'{ConfigVars.AZURE_API} must be "responses" or "chat".')
    for name, preset in presets.items():
        key_setting = ConfigVars.api_key(name)
        key = config.get(key_setting)
        if name == "openai-responses":  # OpenAI's own settings, unless its are set
            key = key or config.get(ConfigVars.api_key("openai"))
        for env in preset.env_keys:
            key = key or environ.get(env)
        base_setting = ConfigVars.base_url(name)
        base_url = config.get(base_setting) or preset.base_url
        if name == "openai-responses":
            base_url = (
                config.get(base_setting) or config.get(ConfigVars.base_url("openai")) or base_url
            )
        base_hint = base_setting
        if name == "azure" and not base_url:
            endpoint = environ.get("AZURE_OPENAI_ENDPOINT", "").strip()
            base_url = endpoint.rstrip("/") + "/openai/v1" if endpoint else ""
            base_hint = f"{base_setting} or the AZURE_OPENAI_ENDPOINT environment variable"
        providers[name] = ProviderSettings(
            name=name,
            api=preset.cls.api,
            api_key=api_key_value(key, key_setting),
            base_url=base_url_value(base_url, base_setting) if base_url else "",
            model=config.get(ConfigVars.model(name)),
            default_model=preset.model,
            key_required=preset.key_required,
            key_hint=f"app.config[{key_setting!r}]"
            + (
                f" or the {' or '.join(preset.env_keys)} environment variable"
                if preset.env_keys
                else ""
            ),
            model_hint=f"model= in the call or app.config[{ConfigVars.model(name)!r}]",
            base_url_hint=base_hint,
            stream_usage=flag(config, ConfigVars.stream_usage(name), preset.stream_usage),
            cls=preset.cls,
        )
    entries = config.get(ConfigVars.PROVIDERS) or {}
    if not isinstance(entries, Mapping):
        raise ConfigurationError(f"{ConfigVars.PROVIDERS} must be a dict of name to settings.")
    apis = {**APIS, **{name: (cls, name) for name, cls in registered.items()}}
    for name, entry in entries.items():
        providers[name] = _entry(name, entry, apis, providers, environ)
    return providers


def _entry(
    name: Any,
    entry: Any,
    apis: Mapping[str, tuple[type[Provider], str]],
    providers: Mapping[str, ProviderSettings],
    environ: Mapping[str, str],
) -> ProviderSettings:
    """One ``AI_PROVIDERS`` entry. Without a ``base_url`` it is the built-in
    of its ``api`` with other settings (its key too, unless it names one);
    with one, a server of that wire format that needs a key only if given."""
    where = f"AI_PROVIDERS[{name!r}]"
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise ConfigurationError(
            f"{where}: a provider name must be a non-empty string without ':'."
        )
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where} must be a dict with at least an 'api'.")
    unknown = set(entry) - set(ENTRY_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
            f"expected some of {', '.join(ENTRY_FIELDS)}."
        )
    api = entry.get("api")
    if not isinstance(api, str) or api not in apis:
        raise ConfigurationError(
            f"{where}['api'] must be one of {', '.join(sorted(apis))}, not {api!r}."
        )
    if "api_key" in entry and "api_key_env" in entry:
        raise ConfigurationError(f"{where}: give 'api_key' or 'api_key_env', not both.")
    cls, base_name = apis[api]
    base = providers[base_name]
    key_hint = f"'api_key' or 'api_key_env' in {where}"
    if "api_key_env" in entry:
        key_hint = f"the {entry['api_key_env']} environment variable"
        key = api_key_value(environ.get(str(entry["api_key_env"])), key_hint)
    else:
        key = api_key_value(entry.get("api_key"), f"{where}['api_key']")
    headers = entry.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and printable(k + v) for k, v in headers.items()
    ):
        raise ConfigurationError(f"{where}['headers'] must be a dict of header names to strings.")
    own_server = bool(entry.get("base_url"))
    if own_server:
        base_url = base_url_value(entry["base_url"], f"{where}['base_url']")
    else:
        cls, base_url = base.cls, base.base_url
        key = key or base.api_key
        key_hint = f"{key_hint}, or {base.key_hint}"
    return ProviderSettings(
        name=name,
        api=cls.api,
        api_key=key,
        base_url=base_url,
        model=entry.get("model"),
        default_model=None if own_server else base.default_model,
        key_required=False if own_server else base.key_required,
        key_hint=key_hint,
        model_hint=f"model= in the call or 'model' in {where}",
        base_url_hint=f"'base_url' in {where}",
        headers=dict(headers),
        stream_usage=flag(entry, "stream_usage", True if own_server else base.stream_usage),
        cls=cls,
    )


def build_providers(
    settings: Settings, providers: Mapping[str, ProviderSettings]
) -> dict[str, Provider]:
    """One provider object per name."""
    return {name: conf.cls(conf, settings) for name, conf in providers.items()}


def api_key_value(value: object, key: str) -> str | None:
    """A key as read from config or the environment, stripped (one read from
    a secrets file ends in a newline); one with control characters inside is
    refused, without showing it."""
    if not value:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string.")
    value = value.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ConfigurationError(f"{key} holds a control character (a newline, a tab...).")
    return value or None


def base_url_value(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigurationError(f"{key} must start with http:// or https://, not {value!r}.")
    return value
