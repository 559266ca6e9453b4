"""A scripted provider for an app's tests: :func:`fake_provider` answers
every provider call of the app from a script, for the length of a ``with``.

What a scripted reply becomes is what the provider would have sent: the
bytes of its API, read by the app's own provider reader (in process, from
memory; with ``wire=``, from a loopback HTTP server through the app's whole
HTTP path). So a scripted failure reads exactly as the real one does: the
same error text, the same :class:`~flask_aistream.ProviderError` kind.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..errors import ConfigurationError, ProviderError
from ..parts import (
    JSONObject,
    Metadata,
    Part,
    ReasoningDelta,
    Stop,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
)
from ..providers.anthropic import MessagesProvider
from ..providers.base import REQUEST_OPTIONS, ChatRequest, PartStream, Provider
from ..providers.gemini import GeminiProvider
from ..providers.http import HTTPProvider, HTTPStream
from ..providers.ollama import OllamaProvider
from ..providers.openai import ChatCompletionsProvider, OpenAIProvider
from ..providers.wire import http_error
from . import wire
from .wire import APIS

if TYPE_CHECKING:
    from flask import Flask

    from ..client import AIClient
    from ..transport import Opening, Transport

    #: A provider's own ``open``.
    OpenFunction = Callable[[ChatRequest, Transport, Union[Opening, None]], PartStream]

#: Header a request carries in wire mode: which scripted reply it is.
SCRIPT_HEADER = "X-AIStream-Fake-Reply"
#: Tokens of a scripted text: a word with the space before it, as providers cut them.
_TOKENS = re.compile(r"\s*\S+|\s+")
#: What a reply says it cost when the script does not say: 10 tokens in, one
#: out per token it sends.
DEFAULT_INPUT_TOKENS = 10


def tool_call(name: str, /, **arguments: object) -> ToolCall:
    """A tool call for :meth:`FakeProvider.reply`: ``tool_call("get_weather", city="Paris")``."""
    return ToolCall(f"call_{secrets.token_hex(8)}", name, json.dumps(arguments))


# --- the script ----------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer (a step)."""

    answer: wire.Answer
    model: str | None
    delay: float


@dataclass
class Failure:
    """An HTTP error (``status``), or an error the provider reports in the
    stream after ``after`` (``status`` ``None``)."""

    status: int | None
    message: str
    retry_after: float | None = None
    after: str = ""


@dataclass
class Cut:
    """The connection drops after ``after``."""

    after: str


@dataclass
class Hang:
    """The response head comes, then nothing."""


@dataclass
class Replay:
    """A recorded exchange (see ``AI_RECORD_DIR``), played back."""

    cassette: JSONObject
    pace: bool


Item = Union[Reply, Failure, Cut, Hang, Replay]


@dataclass(frozen=True)
class FakeRequest:
    """What one provider call asked, the same in every mode: the provider's
    name, the model (aliases resolved), the messages (the system prompt
    first, tool calls and results included), the request options that were
    set, and the tools offered."""

    provider: str
    model: str
    messages: list[JSONObject]
    options: JSONObject
    tools: list[JSONObject] = field(default_factory=list)


def _request(provider: str, chat: ChatRequest) -> FakeRequest:
    messages = [{"role": "system", "content": chat.system}] if chat.system else []
    options: JSONObject = {
        name: getattr(chat, name)
        for name in ("temperature", "max_tokens", *REQUEST_OPTIONS)
        if name not in ("images", "tools") and getattr(chat, name, None) is not None
    }
    headers = {k: v for k, v in (options.get("extra_headers") or {}).items() if k != SCRIPT_HEADER}
    if headers:
        options["extra_headers"] = headers
    else:
        options.pop("extra_headers", None)
    return FakeRequest(
        provider,
        chat.model,
        messages + [dict(message) for message in chat.messages],
        options,
        [dict(tool) for tool in chat.tools or ()],
    )


def api_of(provider: Provider, default: str = "openai") -> str | None:
    """The wire format an HTTP provider reads, or ``None``: not an HTTP one."""
    if isinstance(provider, ChatCompletionsProvider):
        return "openai"
    if isinstance(provider, MessagesProvider):
        return "anthropic"
    if isinstance(provider, GeminiProvider):
        return "gemini"
    if isinstance(provider, OllamaProvider):
        return "ollama"
    return default if isinstance(provider, HTTPProvider) else None


class FakeProvider:
    """The script every provider call of an app plays, one item per call, in
    order: :meth:`reply`, :meth:`fail`, :meth:`cut`, :meth:`hang`,
    :meth:`replay`. Each method returns the fake, so calls chain. A call with
    nothing left to play fails its answer ("fake provider script exhausted
    after N replies"). :attr:`requests` lists what each call asked."""

    def __init__(self, wire: str | None = None) -> None:
        if wire is not None and wire not in APIS:
            raise ConfigurationError(f"wire must be one of {', '.join(APIS)}, not {wire!r}")
        self.wire = wire
        self.requests: list[FakeRequest] = []
        self._script: deque[Item] = deque()
        self._played = 0
        self._lock = threading.Lock()
        self._server: WireServer | None = None

    # -- writing the script ------------------------------------------------------

    def reply(
        self,
        *parts: str | ToolCall,
        usage: tuple[int, int] | None = None,
        model: str | None = None,
        finish: str | None = None,
        reasoning: str | None = None,
        delay: float = 0,
    ) -> FakeProvider:
        """One answer: text (split into tokens as a provider would) and
        :func:`tool_call` values, in order. ``finish`` defaults to
        ``"stop"``, or ``"tool_calls"`` when it calls tools; ``usage`` is
        ``(input, output)`` tokens (default: 10 in, one out per token);
        ``model`` the model the provider says answered (default: the one
        asked for); ``delay`` seconds before each token."""
        tokens: list[str] = []
        calls: list[ToolCall] = []
        for part in parts:
            if isinstance(part, ToolCall):
                calls.append(part)
            elif isinstance(part, str):
                tokens += _TOKENS.findall(part)
            else:
                raise TypeError(f"a reply's parts are text and tool_call() values, not {part!r}")
        finish = finish or ("tool_calls" if calls else "stop")
        if finish not in wire.RAW_FINISH["openai"]:
            raise ValueError(f"finish must be one of {', '.join(wire.RAW_FINISH['openai'])}")
        if usage is None:
            usage = (DEFAULT_INPUT_TOKENS, len(tokens) + len(calls))
        answer = wire.Answer(tokens, calls, reasoning, usage, model or "", finish)
        return self._add(Reply(answer, model, delay))

    def replies(
        self, *replies: str | tuple[str | ToolCall, ...] | list[str | ToolCall]
    ) -> FakeProvider:
        """Several answers at once: each a text, or a list of parts."""
        for item in replies:
            self.reply(*(item if isinstance(item, (list, tuple)) else (item,)))
        return self

    def fail(
        self,
        status: int | str,
        *,
        after: str = "",
        retry_after: float | None = None,
        message: str | None = None,
    ) -> FakeProvider:
        """An HTTP error before the first token (``fail(429,
        retry_after=2)``: ``Retry-After: 2``), or with ``"mid"`` an error the
        provider reports in the stream after the text ``after``."""
        if status == "mid":
            return self._add(Failure(None, message or "The server had an error.", after=after))
        if not isinstance(status, int) or not 300 <= status <= 599:
            raise ValueError(f'status must be an HTTP error status or "mid", not {status!r}')
        return self._add(Failure(status, message or f"Fake provider error {status}.", retry_after))

    def cut(self, after: str = "") -> FakeProvider:
        """The connection drops after the text ``after`` (kind ``connection``)."""
        return self._add(Cut(after))

    def hang(self) -> FakeProvider:
        """The answer starts and nothing more arrives: the app's
        ``AI_HTTP_TIMEOUT`` error, unless the client leaves first."""
        return self._add(Hang())

    def replay(self, path: str | Path, pace: bool = True) -> FakeProvider:
        """A recorded exchange (``AI_RECORD_DIR``), byte for byte, through
        the reader of the API its URL names, at its recorded pace or (with
        ``pace=False``) at once."""
        return self._add(Replay(json.loads(Path(path).read_text()), pace))

    def _add(self, item: Item) -> FakeProvider:
        with self._lock:
            self._script.append(item)
        return self

    def assert_all_used(self) -> None:
        """Fail unless every scripted item was played."""
        with self._lock:
            left = list(self._script)
        assert not left, f"{len(left)} scripted replies were never asked for: {left!r}"

    # -- playing it ----------------------------------------------------------------

    def _next(self, name: str) -> Item:
        with self._lock:
            if self._script:
                self._played += 1
                return self._script.popleft()
            played = self._played
        raise ProviderError(
            f"fake provider script exhausted after {played} replies",
            kind="bad_request",
            provider=name,
            retryable=False,
        )

    def _open(
        self,
        provider: Provider,
        real_open: OpenFunction,
        chat: ChatRequest,
        transport: Transport,
        opening: Opening | None,
    ) -> PartStream:
        self.requests.append(_request(provider.name, chat))
        item = self._next(provider.name)
        api = api_of(provider, self.wire or "openai")
        if isinstance(item, Replay):
            return replayed(item, provider, chat, transport)
        if api is None:
            return PartsStream(item, provider.name, chat.model, transport.timeout[1])
        assert isinstance(provider, HTTPProvider)
        if self._server is not None:
            token = self._server.expect(item, api, chat.model)
            headers = {**(chat.extra_headers or {}), SCRIPT_HEADER: token}
            return real_open(replace(chat, extra_headers=headers), transport, opening)
        provider.request(chat)  # what the provider would send: a mistake raises as it would
        return played(item, api, provider, chat.model, transport.timeout[1])


# --- in process ------------------------------------------------------------------


class ScriptBody:
    """A response body from memory, read by the provider's own
    :class:`HTTPStream`: the pieces, each after ``delay`` seconds; then the
    end, a dropped connection (``cut``), or silence until the idle timeout
    (``hang``). ``abort()`` ends it at once, as a hang-up does."""

    def __init__(
        self,
        pieces: list[bytes],
        delays: list[float],
        idle_timeout: float,
        ending: str = "end",
    ) -> None:
        self.idle_timeout = idle_timeout
        self._pieces = pieces
        self._delays = delays
        self._ending = ending
        self._closed = threading.Event()

    def reads(self) -> Iterator[bytes]:
        for piece, delay in zip(self._pieces, self._delays):
            if delay and self._closed.wait(delay) or self._closed.is_set():
                return
            yield piece
        if self._ending == "cut":
            raise ConnectionResetError("the fake provider dropped the connection")
        if self._ending == "hang" and not self._closed.wait(self.idle_timeout):
            raise socket.timeout("the fake provider sent nothing more")

    def reading_socket(self) -> None:
        return None

    def shorten_timeout(self, seconds: float) -> None:
        pass

    def release(self, reads: Iterator[bytes]) -> None:
        pass

    def abort(self) -> None:
        self._closed.set()

    close = abort


def played(
    item: Item, api: str, provider: HTTPProvider, model: str, idle_timeout: float
) -> HTTPStream:
    """A scripted item as ``provider`` reads it: its API's bytes, from memory."""
    if isinstance(item, Failure) and item.status is not None:
        # lower-case names: what requests' headers answer to, whatever the case
        headers = {"retry-after": f"{item.retry_after:g}"} if item.retry_after is not None else {}
        text = wire.error_body(api, item.status, item.message).decode()
        raise provider.http_error(item.status, text, headers)
    pieces, delays, ending = script_bytes(item, api, model)
    body = ScriptBody(pieces, delays, idle_timeout, ending)
    return HTTPStream(body, provider.decoder(), provider.reader(), provider.name)  # type: ignore[arg-type]


def script_bytes(item: Item, api: str, model: str) -> tuple[list[bytes], list[float], str]:
    """A reply, a mid-stream failure, a cut or a hang as ``api``'s pieces,
    the wait before each, and how the body ends."""
    if isinstance(item, Reply):
        answer = replace(item.answer, model=item.answer.model or model)
        pieces = wire.encode(api, answer)
        return pieces, [item.delay] * len(pieces), "end"
    if isinstance(item, Failure):
        pieces = wire.head(api, _TOKENS.findall(item.after), model)
        pieces.append(wire.stream_error(api, item.message))
        return pieces, [0.0] * len(pieces), "end"
    if isinstance(item, Cut):
        pieces = wire.head(api, _TOKENS.findall(item.after), model)
        return pieces, [0.0] * len(pieces), "cut"
    pieces = wire.head(api, [], model)
    return pieces, [0.0] * len(pieces), "hang"


class PartsStream(PartStream):
    """A scripted item as parts, for a provider that is not HTTP (the
    ``offline`` one, a provider class of your own)."""

    def __init__(self, item: Item, name: str, model: str, idle_timeout: float) -> None:
        self._item = item
        self._name = name
        self._model = model
        self._idle = idle_timeout
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[list[Part]]:
        item = self._item
        if isinstance(item, Failure) and item.status is not None:
            error = http_error(self._name, item.status, item.message, None)
            error.retry_after = item.retry_after
            raise error
        yield [Metadata(getattr(item, "model", None) or self._model, None)]
        if isinstance(item, Reply):
            answer = item.answer
            if answer.reasoning:
                yield [ReasoningDelta(answer.reasoning)]
            for token in answer.tokens:
                if item.delay and self._closed.wait(item.delay) or self._closed.is_set():
                    return
                yield [token]
            for position, call in enumerate(answer.tool_calls):
                yield [ToolCallDelta(position, call.id, call.name, call.arguments), call]
            yield [UsageUpdate(*answer.usage), Stop(answer.finish, answer.finish)]
            return
        text = item.after if isinstance(item, (Failure, Cut)) else ""
        if text:
            yield [text]
        if isinstance(item, Failure):
            raise ProviderError(item.message, kind="unavailable", provider=self._name)
        if isinstance(item, Cut):
            raise ProviderError(
                "The connection to the AI provider was lost mid-answer.",
                kind="connection",
                provider=self._name,
            )
        if not self._closed.wait(self._idle):
            raise ProviderError(
                f"The AI provider stopped responding (no data for {self._idle:g} s).",
                kind="timeout",
                provider=self._name,
            )

    def close(self) -> None:
        self._closed.set()


# --- replaying a recorded exchange -------------------------------------------------

#: A recorded URL's API, by what its path says.
_URL_APIS = (
    (re.compile(r":streamGenerateContent"), "gemini", GeminiProvider),
    (re.compile(r"/messages(\?|$)"), "anthropic", MessagesProvider),
    (re.compile(r"/api/chat(\?|$)"), "ollama", OllamaProvider),
    (re.compile(r""), "openai", OpenAIProvider),
)


def replayed(
    item: Replay, provider: Provider, chat: ChatRequest, transport: Transport
) -> HTTPStream:
    """A cassette through the reader of the API its URL names."""
    cassette = item.cassette
    url = cassette["request"]["url"]
    cls: type[HTTPProvider] = next(c for pattern, _, c in _URL_APIS if pattern.search(url))
    reader = cls(replace(provider.conf, api=cls.api), provider.settings)
    response = cassette["response"]
    if response["status"] >= 300:
        text = "".join(piece["text"] for piece in response["pieces"])
        headers = {name.lower(): value for name, value in response["headers"].items()}
        raise reader.http_error(response["status"], text, headers)
    pieces = [piece["text"].encode("utf-8", "surrogateescape") for piece in response["pieces"]]
    times = [piece["at"] for piece in response["pieces"]]
    delays = [b - a for a, b in zip([0.0, *times], times)] if item.pace else [0.0] * len(times)
    ending = "cut" if response.get("cut") else "end"
    body = ScriptBody(pieces, delays, transport.timeout[1], ending)
    return HTTPStream(body, reader.decoder(), reader.reader(), provider.name)  # type: ignore[arg-type]


# --- on the wire ---------------------------------------------------------------------


class WireServer:
    """A loopback HTTP server that sends each call its scripted reply as its
    API's bytes (chunked, a piece per chunk): the app's whole HTTP path,
    decoders and timeouts run."""

    def __init__(self) -> None:
        self._expected: dict[str, tuple[Item, str, str]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)  # accept() wakes up to see the server stopped
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="flask-aistream fake", daemon=True)
        self._thread.start()

    def expect(self, item: Item, api: str, model: str) -> str:
        token = secrets.token_hex(8)
        with self._lock:
            self._expected[token] = (item, api, model)
        return token

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                head = self._read_request(conn)
                with self._lock:
                    item, api, model = self._expected.pop(head.get(SCRIPT_HEADER.lower(), ""))
                self._send(conn, item, api, model)
            except (OSError, KeyError, ValueError):
                return

    @staticmethod
    def _read_request(conn: socket.socket) -> dict[str, str]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("no request")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            body += conn.recv(65536)
        return headers

    def _send(self, conn: socket.socket, item: Item, api: str, model: str) -> None:
        if isinstance(item, Failure) and item.status is not None:
            body = wire.error_body(api, item.status, item.message)
            extra = f"Retry-After: {item.retry_after:g}\r\n" if item.retry_after is not None else ""
            conn.sendall(
                f"HTTP/1.1 {item.status} Error\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return
        pieces, delays, ending = script_bytes(item, api, model)
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: {wire.content_type(api)}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        for piece, delay in zip(pieces, delays):
            if delay and self._stopped.wait(delay):
                return
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        if ending == "cut":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closed with a reset: the connection dropped mid-answer
        if ending == "hang":
            while not self._stopped.wait(0.05):
                if _peer_closed(conn):
                    return
            return
        conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        self._stopped.set()
        self._sock.close()
        self._thread.join(5)


def _peer_closed(conn: socket.socket) -> bool:
    try:
        conn.settimeout(0)
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# --- for the length of a with --------------------------------------------------------


@contextmanager
def fake_provider(app: Flask, wire: str | None = None) -> Iterator[FakeProvider]:
    """Answer every provider call of ``app`` (named providers and fallbacks
    included) from a script, for the ``with`` block: ``wire=None`` reads
    the script's bytes from memory; ``wire="openai"`` (or ``"anthropic"``,
    ``"gemini"``, ``"ollama"``) serves them from a loopback HTTP server that
    every HTTP provider of the app is pointed at (each gets its own API's
    bytes; ``wire`` is the format of a provider class of your own)."""
    client: AIClient = app.extensions["ai"]
    fake = FakeProvider(wire)
    if wire is not None:
        fake._server = WireServer()
    saved: list[tuple[Provider, object]] = []
    try:
        for provider in list(client.providers.values()):
            saved.append((provider, provider.conf))
            real_open = provider.open
            if fake._server is not None and isinstance(provider, HTTPProvider):
                provider.conf = replace(provider.conf, base_url=fake._server.url)
            provider.open = _bound(fake, provider, real_open)  # type: ignore[method-assign,assignment]
        yield fake
    finally:
        for provider, conf in saved:
            provider.conf = conf  # type: ignore[assignment]
            del provider.open  # the class's own again
        if fake._server is not None:
            fake._server.close()


def _bound(fake: FakeProvider, provider: Provider, real_open: OpenFunction) -> OpenFunction:
    def open(chat: ChatRequest, transport: Transport, opening: Opening | None = None) -> PartStream:
        return fake._open(provider, real_open, chat, transport, opening)

    return open
