"""How many slow streams one gunicorn worker carries with every token still
arriving within 50 ms of the provider sending it, and the memory per open stream.

    python benchmarks/concurrency.py [levels ...]

For each worker class (gevent, and gthread with as many threads as streams),
each level N and each view (ours, and the naive requests + iter_lines view
for comparison; ``WORKERS`` and ``CONTENDERS`` pick others): N clients open
a stream, 2 ms apart; the provider (its own process) sends 30 stamped tokens
100 ms apart on each. Prints how many streams arrived whole; the p99 and
worst token delay once all N streams are open and, apart, while they were
still arriving (500 new streams a second; split at the moment the last
client really arrived, "-" when no token was sent before it); the worker's RSS per open stream,
its CPU share, and the median time from a client's request to its first token (ms; the
provider waits 100 ms before every token, the first included). The verdict: "ok" when every token of both phases came
within 50 ms, "ok once open" when only those sent after the last stream
opened did, else "MISSED".
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time

from relay import HERE, Bench, scenario, start_gunicorn, start_redis, start_uvicorn

TOKENS, INTERVAL_MS, BOUND_MS = 30, 100, 50
OPEN_GAP = 0.002  # seconds between two clients arriving: 500 new streams a second
#: "ours" is ask_stream; "naive" the requests + iter_lines view, for comparison;
#: "fastapi" FastAPI + httpx + sse-starlette under uvicorn (run once per level,
#: whatever the worker); "iter" (not by default) ours without its reader
#: thread: see relayapp.py; "resume" (not by default) ours with resume on, its
#: events in a redis-server of the benchmark's own (whose CPU the CPU column adds)
CONTENDERS = os.environ.get("CONTENDERS", "ours naive fastapi").split()
WORKERS = os.environ.get("WORKERS", "gevent gthread").split()


def run_level(bench: Bench, contender: str, count: int):
    selector = selectors.DefaultSelector()
    rss_before, cpu_before = bench.rss_kb(), bench.cpu(contender)
    stamped, complete, rss_peak, opened, open_streams = [], 0, 0, 0, 0
    first_tokens = []  # (when the client arrived, ms until its first token)
    started = time.monotonic()
    ramp_end = None  # when the last client really arrived: tokens sent after it, all are open
    deadline = started + count * OPEN_GAP + TOKENS * INTERVAL_MS / 1000 + 30
    while (opened < count or open_streams) and time.monotonic() < deadline:
        # Clients arrive over time, while the ones already here keep reading.
        while opened < count and time.monotonic() >= started + opened * OPEN_GAP:
            opened_at = time.monotonic()
            sock = bench.open(contender, scenario(TOKENS, delay_ms=INTERVAL_MS, stamp=1))
            sock.setblocking(False)
            state = {"buffer": b"", "tokens": 0, "opened": opened_at}
            selector.register(sock, selectors.EVENT_READ, state)
            opened += 1
            open_streams += 1
            if opened == count:
                ramp_end = time.monotonic()
        rss_peak = max(rss_peak, bench.rss_kb())
        for key, _ in selector.select(timeout=OPEN_GAP if opened < count else 0.05):
            state, sock = key.data, key.fileobj
            data = sock.recv(65536)
            now = time.monotonic()
            state["buffer"] += data
            while b'{"content": "' in state["buffer"]:
                start = state["buffer"].index(b'{"content": "') + 13
                end = state["buffer"].find(b'"', start)
                if end < 0:
                    break
                sent = float(state["buffer"][start:end])
                stamped.append((sent, (now - sent) * 1000))
                if not state["tokens"]:
                    first_tokens.append((state["opened"], (now - state["opened"]) * 1000))
                state["tokens"] += 1
                state["buffer"] = state["buffer"][end:]
            if not data or b"[DONE]" in state["buffer"]:
                complete += state["tokens"] == TOKENS
                selector.unregister(sock)
                sock.close()
                open_streams -= 1
    ramp_end = ramp_end or time.monotonic()
    delays = [delay for sent, delay in stamped if sent >= ramp_end]
    ramp_delays = [delay for sent, delay in stamped if sent < ramp_end]
    per_stream_kb = (rss_peak - rss_before) / count
    cpu_share = (bench.cpu(contender) - cpu_before) / (time.monotonic() - started) * 100
    waits = sorted(ms for _, ms in first_tokens)
    first_p50 = waits[len(waits) // 2] if waits else float("nan")
    return (
        p99_and_worst(delays),
        p99_and_worst(ramp_delays),
        complete,
        per_stream_kb,
        cpu_share,
        first_p50,
    )


def p99_and_worst(delays):
    """p99 and worst, or ``None`` when no token fell in that phase (at low
    levels every client has arrived before the first token is sent)."""
    if not delays:
        return None
    delays = sorted(delays)
    return delays[max(0, int(len(delays) * 0.99) - 1)], delays[-1]


def shown(pair):
    return "-" if pair is None else f"{pair[0]:.1f} / {pair[1]:.1f}"


def main():
    levels = [int(a) for a in sys.argv[1:]] or [100, 250, 500, 1000]
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "fake_upstream.py")], stdout=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{int(upstream.stdout.readline())}"
    print(f"{os.cpu_count()} CPUs; {TOKENS} tokens per stream, one every {INTERVAL_MS} ms")
    print(
        f"{'worker':8} {'view':7} {'streams':>7} {'whole':>6} {'all open: p99 / worst ms':>24} "
        f"{'arriving: p99 / worst':>22} {'RSS/stream kB':>14} {'worker CPU%':>11} "
        f"{'1st token p50':>14}"
    )
    redis, redis_url = start_redis() if "resume" in CONTENDERS else (None, None)
    try:
        runs = [(w, c) for w in WORKERS for c in CONTENDERS if c != "fastapi"]
        if "fastapi" in CONTENDERS:
            runs.append(("uvicorn", "fastapi"))
        for worker, contender in runs:
            for count in levels:
                if contender == "fastapi":
                    master, port = start_uvicorn(url)
                    bench = Bench(0, port, master.pid, fastapi=(port, master.pid))
                else:
                    env = {"RESUME_STORAGE_URI": redis_url} if redis_url else {}
                    master, port, pid = start_gunicorn(worker, url, threads=count + 8, **env)
                    bench = Bench(0, port, pid, redis_pid=redis.pid if redis else None)
                try:
                    for _ in range(3):  # warm up: imports, the first request's setup
                        bench.throughput(contender, 10)
                    steady, ramp, complete, per_stream, cpu_share, first_p50 = run_level(
                        bench, contender, count
                    )
                finally:
                    master.terminate()
                    master.wait(10)
                if complete != count or (steady is not None and steady[1] > BOUND_MS):
                    ok = "MISSED"
                else:
                    ok = "ok" if ramp is None or ramp[1] <= BOUND_MS else "ok once open"
                print(
                    f"{worker:8} {contender:7} {count:7} {complete:6} "
                    f"{shown(steady):>24} {shown(ramp):>22} "
                    f"{per_stream:14.0f} {cpu_share:11.0f} {first_p50:14.0f}  {ok}"
                )
    finally:
        upstream.terminate()
        if redis is not None:
            redis.terminate()


if __name__ == "__main__":
    sys.exit(main())
