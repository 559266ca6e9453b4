"""What the tests share that is not a fixture: readers of a relayed stream,
a browser on a raw socket, real servers (gunicorn, redis-server) on free
loopback ports, and the test keys. Fixtures live in ``conftest.py``."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from flask.testing import FlaskClient

from flask_aistream.providers.sse import SSEDecoder


class ClosingClient(FlaskClient):
    """Flask's test client, reading each response whole and closing it, as a
    server does (an answer's hooks run when its response closes), unless a
    test streams it with ``buffered=False``."""

    def open(self, *args, buffered=True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


SECRET_KEYS = {
    "openai": "sk-proj-TESTKEY0123456789abcdefSECRET",
    "anthropic": "sk-ant-api03-TESTKEY0123456789SECRET",
    "groq": "gsk_TESTKEY0123456789abcdefSECRET",
    "mistral": "mistralTESTKEY0123456789SECRET",
    "gemini": "AIzaSyTESTKEY0123456789abcdefSECRET",
    "azure": "azureTESTKEY0123456789abcdefSECRET",
}


#: Where each provider's API lives on the fake (its base URL's path).
BASE_PATHS = {"anthropic": "", "gemini": "", "ollama": "", "azure": "/openai/v1"}


#: Environment variables that would reach a test app's providers.
PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OLLAMA_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
)


def sse_events(body: bytes):
    """Decode a whole response body as the browser would."""
    return SSEDecoder().feed(body)


def relayed(body: bytes):
    """(text, error, done) from a relayed stream."""

    text, errors, done = "", [], False
    for event in sse_events(body):
        assert not done, "nothing may follow [DONE]"
        if event.data == "[DONE]":
            done = True
            continue
        payload = json.loads(event.data)
        if "content" in payload:
            assert payload["content"], "empty deltas are not relayed"
            assert not errors, "no content after an error"
            text += payload["content"]
        elif "error" in payload:
            errors.append(payload["error"])
        else:  # the optional events, which the spec's readers skip
            assert list(payload) in (["reasoning"], ["tool_call"], ["finish"]), payload
    assert len(errors) <= 1
    return text, (errors[0] if errors else None), done


def address_of(url: str) -> tuple[str, int]:
    """``("127.0.0.1", port)`` of a ``live(app)`` URL."""
    host, port = url.rsplit("/", 1)[1].split(":")
    return host, int(port)


def raw_request(
    address, path="/chat", question="Why?", *, method="POST", receive_buffer=None, timeout=30
) -> socket.socket:
    """A browser on a raw socket, so that a test can leave, or stop reading,
    whenever it likes: sends one request (a JSON question, for a POST) and
    returns the socket with the response unread."""

    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    sock.connect(address)
    if method == "GET":
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    else:
        body = json.dumps({"question": question}).encode()
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
    return sock


def read_until(sock: socket.socket, done) -> bytes:
    """Read until ``done(received)``; what was received."""
    received = b""
    while not done(received):
        chunk = sock.recv(65536)
        assert chunk, f"closed before the end: {received[-200:]!r}"
        received += chunk
    return received


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str, timeout: float = 20, process=None) -> None:
    """Wait until something listens on ``port`` (a server we started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{what} exited: {process.stderr.read().decode()}") from None
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.05)


ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def gunicorn_server(worker: str, fake, workers: int = 1, **env):
    """``tests/loadapp.py`` under a real gunicorn with one ``worker``-class
    worker, its provider the loopback ``fake``; yields (address, worker pid)."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    args += ["-k", worker]
    args += ["--threads", "128"] if worker == "gthread" else ["--worker-connections", "1000"]
    env = dict(
        os.environ,
        FAKE_PROVIDER_URL=fake.url,
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        **env,
    )
    master = subprocess.Popen(
        args + ["loadapp:create_app()"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, "gunicorn", process=master)
        deadline = time.monotonic() + 20
        # The master listens before its worker has booted: wait for the worker.
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
        while not children.read_text().split():
            assert time.monotonic() < deadline, "gunicorn started no worker"
            time.sleep(0.1)
        yield ("127.0.0.1", port), int(children.read_text().split()[0])
    finally:
        master.terminate()
        master.wait(10)


class RedisServer:
    """A real redis-server of the test's own, on a free port; a test may stop
    and start it again (same port, nothing kept)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed (apt-get install redis-server; .ci/run does)"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, "redis-server", process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
