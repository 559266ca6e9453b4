"""Time to first token, and connections per 100 sequential answers.

    python benchmarks/first_token.py [answers] [repetitions]

A keep-alive fake provider (its own process, chunks of ~330 bytes as
OpenAI's) counts the connections it accepts. Each contender relays ANSWERS
sequential answers of 20 tokens; the client times each from sending its
request to reading the first token. Contenders: ``direct`` (the client asks
the provider itself: the floor), ``bare`` (Flask + one shared requests
session passing bytes through unparsed), ``ours`` (``ask_stream``, gunicorn
gthread and gevent), ``naive`` (requests + ``iter_lines``, a new connection
per answer) and ``fastapi`` (FastAPI + one ``httpx.AsyncClient`` +
sse-starlette under uvicorn with uvloop and httptools). Over TCP, then TLS
(a trustme certificate). Each figure: the overhead over ``direct`` (median of
the answers) as min / median / max over the repetitions, with ratios taken
within each repetition, and the serving process's CPU per answer (setup
included; the gunicorn worker, or uvicorn's process). Only ratios of one run mean anything here.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
_ids = iter(range(1, 10_000_000))


def scenario(tokens=20):
    return f"bench:{tokens}:0:chunked:0:0:{next(_ids)}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, process, what):
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, f"{what} exited"
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.1)


class Upstream:
    def __init__(self, tls_files=None):
        args = [sys.executable, str(HERE / "fake_upstream.py"), "--keep-alive", "--real-chunks"]
        if tls_files:
            args += ["--tls", *tls_files]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        self.scheme = "https" if tls_files else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.context = None
        if tls_files:
            self.context = ssl.create_default_context(cafile=tls_files[2])

    def connections(self):
        with urllib.request.urlopen(f"{self.url}/_connections", context=self.context) as r:
            return json.loads(r.read())["connections"]

    def close(self):
        self.process.terminate()
        self.process.wait(10)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def worker_pid(process):
    """gunicorn's one worker (the master forks it); uvicorn serves in its own process."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 20
    while True:
        found = children.read_text().split()
        if found or "uvicorn" in " ".join(process.args):
            return int(found[0]) if found else process.pid
        assert time.monotonic() < deadline, "no worker"
        time.sleep(0.1)


def start_servers(upstream, env):
    """Each contender's server: its port and the pid whose CPU it spends."""
    env = dict(env, FAKE_PROVIDER_URL=upstream.url, PYTHONPATH=f"{ROOT}{os.pathsep}{HERE}")
    servers = []
    for worker in ("gthread", "gevent"):
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "1",
            "-k",
            worker,
            "-b",
            f"127.0.0.1:{port}",
        ]
        args += ["--threads", "8"] if worker == "gthread" else ["--worker-connections", "1000"]
        process = subprocess.Popen(
            args + ["relayapp:create_app()"], env=env, stderr=subprocess.DEVNULL
        )
        servers.append((worker, port, process))
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port)]
    args += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    process = subprocess.Popen(args, env=env, cwd=HERE, stderr=subprocess.DEVNULL)
    servers.append(("uvicorn", port, process))
    for name, port, process in servers:
        wait_for(port, process, name)
    pids = {name: worker_pid(process) for name, _, process in servers}
    return {name: port for name, port, _ in servers}, pids, [p for _, _, p in servers]


def first_token(port, path, upstream=None):
    """Seconds from sending the request to reading the first token."""
    model = scenario()
    if path is None:  # direct: the client asks the provider itself
        body = json.dumps({"model": model, "messages": [], "stream": True}).encode()
        raw = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
    else:
        raw = f"GET /{path}?m={model} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if path is None and upstream.context is not None:
        sock = upstream.context.wrap_socket(sock, server_hostname="127.0.0.1")
    started = time.perf_counter()
    sock.sendall(raw)
    seen = b""
    while b'"content"' not in seen:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"{path or 'direct'}: the stream ended before a token")
        seen += data
    took = time.perf_counter() - started
    while sock.recv(65536):
        pass  # read the rest: the next answer starts on a quiet provider
    sock.close()
    return took


CONTENDERS = [
    ("direct", None, None),
    ("bare (gthread)", "gthread", "bare"),
    ("ours (gthread)", "gthread", "ours"),
    ("ours (gevent)", "gevent", "ours"),
    ("naive (gthread)", "gthread", "naive"),
    ("fastapi", "uvicorn", "ours"),
]


def run(label, answers, repetitions, tls_files=None):
    upstream = Upstream(tls_files)
    env = dict(os.environ)
    if tls_files:  # every contender trusts the test CA
        env.update(REQUESTS_CA_BUNDLE=tls_files[2], SSL_CERT_FILE=tls_files[2])
    ports, pids, processes = start_servers(upstream, env)
    try:
        for _name, server, path in CONTENDERS:  # warm up: imports, pools
            for _ in range(5):
                first_token(ports.get(server, upstream.port), path, upstream)
        overheads = {name: [] for name, _, _ in CONTENDERS[1:]}
        connections = {name: [] for name, _, _ in CONTENDERS}
        cpu = {name: [] for name, _, _ in CONTENDERS[1:]}
        ratios = {"ours (gthread) / bare": [], "ours (gthread) / fastapi": []}
        for _ in range(repetitions):
            medians = {}
            for name, server, path in CONTENDERS:
                before = upstream.connections()
                cpu_before = cpu_seconds(pids[server]) if server else 0
                times = [
                    first_token(ports.get(server, upstream.port), path, upstream)
                    for _ in range(answers)
                ]
                if server:  # the server's CPU per answer, setup included
                    cpu[name].append((cpu_seconds(pids[server]) - cpu_before) * 1000 / answers)
                # less one: the count's own request
                connections[name].append((upstream.connections() - before - 1) * 100 / answers)
                medians[name] = statistics.median(times)
            for name in overheads:
                overheads[name].append((medians[name] - medians["direct"]) * 1000)
            ours = medians["ours (gthread)"] - medians["direct"]
            ratios["ours (gthread) / bare"].append(
                ours / (medians["bare (gthread)"] - medians["direct"])
            )
            ratios["ours (gthread) / fastapi"].append(
                ours / (medians["fastapi"] - medians["direct"])
            )
        print(f"\n## {label}: {answers} sequential answers x {repetitions}")
        print(
            f"{'contender':18} {'TTFT overhead ms min / med / max':>34} "
            f"{'connections per 100':>21} {'server CPU ms/answer':>21}"
        )
        for name, _, _ in CONTENDERS:
            conns = statistics.median(connections[name])
            if name == "direct":
                print(f"{name:18} {'(the floor)':>34} {conns:21.0f}")
                continue
            o = sorted(overheads[name])
            print(
                f"{name:18} {o[0]:10.2f} / {statistics.median(o):6.2f} / {o[-1]:6.2f}      "
                f"{conns:21.0f} {statistics.median(cpu[name]):21.2f}"
            )
        for name, values in ratios.items():
            v = sorted(values)
            print(f"{name:26} {v[0]:.2f} / {statistics.median(v):.2f} / {v[-1]:.2f}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        upstream.close()


def tls_files(directory):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = [Path(directory) / name for name in ("cert.pem", "key.pem", "ca.pem")]
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return [str(p) for p in paths]


def main():
    answers = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    repetitions = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"{os.cpu_count()} CPUs; one worker per server")
    run("TCP", answers, repetitions)
    with tempfile.TemporaryDirectory() as directory:
        run("TLS", answers, repetitions, tls_files(directory))


if __name__ == "__main__":
    main()
