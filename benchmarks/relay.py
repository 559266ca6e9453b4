"""Relay benchmark under gunicorn (gthread and gevent workers), one run, one table.

    python benchmarks/relay.py [tokens] [runs]

Contenders, all against the same loopback fake provider (its own process):
``direct`` reads the provider's bytes (the transport's ceiling) and
``direct+parse`` reads and parses them as any Python consumer must (with
httpx-sse, the fastest peer decoder, and ``json``): the ceiling the ratios
use; ``ours`` is
``ask_stream``; ``naive`` is requests + ``iter_lines`` + yield; ``sdk``
relays the official ``openai`` SDK's stream; ``fastapi`` is FastAPI + one
``httpx.AsyncClient`` + sse-starlette under uvicorn (fastapi_app.py), the
stack a user would otherwise pick. Measured per contender:
tokens/s and worker CPU per token for TOKENS tokens (median of RUNS);
added latency per token p50/p99 with a chunked and a close-delimited
upstream (the provider stamps its send time into each token); time from
the client's disconnect to the provider seeing its connection closed (a
token every 50 ms); worker RSS growth over a 200,000-token stream.
Machines here are noisy: compare the ratios of one run, not runs.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
_ids = iter(range(1, 1_000_000))


def scenario(tokens, delay_ms=0, framing="chunked", stamp=0, hold=0):
    return f"bench:{tokens}:{delay_ms}:{framing}:{stamp}:{hold}:{next(_ids)}"


def request_bytes(path, model, port):
    if path.startswith("direct"):
        body = json.dumps({"model": model, "messages": [], "stream": True}).encode()
        return port, (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
    return None, f"GET /{path}?m={model} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


class Bench:
    def __init__(self, upstream_port, app_port, worker_pid, fastapi=None, redis_pid=None):
        self.upstream_port, self.app_port, self.worker_pid = upstream_port, app_port, worker_pid
        #: (port, pid) of the FastAPI contender's uvicorn, which serves "/ours" too
        self.fastapi = fastapi
        self.redis_pid = redis_pid

    def _server(self, contender):
        if contender == "fastapi":
            return self.fastapi
        return self.app_port, self.worker_pid

    def open(self, contender, model):
        port, raw = request_bytes(
            "ours" if contender == "fastapi" else contender, model, self.upstream_port
        )
        sock = socket.create_connection(("127.0.0.1", port or self._server(contender)[0]))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(raw)
        return sock

    def cpu(self, contender=None):
        total = _cpu_of(self._server(contender)[1])
        if contender == "resume" and self.redis_pid:
            total += _cpu_of(self.redis_pid)  # what Redis spends storing the events
        return total

    def redis_cpu(self):
        return _cpu_of(self.redis_pid) if self.redis_pid else 0.0

    def rss_kb(self):
        for line in Path(f"/proc/{self.worker_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1])
        return 0

    def throughput(self, contender, tokens):
        cpu = self.cpu(contender)
        started = time.perf_counter()
        sock = self.open(contender, scenario(tokens))
        count, tail = 0, b""
        if contender == "direct+parse":
            count = parse_upstream(sock)
        while contender != "direct+parse":
            data = sock.recv(262144)
            if not data:
                break
            count += (tail + data).count(b'"content"') - tail.count(b'"content"')
            tail = data[-16:]
            if contender == "direct" and b"[DONE]" in data:
                break
        sock.close()
        took = time.perf_counter() - started
        relayed = not contender.startswith("direct")
        return tokens / took, (self.cpu(contender) - cpu) / tokens if relayed else None, count

    def latency(self, contender, framing):
        sock = self.open(contender, scenario(200, delay_ms=5, framing=framing, stamp=1))
        delays, buffer = [], b""
        while True:
            data = sock.recv(65536)
            now = time.monotonic()
            if not data:
                break
            buffer += data
            while b'"content"' in buffer:
                i = buffer.index(b'"content"')
                j = buffer.find(b'"', buffer.index(b":", i) + 3)
                if j < 0:
                    break
                start = buffer.index(b'"', buffer.index(b":", i) + 1) + 1
                delays.append(now - float(buffer[start:j]))
                buffer = buffer[j:]
            if b"[DONE]" in buffer:
                break
        sock.close()
        delays.sort()
        return delays[len(delays) // 2] * 1000, delays[int(len(delays) * 0.99) - 1] * 1000

    def disconnect(self, contender):
        model = scenario(100_000, delay_ms=50, hold=1)
        ident = model.rsplit(":", 1)[1]
        sock = self.open(contender, model)
        received = b""
        while received.count(b'"content"') < 3:
            received += sock.recv(65536)
        sock.close()
        left = time.monotonic()
        deadline = left + 3
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.upstream_port}/_seen") as r:
                hung_up = json.loads(r.read()).get(ident)
            if hung_up:
                return (hung_up - left) * 1000
            time.sleep(0.01)
        return None

    def rss_growth(self, contender, tokens=200_000):
        before, peak = self.rss_kb(), 0
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, self.rss_kb())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        self.throughput(contender, tokens)
        done.set()
        sampler.join()
        return (peak - before) / 1024


def _cpu_of(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_redis():
    """A redis-server of the benchmark's own (the resume contender's store)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(args + ["--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"redis://127.0.0.1:{port}"
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def parse_upstream(sock):
    """A Python client reading the provider itself, as any consumer must:
    SSE decoding (httpx-sse, the fastest peer decoder) and JSON per event."""
    import codecs

    from httpx_sse._decoders import SSEDecoder, SSELineDecoder

    text = codecs.getincrementaldecoder("utf-8")("replace")
    lines, events, count = SSELineDecoder(), SSEDecoder(), 0
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    head, first = head.split(b"\r\n\r\n", 1)
    data = first
    while True:
        for line in lines.decode(text.decode(data)):
            event = events.decode(line)
            if event is None:
                continue
            if event.data == "[DONE]":
                return count
            if json.loads(event.data)["choices"][0]["delta"].get("content"):
                count += 1
        data = sock.recv(262144)
        if not data:
            return count


def start_gunicorn(worker, upstream_url, threads=8, **env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", worker, "-b", f"127.0.0.1:{port}"]
    args += ["--threads", str(threads)] if worker == "gthread" else ["--worker-connections", "5000"]
    env = dict(
        os.environ, FAKE_PROVIDER_URL=upstream_url, PYTHONPATH=f"{ROOT}{os.pathsep}{HERE}", **env
    )
    log = open(os.environ.get("GUNICORN_LOG", os.devnull), "w")
    master = subprocess.Popen(args + ["relayapp:create_app()"], env=env, stderr=log)
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if children.read_text().split():
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.1)
    return master, port, int(children.read_text().split()[0])


def start_uvicorn(upstream_url):
    """The FastAPI contender (fastapi_app.py) under uvicorn, uvloop and httptools."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port)]
    args += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    env = dict(os.environ, FAKE_PROVIDER_URL=upstream_url)
    process = subprocess.Popen(args, env=env, cwd=HERE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)


def main():
    tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "fake_upstream.py")], stdout=subprocess.PIPE, text=True
    )
    upstream_port = int(upstream.stdout.readline())
    url = f"http://127.0.0.1:{upstream_port}"
    print(f"{os.cpu_count()} CPUs; {tokens} tokens, median of {runs} runs; gunicorn -w 1")
    uvicorn, fastapi_port = start_uvicorn(url)
    redis, redis_url = start_redis()
    try:
        for worker in ("gthread", "gevent"):
            master, port, pid = start_gunicorn(worker, url, RESUME_STORAGE_URI=redis_url)
            bench = Bench(
                upstream_port, port, pid, fastapi=(fastapi_port, uvicorn.pid), redis_pid=redis.pid
            )
            try:
                report(bench, worker, tokens, runs)
            finally:
                master.terminate()
                master.wait(10)
    finally:
        uvicorn.terminate()
        redis.terminate()
        upstream.terminate()


def report(bench, worker, tokens, runs):
    contenders = ["direct", "direct+parse", "ours", "resume", "naive", "sdk", "fastapi"]
    for c in contenders:  # warm up: imports, connection pools
        bench.throughput(c, 2000)
    rates = {c: [] for c in contenders}
    cpus = {c: [] for c in contenders}
    redis_cpus = []
    for _ in range(runs):
        for c in contenders:
            redis_before = bench.redis_cpu()
            rate, cpu, count = bench.throughput(c, tokens)
            if c == "resume":
                redis_cpus.append((bench.redis_cpu() - redis_before) / tokens)
            assert count == tokens, f"{c} relayed {count} of {tokens} tokens"
            rates[c].append(rate)
            cpus[c].append(cpu)
    naive_rate = statistics.median(rates["naive"])
    naive_cpu = statistics.median(cpus["naive"])
    direct_rate = statistics.median(rates["direct+parse"])
    print(f"\n## gunicorn {worker}")
    print(
        f"{'contender':12} {'tokens/s':>9} {'x naive':>8} {'x direct':>9} {'CPU us/tok':>10} "
        f"{'x naive':>8} {'lat p50/p99 chunked ms':>23} {'close ms':>13} {'leave->close ms':>16}"
    )
    for c in contenders:
        rate = statistics.median(rates[c])
        relayed = not c.startswith("direct")
        cpu = statistics.median(cpus[c]) if relayed else None
        chunked = bench.latency("direct" if c == "direct+parse" else c, "chunked")
        close = bench.latency("direct" if c == "direct+parse" else c, "close")
        left = bench.disconnect(c) if relayed and c != "resume" else None
        print(
            f"{c:12} {rate:9.0f} {rate / naive_rate:8.2f} {rate / direct_rate:9.2f} "
            + (f"{cpu * 1e6:10.1f} {cpu / naive_cpu:8.2f} " if cpu else f"{'-':>10} {'-':>8} ")
            + f"{chunked[0]:11.2f} / {chunked[1]:6.2f}     {close[0]:5.2f} / {close[1]:5.2f} "
            + (f"{left:16.1f}" if left is not None else f"{_no_leave(c):>16}")
        )
    ours_rate, ours_cpu = statistics.median(rates["ours"]), statistics.median(cpus["ours"])
    resume_rate, resume_cpu = statistics.median(rates["resume"]), statistics.median(cpus["resume"])
    print(
        f"resume on / off: tokens/s {resume_rate / ours_rate:.2f}x, CPU per token "
        f"{resume_cpu / ours_cpu:.2f}x ({(resume_cpu - ours_cpu) * 1e6:+.1f} us, of which "
        f"redis-server {statistics.median(redis_cpus) * 1e6:.1f} us)"
    )
    for c in ("ours", "naive"):
        print(f"RSS growth over a 200,000-token stream, {c}: {bench.rss_growth(c):.1f} MB")


def _no_leave(contender):
    if contender == "resume":
        return "goes on"  # by design: the answer is kept for whoever resumes it
    return "-" if contender.startswith("direct") else "never (>3 s)"


if __name__ == "__main__":
    main()
