"""The reader thread hands what it read to the response generator, which also
notices the client leaving while the provider is silent: with OS threads
(a socket pair and a selector) and with gevent's greenlets (an event and a
watcher, no system call per token)."""

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from flask_aistream.providers.base import PartStream
from flask_aistream.serving.reader import (
    CLIENT_GONE,
    END,
    MAX_PENDING_READS,
    BackgroundReader,
    SocketWakeup,
)

ROOT = Path(__file__).resolve().parent.parent


class Ticking(PartStream):
    """``count`` deltas ``gap`` seconds apart; remembers being closed."""

    def __init__(self, count, gap=0.01):
        self.count, self.gap, self.closed = count, gap, False

    def __iter__(self):
        for i in range(self.count):
            due = time.monotonic() + self.gap
            while time.monotonic() < due:
                time.sleep(0.005)
                if self.closed:
                    return
            yield [str(i)]

    def close(self):
        self.closed = True


def drain(reader, timeout=5.0):
    items, deadline = [], time.monotonic() + timeout
    while not items or items[-1] not in (END, CLIENT_GONE):
        assert time.monotonic() < deadline, f"stuck after {items}"
        items += reader.wait(0.5)
    return items


# Checks that hold for both kinds of wake-up: run here with OS threads, and
# under gevent in a process of its own (monkey-patching is for good).


def check_every_delta_then_the_end(wakeup_class):
    reader = BackgroundReader(Ticking(5))
    assert isinstance(reader._wakeup, wakeup_class), reader._wakeup
    assert drain(reader) == [["0"], ["1"], ["2"], ["3"], ["4"], END]
    reader.stop()


def check_the_client_leaving_while_the_provider_is_silent():
    server_side, browser = socket.socketpair()
    stream = Ticking(1, gap=30)
    reader = BackgroundReader(stream, client=server_side)
    browser.close()
    started = time.monotonic()
    assert drain(reader) == [CLIENT_GONE]
    assert time.monotonic() - started < 0.5
    reader.stop()
    assert stream.closed
    server_side.close()


def check_a_client_sending_more_is_not_taken_for_gone():
    """Pipelined bytes from a client that stays: the watch stops, nothing spins."""
    server_side, browser = socket.socketpair()
    reader = BackgroundReader(Ticking(3), client=server_side)
    browser.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert drain(reader) == [["0"], ["1"], ["2"], END]
    assert reader._client is None
    reader.stop()
    server_side.close()


def test_threads_hand_over_every_delta_then_the_end():
    check_every_delta_then_the_end(SocketWakeup)


def test_threads_see_the_client_leave_while_the_provider_is_silent():
    check_the_client_leaving_while_the_provider_is_silent()


def test_threads_keep_a_client_that_sends_more():
    check_a_client_sending_more_is_not_taken_for_gone()


def test_a_reader_ahead_of_a_slow_client_waits_instead_of_piling_up():
    stream = Ticking(1000, gap=0)
    reader = BackgroundReader(stream)
    time.sleep(0.2)  # nobody reads: the reader must stop at the bound
    assert len(reader._items) == MAX_PENDING_READS
    first = reader.wait(0)
    assert first == [[str(i)] for i in range(MAX_PENDING_READS)]
    time.sleep(0.1)  # room again: it reads on, up to the bound
    assert len(reader._items) == MAX_PENDING_READS
    started = time.monotonic()
    reader.stop()  # while it waits for room: it ends at once
    assert time.monotonic() - started < 0.5
    assert not reader._thread.is_alive() and stream.closed


def test_a_reader_and_a_generator_racing_over_a_full_queue_never_stall():
    """Every hand-over in a tight race between the two threads (the GIL
    switching threads every microsecond): a reader that finds the queue
    full must always be woken by the next drain."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            count = 2_000
            reader = BackgroundReader(Ticking(count, gap=0))
            items = drain(reader, timeout=5)
            assert items == [[str(i)] for i in range(count)] + [END]
            reader.stop()
    finally:
        sys.setswitchinterval(interval)


GEVENT_CHECK = """
from gevent import monkey

monkey.patch_all()

import test_background as t
from flask_aistream.serving.reader import GeventWakeup

t.check_every_delta_then_the_end(GeventWakeup)
t.check_the_client_leaving_while_the_provider_is_silent()
t.check_a_client_sending_more_is_not_taken_for_gone()
print("ok")
"""


def test_gevent_greenlets_hand_over_deltas_and_see_the_client_leave():
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GEVENT_CHECK)],
        cwd=ROOT / "tests",
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "ok", result.stderr
