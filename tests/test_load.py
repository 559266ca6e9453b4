"""Under a real gunicorn (gthread and gevent workers): 100 concurrent streams
all arrive whole; 100 clients that leave mid-answer make the provider see 100
hang-ups, no reader of ours is left, and the worker's sockets and memory return
to baseline."""

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from fakeprovider import Reply, openai_events
from helpers import gunicorn_server, raw_request

pytestmark = pytest.mark.system

CLIENTS = 100
ROOT = Path(__file__).resolve().parent.parent


def proc_status(pid):
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "threads": int(fields["Threads"]),
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


@pytest.fixture(params=["gthread", "gevent"])
def gunicorn(request, fake):
    with gunicorn_server(request.param, fake) as (address, worker_pid):
        yield request.param, address, worker_pid


def open_stream(address, question="hi"):
    return raw_request(address, question=question)


def read_all(sock):
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def text_of(raw):
    body = raw.split(b"\r\n\r\n", 1)[1]
    return "".join(
        json.loads(line[6:])["content"]
        for line in body.split(b"\n")
        if line.startswith(b'data: {"content"')
    )


def live_readers(address, settle=5.0):
    """Our readers still alive in the worker, once they had ``settle`` s to end."""
    deadline = time.monotonic() + settle
    while True:
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"GET /readers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
        sock.close()
        alive = json.loads(raw.split(b"\r\n\r\n", 1)[1])["alive"]
        if alive == 0 or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def run_concurrently(target, count):
    results = [None] * count
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, target(i))) for i in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_streams_and_disconnects(gunicorn, fake):
    worker, address, worker_pid = gunicorn
    words = [f"w{i} " for i in range(20)]
    fake.reply = Reply(parts=openai_events(words), delay=0.02)

    started = time.monotonic()
    results = run_concurrently(lambda i: text_of(read_all(open_stream(address))), CLIENTS)
    took = time.monotonic() - started
    assert results == ["".join(words)] * CLIENTS
    time.sleep(0.5)
    baseline = proc_status(worker_pid)

    fake.requests.clear()
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(2000)]), delay=0.02, hold=True)

    def leave_mid_answer(i):
        sock = open_stream(address)
        received = b""
        while received.count(b'"content"') < 2:
            received += sock.recv(65536)
        sock.close()
        return time.monotonic()

    left = run_concurrently(leave_mid_answer, CLIENTS)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(fake.requests) == CLIENTS and all(s.hung_up_at for s in fake.requests):
            break
        time.sleep(0.05)
    hung_up = [s.hung_up_at for s in fake.requests if s.hung_up_at]
    assert len(hung_up) == CLIENTS, f"only {len(hung_up)} of {CLIENTS} upstreams were closed"
    worst = max(hung_up) - max(left)
    time.sleep(1.0)
    after = proc_status(worker_pid)
    print(
        f"\n{worker}: {CLIENTS} streams in {took:.2f} s; {CLIENTS} disconnects -> last upstream "
        f"closed {worst * 1000:.0f} ms after the last client left; worker before {baseline}, after {after}"
    )
    # No reader of ours is left (the worker's own thread pool may grow under
    # load: its size says nothing about a leak).
    assert live_readers(address) == 0
    assert after["fds"] <= baseline["fds"] + 2
    assert after["rss_kb"] <= baseline["rss_kb"] + 10_000


def test_client_leaving_during_silence_is_seen_at_once(gunicorn, fake):
    """gunicorn shares the client socket: its closing is noticed while the
    provider is silent, long before the next heartbeat (0.5 s here)."""
    worker, address, _ = gunicorn
    fake.reply = Reply(parts=openai_events(["first "], finish=False), hold=True)
    took = []
    for _ in range(5):
        sock = open_stream(address)
        received = b""
        while b"first" not in received:
            received += sock.recv(65536)
        time.sleep(0.05)
        sock.close()
        left_at = time.monotonic()
        hung_up_at = fake.wait_for_hangup(fake.last, timeout=5)
        assert hung_up_at is not None
        took.append(hung_up_at - left_at)
    print(
        f"\n{worker}: client left during silence -> upstream closed after "
        f"{', '.join(f'{t * 1000:.1f}' for t in took)} ms"
    )
    assert max(took) < 0.25
