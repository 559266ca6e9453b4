"""Limits per client on the blueprint: per user, per the app's own
``Limiter``, open streams, token budgets; and a rate-limit storage that is
down or hung (fail open with one warning, or closed)."""

import threading

import pytest

from fakeprovider import Reply, transcript
from helpers import address_of, raw_request, read_until, relayed


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, which the test may stop, freeze and resume."""
    import shutil
    import subprocess

    from helpers import free_port, wait_for_port

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


# --- the second review: limits that leaving, or a slow hook, got around ------------


@pytest.mark.system
@pytest.mark.parametrize(
    "config", [{"AI_ON_DISCONNECT": "finish"}, {"AI_RESUME_STORAGE_URI": "memory://"}]
)
def test_hanging_up_does_not_free_a_stream_whose_answer_runs_on(make_app, fake, live, config):
    """D2: with resume or the finish policy the slot freed when the response
    closed, while the answer ran on: nine provider streams at once, limit one."""
    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(40)]), delay=0.05)
    app = make_app(AI_RATELIMIT=None, AI_MAX_STREAMS_PER_CLIENT=1, AI_MAX_RETRIES=0, **config)
    finished = []
    app.register_blueprint(
        app.extensions["ai"].blueprint(on_finish=finished.append), url_prefix="/api"
    )
    address = address_of(live(app))

    def ask():
        sock = raw_request(address, "/api/stream?question=q", method="GET")
        head = read_until(sock, lambda received: b"\r\n\r\n" in received)
        return sock, int(head.split(b" ", 2)[1])

    sock = raw_request(address, "/api/stream?question=q", method="GET")
    assert read_until(sock, lambda received: b"w0" in received).startswith(b"HTTP/1.1 200")
    sock.close()  # the client leaves; its answer goes on
    again, status = ask()
    again.close()
    assert status == 429  # still one answer streaming for this client
    assert len(fake.requests) == 1
    for _ in range(200):  # the answer ends (40 tokens, 2 s): its slot is free
        if finished:
            break
        threading.Event().wait(0.05)
    assert finished and finished[0].finish_reason == "stop"
    last, status = ask()
    last.close()
    assert status == 200


def test_leaving_before_the_usage_chunk_still_spends_the_budget(make_app, fake):
    """D3: usage comes in the last chunk; leaving just before it counted
    nothing (1,520 tokens read against a budget of 300)."""
    from fakeprovider import openai_events

    words = [f"word{i:03d} " for i in range(200)]  # ~1,600 characters: ~400 tokens
    fake.reply = Reply(parts=openai_events(words))
    app = make_app(AI_RATELIMIT=None, AI_TOKEN_BUDGET="300 per hour", AI_MAX_RETRIES=0)
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    client = app.test_client()
    response = client.get("/api/stream?question=q", buffered=False)
    chunks = iter(response.response)
    received = b""
    while received.count(b"content") < 190:
        received += next(chunks)
    response.close()  # gone before the finish and the usage
    refused = client.get("/api/stream?question=q")
    assert refused.status_code == 429 and "Token budget" in refused.get_json()["error"]


@pytest.mark.system
def test_a_slow_hook_does_not_hold_the_clients_stream(make_app, fake, live):
    """D12: a hook sleeping 3 s held the slot: the next question right after
    [DONE] got 429 "Too many answers at once"."""
    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events(["Hi"]))
    app = make_app(AI_RATELIMIT=None, AI_MAX_STREAMS_PER_CLIENT=1, AI_MAX_RETRIES=0)
    slow = threading.Event()  # the hook runs until the test ends
    app.register_blueprint(
        app.extensions["ai"].blueprint(on_finish=lambda answer: slow.wait(30)), url_prefix="/api"
    )
    address = address_of(live(app))
    first = raw_request(address, "/api/stream?question=q", method="GET")
    read_until(first, lambda received: b"data: [DONE]" in received)
    try:
        for _ in range(400):  # while the first answer's hook still runs
            second = raw_request(address, "/api/stream?question=q", method="GET")
            head = read_until(second, lambda received: b"\r\n\r\n" in received)
            second.close()
            if head.startswith(b"HTTP/1.1 200"):
                break
            threading.Event().wait(0.05)
        assert head.startswith(b"HTTP/1.1 200")
        assert not slow.is_set()
    finally:
        slow.set()
        first.close()


# --- ai.limit: the same limits on a view of the app's own ---------------------------


def limited_view_app(make_app, **limits):
    from flask import request

    from flask_aistream import AIStream

    ai = AIStream()
    app = make_app(AI_RATELIMIT=None, AI_MAX_RETRIES=0)
    finished = []

    @app.post("/mine")
    @ai.limit(key=lambda: request.headers["X-User"], **limits)
    def mine():
        return ai.ask_stream(request.json["question"], on_finish=finished.append)

    app.finished = finished
    return app


def test_ai_limit_counts_questions_per_key(make_app, fake):
    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events(["ok"]))
    client = limited_view_app(make_app, rate="2 per minute").test_client()
    ann, bob = {"X-User": "ann"}, {"X-User": "bob"}
    statuses = [
        client.post("/mine", json={"question": "q"}, headers=ann).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    refused = client.post("/mine", json={"question": "q"}, headers=ann)
    assert "Too many questions" in refused.get_json()["error"] and refused.headers["Retry-After"]
    assert client.post("/mine", json={"question": "q"}, headers=bob).status_code == 200


def test_ai_limit_frees_a_stream_when_its_client_leaves(make_app, fake):
    from fakeprovider import openai_events

    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(50)]), delay=0.01)
    app = limited_view_app(make_app, max_streams=1)
    client = app.test_client()
    ann = {"X-User": "ann"}
    first = client.post("/mine", json={"question": "q"}, headers=ann, buffered=False)
    next(iter(first.response))
    assert client.post("/mine", json={"question": "q"}, headers=ann).status_code == 429
    first.close()  # gone: the answer is cancelled, its stream freed
    assert app.finished[-1].finish_reason == "cancelled"
    with client.post("/mine", json={"question": "q"}, headers=ann) as again:
        assert again.status_code == 200


def test_ai_limit_spends_a_token_budget(make_app, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))  # 47 tokens each
    client = limited_view_app(make_app, token_budget="60 per hour").test_client()
    ann = {"X-User": "ann"}
    statuses = [
        client.post("/mine", json={"question": "q"}, headers=ann).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_ai_limit_needs_a_limit_and_checks_it():
    from flask_aistream import AIStream, ConfigurationError

    with pytest.raises(ConfigurationError):
        AIStream().limit()
    with pytest.raises(ConfigurationError, match="10 a minute"):
        AIStream().limit("10 a minute")
