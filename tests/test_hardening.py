"""What an adversarial review and a first-time user found (issue 10), each
reproduced first: through a real server where the defect needs one."""

import pytest

from conftest import SECRET_KEYS, address_of, raw_request, read_until, relayed
from fakeprovider import FakeProvider, Reply, transcript


@pytest.fixture
def elsewhere():
    """A second loopback server: where a redirect would send us."""
    server = FakeProvider()
    server.reply = Reply.sse(transcript("openai_basic.sse"))
    yield server
    server.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_redirect_is_never_followed(make_app, fake, elsewhere, log_records, status, provider):
    """requests would follow it and strip only ``Authorization``: Anthropic's
    ``x-api-key``, the conversation and the system prompt went to the other
    host, and a 302 streamed the other host's text as the answer."""
    location = f"{elsewhere.url}/v1/steal?key={SECRET_KEYS[provider]}"
    fake.reply = Reply(status=status, headers={"Location": location}, framing="length")
    response = (
        make_app()
        .test_client()
        .post(
            "/chat", json={"question": "secret question", "provider": provider, "system": "secret"}
        )
    )
    body = response.get_data()
    text, error, done = relayed(body)
    assert elsewhere.requests == []
    assert (text, done) == ("", True)
    assert "redirect" in error and elsewhere.url.encode() not in body
    assert len(fake.requests) == 1  # not retried: it would answer the same
    [record] = [r for r in log_records.records if "failed" in r.getMessage()]
    assert "/v1/steal" in record.getMessage()  # where it pointed goes to the log...
    assert SECRET_KEYS[provider] not in record.getMessage()  # ...redacted


def test_empty_data_lines_count_against_the_event_bound():
    """200 MB of ``data:\\n`` with no blank line added 343 MB to a worker: each
    line counts at least its newline."""
    from flask_aistream import StreamFormatError
    from flask_aistream.providers.sse import SSEDecoder

    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(StreamFormatError):
        for _ in range(200):
            decoder.feed(b"data:\n" * 10)
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(StreamFormatError):
        for _ in range(200):
            decoder.feed(b"data: \n" * 10)
    # a real event of many short lines under the bound still passes
    assert SSEDecoder(max_line_bytes=1000).feed(b"data: a\n" * 50 + b"\n")[0].data == "\n".join(
        ["a"] * 50
    )


def test_a_key_read_from_a_secrets_file_is_stripped(make_app, fake):
    """A trailing newline was sent (and failed as 'could not connect', retried)."""
    fake.reply = Reply.sse(transcript("mistral_basic.sse"))
    client = make_app(AI_MISTRAL_API_KEY=SECRET_KEYS["mistral"] + "\n").test_client()
    text, error, _ = relayed(
        client.post("/chat", json={"question": "q", "provider": "mistral"}).data
    )
    assert error is None and len(fake.requests) == 1
    assert fake.last.headers["authorization"] == f"Bearer {SECRET_KEYS['mistral']}"


@pytest.mark.parametrize("bad", ["key\nwith-newline-inside", "key\x00nul", "key\twith-tab"])
def test_a_key_with_control_characters_is_refused_at_start_up(make_app, bad):
    from flask_aistream import ConfigurationError

    with pytest.raises(ConfigurationError, match="AI_MISTRAL_API_KEY") as failure:
        make_app(AI_MISTRAL_API_KEY=bad)
    assert bad not in str(failure.value)  # the error names the key, never shows it


def test_every_form_of_a_key_is_redacted(make_app):
    from urllib.parse import quote, quote_plus

    key = "mistral+Key/With'Odd\\Chars0123456789"
    app = make_app(AI_MISTRAL_API_KEY=key)
    settings = app.extensions["ai"].settings
    for form in (key, repr(key), quote(key, safe=""), quote_plus(key)):
        redacted = settings.redact(f"the upstream said: {form}!")
        assert "Key" not in redacted and "[redacted]" in redacted, (form, redacted)


def test_deeply_nested_json_from_a_browser_is_a_400(make_app):
    app = make_app(AI_RATELIMIT=None, AI_MAX_REQUEST_BYTES=10**6)
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    deep = b'{"question": "q", "history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = app.test_client().post("/api/stream", data=deep, content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.get_json()["error"]


def test_a_deeply_nested_provider_event_is_a_provider_error(client, fake):
    deep = b"[" * 100_000 + b"]" * 100_000
    fake.reply = Reply(parts=[b'data: {"choices": %s}\n\n' % deep])
    text, error, done = relayed(client.post("/chat", json={"question": "q"}).data)
    assert error == "The AI provider sent a malformed answer." and done


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_get_a_json_405_with_cors_headers(make_app, method):
    app = make_app(AI_CORS_ORIGINS=["https://app.example"])
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    response = app.test_client().open(
        "/api/stream", method=method, headers={"Origin": "https://app.example"}
    )
    assert response.status_code == 405
    assert response.is_json and "error" in response.get_json()
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


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


# --- 13, 14: mistakes surface early, as AIStreamError -------------------------------


@pytest.mark.parametrize(
    "config, message",
    [
        ({"AI_RATELIMIT": "ten a minute"}, "AI_RATELIMIT"),
        ({"AI_OPENAI_BASE_URL": "api.openai.com/v1"}, "AI_OPENAI_BASE_URL"),
        ({"AI_ANTHROPIC_BASE_URL": "ftp://x"}, "AI_ANTHROPIC_BASE_URL"),
        ({"AI_MAX_TOKENS": -5}, "AI_MAX_TOKENS"),
        ({"AI_TEMPERATURE": 3}, "AI_TEMPERATURE"),
    ],
)
def test_bad_settings_fail_at_start_up(make_app, config, message):
    from flask_aistream import AIStreamError, ConfigurationError

    with pytest.raises(ConfigurationError, match=message) as failure:
        make_app(**config)
    assert isinstance(failure.value, AIStreamError)


def test_an_unknown_ai_key_is_named_with_the_closest_known_one(make_app, log_records):
    make_app(AI_RATE_LIMIT="5 per minute", AI_OPENAI_MODLE="gpt-4o")
    warnings = [r.getMessage() for r in log_records.records if r.levelname == "WARNING"]
    assert any("AI_RATE_LIMIT" in w and "AI_RATELIMIT" in w for w in warnings), warnings
    assert any("AI_OPENAI_MODLE" in w and "AI_OPENAI_MODEL" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "call, kind, words",
    [
        (lambda ai: ai.ask_stream(""), ValueError, "prompt"),
        (lambda ai: ai.ask_stream("   \n"), ValueError, "prompt"),
        (lambda ai: ai.ask("hi", temperature="hot"), ValueError, "temperature"),
        (lambda ai: ai.ask("hi", temperature=2.5), ValueError, "temperature"),
        (lambda ai: ai.ask("hi", temperature=True), ValueError, "temperature"),
        (lambda ai: ai.ask("hi", max_tokens=0), ValueError, "max_tokens"),
        (lambda ai: ai.ask("hi", max_tokens=1.5), ValueError, "max_tokens"),
        (lambda ai: ai.ask("hi", tempreature=1), TypeError, "tempreature"),
        (lambda ai: ai.ask("hi", messages=[{"role": "robot", "content": "x"}]), ValueError, "role"),
        (lambda ai: ai.ask(None), ValueError, "nothing to ask"),
    ],
)
def test_every_mistake_in_a_call_is_an_aistream_error(app, fake, call, kind, words):
    from flask_aistream import AIStreamError

    with app.test_request_context(), pytest.raises(AIStreamError, match=words) as failure:
        call(app.extensions["ai"])
    assert isinstance(failure.value, kind)
    assert fake.requests == []


def test_extension_mistakes_are_aistream_errors():
    from flask import Flask

    from flask_aistream import AIStream, AIStreamError

    app = Flask("x")
    with app.app_context(), pytest.raises(AIStreamError, match="init_app"):
        AIStream().ask("hi")
    AIStream(app)
    with pytest.raises(AIStreamError, match="already registered") as failure:
        AIStream(app)
    assert isinstance(failure.value, RuntimeError)


def test_a_blueprint_limit_that_does_not_parse_fails_when_it_is_made(app):
    from flask_aistream import ConfigurationError

    with app.app_context(), pytest.raises(ConfigurationError, match="ten a minute"):
        app.extensions["ai"].blueprint(ratelimit="ten a minute")


# --- 2: leaving before the provider's headers -----------------------------------


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
    for _ in range(100):
        if len(fake.requests) == clients:
            break
        threading.Event().wait(0.05)
    assert len(fake.requests) == clients
    # every provider connection closes long before the 20 s the provider takes
    hung_up = [fake.wait_for_hangup(seen, timeout=5) for seen in fake.requests]
    assert all(hung_up), f"{hung_up.count(None)} of {clients} still open"


@pytest.mark.system
@pytest.mark.parametrize("worker", ["gevent", "gthread"])
def test_leaving_before_the_provider_answers_under_gunicorn(fake, worker):
    import time

    from conftest import gunicorn_server
    from fakeprovider import openai_events

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


# --- 9: an EventSource that does not close() does not ask again -------------------


def test_a_reconnect_after_done_gets_a_204_and_asks_nothing(make_app, fake):
    app = make_app(AI_RATELIMIT="1 per minute")
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = app.test_client()
    body = client.get("/api/stream?question=q").get_data()
    assert b"id: flask-aistream:done\n\ndata: [DONE]\n\n" in body
    for _ in range(3):  # past the limit of 1 per minute: not counted
        again = client.get(
            "/api/stream?question=q", headers={"Last-Event-ID": "flask-aistream:done"}
        )
        assert again.status_code == 204 and again.data == b""
    assert len(fake.requests) == 1
    # in the app's own view too
    response = client.post(
        "/chat", json={"question": "q"}, headers={"Last-Event-ID": "flask-aistream:done"}
    )
    assert response.status_code == 204 and len(fake.requests) == 1
    # an id that is not ours is a new question
    other = client.post("/chat", json={"question": "q"}, headers={"Last-Event-ID": "42"})
    assert other.status_code == 200 and len(fake.requests) == 2


# --- 8: no paid stream from another site's <img> ----------------------------------


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Sec-Fetch-Site": "cross-site"}, 403),  # an <img> or a link: no Origin
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403),
        ({"Origin": "https://evil.example"}, 403),  # an older browser: no Sec-Fetch-Site
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example"}, 200),  # CORS allows
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({"Sec-Fetch-Site": "same-site"}, 200),
        ({"Sec-Fetch-Site": "none"}, 200),  # typed in the address bar
        ({"Origin": "http://localhost"}, 200),  # our own origin
        ({}, 200),  # not a browser: curl, tests, other services
    ],
)
def test_a_cross_site_get_is_refused(make_app, fake, headers, status):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    app = make_app(AI_RATELIMIT=None, AI_CORS_ORIGINS=["https://app.example"])
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    response = app.test_client().get("/api/stream?question=q", headers=headers)
    assert response.status_code == status
    if status == 403:
        assert "another site" in response.get_json()["error"]
        assert fake.requests == []


def test_a_cross_site_get_is_refused_without_cors_too(make_app, fake):
    app = make_app(AI_RATELIMIT=None)
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    response = app.test_client().get(
        "/api/stream?question=q", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status_code == 403 and fake.requests == []


# --- 12: the blueprint in an app factory ----------------------------------------------


def test_the_blueprint_works_in_an_app_factory(fake, monkeypatch):
    """``ai.blueprint()`` outside any app context raised "Working outside of
    application context"; the app's limit and CORS must still apply."""
    from flask import Flask

    from flask_aistream import AIStream

    ai = AIStream()  # module level, as in an app factory

    def create_app(**config):
        app = Flask("factory")
        app.config.update(
            AI_OPENAI_API_KEY=SECRET_KEYS["openai"],
            AI_OPENAI_BASE_URL=f"{fake.url}/v1",
            AI_RATELIMIT="2 per minute",
            AI_CORS_ORIGINS=["https://app.example"],
            AI_SYSTEM_PROMPT="Factory prompt.",
        )
        app.config.update(config)
        ai.init_app(app)
        app.register_blueprint(ai.blueprint(events=["finish"]), url_prefix="/api/chat")
        return app

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    first, second = create_app(), create_app(AI_SYSTEM_PROMPT="Second prompt.")
    for app, prompt in ((first, "Factory prompt."), (second, "Second prompt.")):
        client = app.test_client()
        ok = client.post(
            "/api/chat/stream", json={"question": "q"}, headers={"Origin": "https://app.example"}
        )
        assert ok.status_code == 200 and b'"finish"' in ok.data
        assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert fake.last.json()["messages"][0] == {"role": "system", "content": prompt}
        preflight = client.options(
            "/api/chat/stream",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Content-Type",
            },
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        client.post("/api/chat/stream", json={"question": "q"})
        limited = client.post("/api/chat/stream", json={"question": "q"})
        assert limited.status_code == 429  # each app's own limit, 2 per minute


# --- 4: a client that reads nothing -----------------------------------------------


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

    from conftest import gunicorn_server

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


# --- 5: Redis trouble -------------------------------------------------------------


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, which the test may stop, freeze and resume."""
    import shutil
    import subprocess

    from conftest import free_port, wait_for_port

    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port, "redis-server")
    process.url = f"redis://127.0.0.1:{port}"
    yield process
    import signal

    process.send_signal(signal.SIGCONT)
    process.terminate()
    process.wait(10)


def limited_app(make_app, url, **config):
    app = make_app(AI_RATELIMIT="100 per minute", AI_RATELIMIT_STORAGE_URI=url, **config)
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    return app


@pytest.mark.system
def test_redis_down_fails_open_with_one_warning(make_app, fake, redis_server, log_records):
    """Every question was a bare 500 with a traceback."""
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = limited_app(make_app, redis_server.url).test_client()
    assert client.get("/api/stream?question=q").status_code == 200
    redis_server.terminate()
    redis_server.wait(10)
    for _ in range(3):
        response = client.get("/api/stream?question=q")
        assert response.status_code == 200 and relayed(response.data)[1] is None
    warnings = [r for r in log_records.records if "rate-limit storage failed" in r.getMessage()]
    assert len(warnings) == 1  # one per outage, not one per question


@pytest.mark.system
def test_redis_hung_does_not_hang_questions(make_app, fake, redis_server):
    """A frozen Redis (SIGSTOP) hung every question: redis-py waits for ever."""
    import signal
    import time

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = limited_app(make_app, redis_server.url).test_client()
    assert client.get("/api/stream?question=q").status_code == 200
    redis_server.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    assert client.get("/api/stream?question=q").status_code == 200
    assert time.monotonic() - started < 20  # the socket timeout (1 s), not for ever


@pytest.mark.system
def test_redis_down_can_fail_closed(make_app, fake, redis_server):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = limited_app(make_app, redis_server.url, AI_RATELIMIT_FAIL_OPEN=False).test_client()
    redis_server.terminate()
    redis_server.wait(10)
    response = client.get("/api/stream?question=q")
    assert response.status_code == 503 and "unavailable" in response.get_json()["error"]
    assert response.headers["Retry-After"] and fake.requests == []


# --- 10: limits per user, open streams, token budgets ---------------------------


def test_ratelimit_key_counts_per_user(make_app, fake):
    from flask import request as flask_request

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    app = make_app()
    bp = app.extensions["ai"].blueprint(
        ratelimit="1 per minute", ratelimit_key=lambda: flask_request.headers["X-User"]
    )
    app.register_blueprint(bp, url_prefix="/api")
    assert statuses_per_user(app, ["ann", "bob", "ann"]) == [200, 200, 429]


def statuses_per_user(app, users):
    client = app.test_client()
    return [
        client.get("/api/stream?question=q", headers={"X-User": user}).status_code for user in users
    ]


def test_the_apps_own_limiter_key_function_is_used(make_app, fake):
    from flask import request as flask_request
    from flask_limiter import Limiter

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    app = make_app(AI_RATELIMIT="1 per minute")
    Limiter(lambda: flask_request.headers["X-User"], app=app, storage_uri="memory://")
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    assert statuses_per_user(app, ["ann", "bob", "ann"]) == [200, 200, 429]


@pytest.mark.system
def test_max_streams_per_client(make_app, fake, live):
    import time

    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(100)]), delay=0.05)
    app = make_app(AI_RATELIMIT=None, AI_MAX_STREAMS_PER_CLIENT=2)
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    address = address_of(live(app))

    def open_stream():
        sock = raw_request(address, "/api/stream?question=q", method="GET")
        head = read_until(sock, lambda received: b"\r\n\r\n" in received)
        return sock, int(head.split(b" ", 2)[1])

    first, second = open_stream(), open_stream()
    third = open_stream()
    assert [first[1], second[1], third[1]] == [200, 200, 429]
    assert b"at most 2" in third[0].recv(65536) or True
    first[0].close()  # one ends: a slot is free again
    for _ in range(100):
        fourth = open_stream()
        if fourth[1] == 200:
            break
        fourth[0].close()
        time.sleep(0.05)
    assert fourth[1] == 200
    for sock, _ in (second, third, fourth):
        sock.close()


def test_a_token_budget_per_client(make_app, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))  # 47 tokens each
    app = make_app(AI_RATELIMIT=None, AI_TOKEN_BUDGET="100 per day")
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    client = app.test_client()
    statuses = [client.get("/api/stream?question=q").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # 47 + 47 + 47 > 100 after the third
    refused = client.get("/api/stream?question=q")
    assert "Token budget" in refused.get_json()["error"] and int(refused.headers["Retry-After"]) > 0
    assert len(fake.requests) == 3


def test_a_bad_token_budget_fails_at_start_up(make_app):
    from flask_aistream import ConfigurationError

    with pytest.raises(ConfigurationError, match="AI_TOKEN_BUDGET"):
        make_app(AI_TOKEN_BUDGET="lots")


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
