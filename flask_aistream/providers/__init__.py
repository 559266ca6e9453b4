"""The providers flask-aistream knows, by the name used in ``AI_PROVIDER``."""

from __future__ import annotations

from ..errors import ConfigurationError
from .anthropic import MessagesProvider
from .base import ChatRequest, EventReader, HTTPProvider, PartStream, Provider
from .offline import OfflineProvider
from .openai import ChatCompletionsProvider

PROVIDERS: dict[str, Provider] = {
    "openai": ChatCompletionsProvider(
        "openai",
        env_key="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini",
        max_tokens_field="max_completion_tokens",
    ),
    "anthropic": MessagesProvider(),
    "groq": ChatCompletionsProvider(
        "groq",
        env_key="GROQ_API_KEY",
        base_url="https://api.groq.com/openai/v1",
        model="llama-3.1-8b-instant",
    ),
    "mistral": ChatCompletionsProvider(
        "mistral",
        env_key="MISTRAL_API_KEY",
        base_url="https://api.mistral.ai/v1",
        model="mistral-small-latest",
        # Mistral answers 422 to ``stream_options``, and reports usage anyway.
        stream_usage=False,
    ),
    "offline": OfflineProvider(),
}


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ConfigurationError(
            f"Unknown AI provider {name!r}; known providers: {', '.join(sorted(PROVIDERS))}."
        ) from None


__all__ = [
    "PROVIDERS",
    "ChatRequest",
    "EventReader",
    "HTTPProvider",
    "PartStream",
    "Provider",
    "get_provider",
]
