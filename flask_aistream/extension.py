"""The Flask extension: ``AIStream(app)`` or ``AIStream().init_app(app)``."""

from __future__ import annotations

import difflib
import functools
import os
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from flask import Blueprint, Flask, Response, current_app, has_app_context
from flask.typing import ResponseReturnValue

from .calls import AskOptions, Owner
from .cli import ai_cli
from .client import AIClient
from .config import ConfigVars, Settings, checked_limit
from .errors import ConfigurationError, ExtensionError
from .parts import Event, Options
from .providers.base import Provider
from .providers.registry import BUILT_IN, entry_point_providers, provider_settings
from .task import Task

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .endpoints.limits import ClientLimits

EXTENSION_KEY = "ai"
#: A Flask view function.
View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def client_of(app: Flask) -> AIClient:
    """``app``'s client, or an error that says how to register one."""
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise ExtensionError(
            "The current Flask app has no flask-aistream extension. "
            "Did you forget to call AIStream(app) or init_app(app)?"
        ) from None


class AIStream:
    """Registers an :class:`AIClient` as ``app.extensions["ai"]``.

    Configuration is read once, in :meth:`init_app`, from the ``AI_*`` keys
    of ``app.config`` (API keys fall back to the providers' usual environment
    variables). Changing ``app.config`` later has no effect. The extension
    keeps no app: one ``AIStream`` may serve several apps, and its methods
    act for ``current_app``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        #: Provider classes added by name, for every app initialized after.
        self._registered: dict[str, type[Provider]] = {}
        if app is not None:
            self.init_app(app)

    def register_provider(self, name: str, cls: type[Provider]) -> None:
        """Make provider ``name`` (spoken to by ``cls``, a
        :class:`~flask_aistream.providers.Provider` subclass) known to every
        app this extension initializes from now on, and to the current app's
        client if there is one. Registered before ``init_app``, the name works
        in ``AI_PROVIDER`` and as an ``AI_PROVIDERS`` entry's ``api``.
        Packages can declare classes in the ``flask_aistream.providers``
        entry point group instead."""
        self._registered[name] = cls
        if has_app_context() and EXTENSION_KEY in current_app.extensions:
            client_of(current_app).register_provider(name, cls)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise ExtensionError(
                "A flask-aistream extension is already registered on this app "
                f"(app.extensions[{EXTENSION_KEY!r}]). Call init_app once per app "
                "and use the existing one."
            )
        registered = {**entry_point_providers(), **self._registered}
        providers = provider_settings(app.config, os.environ, registered)
        settings = Settings.from_config(app.config, providers)
        for key, closest in unknown_keys(app.config, [*BUILT_IN, *registered]):
            app.logger.warning(
                "flask-aistream: unknown setting %s (ignored)%s",
                key,
                f"; did you mean {closest}?" if closest else "",
            )
        app.extensions[EXTENSION_KEY] = AIClient(settings, app.logger, app=app)
        app.cli.add_command(ai_cli)

    @property
    def client(self) -> AIClient:
        """The current app's client."""
        return client_of(current_app)

    def ask_stream(self, prompt: str | None = None, **options: Unpack[AskOptions]) -> Response:
        return self.client.ask_stream(prompt, **options)

    def ask(self, prompt: str | None = None, **options: Unpack[AskOptions]) -> str:
        return self.client.ask(prompt, **options)

    def iter_text(self, prompt: str | None = None, **options: Unpack[AskOptions]) -> Iterator[str]:
        return self.client.iter_text(prompt, **options)

    def iter_events(
        self, prompt: str | None = None, **options: Unpack[AskOptions]
    ) -> Iterator[Event]:
        return self.client.iter_events(prompt, **options)

    def resume(self, answer_id: str, after: int = 0, owner: Owner = None) -> Response:
        """See :meth:`AIClient.resume`."""
        return self.client.resume(answer_id, after, owner=owner)

    def cancel(self, answer_id: str, owner: Owner = None) -> bool:
        """See :meth:`AIClient.cancel`."""
        return self.client.cancel(answer_id, owner=owner)

    def blueprint(self, **options: Any) -> Blueprint:
        """The chat blueprint (see :meth:`AIClient.blueprint`), served on each
        app it is registered on by that app's client: it may be made outside
        any app context, as in an app factory."""
        from .endpoints import checked_keywords
        from .endpoints.chat import make_blueprint

        return make_blueprint(None, **checked_keywords(make_blueprint, options, "blueprint()"))

    def openai_blueprint(self, **options: Any) -> Blueprint:
        """The OpenAI-compatible blueprint (see :meth:`AIClient.openai_blueprint`),
        served on each app it is registered on by that app's client."""
        from .endpoints import checked_keywords
        from .endpoints.openai import make_openai_blueprint

        return make_openai_blueprint(
            None, **checked_keywords(make_openai_blueprint, options, "openai_blueprint()")
        )

    def limit(
        self,
        rate: str | None = None,
        *,
        key: Callable[[], object] | None = None,
        max_streams: int | None = None,
        token_budget: str | None = None,
    ) -> Callable[[View], View]:
        """Limits for a view of your own that returns ``ask_stream(...)``, as
        the blueprint counts them (and as flask-limiter's ``limiter.limit``
        reads): ``rate`` questions per period (``"10 per minute"``),
        ``max_streams`` answers streaming at once, ``token_budget`` tokens per
        period, per client: ``key()`` (e.g. the user's id), else the app's own
        ``Limiter``'s key, else the client's address. Counted in the app's
        ``Limiter``'s storage or ``AI_RATELIMIT_STORAGE_URI``; a refusal is a
        429 JSON ``{"error"}`` with ``Retry-After``; a stream counts until its
        answer ends, its tokens when it ends."""
        from .endpoints.limits import (
            StreamTicket,
            client_limits,
            counted,
            key_func,
            refusal_response,
        )

        if rate is None and max_streams is None and token_budget is None:
            raise ConfigurationError("limit() needs a rate, max_streams or a token_budget.")
        checked_limit(rate, "rate")
        checked_limit(token_budget, "token_budget", many=False)
        if max_streams is not None and (not isinstance(max_streams, int) or max_streams < 1):
            raise ConfigurationError(
                f"max_streams must be a whole number >= 1, not {max_streams!r}."
            )

        def decorator(view: View) -> View:
            per_app: weakref.WeakKeyDictionary[Flask, ClientLimits | None] = (
                weakref.WeakKeyDictionary()
            )
            scope = f"view:{view.__module__}.{view.__qualname__}"

            @functools.wraps(view)
            def limited(*args: object, **kwargs: object) -> ResponseReturnValue:
                app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
                if app not in per_app:
                    settings = client_of(app).settings
                    per_app[app] = client_limits(
                        app, scope, settings, rate, max_streams, token_budget
                    )
                limits = per_app[app]
                if limits is None:  # never: a limit was asked for
                    return view(*args, **kwargs)
                client_key = key_func(app, key)()
                refusal = limits.admit(client_key)
                if refusal is not None:
                    return refusal_response(refusal)
                ticket = StreamTicket(limits, client_key)
                return counted(lambda: view(*args, **kwargs), ticket)

            return limited  # type: ignore[return-value]

        return decorator

    def task(self) -> Task:
        return self.client.task()

    def provider(self, name: str) -> AIClient:
        return self.client.provider(name)


def known_keys(providers: Iterable[str]) -> set[str]:
    """Every ``AI_*`` key flask-aistream reads, with per-provider keys for
    ``providers`` (those named by ``AI_PROVIDERS`` entries are not read)."""
    keys = {
        value
        for name, value in vars(ConfigVars).items()
        if name.isupper() and isinstance(value, str)
    }
    for provider in providers:
        keys |= {
            ConfigVars.api_key(provider),
            ConfigVars.base_url(provider),
            ConfigVars.model(provider),
            ConfigVars.stream_usage(provider),
        }
    return keys


def unknown_keys(config: Options, providers: Iterable[str]) -> list[tuple[str, str | None]]:
    """The ``AI_*`` keys of ``config`` we do not read, each with the known key
    closest to it (a typo silently does nothing otherwise)."""
    known = known_keys(providers)
    return [
        (key, next(iter(difflib.get_close_matches(key, known, n=1, cutoff=0.75)), None))
        for key in sorted(config)
        if isinstance(key, str) and key.startswith("AI_") and key not in known
    ]
