"""Resumable answers in one process (``memory://``): ids, replay, 204s,
owners, cancel, the lease, the Vercel resume route. The Redis store, several
workers and browsers are in test_resume_redis.py."""

from __future__ import annotations

import json
import logging
import queue
import threading

import pytest
from flask import request

from fakeprovider import Reply, openai_events
from flask_aistream import ConfigurationError
from flask_aistream.formats.sse import Entry, Numbering
from flask_aistream.providers.sse import SSEDecoder
from flask_aistream.resume import ANSWER_ID, INTERRUPTED

WORDS = [f"w{i} " for i in range(8)]


def gated_reply(words=WORDS):
    """A provider answer whose parts go out one per ``gate.release()``."""
    gate = threading.Semaphore(0)
    return Reply(parts=openai_events(words), gate=gate), gate


def events(body: bytes):
    return SSEDecoder().feed(body)


def text_of(evs) -> str:
    return "".join(json.loads(e.data).get("content", "") for e in evs if e.data != "[DONE]")


@pytest.fixture
def resumable(make_app):
    """An app with resume in memory; its answers' hooks report to ``app.finished``."""

    def build(**config):
        config.setdefault("AI_RESUME_STORAGE_URI", "memory://")
        config.setdefault("AI_RATELIMIT", None)
        config.setdefault("AI_MAX_RETRIES", 0)
        app = make_app(**config)
        app.finished = queue.Queue()
        ai = app.extensions["ai"]

        @app.post("/ask")
        def ask():
            body = request.get_json()
            return ai.ask_stream(
                body["question"],
                owner=request.headers.get("X-User"),
                on_finish=app.finished.put,
                format=body.get("format"),
            )

        app.register_blueprint(
            ai.blueprint(owner=lambda: request.headers.get("X-User"), on_finish=app.finished.put),
            url_prefix="/api/chat",
        )
        return app

    return build


def read_until(response, count: int) -> bytes:
    """Read a streamed response until ``count`` events arrived."""
    body = b""
    chunks = iter(response.response)
    while len(events(body)) < count:
        body += next(chunks)
    return body


def test_every_event_is_numbered_and_the_first_says_retry(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    client = resumable().test_client()
    response = client.post("/ask", json={"question": "hi"})
    answer_id = response.headers["X-AIStream-Answer-Id"]
    assert ANSWER_ID.match(answer_id)
    evs = events(response.data)
    assert [e.id for e in evs] == [f"{answer_id}:{n}" for n in range(1, len(evs) + 1)]
    assert evs[-1].data == "[DONE]"
    assert evs[0].retry == 1000 and response.data.count(b"retry:") == 1
    assert text_of(evs) == "".join(WORDS)
    assert b"flask-aistream:done" not in response.data  # every event has its own id now


def test_a_client_that_left_resumes_where_it_was_without_asking_again(resumable, fake):
    reply, gate = gated_reply()
    fake.reply = reply
    app = resumable()
    client = app.test_client()
    response = client.post("/ask", json={"question": "hi"}, buffered=False)
    answer_id = response.headers["X-AIStream-Answer-Id"]
    gate.release()
    gate.release()
    first = read_until(response, 3)
    response.close()  # the phone changed networks
    for _ in WORDS:
        gate.release()  # the answer goes on without anyone reading
    assert app.finished.get(timeout=10).finish_reason == "stop"  # whole, not cancelled
    seen = events(first)
    again = client.post("/ask", json={"question": "hi"}, headers={"Last-Event-ID": seen[-1].id})
    assert again.status_code == 200
    rest = events(again.data)
    assert [e.id for e in seen + rest] == [
        f"{answer_id}:{n}" for n in range(1, len(seen + rest) + 1)
    ]
    assert text_of(seen + rest) == "".join(WORDS)
    assert rest[-1].data == "[DONE]"
    assert len(fake.requests) == 1  # the provider was asked once


def test_resume_route_replays_from_any_point(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    client = resumable().test_client()
    first = client.post("/api/chat/stream", json={"question": "hi"})
    answer_id = first.headers["X-AIStream-Answer-Id"]
    whole = client.get(f"/api/chat/stream/{answer_id}")
    assert whole.status_code == 200 and whole.data == first.data
    assert whole.headers["X-AIStream-Answer-Id"] == answer_id
    tail = client.get(f"/api/chat/stream/{answer_id}?after=4")
    assert [e.id for e in events(tail.data)] == [e.id for e in events(first.data)[4:]]
    # An EventSource reconnecting to the resume route sends Last-Event-ID.
    last_two = client.get(
        f"/api/chat/stream/{answer_id}", headers={"Last-Event-ID": f"{answer_id}:7"}
    )
    assert [e.id for e in events(last_two.data)] == [e.id for e in events(first.data)[7:]]
    assert client.get(f"/api/chat/stream/{answer_id}?after=x").status_code == 400
    assert len(fake.requests) == 1


@pytest.mark.parametrize("after", ["\u00b2", "\u2460", "-1", "1e3", "1234567890"])
def test_a_sequence_that_is_not_ascii_digits_is_a_400(resumable, fake, after):
    """'²'.isdigit() is true but int('²') raises: it was a 500 with a traceback."""
    client = resumable().test_client()
    response = client.get("/api/chat/stream/ans-" + "0" * 32, query_string={"after": after})
    assert response.status_code == 400
    assert response.json == {"error": "'after' must be an event's sequence number."}


def test_nothing_left_is_204_and_asks_nobody(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    client = resumable().test_client()
    first = client.post("/api/chat/stream", json={"question": "hi"})
    last_id = events(first.data)[-1].id
    answer_id = first.headers["X-AIStream-Answer-Id"]
    for response in (
        client.get("/api/chat/stream?question=hi", headers={"Last-Event-ID": last_id}),
        client.post("/ask", json={"question": "hi"}, headers={"Last-Event-ID": last_id}),
        client.get(f"/api/chat/stream/{answer_id}?after=99"),
        client.get(f"/api/chat/stream/ans-{'0' * 32}"),  # never existed
        client.get("/api/chat/stream/not-an-id"),
    ):
        assert response.status_code == 204, response.data
        assert response.data == b""
    assert len(fake.requests) == 1


def test_an_expired_answer_is_204(resumable, fake, monkeypatch):
    fake.reply = Reply(parts=openai_events(WORDS))
    app = resumable(AI_RESUME_TTL=1)
    client = app.test_client()
    first = client.post("/ask", json={"question": "hi"})
    answer_id = first.headers["X-AIStream-Answer-Id"]
    assert client.get(f"/api/chat/stream/{answer_id}").status_code == 200
    import flask_aistream.resume.store as resume

    clock = resume.time.monotonic
    monkeypatch.setattr(resume.time, "monotonic", lambda: clock() + 2)
    assert client.get(f"/api/chat/stream/{answer_id}").status_code == 204


def test_a_last_event_id_not_ours_is_a_new_question(resumable, fake):
    fake.reply = Reply(parts=openai_events(["a"]))
    client = resumable().test_client()
    for foreign in ("42", "ans-123:4", f"ans-{'0' * 32}:0", "x" * 500):
        response = client.post("/ask", json={"question": "hi"}, headers={"Last-Event-ID": foreign})
        assert response.status_code == 200
        assert text_of(events(response.data)) == "a"
    assert len(fake.requests) == 4


def test_another_users_answer_is_403(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    client = resumable().test_client()
    first = client.post("/api/chat/stream", json={"question": "hi"}, headers={"X-User": "alice"})
    answer_id = first.headers["X-AIStream-Answer-Id"]
    last = events(first.data)[2].id
    for user in ("bob", None):
        headers = {"X-User": user} if user else {}
        assert client.get(f"/api/chat/stream/{answer_id}", headers=headers).status_code == 403
        with_id = client.post(
            "/ask", json={"question": "hi"}, headers={**headers, "Last-Event-ID": last}
        )
        assert with_id.status_code == 403
        assert "someone else" in with_id.get_json()["error"]
    mine = client.get(f"/api/chat/stream/{answer_id}", headers={"X-User": "alice"})
    assert mine.status_code == 200 and mine.data == first.data
    # Over, and read to its end: still someone else's (it was a 204 for anyone).
    after = len(events(first.data))
    bob = {"X-User": "bob"}
    assert client.get(f"/api/chat/stream/{answer_id}?after={after}", headers=bob).status_code == 403
    assert client.post(f"/api/chat/stream/{answer_id}/cancel", headers=bob).status_code == 403
    alice = {"X-User": "alice"}
    assert (
        client.get(f"/api/chat/stream/{answer_id}?after={after}", headers=alice).status_code == 204
    )
    assert client.post(f"/api/chat/stream/{answer_id}/cancel", headers=alice).status_code == 204


def test_authorize_runs_on_resume_and_cancel(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    app = resumable()
    ai = app.extensions["ai"]
    app.register_blueprint(
        ai.blueprint(name="locked", authorize=lambda req: req.headers.get("X-Key") == "k"),
        url_prefix="/locked",
    )
    client = app.test_client()
    answer_id = client.post("/ask", json={"question": "hi"}).headers["X-AIStream-Answer-Id"]
    assert client.get(f"/locked/stream/{answer_id}").status_code == 403
    assert client.post(f"/locked/stream/{answer_id}/cancel").status_code == 403
    assert client.get("/locked/chat-1/stream").status_code == 403
    assert client.get(f"/locked/stream/{answer_id}", headers={"X-Key": "k"}).status_code == 200


def test_cancel_stops_the_answer_for_everyone(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS), delay=0.2)
    app = resumable()
    client = app.test_client()
    response = client.post("/api/chat/stream", json={"question": "hi"}, buffered=False)
    answer_id = response.headers["X-AIStream-Answer-Id"]
    seen = read_until(response, 2)
    cancelled = client.post(f"/api/chat/stream/{answer_id}/cancel")
    assert cancelled.status_code == 202
    assert fake.wait_for_hangup(fake.last) is not None  # the provider was hung up on
    rest = b"".join(response.response)
    response.close()  # as a server does: the hooks run now
    evs = events(seen + rest)
    assert evs[-1].data == "[DONE]" and text_of(evs).startswith("w0 w1 ")
    assert fake.last.parts_sent < len(WORDS)
    assert app.finished.get(timeout=10).finish_reason == "cancelled"
    resumed = client.get(f"/api/chat/stream/{answer_id}")
    assert resumed.data == seen + rest  # a resumer sees the same end
    assert client.post(f"/api/chat/stream/{answer_id}/cancel").status_code == 204
    assert client.post(f"/api/chat/stream/ans-{'1' * 32}/cancel").status_code == 204


def test_cancel_of_someone_elses_answer_is_403(resumable, fake):
    reply, gate = gated_reply()
    fake.reply = reply
    app = resumable()
    client = app.test_client()
    response = client.post(
        "/api/chat/stream", json={"question": "hi"}, headers={"X-User": "a"}, buffered=False
    )
    answer_id = response.headers["X-AIStream-Answer-Id"]
    read_until(response, 1)
    assert client.post(f"/api/chat/stream/{answer_id}/cancel").status_code == 403
    assert app.extensions["ai"].cancel(answer_id, owner="a") is True
    response.close()
    assert app.finished.get(timeout=10).finish_reason == "cancelled"


def test_a_dead_producer_is_reported_interrupted_once(resumable):
    """The store holds an answer whose producer stopped renewing its lease
    (its process died): readers get the error and [DONE], every one the same."""
    app = resumable()
    store = app.extensions["ai"].resume_store
    answer_id = "ans-" + "a" * 32
    store.begin(answer_id, "", "aistream", None)
    numbering = Numbering(answer_id)
    store.append(answer_id, numbering.number(b'data: {"content": "half"}\n\n'), None)
    store.expire_lease(answer_id)
    client = app.test_client()
    first = client.get(f"/api/chat/stream/{answer_id}")
    evs = events(first.data)
    assert [json.loads(e.data) for e in evs[:-1]] == [{"content": "half"}, {"error": INTERRUPTED}]
    assert evs[-1].data == "[DONE]" and evs[-1].id == f"{answer_id}:3"
    assert client.get(f"/api/chat/stream/{answer_id}").data == first.data
    done = client.get(f"/api/chat/stream/{answer_id}", headers={"Last-Event-ID": evs[-1].id})
    assert done.status_code == 204


def test_resumes_do_not_count_against_the_rate_limit(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    client = resumable(AI_RATELIMIT="1 per minute").test_client()
    first = client.get("/api/chat/stream?question=hi")
    assert first.status_code == 200
    answer_id = first.headers["X-AIStream-Answer-Id"]
    middle = events(first.data)[3].id
    for _ in range(3):  # each read to its end and closed, as a server does
        with client.get("/api/chat/stream?question=hi", headers={"Last-Event-ID": middle}) as again:
            assert again.status_code == 200
        with client.get(f"/api/chat/stream/{answer_id}") as whole:
            assert whole.status_code == 200
    assert client.get("/api/chat/stream?question=hi").status_code == 429  # a new question is one


def test_vercel_start_carries_the_answer_id_and_the_chat_resumes(resumable, fake):
    reply, gate = gated_reply()
    fake.reply = reply
    app = resumable(AI_STREAM_FORMAT="vercel")
    client = app.test_client()
    body = {
        "id": "chat-1",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    ann = {"X-User": "ann"}
    response = client.post("/api/chat/stream", json=body, headers=ann, buffered=False)
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    answer_id = response.headers["X-AIStream-Answer-Id"]
    seen = read_until(response, 1)
    start = json.loads(events(seen)[0].data)
    assert start == {"type": "start", "messageId": answer_id}
    response.close()
    # Without a user, a chat id (the browser's choice) finds nothing: it
    # would let anyone read another's answer.
    assert client.get("/api/chat/chat-1/stream").status_code == 204
    # useChat({resume: true}) on a reloaded page: the answer from its start.
    resumed = client.get("/api/chat/chat-1/stream", headers=ann, buffered=False)
    assert resumed.status_code == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    for _ in WORDS:
        gate.release()
    replay = events(b"".join(resumed.response))
    assert replay[0].id == f"{answer_id}:1"
    deltas = [json.loads(e.data) for e in replay if e.data != "[DONE]"]
    assert "".join(d["delta"] for d in deltas if d["type"] == "text-delta") == "".join(WORDS)
    assert replay[-1].data == "[DONE]"
    app.finished.get(timeout=10)
    assert client.get("/api/chat/chat-1/stream", headers=ann).status_code == 204  # it ended
    assert client.get("/api/chat/chat-2/stream", headers=ann).status_code == 204  # never was
    other_user = client.get("/api/chat/chat-1/stream", headers={"X-User": "x"})
    assert other_user.status_code == 204  # chats are per owner


def test_an_anonymous_chat_id_neither_reads_nor_replaces_an_answer(resumable, fake):
    """D8: without an owner, a chat id let anyone read another's live answer,
    and re-point the chat at their own, which the victim's reload resumed."""
    reply, gate = gated_reply()
    fake.reply = reply
    app = resumable(AI_STREAM_FORMAT="vercel")
    client = app.test_client()
    body = {
        "id": "chat-1",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    victim = client.post("/api/chat/stream", json=body, buffered=False)
    read_until(victim, 1)
    assert client.get("/api/chat/chat-1/stream", buffered=False).status_code == 204
    for _ in WORDS:
        gate.release()
    victim.close()


def test_a_blueprint_without_owner_warns_with_resume_on(make_app, log_records):
    app = make_app(AI_RESUME_STORAGE_URI="memory://")
    app.register_blueprint(app.extensions["ai"].blueprint(format="vercel"), url_prefix="/chat")
    assert any("has no owner=" in r.getMessage() for r in log_records.records)


def test_unreachable_store_streams_without_resume_and_warns(resumable, fake, log_records):
    from helpers import free_port

    fake.reply = Reply(parts=openai_events(WORDS))
    app = resumable(AI_RESUME_STORAGE_URI=f"redis://127.0.0.1:{free_port()}")
    client = app.test_client()
    for _ in range(3):
        response = client.post("/ask", json={"question": "hi"})
        assert response.status_code == 200
        assert "X-AIStream-Answer-Id" not in response.headers
        evs = events(response.data)
        assert text_of(evs) == "".join(WORDS) and evs[-1].data == "[DONE]"
        assert not any(e.id.startswith("ans-") for e in evs)
    warnings = [
        r for r in log_records.records if r.levelno == logging.WARNING and "resume" in r.message
    ]
    assert len(warnings) == 1 and "without resume" in warnings[0].message  # one per outage
    resumed = client.get(f"/api/chat/stream/ans-{'2' * 32}")
    assert resumed.status_code == 503 and resumed.get_json() == {
        "error": "the answer cannot be resumed right now"
    }


@pytest.mark.parametrize("uri", ["mysql://x", "redis", "memory"])
def test_a_wrong_storage_uri_fails_at_init(make_app, uri):
    with pytest.raises(ConfigurationError, match="AI_RESUME_STORAGE_URI"):
        make_app(AI_RESUME_STORAGE_URI=uri)


def test_numbering_splits_and_numbers_every_event():
    answer_id = "ans-" + "b" * 32
    numbering = Numbering(answer_id)
    first = numbering.number(b'data: {"a": 1}\n\ndata: {"b": 2}\n\n')
    assert (first.first, first.size, first.last) == (1, 2, False)
    assert first.data.startswith(b"retry: 1000\nid: ans-")
    assert [e.seq for e in first.entries()] == [1, 2]
    end = numbering.number(b'data: {"error": "x"}\n\nid: flask-aistream:done\n\ndata: [DONE]\n\n')
    assert end.entries() == [
        Entry(3, f"id: {answer_id}:3\n".encode() + b'data: {"error": "x"}\n\n', False),
        Entry(4, f"id: {answer_id}:4\n".encode() + b"data: [DONE]\n\n", True),
    ]


def test_a_page_of_another_origin_can_read_the_answer_id(resumable, fake):
    fake.reply = Reply(parts=openai_events(WORDS))
    client = resumable(AI_CORS_ORIGINS=["https://app.example"]).test_client()
    response = client.post(
        "/api/chat/stream", json={"question": "hi"}, headers={"Origin": "https://app.example"}
    )
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    exposed = response.headers["Access-Control-Expose-Headers"].lower()
    assert "x-aistream-answer-id" in exposed


def test_a_follower_hears_heartbeats_while_the_provider_is_silent(resumable, fake):
    reply, gate = gated_reply(["a ", "b "])
    fake.reply = reply
    app = resumable(AI_HEARTBEAT_INTERVAL=0.1)
    client = app.test_client()
    live = client.post("/ask", json={"question": "hi"}, buffered=False)
    answer_id = live.headers["X-AIStream-Answer-Id"]
    read_until(live, 1)
    follower = client.get(f"/api/chat/stream/{answer_id}", buffered=False)
    chunks = iter(follower.response)
    body = b""
    while b": ping" not in body:  # the provider says nothing: pings keep the line open
        body += next(chunks)
    gate.release()
    gate.release()
    body += b"".join(chunks)
    assert text_of(events(body)) == "a b " and events(body)[-1].data == "[DONE]"
    live.close()


def test_the_extension_object_resumes_and_cancels_for_the_current_app(make_app, fake):
    """``ai = AIStream(app)`` offers resume() and cancel() like the client."""
    from flask_aistream import AIStream

    fake.reply = Reply(parts=openai_events(WORDS), delay=0.2)
    app = make_app(AI_RESUME_STORAGE_URI="memory://", AI_MAX_RETRIES=0)
    ai = AIStream()
    finished = queue.Queue()

    @app.post("/go")
    def go():
        return ai.ask_stream("hi", on_finish=finished.put)

    @app.get("/again/<answer_id>")
    def again(answer_id):
        return ai.resume(answer_id, int(request.args["after"]))

    @app.post("/stop/<answer_id>")
    def stop(answer_id):
        return {"cancelled": ai.cancel(answer_id)}

    client = app.test_client()
    live = client.post("/go", buffered=False)
    answer_id = live.headers["X-AIStream-Answer-Id"]
    seen = read_until(live, 1)
    assert client.post(f"/stop/{answer_id}").get_json() == {"cancelled": True}
    rest = b"".join(live.response)  # [DONE] after what was sent
    live.close()
    assert finished.get(timeout=10).finish_reason == "cancelled"
    assert client.get(f"/again/{answer_id}?after=0").data == seen + rest
    assert client.post(f"/stop/{answer_id}").get_json() == {"cancelled": False}


# --- the second review: readers that hang, stall or outlive their limits ----------


def test_a_reader_ahead_of_the_store_gets_the_interruption_at_once():
    """D1: the producer died within its 50 ms write window, so its client saw
    events 1..8 the store never got past 5; reconnecting with ``after=8`` it
    waited silently until the answer expired, ten minutes later."""
    from flask_aistream.resume import MemoryStore, follow

    store = MemoryStore(ttl=600)
    answer_id = "ans-" + "a" * 32
    store.begin(answer_id, "", "aistream", None)
    stored = Numbering(answer_id).number(b'data: {"content": "x"}\n\n' * 5)
    store.append_many([(answer_id, stored, None)])
    store._answers[answer_id].lease_until = 0  # the producer is gone
    ahead = events(b"".join(follow(store, answer_id, 8, "aistream", 0, logging.getLogger())))
    assert [(e.id, e.data) for e in ahead] == [
        (f"{answer_id}:9", json.dumps({"error": INTERRUPTED})),
        (f"{answer_id}:10", "[DONE]"),
    ]
    # One that saw what was stored is told the same, after the stored rest.
    behind = events(b"".join(follow(store, answer_id, 3, "aistream", 0, logging.getLogger())))
    assert [e.id.rsplit(":", 1)[1] for e in behind] == ["4", "5", "6", "7"]
    assert behind[-2].data == json.dumps({"error": INTERRUPTED})


@pytest.mark.system
def test_a_stalled_client_does_not_cancel_a_resumable_answer(resumable, fake, live):
    """D6: the send timeout cancelled the answer for everyone when its live
    client stalled (a phone in a tunnel), the case resume exists for: the
    resumer got it cut short, ending in [DONE] as if complete."""
    from helpers import address_of, raw_request

    words = [f"word{i:05d} " for i in range(20000)]
    fake.reply = Reply(parts=openai_events(words), delay=0.0001)
    app = resumable(AI_SEND_TIMEOUT=1)
    sock = raw_request(address_of(live(app)), "/ask", receive_buffer=4096)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # the head only: then the client reads nothing
    answer_id = head.split(b"X-AIStream-Answer-Id: ")[1].split(b"\r\n")[0].decode()
    answer = app.finished.get(timeout=60)  # the answer ran to its end without its client
    sock.close()
    assert answer.finish_reason == "stop" and answer.text == "".join(words)
    assert fake.last.parts_sent >= len(words)  # the provider was not cut short
    whole = app.test_client().get(f"/api/chat/stream/{answer_id}")
    assert text_of(events(whole.data)) == "".join(words)


@pytest.mark.system
def test_a_resumed_reader_that_reads_nothing_is_hung_up_on(resumable, fake, live):
    """D4: resumed streams had no send timeout and no watchdog: a reader
    that read nothing kept its thread and megabytes queued for ever."""
    from helpers import address_of, raw_request

    words = [f"word{i:05d} " for i in range(40000)]
    fake.reply = Reply(parts=openai_events(words))
    app = resumable(AI_SEND_TIMEOUT=1)
    client = app.test_client()
    answer_id = client.post("/ask", json={"question": "hi"}).headers["X-AIStream-Answer-Id"]
    app.finished.get(timeout=30)
    sock = raw_request(
        address_of(live(app)), f"/api/chat/stream/{answer_id}", method="GET", receive_buffer=4096
    )
    stalled = threading.Event()
    stalled.wait(3)  # three send timeouts of reading nothing
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert b"data: [DONE]" not in received  # cut, not delivered: the server let it go
    assert words[-1].encode() not in received


def test_readers_count_as_streams_and_an_answer_has_few(resumable, fake):
    """D5: the resume routes were outside every per-client limit: one
    question and four readers took every thread of a --threads 4 worker."""
    reply, gate = gated_reply()
    fake.reply = reply
    client = resumable(AI_MAX_STREAMS_PER_CLIENT=2).test_client()
    live = client.get("/api/chat/stream?question=hi", buffered=False)
    answer_id = live.headers["X-AIStream-Answer-Id"]
    route = f"/api/chat/stream/{answer_id}"
    first = client.get(route, buffered=False)
    assert first.status_code == 200  # the live stream and one reader: two
    second = client.get(route, buffered=False)
    assert second.status_code == 429 and "at once" in second.get_json()["error"]
    first.close()
    for _ in WORDS:
        gate.release()
    live.close()


def test_one_answer_has_at_most_three_readers(resumable, fake):
    reply, gate = gated_reply()
    fake.reply = reply
    client = resumable().test_client()
    live = client.get("/api/chat/stream?question=hi", buffered=False)
    route = f"/api/chat/stream/{live.headers['X-AIStream-Answer-Id']}"
    readers = [client.get(route, buffered=False) for _ in range(3)]
    assert [r.status_code for r in readers] == [200, 200, 200]
    fourth = client.get(route, buffered=False)
    assert fourth.status_code == 429
    readers.pop().close()  # one leaves: room for another
    again = client.get(route, buffered=False)
    assert again.status_code == 200
    for response in [*readers, again]:
        response.close()
    for _ in WORDS:
        gate.release()
    live.close()


def test_a_resume_mid_step_two_replays_the_tool_result_and_runs_nothing_again(resumable, fake):
    """Tools run once, in the producer: a reader that comes back during step 2
    gets step 1's call and result from the store."""
    from test_tool_loop import calls_step

    from flask_aistream import tool

    runs = []

    @tool
    def lookup(order: str) -> dict:
        """Looks an order up."""
        runs.append(order)
        return {"order": order, "status": "shipped"}

    step2, gate = gated_reply()
    fake.replies = [calls_step("openai", [("call_1", "lookup", {"order": "A1"})]), step2]
    app = resumable()

    @app.post("/tools")
    def tools():
        return app.extensions["ai"].ask_stream(
            "Where is A1?",
            tools=[lookup],
            on_finish=app.finished.put,
            events=["tool_calls", "tool_results"],
        )

    client = app.test_client()
    response = client.post("/tools", buffered=False)
    gate.release()
    first = read_until(response, 4)  # call, result, w0 (the first event says retry too)
    response.close()
    for _ in WORDS:
        gate.release()
    answer = app.finished.get(timeout=10)
    assert answer.finish_reason == "stop" and len(answer.steps) == 2
    answer_id = response.headers["X-AIStream-Answer-Id"]
    whole = client.get(f"/api/chat/stream/{answer_id}")
    replay = [json.loads(e.data) for e in events(whole.data) if e.data != "[DONE]"]
    assert replay[0]["tool_call"]["name"] == "lookup"
    assert replay[1] == {
        "tool_result": {
            "id": "call_1",
            "name": "lookup",
            "output": {"order": "A1", "status": "shipped"},
        }
    }
    assert "".join(e.get("content", "") for e in replay) == "".join(WORDS)
    assert events(first)[0].data == events(whole.data)[0].data
    assert runs == ["A1"] and len(fake.requests) == 2  # each step asked once, the tool run once


def test_a_resume_replays_the_data_a_tool_sent(resumable, fake):
    from test_tool_loop import calls_step

    from flask_aistream import send_data, tool

    @tool
    def search(query: str) -> str:
        """Searches."""
        send_data("sources", ["a", "b"], id="src")
        return "found"

    fake.replies = [
        calls_step("openai", [("call_1", "search", {"query": "q"})]),
        Reply(parts=openai_events(["Done."])),
    ]
    app = resumable()

    @app.post("/data")
    def data():
        return app.extensions["ai"].ask_stream("Find", tools=[search], events=["data"])

    client = app.test_client()
    first = client.post("/data")
    replay = client.get(f"/api/chat/stream/{first.headers['X-AIStream-Answer-Id']}")
    assert replay.data == first.data
    assert {"data": {"name": "sources", "id": "src", "value": ["a", "b"]}} in [
        json.loads(e.data) for e in events(replay.data) if e.data != "[DONE]"
    ]
    assert len(fake.requests) == 2
