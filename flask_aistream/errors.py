"""Every exception flask-aistream raises.

    AIStreamError
    ├── ConfigurationError (also a ValueError)   a setting or an option's value is wrong
    │   └── UnsupportedOptionError               the provider has no equivalent of an option
    ├── InvalidRequestError (also a ValueError)  a call's prompt or messages cannot be sent
    ├── UnknownOptionError (also a TypeError)    a call names an option that does not exist
    ├── ExtensionError (also a RuntimeError)     the extension is missing or registered twice
    └── ProviderError                            the AI provider could not give an answer
        └── StreamFormatError                    its stream broke the wire format

``str(ProviderError)`` is short and safe to show to a person: it says what went
wrong, and to try again only where that may help; it never holds an API key, a
header or the provider's URL. ``.kind`` says what kind of failure it is (one
of :data:`ERROR_KINDS`); what the provider actually said is in ``.detail``
(with configured keys redacted), meant for the application's log.
"""

from __future__ import annotations

#: Every kind of provider failure: the text a person may see, and whether the
#: same request may succeed if tried again later.
ERROR_KINDS: dict[str, tuple[str, bool]] = {
    "auth": ("The AI provider refused the server's credentials.", False),
    "rate_limit": ("The AI provider is rate limiting requests; try again in a moment.", True),
    "quota": ("The AI provider account has run out of quota.", False),
    "bad_request": ("The AI provider rejected the request.", False),
    "not_found": ("The AI provider does not know the model or endpoint asked for.", False),
    "unavailable": ("The AI provider is unavailable or overloaded; try again later.", True),
    "timeout": ("The AI provider did not answer in time; try again later.", True),
    "connection": ("Could not connect to the AI provider; try again later.", True),
    "cut_off": ("The answer was cut off: the AI provider closed the stream early.", True),
    "blocked": ("The AI provider blocked this answer.", False),
    "redirect": ("The AI provider answered with a redirect, which is not followed.", False),
    "bad_response": ("The AI provider sent a malformed answer.", False),
    "internal": ("Something went wrong while streaming the answer.", False),
}


class AIStreamError(Exception):
    """Root of everything flask-aistream raises."""


class ConfigurationError(AIStreamError, ValueError):
    """A setting is missing or invalid, such as an API key for the provider a call needs."""


class UnsupportedOptionError(ConfigurationError):
    """A call uses an option (``seed``, ``tools``, images...) that the
    provider it goes to has no equivalent of. Raised before anything is sent:
    an option is never silently dropped."""

    def __init__(self, option: str, provider: str, why: str = "") -> None:
        self.option = option
        self.provider = provider
        what = "image parts" if option == "images" else f"the {option!r} option"
        super().__init__(
            f"The {provider!r} provider has no equivalent of {what}"
            + (f": {why}" if why else "")
            + "."
        )


class InvalidRequestError(AIStreamError, ValueError):
    """A call's prompt or messages cannot be sent: empty, or not chat messages."""


class UnknownOptionError(AIStreamError, TypeError):
    """A call names an option flask-aistream does not have, or passes the wrong kind of thing."""


class ExtensionError(AIStreamError, RuntimeError):
    """The current app has no flask-aistream extension, or has one already."""


class ProviderError(AIStreamError):
    """The provider failed before or during the answer.

    :param message: the text a user may see; by default the kind's.
    :param kind: what failed, one of :data:`ERROR_KINDS`.
    :param provider: the provider's name, e.g. ``"openai"``.
    :param status: the upstream HTTP status, when there was one.
    :param retryable: whether the same request may succeed if tried again
        later; by default the kind's.
    :param detail: what the provider said, for the log only.
    :param retry_after: seconds the provider asked us to wait before retrying.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        kind: str = "unavailable",
        provider: str = "",
        status: int | None = None,
        retryable: bool | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        text, kind_retryable = ERROR_KINDS[kind]
        message = message or text
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.provider = provider
        self.status = status
        self.retryable = kind_retryable if retryable is None else retryable
        self.detail = detail
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, kind={self.kind!r}, "
            f"provider={self.provider!r}, status={self.status!r}, retryable={self.retryable!r})"
        )


class StreamFormatError(ProviderError):
    """The upstream stream was not the wire format we expected (bad JSON, a runaway line)."""

    def __init__(self, detail: str, *, provider: str = "") -> None:
        super().__init__(kind="bad_response", provider=provider, detail=detail)


class ToolError(AIStreamError):
    """Raised by a tool to say why it could not do what was asked: the text
    is the result the model sees and the error the client is shown (any
    other exception is logged, and told only "The tool failed.")."""
