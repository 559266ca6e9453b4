"""Flask views on top of the client: the chat blueprint browsers call
(``AIClient.blueprint()``), the OpenAI-compatible one
(``AIClient.openai_blueprint()``), what each takes from a request, and the
limits they count per client."""

from __future__ import annotations

import inspect
from typing import Callable

from ..errors import UnknownOptionError
from ..parts import Options


def checked_keywords(function: Callable[..., object], options: Options, what: str) -> Options:
    """``options`` for ``function``'s keyword-only parameters; one it does not
    take is an :class:`UnknownOptionError` that lists them (not a
    ``TypeError`` naming an internal function)."""
    known = [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = set(options) - set(known)
    if unknown:
        raise UnknownOptionError(
            f"{what} has no option(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(known))}"
        )
    return options
