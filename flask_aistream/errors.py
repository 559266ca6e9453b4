"""Every exception flask-aistream raises.

    AIStreamError
    ├── ConfigurationError (also a ValueError)   the app is set up wrong; fix the config
    └── ProviderError                            the AI provider could not give an answer
        └── StreamFormatError                    its stream broke the wire format

``str(ProviderError)`` is short and safe to show to a person: it says what went
wrong and whether trying again may help, and never holds an API key, a header
or the provider's URL. What the provider actually said is in ``.detail`` (with
configured keys redacted), meant for the application's log.
"""

from __future__ import annotations


class AIStreamError(Exception):
    """Root of everything flask-aistream raises."""


class ConfigurationError(AIStreamError, ValueError):
    """A setting is missing or invalid, such as an API key for the provider a call needs."""


class ProviderError(AIStreamError):
    """The provider failed before or during the answer.

    :param message: the text a user may see.
    :param provider: the provider's name, e.g. ``"openai"``.
    :param status: the upstream HTTP status, when there was one.
    :param retryable: whether the same request may succeed if tried again later.
    :param detail: what the provider said, for the log only.
    :param retry_after: seconds the provider asked us to wait before retrying.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retryable: bool = False,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.detail = detail
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"status={self.status!r}, retryable={self.retryable!r})"
        )


class StreamFormatError(ProviderError):
    """The upstream stream was not the wire format we expected (bad JSON, a runaway line)."""

    def __init__(self, detail: str, *, provider: str = "") -> None:
        super().__init__(
            "The AI provider sent a malformed answer.",
            provider=provider,
            detail=detail,
        )
