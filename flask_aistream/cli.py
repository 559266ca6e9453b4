"""``flask ai``: check a deployment's configuration, ask a question from the
terminal, list the providers and models an app can use. ``init_app`` adds
the group to ``app.cli``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click
import requests
from flask import current_app
from flask.cli import AppGroup

from .endpoints.limits import storage_for
from .errors import AIStreamError
from .parts import Event, Finish, ReasoningDelta, TextDelta
from .providers.base import ChatRequest

if TYPE_CHECKING:
    from .client import AIClient

ai_cli = AppGroup("ai", help="flask-aistream: check the configuration, ask, list models.")


def _client() -> AIClient:
    return current_app.extensions["ai"]  # type: ignore[no-any-return]  # init_app added both


class Report:
    """Lines of a check, and whether any was a problem."""

    def __init__(self) -> None:
        self.problems = 0

    def ok(self, what: str, detail: str = "") -> None:
        click.echo(f"  ok       {what}" + (f": {detail}" if detail else ""))

    def note(self, what: str, detail: str) -> None:
        click.echo(f"  note     {what}: {detail}")

    def problem(self, what: str, detail: str) -> None:
        self.problems += 1
        click.echo(f"  PROBLEM  {what}: {detail}")


@ai_cli.command("check")
@click.option("--live", is_flag=True, help="Also ask each provider in use a one-line question.")
@click.option(
    "--url",
    metavar="URL",
    help="Ask a deployed chat endpoint (the blueprint's POST .../stream) through its proxy.",
)
def check(live: bool, url: str | None) -> None:
    """Check the providers in use, the storages, and optionally a deployment."""
    client = _client()
    settings = client.settings
    report = Report()
    click.echo("Providers in use (AI_PROVIDER, AI_FALLBACKS, AI_MODELS):")
    in_use: dict[str, str | None] = {client.default_provider: None}
    for name, model in (*settings.fallbacks, *settings.models.values()):
        in_use.setdefault(name, model)
    for name, model in in_use.items():
        provider = client.providers[name]
        conf = provider.conf
        key = "set" if conf.api_key else ("missing" if conf.key_required else "none needed")
        try:
            conf.require_api_key()
            chosen = settings.model_for(name, model)
            provider.check(_one_line(chosen))
        except AIStreamError as exc:
            report.problem(name, str(exc))
            continue
        report.ok(name, f"key {key}, {conf.base_url or 'no network'}, model {chosen}")
        if live:
            _ask_live(client, name, chosen, report)
    click.echo("Storage:")
    _check_storage(client, report)
    if url:
        click.echo(f"Deployment at {url}:")
        _check_url(url, report)
    click.echo("No problems." if not report.problems else f"{report.problems} problem(s).")
    if report.problems:
        raise SystemExit(1)


def _one_line(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=({"role": "user", "content": "Say OK."},))


def _ask_live(client: AIClient, name: str, model: str, report: Report) -> None:
    started = time.monotonic()
    try:
        text = client.ask("Say OK.", provider=name, model=model, max_tokens=16, fallbacks=[])
    except AIStreamError as exc:
        report.problem(f"{name} (live)", str(exc))
        return
    took = time.monotonic() - started
    report.ok(f"{name} (live)", f"answered {text.strip()[:40]!r} in {took:.1f} s")


def _check_storage(client: AIClient, report: Report) -> None:
    settings = client.settings
    workers = int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    if client.resume_store is not None:
        uri = settings.resume_storage_uri
        try:
            client.resume_store.status("ans-" + "0" * 32)
            report.ok("resume store", _scheme(uri))
        except Exception as exc:  # noqa: BLE001 - reported, whatever it is
            report.problem("resume store", f"{_scheme(uri)} cannot be reached: {exc!r}")
        _memory(report, "resume store", uri, workers)
    else:
        report.note("resume store", "off (AI_RESUME_STORAGE_URI)")
    uri = settings.ratelimit_storage_uri
    try:
        reachable = storage_for(uri).check()
    except Exception as exc:  # noqa: BLE001
        reachable, uri = False, f"{_scheme(uri)} ({exc!r})"
    if reachable:
        report.ok("rate-limit storage", _scheme(uri))
    else:
        report.problem("rate-limit storage", f"{_scheme(uri)} cannot be reached")
    _memory(report, "rate-limit storage", uri, workers)


def _memory(report: Report, what: str, uri: str | None, workers: int) -> None:
    if uri == "memory://":
        if workers > 1:
            report.problem(
                what, f"memory:// with WEB_CONCURRENCY={workers}: each worker counts apart"
            )
        else:
            report.note(what, "memory:// is one process's: with several workers, use redis://")


def _scheme(uri: str | None) -> str:
    """A storage URI without its credentials or host (they stay off the terminal)."""
    return (uri or "").split("://", 1)[0] + "://"


def _check_url(url: str, report: Report) -> None:
    """Ask a deployed endpoint, and look at how its tokens arrive: many
    tokens in one burst means something in between buffers the stream."""
    try:
        response = requests.post(
            url,
            json={"question": "Count from 1 to 30, one number per line."},
            headers={"Accept": "text/event-stream"},
            stream=True,
            timeout=(10, 60),
        )
    except requests.RequestException as exc:
        report.problem("request", f"{exc!r}")
        return
    if response.status_code != 200:
        report.problem("request", f"HTTP {response.status_code}: {response.text[:200]}")
        return
    encoding = response.headers.get("Content-Encoding")
    if encoding and encoding != "identity":
        report.problem("compression", f"Content-Encoding: {encoding} (a compressor holds tokens)")
    bursts, events, done = _bursts(response)
    if not done:
        report.problem("end", "the stream ended before [DONE] (a proxy timeout?)")
    if events >= 5 and bursts <= 2:
        report.problem("buffering", f"{events} events came at once ({bursts} burst(s))")
    elif events:
        report.ok("streaming", f"{events} events in {bursts} bursts, as they were sent")
    else:
        report.problem("streaming", "no event arrived")


#: Events that arrive closer together than this came in one network read.
SAME_READ = 0.005


def _bursts(response: requests.Response) -> tuple[int, int, bool]:
    """How many bursts the events arrived in (urllib3 hands over a chunked
    body chunk by chunk, whatever one read brought: a burst is what came
    with no pause), how many events, and whether ``[DONE]`` came."""
    bursts = events = 0
    done = False
    last = 0.0
    for chunk in response.iter_content(None):
        now = time.monotonic()
        if now - last > SAME_READ:
            bursts += 1
        last = now
        events += chunk.count(b"data: ")
        done = done or b"data: [DONE]" in chunk
    return bursts, events, done


@ai_cli.command("ask")
@click.argument("question")
@click.option("--provider", help="A provider name (default: AI_PROVIDER).")
@click.option("--model", help="A model (default: the provider's).")
def ask(question: str, provider: str | None, model: str | None) -> None:
    """Stream the answer to QUESTION to the terminal."""
    try:
        for event in _events(question, provider, model):
            if isinstance(event, TextDelta):
                click.echo(event.text, nl=False)
            elif isinstance(event, ReasoningDelta):
                click.secho(event.text, nl=False, dim=True)
            elif isinstance(event, Finish):
                answer = event.answer
                usage = answer.usage
                tokens = f" · {usage.input_tokens} in / {usage.output_tokens} out" if usage else ""
                click.echo(f"\n[{answer.finish_reason}{tokens} · {answer.model}]")
    except AIStreamError as exc:
        raise click.ClickException(str(exc)) from None


def _events(question: str, provider: str | None, model: str | None) -> Iterator[Event]:
    return _client().iter_events(question, provider=provider, model=model)


@ai_cli.command("models")
def models() -> None:
    """List the providers, their models, and the model aliases (AI_MODELS)."""
    client = _client()
    settings = client.settings
    for name, provider in sorted(client.providers.items()):
        conf = provider.conf
        try:
            model = settings.model_for(name)
        except AIStreamError:
            model = "(no model set)"
        key = "" if conf.api_key or not conf.key_required else "  (no key)"
        default = "  (default)" if name == client.default_provider else ""
        click.echo(f"{name:12} {conf.api:10} {model}{default}{key}")
    for alias, (name, aliased) in sorted(settings.models.items()):
        click.echo(f"alias {alias} -> {name}:{aliased or settings.model_for(name)}")
