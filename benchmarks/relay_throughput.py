"""Relay throughput: our ask_stream view against a naive iter_lines relay and
the direct read of the upstream, all against one loopback fake provider and
read in-process through the Flask test client (no WSGI server in between).

    python benchmarks/relay_throughput.py [tokens] [runs]

Prints tokens/s (median of the runs) and ratios against the naive view.
Machines here are noisy: only the ratios of one run mean anything.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import requests
from flask import Flask, Response

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakeprovider import FakeProvider, Reply, openai_events  # noqa: E402
from flask_aistream import AIStream  # noqa: E402


def build(fake):
    app = Flask("bench")
    app.config.update(AI_OPENAI_API_KEY="sk-bench", AI_OPENAI_BASE_URL=f"{fake.url}/v1")
    AIStream(app)

    @app.get("/ours")
    def ours():
        return app.extensions["ai"].ask_stream("go")

    @app.get("/naive")
    def naive():
        upstream = requests.post(f"{fake.url}/v1/chat/completions", json={}, stream=True)

        def relay():
            try:
                for line in upstream.iter_lines():
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:]
                    if data == b"[DONE]":
                        break
                    delta = json.loads(data)["choices"][0]["delta"].get("content")
                    if delta:
                        yield f"data: {json.dumps({'content': delta})}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                upstream.close()

        return Response(relay(), content_type="text/event-stream")

    return app


def direct(fake):
    with requests.post(f"{fake.url}/v1/chat/completions", json={}, stream=True) as r:
        for _ in r.raw.stream(65536):
            pass


def main():
    tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    fake = FakeProvider()
    # the provider writes its tokens in bursts of 20, as a fast model does
    events = openai_events([f" tok{i}" for i in range(tokens)])
    fake.reply = Reply(parts=[b"".join(events[i : i + 20]) for i in range(0, len(events), 20)])
    client = build(fake).test_client()
    contenders = {
        "direct read (ceiling)": lambda: direct(fake),
        "naive iter_lines view": lambda: client.get("/naive").get_data(),
        "flask-aistream ask_stream": lambda: client.get("/ours").get_data(),
    }
    rates = {name: [] for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            rates[name].append(tokens / (time.perf_counter() - started))
    fake.close()
    naive = statistics.median(rates["naive iter_lines view"])
    print(f"{tokens} tokens, median of {runs} runs")
    print(f"{'contender':28} {'tokens/s':>10} {'x naive':>8}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:28} {rate:10.0f} {rate / naive:8.2f}")


if __name__ == "__main__":
    main()
