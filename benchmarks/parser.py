"""Decoder benchmark: provider bytes in, text deltas out.

    python benchmarks/parser.py [events] [runs]

Each contender gets the same 100,000-event OpenAI (chat completions and
Responses), Anthropic- and Gemini-format SSE bodies and an Ollama NDJSON body, cut into random chunks of
1 to 4096 bytes (as they come off a socket), and must produce the text
deltas: decoding plus ``json`` and the delta lookup. (Gemini really sends a
sentence per event, not a word: its rate per token is far better than this.) Prints events/s and MB/s (medians) and each peer's ratio to
ours. Only ratios from one run mean anything on a noisy machine.
"""

from __future__ import annotations

import codecs
import json
import random
import statistics
import sys
import time

from flask_aistream.providers.anthropic import MessagesReader
from flask_aistream.providers.gemini import GenerateContentReader
from flask_aistream.providers.ndjson import NDJSONDecoder
from flask_aistream.providers.ollama import ChatReader
from flask_aistream.providers.openai import ChatCompletionsReader
from flask_aistream.providers.responses import ResponsesReader
from flask_aistream.providers.sse import SSEDecoder


def openai_body(events: int) -> bytes:
    chunk = (
        'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1763366400,'
        '"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":%s},'
        '"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"q8Rt"}\n\n'
    )
    words = [json.dumps(f" w{i}") for i in range(events)]
    return ("".join(chunk % w for w in words) + "data: [DONE]\n\n").encode()


def anthropic_body(events: int) -> bytes:
    chunk = (
        "event: content_block_delta\n"
        'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%s}}\n\n'
    )
    words = [json.dumps(f" w{i}") for i in range(events)]
    return (
        "".join(chunk % w for w in words) + 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    ).encode()


def gemini_body(events: int) -> bytes:
    chunk = (
        'data: {"candidates": [{"content": {"parts": [{"text": %s}],"role": "model"},'
        '"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},'
        '"modelVersion": "gemini-2.5-flash","responseId": "Qm9xF2a1KJyT0gPq7vR3cA"}\r\n\r\n'
    )
    words = [json.dumps(f" w{i}") for i in range(events)]
    end = (
        'data: {"candidates": [{"content": {"role": "model"},"finishReason": "STOP",'
        '"index": 0}]}\r\n\r\n'
    )
    return ("".join(chunk % w for w in words) + end).encode()


def responses_body(events: int) -> bytes:
    """OpenAI's Responses API: an ``event:`` line and a ``data:`` line per token."""
    chunk = (
        "event: response.output_text.delta\n"
        'data: {"type":"response.output_text.delta","sequence_number":%d,"item_id":"msg_1",'
        '"output_index":0,"content_index":0,"delta":%s,"logprobs":[],"obfuscation":"q8Rt"}\n\n'
    )
    words = [chunk % (i + 4, json.dumps(f" w{i}")) for i in range(events)]
    end = (
        "event: response.completed\n"
        'data: {"type":"response.completed","sequence_number":0,"response":{"id":"resp_1",'
        '"model":"gpt-5-mini","status":"completed","output":[],"usage":null}}\n\n'
    )
    return ("".join(words) + end).encode()


def ollama_body(events: int) -> bytes:
    line = (
        '{"model":"llama3.2","created_at":"2025-11-17T09:30:00.000401123Z",'
        '"message":{"role":"assistant","content":%s},"done":false}\n'
    )
    words = [json.dumps(f" w{i}") for i in range(events)]
    end = '{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true}\n'
    return ("".join(line % w for w in words) + end).encode()


BODIES = {
    "openai": openai_body,
    "anthropic": anthropic_body,
    "gemini": gemini_body,
    "responses": responses_body,
    "ollama": ollama_body,
}
READERS = {
    "openai": ChatCompletionsReader,
    "anthropic": MessagesReader,
    "gemini": GenerateContentReader,
    "responses": ResponsesReader,
    "ollama": ChatReader,
}


def chunks_of(body: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(body):
        n = rng.randint(1, 4096)
        out.append(body[i : i + n])
        i += n
    return out


# Each contender: (chunks, format) -> list of text deltas.


def ours(chunks, fmt):
    reader = READERS[fmt](fmt)
    decoder = NDJSONDecoder() if fmt == "ollama" else SSEDecoder()
    parse, feed, parts = reader.parse, decoder.feed, []
    for chunk in chunks:
        for event in feed(chunk):
            parse(event, parts)
    return [part for part in parts if part.__class__ is str]  # text travels as str


def delta_of(fmt, event_name, data):
    if fmt == "openai":
        if data == "[DONE]":
            return None
        return json.loads(data)["choices"][0]["delta"].get("content")
    if fmt == "gemini":
        parts = json.loads(data)["candidates"][0]["content"].get("parts") or ()
        return "".join(part.get("text", "") for part in parts) or None
    if fmt == "responses":
        event = json.loads(data)
        return event.get("delta") if event["type"] == "response.output_text.delta" else None
    if event_name == "content_block_delta":
        delta = json.loads(data)["delta"]
        return delta.get("text") if delta.get("type") == "text_delta" else None
    return None


def sseclient_py(chunks, fmt):
    import sseclient

    return [
        t
        for e in sseclient.SSEClient(iter(chunks)).events()
        if (t := delta_of(fmt, e.event, e.data))
    ]


def httpx_sse(chunks, fmt):
    from httpx_sse._decoders import SSEDecoder as EventDecoder
    from httpx_sse._decoders import SSELineDecoder

    text_decoder = codecs.getincrementaldecoder("utf-8")("replace")
    lines, events, texts = SSELineDecoder(), EventDecoder(), []
    for chunk in chunks:
        for line in lines.decode(text_decoder.decode(chunk)):
            event = events.decode(line)
            if event is not None and (t := delta_of(fmt, event.event, event.data)):
                texts.append(t)
    return texts


def openai_sdk(chunks, fmt):
    from openai._streaming import SSEDecoder as OpenAIDecoder

    return [
        t for e in OpenAIDecoder().iter_bytes(iter(chunks)) if (t := delta_of(fmt, e.event, e.data))
    ]


def lines_and_json(chunks, fmt):
    """What ollama-python does with httpx's ``iter_lines()``: split, then
    ``json.loads`` each line."""
    text_decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buffer, texts = "", []
    for chunk in chunks:
        buffer += text_decoder.decode(chunk)
        *lines, buffer = buffer.split("\n")
        for line in lines:
            if line and (t := json.loads(line)["message"].get("content")):
                texts.append(t)
    return texts


CONTENDERS = {
    "flask-aistream": ours,
    "sseclient-py": sseclient_py,
    "httpx-sse": httpx_sse,
    "openai SDK decoder": openai_sdk,
    "lines + json.loads": lines_and_json,
}
#: What each contender can read.
SSE_ONLY = {"sseclient-py", "httpx-sse", "openai SDK decoder"}


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(f"{events} events per body, random chunks of 1-4096 bytes, median of {runs} runs")
    for fmt, make_body in BODIES.items():
        body = make_body(events)
        expected = [f" w{i}" for i in range(events)]
        names = [
            n for n in CONTENDERS if (n in SSE_ONLY) != (fmt == "ollama") or n == "flask-aistream"
        ]
        rates = {name: [] for name in names}
        for run in range(runs):
            chunks = chunks_of(body, seed=run)
            for name in names:
                decode = CONTENDERS[name]
                started = time.perf_counter()
                texts = decode(chunks, fmt)
                rates[name].append(time.perf_counter() - started)
                assert texts == expected, f"{name} decoded {fmt} wrongly"
        ours_time = statistics.median(rates["flask-aistream"])
        print(f"\n{fmt} ({len(body) / 1e6:.1f} MB)")
        print(f"  {'decoder':22} {'events/s':>10} {'MB/s':>7} {'ours is':>8}")
        for name, times in rates.items():
            t = statistics.median(times)
            print(
                f"  {name:22} {events / t:10.0f} {len(body) / t / 1e6:7.1f} {t / ours_time:7.2f}x"
            )


if __name__ == "__main__":
    main()
