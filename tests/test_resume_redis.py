"""Resumable answers across processes: real gunicorn workers (gthread and
gevent) sharing a real redis-server, real clients (requests, headless
Chromium's EventSource, the ai package's resume), a worker killed -9, Redis
stopped under a live answer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from fakeprovider import Reply, openai_events
from flask_aistream.providers.sse import SSEDecoder
from flask_aistream.resume import INTERRUPTED, UNAVAILABLE
from helpers import gunicorn_server

WORDS = [f"w{i} " for i in range(10)]
JS = Path(__file__).parent / "js"


class Stream:
    """An SSE response read as it arrives, which the test may drop."""

    def __init__(self, method, url, last_id=None, headers=None, **kwargs):
        headers = {**(headers or {}), **({"Last-Event-ID": last_id} if last_id else {})}
        self.response = requests.request(
            method, url, headers=headers, stream=True, timeout=30, **kwargs
        )
        self.answer_id = self.response.headers.get("X-AIStream-Answer-Id")
        self._decoder = SSEDecoder()
        self._chunks = self.response.iter_content(None)
        self.events = []

    def until(self, done):
        while not done(self.events):
            self.events += self._decoder.feed(next(self._chunks))
        return self.events

    def count(self, n):
        return self.until(lambda evs: len(evs) >= n)

    def to_end(self):
        return self.until(lambda evs: evs and evs[-1].data == "[DONE]")

    def drop(self):
        self.response.close()


def text_of(events) -> str:
    return "".join(json.loads(e.data).get("content", "") for e in events if e.data != "[DONE]")


def gated(words=WORDS):
    gate = threading.Semaphore(0)
    return Reply(parts=openai_events(words), gate=gate), gate


def release(gate, n):
    for _ in range(n):
        gate.release()


def numbered(answer_id, events):
    return [e.id for e in events] == [f"{answer_id}:{n}" for n in range(1, len(events) + 1)]


def answers_in(path: Path, count: int, timeout: float = 20) -> list[dict]:
    """The hooks' records once ``count`` answers ended (written by the workers)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


@pytest.fixture
def pair(fake, redis_server, tmp_path):
    """Two gunicorn instances sharing one Redis: A (gthread) and B (gevent)."""
    answers = tmp_path / "answers.jsonl"
    env = dict(AI_RESUME_STORAGE_URI=redis_server.url, ANSWERS_FILE=str(answers))
    with ExitStack() as stack:
        a, pid_a = stack.enter_context(gunicorn_server("gthread", fake, **env))
        b, pid_b = stack.enter_context(gunicorn_server("gevent", fake, **env))
        yield {
            "a": f"http://{a[0]}:{a[1]}",
            "b": f"http://{b[0]}:{b[1]}",
            "address_a": a,
            "address_b": b,
            "pid_a": pid_a,
            "answers": answers,
            "redis": redis_server,
        }


def test_an_answer_begun_on_one_host_ends_on_another(pair, fake):
    reply, gate = gated()
    fake.reply = reply
    live = Stream("POST", pair["a"] + "/chat", json={"question": "hi"})
    answer_id = live.answer_id
    release(gate, 2)
    seen = live.count(3)
    live.drop()  # the phone changed networks
    release(gate, 3)  # the answer goes on meanwhile
    resumed = Stream("POST", pair["b"] + "/chat", last_id=seen[-1].id, json={"question": "hi"})
    assert resumed.answer_id == answer_id
    resumed.count(1)
    release(gate, len(WORDS))
    rest = resumed.to_end()
    assert numbered(answer_id, seen + rest)  # none lost, none twice
    assert text_of(seen + rest) == "".join(WORDS)
    assert answers_in(pair["answers"], 1) == [{"text": "".join(WORDS), "finish_reason": "stop"}]
    # After [DONE], a reconnect (to either host) gets 204 and asks nobody.
    for host in ("a", "b"):
        again = requests.post(
            pair[host] + "/chat",
            json={"question": "hi"},
            headers={"Last-Event-ID": rest[-1].id},
            timeout=10,
        )
        assert again.status_code == 204
    assert len(fake.requests) == 1


def test_owners_and_expiry_in_redis(fake, redis_server):
    env = {"AI_RESUME_STORAGE_URI": redis_server.url, "AI_RESUME_TTL": "1"}
    with gunicorn_server("gthread", fake, **env) as (address, _):
        base = f"http://{address[0]}:{address[1]}"
        fake.reply = Reply(parts=openai_events(WORDS))
        first = Stream("POST", base + "/chat", json={"question": "hi"}, headers={"X-User": "ann"})
        events = first.to_end()
        route = f"{base}/api/chat/stream/{first.answer_id}"
        for user, status in (("bob", 403), (None, 403), ("ann", 200)):
            headers = {"X-User": user} if user else {}
            assert requests.get(route, headers=headers, timeout=10).status_code == status
            again = requests.post(
                base + "/chat",
                json={"question": "hi"},
                headers={**headers, "Last-Event-ID": events[2].id},
                timeout=10,
            )
            assert again.status_code == status
        cancel = requests.post(route + "/cancel", headers={"X-User": "bob"}, timeout=10)
        assert cancel.status_code == 403  # someone else's, over or not
        deadline = time.monotonic() + 10
        while requests.get(route, headers={"X-User": "ann"}, timeout=10).status_code != 204:
            assert time.monotonic() < deadline, "the answer never expired"
            time.sleep(0.2)
        assert len(fake.requests) == 1


def test_a_killed_producer_is_reported_interrupted(pair, fake):
    reply, gate = gated()
    fake.reply = reply
    live = Stream("POST", pair["a"] + "/api/chat/stream", json={"question": "hi"})
    release(gate, 1)
    live.count(2)
    follower = Stream("GET", f"{pair['b']}/api/chat/stream/{live.answer_id}")
    follower.count(2)
    os.kill(pair["pid_a"], signal.SIGKILL)  # OOM, a deploy...
    events = follower.to_end()  # never a hang: the lease runs out
    assert json.loads(events[-2].data) == {"error": INTERRUPTED}
    assert text_of(events[:-2]) == "w0 w1 "
    assert numbered(live.answer_id, events)
    release(gate, len(WORDS))  # let the provider's thread go


def test_cancel_from_another_host_hangs_up_on_the_provider(pair, fake):
    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(100)]), delay=0.1)
    live = Stream("POST", pair["a"] + "/api/chat/stream", json={"question": "hi"})
    live.count(2)
    cancel = requests.post(f"{pair['b']}/api/chat/stream/{live.answer_id}/cancel", timeout=10)
    assert cancel.status_code == 202
    assert fake.wait_for_hangup(fake.last, timeout=10) is not None
    events = live.to_end()
    assert events[-1].data == "[DONE]" and not any("error" in e.data for e in events)
    assert fake.last.parts_sent < 100
    assert answers_in(pair["answers"], 1)[0]["finish_reason"] == "cancelled"
    again = requests.post(f"{pair['b']}/api/chat/stream/{live.answer_id}/cancel", timeout=10)
    assert again.status_code == 204  # already over


def test_redis_down_before_and_during_an_answer(fake, redis_server, tmp_path):
    with gunicorn_server("gthread", fake, AI_RESUME_STORAGE_URI=redis_server.url) as (address, _):
        base = f"http://{address[0]}:{address[1]}"
        redis_server.stop()
        fake.reply = Reply(parts=openai_events(WORDS))
        plain = Stream("POST", base + "/chat", json={"question": "hi"})
        events = plain.to_end()  # fails open: the answer streams without resume
        assert plain.answer_id is None and text_of(events) == "".join(WORDS)
        assert not any(e.id.startswith("ans-") for e in events)

        redis_server.start()
        deadline = time.monotonic() + 15  # resume is tried again a moment after a failure
        while Stream("POST", base + "/chat", json={"question": "hi"}).answer_id is None:
            assert time.monotonic() < deadline, "resume never came back with Redis"
            time.sleep(0.2)
        reply, gate = gated()
        fake.reply = reply
        live = Stream("POST", base + "/chat", json={"question": "hi"})
        assert live.answer_id is not None
        release(gate, 1)
        live.count(2)
        follower = Stream("GET", f"{base}/api/chat/stream/{live.answer_id}")
        follower.count(2)
        redis_server.stop()
        release(gate, len(WORDS))
        assert text_of(live.to_end()) == "".join(WORDS)  # the live client keeps its answer
        ended = follower.to_end()
        assert json.loads(ended[-2].data) == {"error": UNAVAILABLE}  # resumers are told
        late = requests.get(f"{base}/api/chat/stream/{live.answer_id}", timeout=10)
        assert late.status_code == 503 and late.json() == {"error": UNAVAILABLE}


def test_a_hundred_answers_each_resumed_once(pair, fake):
    words = [f"t{i} " for i in range(20)]
    fake.reply = Reply(parts=openai_events(words), delay=0.05)
    failures = []

    def one(index):
        try:
            first, second = (pair["a"], pair["b"]) if index % 2 else (pair["b"], pair["a"])
            live = Stream("POST", first + "/chat", json={"question": "hi"})
            seen = live.count(1 + index % 7)
            live.drop()
            rest = Stream("POST", second + "/chat", last_id=seen[-1].id, json={"question": "x"})
            events = seen + rest.to_end()
            assert numbered(live.answer_id, events), [e.id for e in events]
            assert text_of(events) == "".join(words)
        except Exception as exc:  # noqa: BLE001 - reported below, with its index
            failures.append((index, repr(exc)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:5]
    assert len(fake.requests) == 100  # one provider call per answer, none per resume


class Proxy:
    """A TCP proxy on loopback whose connections the test can cut, and
    whose target it can move (the load balancer sends the reconnect elsewhere)."""

    def __init__(self, target):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self._listener.close()
        self.cut()


def test_eventsource_in_chromium_resumes_through_a_cut_connection(pair, fake, page):
    reply, gate = gated()
    fake.reply = reply
    proxy = Proxy(pair["address_a"])
    try:
        page.goto(f"http://127.0.0.1:{proxy.port}/eventsource")
        release(gate, 2)
        page.wait_for_function("document.getElementById('out').textContent === 'w0 w1 w2 '")
        proxy.target = pair["address_b"]
        proxy.cut()  # the network drops; EventSource reconnects, through B
        release(gate, len(WORDS))
        page.wait_for_function("document.title === 'done'", timeout=20_000)
        assert page.text_content("#out") == "".join(WORDS)
        assert len(fake.requests) == 1
    finally:
        proxy.close()


@pytest.mark.parametrize("package", ["ai", "ai5"])
def test_use_chat_resumes_a_chat_on_another_host(pair, fake, package):
    node = shutil.which("node")
    assert node and (JS / "node_modules" / "ai").is_dir(), "run `npm ci --prefix tests/js`"
    reply, gate = gated()
    fake.reply = reply
    chat = f"chat-{package}"
    body = {
        "id": chat,
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    user = {"X-User": "ann"}  # a chat is found by its id for its own user only
    live = Stream("POST", pair["a"] + "/api/vercel/stream", json=body, headers=user)
    live.count(3)
    live.drop()  # the page reloads
    resume = subprocess.Popen(
        [node, str(JS / "use_chat_resume.mjs"), package, pair["b"] + "/api/vercel/stream", chat]
        + ["ann"],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert resume.stderr.readline().strip() == "connected"
        release(gate, len(WORDS))
        out, err = resume.communicate(timeout=60)
    finally:
        resume.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["error"] is None, err
    message = result["message"]
    assert message["id"] == live.answer_id
    text = "".join(p["text"] for p in message["parts"] if p["type"] == "text")
    assert text == "".join(WORDS)
    # Ended: useChat's next reload finds nothing to resume.
    answers_in(pair["answers"], 1)
    gone = requests.get(f"{pair['b']}/api/vercel/stream/{chat}/stream", headers=user, timeout=10)
    assert gone.status_code == 204


def test_a_stream_expires_from_its_first_batch(redis_server):
    """D9: a producer killed in its first half-second (before its lease
    renewal set a TTL) left a Redis stream that never expired."""
    import redis

    from flask_aistream.formats.sse import Numbering
    from flask_aistream.resume import RedisStore

    store = RedisStore(redis_server.url, ttl=30)
    answer_id = "ans-" + "b" * 32
    store.begin(answer_id, "", "aistream", None)
    batch = Numbering(answer_id).number(b'data: {"content": "x"}\n\n' * 3)
    assert store.append_many([(answer_id, batch, None)]) == {}
    # ...and the producer dies here: nothing renews, nothing ends the answer.
    ttl = redis.Redis.from_url(redis_server.url).ttl(f"flask-aistream:{answer_id}:events")
    assert 0 < ttl <= 30


def test_a_hung_redis_is_found_out_by_one_question(make_app, fake, redis_server):
    """D7: with Redis frozen, most answers waited 5 s before their first
    token, each finding out for itself (12 of 12 in the review's run)."""
    fake.reply = Reply(parts=openai_events(["hi"]))
    app = make_app(AI_RESUME_STORAGE_URI=redis_server.url, AI_RATELIMIT=None)
    store = app.extensions["ai"].resume_store
    tries = []
    begin = store.begin
    store.begin = lambda *args: tries.append(args) or begin(*args)
    client = app.test_client()
    assert client.post("/chat", json={"question": "q"}).headers.get("X-AIStream-Answer-Id")
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(5):
            response = client.post("/chat", json={"question": "q"})
            assert response.status_code == 200 and b"hi" in response.data  # streamed anyway
            assert "X-AIStream-Answer-Id" not in response.headers
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert len(tries) == 2  # the first, and one that found the store hung; the rest skipped it


def test_a_reader_that_saw_more_than_was_stored_is_told_at_once(pair, fake):
    """D1: the producer is killed right after its client's last event, so the
    client saw events the store (50 ms behind) never got; reconnecting to
    the other host with that Last-Event-ID it waited, silent, until the
    answer expired. Now it is told the answer was interrupted."""
    import redis

    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(3000)]))
    live = Stream("POST", pair["a"] + "/api/chat/stream", json={"question": "hi"})
    live.count(200)
    os.kill(pair["pid_a"], signal.SIGKILL)  # the client's last event, then nothing
    seen = live.events[-1].id
    stored = redis.Redis.from_url(pair["redis"].url).xrevrange(
        f"flask-aistream:{live.answer_id}:events", count=1
    )
    follower = Stream("POST", pair["b"] + "/api/chat/stream", last_id=seen, json={"question": "x"})
    events = follower.to_end()  # within the lease: never a hang
    assert json.loads(events[-2].data) == {"error": INTERRUPTED}, (seen, stored)
    assert events[-1].data == "[DONE]"
    after = int(seen.rsplit(":", 1)[1])
    first = int(events[0].id.rsplit(":", 1)[1])
    assert first == after + 1 or text_of(events[:-2]), (seen, stored)
