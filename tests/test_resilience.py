"""Heartbeats, vanished clients during silence, the three timeouts, retries
before the first token, and the faults a real provider (or the network in
between) can throw at us. Every fault ends the same way: the text that
arrived, one clear error, ``[DONE]``; nothing leaks, nothing is left open."""

import gc
import os
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import pytest
from werkzeug.serving import make_server

from fakeprovider import Reply, openai_events, split_every, transcript
from helpers import SECRET_KEYS, address_of, raw_request, relayed


def stream(app, question="Why?", **options):
    response = app.test_client().post("/chat", json={"question": question, **options})
    assert response.status_code == 200
    body = response.get_data()
    assert b"Traceback" not in body
    return body, relayed(body)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class ThreadingWSGIServer(WSGIServer):
    """wsgiref, threaded: a server that does not share the client socket."""

    daemon_threads = True

    def process_request(self, request, client_address):
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


@pytest.fixture
def serve():
    """Start an app on a real server ("werkzeug" or "wsgiref"); returns (host, port)."""
    servers = []

    def start(app, kind="werkzeug"):
        if kind == "werkzeug":
            server = make_server("127.0.0.1", 0, app, threaded=True)
        else:
            server = ThreadingWSGIServer(("127.0.0.1", 0), QuietHandler)
            server.set_app(app)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server.server_address[:2]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def post_raw(address, question="hi"):
    return raw_request(address, question=question, timeout=None)


# --- heartbeat ---------------------------------------------------------------


def test_heartbeat_comments_flow_while_the_provider_thinks(make_app, fake):
    app = make_app(AI_HEARTBEAT_INTERVAL=0.1)
    fake.reply = Reply(parts=[b": thinking\n\n"] * 6 + openai_events(["Done."]), delay=0.1)
    response = app.test_client().post("/chat", json={"question": "hi"}, buffered=False)
    chunks = list(response.response)
    pings = chunks.count(b": ping\n\n")
    assert pings >= 4, chunks  # ~0.6 s of silence at one ping per 0.1 s
    assert relayed(b"".join(chunks)) == ("Done.", None, True)


def test_heartbeat_zero_disables_it(make_app, fake):
    app = make_app(AI_HEARTBEAT_INTERVAL=0)
    fake.reply = Reply(parts=[b": thinking\n\n"] * 3 + openai_events(["ok"]), delay=0.1)
    body, result = stream(app)
    assert b": ping" not in body and result == ("ok", None, True)


@pytest.mark.parametrize(
    "server, bound",
    [
        # Werkzeug shares the client socket: its closing is seen at once.
        ("werkzeug", 0.2),
        # wsgiref hides it: the heartbeat's failing write reveals the
        # departure within about two intervals (2 x 0.25 s).
        ("wsgiref", 1.0),
    ],
)
def test_client_leaving_while_the_provider_is_silent(make_app, fake, serve, server, bound):
    app = make_app(AI_HEARTBEAT_INTERVAL=0.25, AI_HTTP_TIMEOUT=30)
    fake.reply = Reply(parts=openai_events(["first "], finish=False), hold=True)
    browser = post_raw(serve(app, server))
    received = b""
    while b"first" not in received:
        received += browser.recv(65536)
    time.sleep(0.1)  # the provider is silent now
    browser.close()
    left_at = time.monotonic()
    hung_up_at = fake.wait_for_hangup(fake.last, timeout=5)
    assert hung_up_at is not None, "the provider kept the connection after the client left"
    took = hung_up_at - left_at
    print(f"\n{server}: client left during silence -> provider hang-up after {took * 1000:.0f} ms")
    assert took < bound


# --- timeouts ------------------------------------------------------------------


def test_total_timeout_cuts_a_long_answer(make_app, fake):
    app = make_app(AI_TOTAL_TIMEOUT=0.5, AI_HEARTBEAT_INTERVAL=0.1)
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(100)]), delay=0.05, hold=True)
    started = time.monotonic()
    _, (text, error, done) = stream(app)
    assert time.monotonic() - started < 1.5
    assert text.startswith("t0 t1 ") and done
    assert error == "The answer took longer than the 0.5 s allowed."
    assert fake.wait_for_hangup(fake.last) is not None


def test_connect_timeout(make_app, log_records):
    # A listening socket whose backlog is full never completes a handshake.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(listener.getsockname())
        fillers.append(s)
    try:
        host, port = listener.getsockname()
        app = make_app(
            AI_OPENAI_BASE_URL=f"http://{host}:{port}/v1", AI_CONNECT_TIMEOUT=0.2, AI_MAX_RETRIES=0
        )
        _, result = stream(app)
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert result[1] in (
        "Could not reach the AI provider in time; try again later.",
        # some kernels refuse instead of dropping the SYN on a full backlog
        "Could not connect to the AI provider; try again later.",
    )


def test_three_timeouts_have_three_messages(make_app, fake):
    app = make_app(AI_HTTP_TIMEOUT=0.2, AI_MAX_RETRIES=0)
    fake.reply = Reply(parts=openai_events(["a "], finish=False), hold=True)
    assert stream(app)[1] == ("a ", "The AI provider stopped responding (no data for 0.2 s).", True)


# --- retries before the first token -------------------------------------------


def test_429_with_retry_after_then_success(make_app, fake, log_records):
    app = make_app(AI_RETRY_BACKOFF=5)  # Retry-After must win over our own backoff
    replies = [
        Reply.json(
            429, {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}}
        ),
        Reply.sse(transcript("openai_basic.sse")),
    ]
    replies[0].headers["Retry-After"] = "0.2"
    fake.replies = replies
    started = time.monotonic()
    _, (text, error, _) = stream(app)
    assert error is None and text.endswith("Line two.")
    assert 0.2 <= time.monotonic() - started < 2
    assert len(fake.requests) == 2
    assert "retrying in 0.20 s" in log_records.text


def test_retry_after_ms(make_app, fake):
    app = make_app(AI_RETRY_BACKOFF=5)
    first = Reply.json(503, {"error": {"type": "server_error", "message": "busy"}})
    first.headers["retry-after-ms"] = "50"
    fake.replies = [first, Reply(parts=openai_events(["ok"]))]
    started = time.monotonic()
    assert stream(app)[1] == ("ok", None, True)
    assert time.monotonic() - started < 1


def test_529_then_success(make_app, fake):
    fake.replies = [
        Reply.json(
            529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        ),
        Reply.sse(transcript("anthropic_basic.sse")),
    ]
    _, (text, error, _) = stream(make_app(), provider="anthropic")
    assert error is None and text.startswith("Hello! Rayleigh")


@pytest.mark.parametrize("kind", [b"overloaded_error", b"api_error", b"rate_limit_error"])
def test_in_stream_error_before_content_then_success(make_app, fake, kind):
    """Anthropic's retryable error types (its 529, 500 and 429) arriving in
    the stream before any text: one clean answer from a second request."""
    overloaded = (
        transcript("anthropic_overloaded.sse")
        .replace(
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial"}}\n\n',
            b"",
        )
        .replace(b"overloaded_error", kind)
    )
    assert kind in overloaded
    fake.replies = [Reply.sse(overloaded), Reply.sse(transcript("anthropic_basic.sse"))]
    _, (text, error, _) = stream(make_app(), provider="anthropic")
    assert error is None and text.startswith("Hello! Rayleigh")  # one clean answer
    assert len(fake.requests) == 2


def test_never_retried_once_text_was_sent(make_app, fake):
    fake.replies = [
        Reply.sse(transcript("anthropic_overloaded.sse")),
        Reply.sse(transcript("anthropic_basic.sse")),
    ]
    _, (text, error, _) = stream(make_app(), provider="anthropic")
    assert text == "Partial" and "overloaded_error" in error
    assert len(fake.requests) == 1


def test_not_retried_when_it_cannot_help(make_app, fake):
    fake.reply = Reply.json(401, {"error": {"message": "bad key", "code": "invalid_api_key"}})
    stream(make_app())
    assert len(fake.requests) == 1


def test_retries_give_up_after_max_retries(make_app, fake):
    fake.reply = Reply.json(503, {"error": {"message": "down"}})
    _, result = stream(make_app(AI_MAX_RETRIES=3))
    assert result[1] == "The AI provider is unavailable or overloaded; try again later. (HTTP 503)"
    assert len(fake.requests) == 4


def test_heartbeats_flow_during_backoff(make_app, fake):
    app = make_app(AI_HEARTBEAT_INTERVAL=0.1)
    first = Reply.json(503, {"error": {"message": "down"}})
    first.headers["Retry-After"] = "0.5"
    fake.replies = [first, Reply(parts=openai_events(["ok"]))]
    body, result = stream(app)
    assert result == ("ok", None, True)
    assert body.count(b": ping") >= 3


def test_ask_retries_too(make_app, fake):
    app = make_app()
    fake.replies = [
        Reply.json(500, {"error": {"message": "x"}}),
        Reply(parts=openai_events(["fine"])),
    ]
    assert app.extensions["ai"].ask("hi") == "fine"


def test_backoff_is_exponential_with_jitter_and_capped():
    from flask_aistream.retry import MAX_BACKOFF, MAX_RETRY_AFTER, backoff

    for attempt in range(6):
        full = min(0.5 * 2**attempt, MAX_BACKOFF)
        assert 0.75 * full <= backoff(attempt, 0.5, None) <= full
    assert backoff(0, 0.5, 1000) == MAX_RETRY_AFTER
    assert backoff(0, 0.5, 0.3) == 0.3


# --- faults --------------------------------------------------------------------


@pytest.mark.ai_live  # a name that is not loopback: the plugin would refuse it
def test_dns_failure(make_app, log_records):
    app = make_app(AI_OPENAI_BASE_URL="http://no-such-host.invalid/v1", AI_MAX_RETRIES=0)
    body, result = stream(app)
    assert result == ("", "Could not connect to the AI provider; try again later.", True)
    assert b"no-such-host" not in body and "no-such-host" in log_records.text


def test_reset_mid_stream(make_app, fake):
    fake.reply = Reply(parts=openai_events(["a ", "b "], finish=False), reset=True)
    result = stream(make_app(AI_MAX_RETRIES=0))[1]
    assert result == ("a b ", "The connection to the AI provider was lost mid-answer.", True)


def test_stall_forever_after_a_few_tokens(make_app, fake):
    fake.reply = Reply(parts=openai_events(["a ", "b "], finish=False), hold=True)
    started = time.monotonic()
    result = stream(make_app(AI_HTTP_TIMEOUT=0.3))[1]
    assert result == ("a b ", "The AI provider stopped responding (no data for 0.3 s).", True)
    assert time.monotonic() - started < 2
    assert fake.wait_for_hangup(fake.last) is not None


def test_one_byte_every_100_ms_still_relays(make_app, fake):
    body = b'data: {"choices":[{"index":0,"delta":{"content":"\xc3\xa9\xf0\x9f\x99\x82"}}]}\n\ndata: [DONE]\n\n'
    fake.reply = Reply(parts=split_every(body, 1), delay=0.005)
    assert stream(make_app(AI_HTTP_TIMEOUT=0.5))[1] == ("é🙂", None, True)
    # the slow drip proper: a 100 ms gap between bytes, under a 0.3 s idle timeout
    fake.reply = Reply(parts=[body[:40], body[40:41], body[41:42], body[42:]], delay=0.1)
    assert stream(make_app(AI_HTTP_TIMEOUT=0.3))[1] == ("é🙂", None, True)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(parts=openai_events([f"t{i} " for i in range(50)]), delay=0.001),
        Reply.json(401, {"error": {"message": f"key {SECRET_KEYS['openai']}"}}),
        Reply(parts=openai_events(["a "], finish=False), hold=True),
        Reply(parts=[b"data: not json\n\n"]),
        Reply(parts=openai_events(["a "], finish=False), reset=True),
        Reply(parts=[b"<html>502</html>"], status=502, headers={"Content-Type": "text/html"}),
        Reply(parts=openai_events(["a ", "b "], finish=False)),
        Reply.json(200, {"error": {"message": "loading"}}),
    ],
    ids=["normal", "401", "stall", "bad-json", "reset", "html-502", "truncated", "json-200"],
)
def test_no_thread_socket_or_fd_is_left_behind(make_app, fake, reply):
    app = make_app(AI_HTTP_TIMEOUT=0.2, AI_MAX_RETRIES=0)
    fake.reply = reply
    stream(app)  # warm up: the connection pool, lazy imports
    gc.collect()
    threads, fds = threading.active_count(), open_fds()
    for _ in range(20):
        stream(app)
    deadline = time.monotonic() + 2
    while (threading.active_count() > threads or open_fds() > fds) and time.monotonic() < deadline:
        time.sleep(0.02)
        gc.collect()
    assert threading.active_count() <= threads
    assert open_fds() <= fds


def test_no_thread_or_fd_left_after_client_disconnects(make_app, fake):
    app = make_app()
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(1000)]), delay=0.01, hold=True)
    client = app.test_client()
    gc.collect()
    threads, fds = threading.active_count(), open_fds()
    for _ in range(10):
        response = client.post("/chat", json={"question": "hi"}, buffered=False)
        next(iter(response.response))
        response.close()
    deadline = time.monotonic() + 2
    while (threading.active_count() > threads or open_fds() > fds) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= threads and open_fds() <= fds
    assert all(seen.hung_up_at is not None for seen in fake.requests)


def test_memory_stays_bounded_over_a_long_stream(make_app, fake):
    import resource

    tokens = 50_000
    events = openai_events([f" w{i}" for i in range(tokens)])
    fake.reply = Reply(parts=[b"".join(events[i : i + 500]) for i in range(0, len(events), 500)])
    app = make_app()
    response = app.test_client().post("/chat", json={"question": "hi"}, buffered=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = sum(chunk.count(b'"content"') for chunk in response.response)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert count == tokens
    assert grown_kb < 20_000, f"max RSS grew {grown_kb} kB over {tokens} tokens"


def test_sync_worker_warning_once(app, log_records):
    from flask_aistream.serving import server as deployment

    deployment._warned = False
    environ = {"SERVER_SOFTWARE": "gunicorn/23.0.0", "wsgi.multithread": False}
    for _ in range(2):
        deployment.warn_if_sync_worker(environ, app.logger)
    assert log_records.text.count("gthread") == 1
    deployment._warned = False
    deployment.warn_if_sync_worker(
        {"SERVER_SOFTWARE": "gunicorn/23.0.0", "wsgi.multithread": True}, app.logger
    )
    assert log_records.text.count("gthread") == 1


def test_descriptors_past_1024(make_app, fake, live):
    """A worker holding hundreds of streams has descriptors past select()'s
    limit of 1024; the relay must still watch the client and the reader."""
    import resource

    import requests

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    pipes = [os.pipe() for _ in range(600)]  # push new descriptors past 1024
    try:
        assert max(pipes[-1]) > 1024
        fake.reply = Reply(parts=openai_events(["high ", "fds"]))
        url = live(make_app())
        with requests.post(f"{url}/chat", json={"question": "hi"}, stream=True) as response:
            assert relayed(response.content) == ("high fds", None, True)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- one thread per stream once the answer shows -----------------------------------


def reader_threads():
    return [t for t in threading.enumerate() if t.name == "flask-aistream reader"]


def test_after_the_first_token_the_generator_reads_the_provider_itself(make_app, fake, live):
    """The reader thread opens the stream and leaves at the first token: the
    rest of the answer changes hands no more (and holds no second thread)."""
    import requests

    url = live(make_app())
    gate = threading.Semaphore(0)
    fake.reply = Reply(parts=openai_events(["one ", "two ", "three"]), gate=gate)
    with requests.post(f"{url}/chat", json={"question": "Hi"}, stream=True, timeout=10) as response:
        lines = response.iter_lines()
        assert (
            next(line for line in lines if line.startswith(b"data:"))
            == b'data: {"content": "one "}'
        )
        deadline = time.monotonic() + 5
        while reader_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader_threads() == [], "the reader thread stayed after the first token"
        gate.release()
        gate.release()
        gate.release()
        rest = b"\n".join(lines)
    assert b'"two "' in rest and b'"three"' in rest and rest.strip().endswith(b"data: [DONE]")


def test_heartbeats_flow_while_the_provider_is_silent_after_the_first_token(make_app, fake):
    app = make_app(AI_HEARTBEAT_INTERVAL=0.1)
    parts = openai_events(["First "], finish=False) + [b": thinking\n\n"] * 4
    fake.reply = Reply(parts=parts + openai_events(["done."]), delay=0.15)
    response = app.test_client().post("/chat", json={"question": "hi"}, buffered=False)
    chunks = list(response.response)
    first = chunks.index(b'data: {"content": "First "}\n\n')
    assert chunks[first + 1 :].count(b": ping\n\n") >= 3, chunks  # ~0.75 s of provider comments
    assert relayed(b"".join(chunks)) == ("First done.", None, True)


def test_the_finish_policy_keeps_its_reader_thread(make_app, fake, live):
    """An answer that must outlive its client is read on its own thread to the end."""
    import requests

    url = live(make_app(AI_ON_DISCONNECT="finish"))
    gate = threading.Semaphore(0)
    fake.reply = Reply(parts=openai_events(["one ", "two"]), gate=gate)
    with requests.post(f"{url}/chat", json={"question": "Hi"}, stream=True, timeout=10) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith(b"data:"))
        assert len(reader_threads()) == 1
        gate.release()
        gate.release()
        assert b"[DONE]" in b"\n".join(lines)


def test_a_finished_answer_whose_provider_holds_the_connection_ends_cleanly(make_app, fake):
    """A finish reason but no [DONE], and the connection kept open: the answer
    is complete, so it ends without waiting for the idle timeout to fail it."""
    from fakeprovider import openai_events

    parts = openai_events(["a ", "b"])
    parts[-1] = parts[-1].replace(b"data: [DONE]\n\n", b"")
    fake.reply = Reply(parts=parts, hold=True)
    app = make_app(AI_HTTP_TIMEOUT=30)
    seen = []
    with app.app_context():
        assert app.extensions["ai"].ask("q", on_finish=seen.append) == "a b"
    assert seen[0].finish_reason == "stop" and seen[0].error is None
    assert seen[0].duration_s < 25  # well before the 30 s idle timeout


@pytest.mark.system
@pytest.mark.parametrize("status", [200, 500])
def test_leaving_while_the_provider_has_not_answered_yet_hangs_up(make_app, fake, live, status):
    """150 clients leaving after 0.5 s pinned 184 threads and 151 provider
    connections for the whole answer: nothing could abort a call still
    waiting for its status line."""
    import threading

    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events(["late"]), head_delay=20, status=status)
    app = make_app(AI_HTTP_TIMEOUT=30, AI_MAX_RETRIES=0)
    address = address_of(live(app))
    clients = 20

    def ask_and_leave():
        sock = raw_request(address)
        threading.Event().wait(0.5)  # nothing has come yet: the provider is still silent
        sock.close()

    threads = [threading.Thread(target=ask_and_leave) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for _ in range(300):  # each request reaches the provider, however loaded the machine
        if len(fake.requests) == clients:
            break
        threading.Event().wait(0.05)
    assert len(fake.requests) == clients
    # Every provider connection closes before the provider answered (it takes
    # 20 s): however slow a loaded machine is, no status line ever went out.
    hung_up = [fake.wait_for_hangup(seen, timeout=25) for seen in fake.requests]
    assert all(hung_up), f"{hung_up.count(None)} of {clients} still open"
    assert not any(seen.head_sent for seen in fake.requests), "a call outlived its client"


@pytest.mark.system
@pytest.mark.parametrize("worker", ["gevent", "gthread"])
def test_leaving_before_the_provider_answers_under_gunicorn(fake, worker):
    import time

    from fakeprovider import openai_events
    from helpers import gunicorn_server

    fake.reply = Reply(parts=openai_events(["late"]), head_delay=20)
    with gunicorn_server(worker, fake) as (address, _):
        socks = []
        for _ in range(10):
            socks.append(raw_request(address))
        deadline = time.monotonic() + 10
        while len(fake.requests) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        for sock in socks:
            sock.close()
        hung_up = [fake.wait_for_hangup(seen, timeout=5) for seen in fake.requests]
    assert len(hung_up) == 10 and all(hung_up)


def stalled_client(address, path="/hooked"):
    """Ask, then never read: a receive window that fills up and stays full."""
    return raw_request(address, path, receive_buffer=4096)


def endless_answer():
    from fakeprovider import openai_events

    return Reply(parts=[b"".join(openai_events(["x" * 2000] * 200, finish=False))] * 400)


@pytest.fixture
def hooked_live(make_app, live):
    def start(**config):
        import threading

        app = make_app(**config)
        app.answers, app.ended = [], threading.Event()

        @app.post("/hooked")
        def hooked():
            def save(answer):
                app.answers.append(answer)
                app.ended.set()

            return app.extensions["ai"].ask_stream("q", on_finish=save)

        return app, address_of(live(app))

    return start


@pytest.mark.system
def test_send_timeout_hangs_up_on_a_client_that_reads_nothing(hooked_live, fake):
    """The generator was parked in the server's blocking write: no check ran,
    and the thread and the provider connection lived as long as the socket."""
    fake.reply = endless_answer()
    app, address = hooked_live(AI_SEND_TIMEOUT=1)
    sock = stalled_client(address)
    try:
        assert app.ended.wait(15), "the stream is still open"
        assert fake.wait_for_hangup(fake.last, timeout=5) is not None
        assert app.answers[0].finish_reason == "cancelled"
    finally:
        sock.close()


@pytest.mark.system
def test_total_timeout_holds_for_a_client_that_reads_nothing(hooked_live, fake):
    fake.reply = endless_answer()
    app, address = hooked_live(AI_TOTAL_TIMEOUT=1, AI_SEND_TIMEOUT=600)
    sock = stalled_client(address)
    try:
        assert app.ended.wait(15), "the stream is still open"
        assert fake.wait_for_hangup(fake.last, timeout=5) is not None
        answer = app.answers[0]
        assert answer.finish_reason == "error" and "longer than the 1 s" in answer.error.message
    finally:
        sock.close()


@pytest.mark.system
def test_total_timeout_holds_while_the_provider_is_silent_after_a_finish_policy_leave(
    hooked_live, fake
):
    """Detached answers ("finish" policy) are cut at the deadline even when
    the provider says nothing (no read returns to check it)."""
    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events(["a "], finish=False), hold=True)
    app, address = hooked_live(AI_TOTAL_TIMEOUT=1, AI_ON_DISCONNECT="finish", AI_HTTP_TIMEOUT=60)
    sock = stalled_client(address)
    sock.recv(100)
    sock.close()
    assert app.ended.wait(15)
    assert app.answers[0].finish_reason == "error"
    assert fake.wait_for_hangup(fake.last, timeout=5) is not None


@pytest.mark.system
@pytest.mark.parametrize("worker", ["gevent", "gthread"])
def test_send_timeout_under_gunicorn(fake, worker):
    import time

    from helpers import gunicorn_server

    fake.reply = endless_answer()
    with gunicorn_server(worker, fake, AI_SEND_TIMEOUT="1") as (address, _):
        sock = stalled_client(address, path="/chat")
        try:
            for _ in range(100):
                if fake.requests:
                    break
                time.sleep(0.05)
            assert fake.wait_for_hangup(fake.last, timeout=10) is not None
        finally:
            sock.close()


def test_opening_a_stream_is_bounded_however_slowly_the_head_comes(make_app, fake):
    """A provider that sends its head a byte at a time, each within the idle
    timeout, held open() (and the thread, and the connection) for ever."""
    fake.reply = Reply(trickle_head=True)
    app = make_app(AI_CONNECT_TIMEOUT=0.5, AI_HTTP_TIMEOUT=1, AI_MAX_RETRIES=0)
    seen = []
    with app.app_context(), pytest.raises(Exception) as failure:
        app.extensions["ai"].ask("q", on_finish=seen.append)
    error = failure.value
    assert error.kind == "timeout" and "1.5 s" in error.message
    assert seen[0].finish_reason == "error"
    assert fake.wait_for_hangup(fake.last, timeout=5) is not None


def test_memory_storage_in_one_of_several_workers_warns_once(make_app, fake, log_records):
    """With gunicorn -w 2 (``wsgi.multiprocess``), a memory:// store is one
    worker's: a resume or a count made in another is not seen."""
    from flask_aistream.serving import server

    fake.reply = Reply(parts=openai_events(["ok"]))
    server._warned_memory = False
    app = make_app(AI_RESUME_STORAGE_URI="memory://")
    client = app.test_client()
    for _ in range(2):
        client.post(
            "/chat", json={"question": "q"}, environ_overrides={"wsgi.multiprocess": True}
        ).get_data()
    warnings = [r.getMessage() for r in log_records.records if "several worker" in r.getMessage()]
    assert warnings == [
        "flask-aistream: AI_RESUME_STORAGE_URI and AI_RATELIMIT_STORAGE_URI are memory:// in one"
        " of several worker processes: each worker keeps its own (use redis://)"
    ]
    server._warned_memory = False
