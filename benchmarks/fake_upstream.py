"""A fake OpenAI-format provider in its own process, for the benchmarks.

The request's ``model`` names the scenario, ``bench:TOKENS:DELAY_MS:FRAMING:STAMP:HOLD:ID``:
TOKENS chat-completion chunks (in bursts of 50 when DELAY_MS is 0, else one
every DELAY_MS), FRAMING ``chunked`` or ``close``, STAMP 1 to put the send
time (time.monotonic(), shared by processes on Linux) in each token, HOLD 1
to keep the connection open after the last token. ``GET /_seen`` lists
each scenario ID with the time its client hung up; ``GET /_connections``
how many connections it accepted. Prints its port.

    python fake_upstream.py [--keep-alive] [--real-chunks] [--tls CERT_PEM KEY_PEM]

``--keep-alive`` answers without ``Connection: close`` (as real providers
do), ``--real-chunks`` sends chunks of ~330 bytes, as OpenAI's are (id,
object, created, model, system_fingerprint, service_tier, obfuscation...),
instead of ~80, and ``--tls`` serves HTTPS.
"""

import functools
import json
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakeprovider import FakeProvider, Reply, openai_events  # noqa: E402

REAL_CHUNK = (
    'data: {"id":"chatcmpl-CT5wJ8kqQm3uX1a9dZp2LbR7sVe4N","object":"chat.completion.chunk",'
    '"created":1763366400,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    '"system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":%s},'
    '"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"q8Rt2xY"}\n\n'
)


@functools.lru_cache(maxsize=8)
def events(tokens: int, stamp: bool, real: bool):
    texts = ["@NOW@" if stamp else f" w{i}" for i in range(tokens)]
    if not real:
        return openai_events(texts)
    parts = [(REAL_CHUNK % json.dumps(text)).encode() for text in texts]
    return parts + openai_events([], finish=True)


class BenchUpstream(FakeProvider):
    real_chunks = False

    def reply_for(self, seen):
        if seen.path in ("/_seen", "/_connections"):
            if seen.path == "/_seen":
                ids = {r.model_id: r.hung_up_at for r in self.requests if hasattr(r, "model_id")}
            else:
                ids = {"connections": self.connections}
            return Reply(
                parts=[json.dumps(ids).encode()],
                headers={"Content-Type": "application/json"},
                framing="length",
            )
        _, tokens, delay, framing, stamp, hold, ident = seen.json()["model"].split(":")
        seen.model_id = ident
        self.requests[:] = self.requests[-1000:]  # a long run must not grow without bound
        parts = events(int(tokens), stamp == "1", self.real_chunks)
        if delay == "0":
            parts = [b"".join(parts[i : i + 50]) for i in range(0, len(parts), 50)]
        return Reply(
            parts=parts,
            framing=framing,
            delay=int(delay) / 1000,
            stamp=stamp == "1",
            hold=hold == "1",
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        cert, key = args[args.index("--tls") + 1 : args.index("--tls") + 3]
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
    upstream = BenchUpstream(tls=tls)
    upstream.keep_alive = "--keep-alive" in args
    upstream.real_chunks = "--real-chunks" in args
    print(upstream.port, flush=True)
    while True:
        time.sleep(3600)
