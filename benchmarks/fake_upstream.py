"""A fake OpenAI-format provider in its own process, for the relay benchmark.

The request's ``model`` names the scenario, ``bench:TOKENS:DELAY_MS:FRAMING:STAMP:HOLD:ID``:
TOKENS chat-completion chunks (in bursts of 50 when DELAY_MS is 0, else one
every DELAY_MS), FRAMING ``chunked`` or ``close``, STAMP 1 to put the send
time (time.monotonic(), shared by processes on Linux) in each token, HOLD 1
to keep the connection open after the last token. ``GET /_seen`` lists
each scenario ID with the time its client hung up. Prints its port.
"""

import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakeprovider import FakeProvider, Reply, openai_events  # noqa: E402


@functools.lru_cache(maxsize=8)
def events(tokens: int, stamp: bool):
    return openai_events(["@NOW@" if stamp else f" w{i}" for i in range(tokens)])


class BenchUpstream(FakeProvider):
    def reply_for(self, seen):
        if seen.path == "/_seen":
            ids = {r.model_id: r.hung_up_at for r in self.requests if hasattr(r, "model_id")}
            return Reply(
                parts=[json.dumps(ids).encode()],
                headers={"Content-Type": "application/json"},
                framing="length",
            )
        _, tokens, delay, framing, stamp, hold, ident = seen.json()["model"].split(":")
        seen.model_id = ident
        parts = events(int(tokens), stamp == "1")
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
    upstream = BenchUpstream()
    print(upstream.port, flush=True)
    while True:
        time.sleep(3600)
