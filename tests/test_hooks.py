"""``on_finish`` and the ``answer_finished`` signal: called exactly once per
answer however it ended, inside an app context, after ``[DONE]`` was written
and before the response is closed; and the disconnect policy, under a real
gunicorn."""

import json
import threading
import time

import pytest
from flask import current_app, g, has_app_context, has_request_context, request

from fakeprovider import Reply, openai_events, transcript
from flask_aistream import ProviderError, answer_finished
from helpers import address_of, gunicorn_server, raw_request, read_until, relayed


@pytest.fixture
def hooked(make_app):
    """An app whose ``/hooked`` view passes each answer to ``answers``."""

    def build(**config):
        app = make_app(**config)
        app.answers = []
        app.hook_ran = threading.Event()

        def save(answer):
            app.answers.append(answer)
            app.hook_ran.set()

        @app.post("/hooked")
        def hooked_view():
            body = request.get_json()
            return app.extensions["ai"].ask_stream(body.pop("question"), on_finish=save, **body)

        return app

    return build


def post(app, question="Why?", **body):
    response = app.test_client().post("/hooked", json={"question": question, **body})
    assert response.status_code == 200
    return relayed(response.get_data())


def test_a_completed_answer(hooked, fake):
    app = hooked()
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    text, error, done = post(app)
    [answer] = app.answers
    assert (answer.text, answer.finish_reason, answer.error) == (text, "stop", None)
    assert answer.usage.output_tokens == 23


def test_a_failure_before_the_first_token(hooked, fake):
    app = hooked()
    fake.reply = Reply.json(400, {"error": {"message": "bad", "type": "invalid_request_error"}})
    text, error, done = post(app)
    [answer] = app.answers
    assert (answer.text, answer.finish_reason) == ("", "error")
    assert answer.error.status == 400 and answer.error.message == error


def test_a_failure_after_the_first_token(hooked, fake):
    app = hooked()
    fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    text, error, done = post(app)
    [answer] = app.answers
    assert (answer.text, answer.finish_reason) == ("Before the error", "error")
    assert answer.error.message == error


def test_the_total_timeout(hooked, fake):
    app = hooked(AI_TOTAL_TIMEOUT=0.3)
    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(50)]), delay=0.05)
    text, error, done = post(app)
    [answer] = app.answers
    assert answer.finish_reason == "error" and "longer than the 0.3 s" in error
    assert answer.text == text and text.startswith("w0 w1")
    assert fake.wait_for_hangup(fake.last) is not None  # the provider was hung up on


def test_retries_before_the_first_token_make_one_answer(hooked, fake):
    app = hooked()
    fake.replies = [Reply.json(503, {"error": {"message": "busy"}})]
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    post(app)
    assert len(fake.requests) == 2
    assert [a.finish_reason for a in app.answers] == ["stop"]


def test_the_client_leaving(hooked, fake, live):
    app = hooked()
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(500)]), delay=0.05, hold=True)
    sock = raw_request(address_of(live(app)), "/hooked")
    read_until(sock, lambda received: received.count(b'"content"') >= 3)
    sock.close()
    assert app.hook_ran.wait(5)
    assert fake.wait_for_hangup(fake.last) is not None
    time.sleep(0.2)  # a second call would come now
    [answer] = app.answers
    assert answer.finish_reason == "cancelled" and answer.error is None
    assert answer.text.startswith("t0 t1 t2 ") and fake.last.parts_sent < 500


def test_ask_and_iter_text_call_the_hook_before_they_end(app, fake):
    seen = []
    ai = app.extensions["ai"]
    with app.app_context():
        fake.reply = Reply.sse(transcript("openai_basic.sse"))
        assert ai.ask("hi", on_finish=seen.append) == seen[0].text
        fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
        with pytest.raises(ProviderError):
            ai.ask("hi", on_finish=seen.append)
        assert seen[1].finish_reason == "error"
        fake.reply = Reply(parts=openai_events(["a ", "b ", "c "]))
        texts = ai.iter_text("hi", on_finish=seen.append)
        assert next(texts) == "a "
        texts.close()  # the caller stopped reading: cancelled
        assert seen[2].finish_reason == "cancelled" and seen[2].text == "a "
    assert len(seen) == 3


def test_a_hook_that_raises_is_logged_and_reaches_no_client(make_app, fake, log_records):
    app = make_app()

    def broken(answer):
        raise RuntimeError("hook secret detail")

    @app.post("/broken")
    def view():
        return app.extensions["ai"].ask_stream("hi", on_finish=broken)

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    body = app.test_client().post("/broken").get_data()
    assert relayed(body)[1:] == (None, True)
    assert b"secret" not in body and b"Traceback" not in body
    [record] = [r for r in log_records.records if "on_finish hook failed" in r.getMessage()]
    assert record.exc_info and "hook secret detail" in str(record.exc_info[1])


def test_the_hook_runs_in_a_copy_of_the_asking_requests_context(make_app, fake):
    """Hooks know who asked: ``request``, ``g`` (the user a before_request
    loaded), ``session``, as the view had them; but on a copy, so nothing a
    hook does reaches the request (which may be long gone) or another one."""
    app = make_app()
    seen = {}

    def hook(answer):
        seen.update(
            app=current_app._get_current_object(),
            path=request.path,
            user=request.headers.get("X-User"),
            g_from_the_view=getattr(g, "from_view", None),
            id=answer.id,
        )
        g.from_hook = "hook"

    @app.post("/ctx")
    def view():
        g.from_view = "view"
        return app.extensions["ai"].ask_stream("hi", on_finish=hook)

    @app.get("/other")
    def other():
        return {"from_hook": getattr(g, "from_hook", None), "from_view": g.get("from_view")}

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = app.test_client()
    client.post("/ctx", headers={"X-User": "ann"}).get_data()
    assert seen.pop("id").startswith("ans-")
    assert seen == dict(app=app, path="/ctx", user="ann", g_from_the_view="view")
    assert client.get("/other").json == {"from_hook": None, "from_view": None}
    seen.clear()
    with app.test_request_context("/inside"):  # ask() inside a view: that request's copy
        app.extensions["ai"].ask("hi", on_finish=hook)
    assert seen["app"] is app and seen["path"] == "/inside"
    seen.clear()
    with app.app_context():  # no request: an app context of its own
        app.extensions["ai"].ask(
            "hi", on_finish=lambda answer: seen.update(req=has_request_context())
        )
    assert seen == {"req": False}


def test_a_before_request_that_reads_the_body_and_loads_the_user(make_app, fake):
    """A new user's first app: a before_request calls ``request.get_json()``
    and sets ``g.user``; every chat POST was a misleading 400 (the body was
    read already), and the hook saw no user (48 rows saved without one)."""
    fake.reply = Reply(parts=openai_events(["Hi"]))
    app = make_app(AI_RATELIMIT=None, AI_STREAM_FORMAT="vercel")
    saved = []

    @app.before_request
    def load_user():
        body = request.get_json(silent=True) or {}
        g.user = request.headers.get("X-User") if body else None

    def save(answer):
        saved.append((g.user, answer.chat_id, answer.text, answer.id))

    app.register_blueprint(app.extensions["ai"].blueprint(on_finish=save), url_prefix="/api")
    body = {
        "id": "chat-7",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    response = app.test_client().post("/api/stream", json=body, headers={"X-User": "ann"})
    assert response.status_code == 200 and b"Hi" in response.data
    [(user, chat_id, text, answer_id)] = saved
    assert (user, chat_id, text) == ("ann", "chat-7", "Hi")
    assert answer_id.startswith("ans-")
    big = app.test_client().post(
        "/api/stream", json={**body, "pad": "x" * 100_000}, headers={"X-User": "ann"}
    )
    assert big.status_code == 413  # the size bound still holds on a body read already


@pytest.mark.parametrize("worker", ["gthread", "gevent"])
def test_the_hook_runs_once_the_response_is_over(fake, worker, tmp_path):
    """A hook that takes its time holds neither ``[DONE]`` nor the body's
    end: the client has the whole response while the hook still runs (D12:
    a slow hook held the response, and useChat's status with it)."""
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    answers, gate = tmp_path / "answers.jsonl", tmp_path / "gate"
    env = {"ANSWERS_FILE": str(answers), "HOOK_GATE": str(gate)}
    with gunicorn_server(worker, fake, **env) as (address, _):
        sock = raw_request(address, "/chat", timeout=20)
        read_until(sock, lambda received: received.endswith(b"0\r\n\r\n"))  # the body's end
        gate.touch()  # the hook, waiting all along, may return now
        sock.close()
        for _ in range(600):
            if answers.exists() and answers.read_text():
                break
            time.sleep(0.05)
    [record] = [json.loads(line) for line in answers.read_text().splitlines()]
    assert record == {"text": record["text"], "finish_reason": "stop", "gate_was_open": True}


def test_a_response_never_sent_asks_nothing_and_calls_no_hook(app, fake):
    seen = []
    with app.test_request_context():
        response = app.extensions["ai"].ask_stream("hi", on_finish=seen.append)
        response.close()
    del response
    time.sleep(0.1)
    assert fake.requests == [] and seen == []


def test_the_signal_is_sent_for_every_answer_after_the_hook(make_app, fake):
    app = make_app()
    app.register_blueprint(app.extensions["ai"].blueprint(ratelimit=None), url_prefix="/api")
    order = []

    def receiver(sender, answer):
        order.append(("signal", sender, answer.finish_reason, has_app_context()))

    def hook(answer):
        order.append(("hook",))

    @app.post("/both")
    def both():
        return app.extensions["ai"].ask_stream("hi", on_finish=hook)

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    with answer_finished.connected_to(receiver, app):
        client = app.test_client()
        client.post("/both").get_data()
        assert order == [("hook",), ("signal", app, "stop", True)]
        order.clear()
        client.post("/api/stream", json={"question": "hi"}).get_data()
        with app.app_context():
            ai = app.extensions["ai"]
            ai.ask("hi")
            list(ai.iter_text("hi"))
            list(ai.iter_events("hi"))
        assert [entry[0] for entry in order] == ["signal"] * 4
    # another app's answers do not reach a receiver connected for this one
    other = make_app()
    with answer_finished.connected_to(receiver, other), app.app_context():
        order.clear()
        app.extensions["ai"].ask("hi")
    assert order == []


def test_the_blueprint_takes_events_and_a_hook(make_app, fake):
    app = make_app()
    seen = []
    bp = app.extensions["ai"].blueprint(ratelimit=None, events=["finish"], on_finish=seen.append)
    app.register_blueprint(bp, url_prefix="/api")
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    body = app.test_client().post("/api/stream", json={"question": "hi"}).get_data()
    assert b'data: {"finish": {"reason": "stop"' in body
    assert [a.finish_reason for a in seen] == ["stop"]


def test_bad_answer_options_raise_in_the_view(app):
    ai = app.extensions["ai"]
    with app.test_request_context():
        with pytest.raises(TypeError, match="on_finish"):
            ai.ask_stream("hi", on_finish="save")
        with pytest.raises(ValueError, match="on_disconnect"):
            ai.ask_stream("hi", on_disconnect="linger")


def test_a_bad_disconnect_policy_fails_at_start_up(make_app):
    with pytest.raises(ValueError, match="AI_ON_DISCONNECT"):
        make_app(AI_ON_DISCONNECT="keep")


# --- the disconnect policy, under gunicorn ----------------------------------------


def leave_after(address, contents):
    """Ask, read ``contents`` content events, and hang up."""
    sock = raw_request(address)
    read_until(sock, lambda received: received.count(b'"content"') >= contents)
    sock.close()


def answers_in(path, count=1, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"no answer was saved in {timeout} s")


@pytest.mark.system
@pytest.mark.parametrize("worker", ["gthread", "gevent"])
def test_finish_policy_reads_to_the_end_after_the_client_left(fake, tmp_path, worker):
    words = [f"w{i} " for i in range(30)]
    fake.reply = Reply(parts=openai_events(words), delay=0.03)
    saved = tmp_path / "answers.jsonl"
    env = dict(AI_ON_DISCONNECT="finish", ANSWERS_FILE=str(saved))
    with gunicorn_server(worker, fake, **env) as (address, _):
        leave_after(address, 2)
        [answer] = answers_in(saved)
        seen = fake.last
    assert answer == {"text": "".join(words), "finish_reason": "stop"}
    # Every part went out: nobody hung up on the provider before its end. (We do
    # close on [DONE]; the fake may count that as a hang-up if it races its
    # chunked terminator, so when it hung up is not the property.)
    assert seen.parts_sent == len(words) + 1


@pytest.mark.system
@pytest.mark.parametrize("worker", ["gthread", "gevent"])
def test_cancel_policy_hangs_up_at_once(fake, tmp_path, worker):
    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(300)]), delay=0.03)
    saved = tmp_path / "answers.jsonl"
    with gunicorn_server(worker, fake, ANSWERS_FILE=str(saved)) as (address, _):
        leave_after(address, 2)
        hung_up = fake.wait_for_hangup(fake.last)
        [answer] = answers_in(saved)
    assert hung_up is not None  # long before the answer's end (9 s)
    assert answer["finish_reason"] == "cancelled" and answer["text"].startswith("w0 w1 ")
    assert fake.last.parts_sent < 300


def test_one_info_line_per_finished_answer(app, fake, caplog):
    """For apps without tracing: the flask_aistream.answers logger."""
    import logging

    caplog.set_level(logging.INFO, logger="flask_aistream.answers")
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    with app.app_context():
        app.extensions["ai"].ask("Why?")
    [record] = [r for r in caplog.records if r.name == "flask_aistream.answers"]
    line = record.getMessage()
    assert line.startswith("answer ans-") and "provider=openai" in line and "finish=stop" in line
    assert "input_tokens=" in line and "duration_s=" in line and "first_token_s=0." in line
