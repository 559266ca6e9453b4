"""Each provider's real wire format, served by a loopback provider, comes out
as the spec's SSE: one ``{"content"}`` event per text delta, then ``[DONE]``."""

import json

import pytest

from fakeprovider import Reply, openai_events, split_every, transcript
from flask_aistream.providers.anthropic import MessagesReader
from flask_aistream.providers.openai import ChatCompletionsReader
from flask_aistream.providers.sse import SSEDecoder
from flask_aistream.providers.wire import parse_json
from helpers import relayed

OPENAI_TEXT = "The sky is blue — café 🌍, 日本語, небо 🙂.\nLine two."
ANTHROPIC_TEXT = "Hello! Rayleigh scattering — 🌈 空."

STREAMS = [
    ("openai", "openai_basic.sse", OPENAI_TEXT),
    ("groq", "groq_basic.sse", "Hello from Groq!"),
    ("mistral", "mistral_basic.sse", "Le ciel est bleu."),
    ("anthropic", "anthropic_basic.sse", ANTHROPIC_TEXT),
    ("anthropic", "anthropic_thinking_tools.sse", "Let me check."),
    ("openai", "openai_tool_calls.sse", ""),
]


def ask(client, provider, question="Why is the sky blue?", **options):
    response = client.post("/chat", json={"question": question, "provider": provider, **options})
    assert response.status_code == 200
    return relayed(response.get_data())


@pytest.mark.parametrize("framing", ["chunked", "close", "length"])
@pytest.mark.parametrize("provider, name, text", STREAMS, ids=[s[1] for s in STREAMS])
def test_each_provider_stream_is_relayed(client, fake, provider, name, text, framing):
    fake.reply = Reply.sse(transcript(name), framing=framing)
    assert ask(client, provider) == (text, None, True)


@pytest.mark.parametrize("framing", ["chunked", "close", "length"])
def test_a_body_far_larger_than_one_read_arrives_whole(client, fake, framing):
    """5,000 events in a single write (one HTTP chunk of ~700 kB): read in
    pieces of at most READ_SIZE, none lost or repeated at the seams."""
    words = [f" w{i}" for i in range(5000)]
    fake.reply = Reply(parts=[b"".join(openai_events(words))], framing=framing)
    assert ask(client, "openai") == ("".join(words), None, True)


@pytest.mark.parametrize("provider, name, text", STREAMS[:4], ids=[s[1] for s in STREAMS[:4]])
def test_crlf_and_cr_line_endings(client, fake, provider, name, text):
    body = transcript(name)
    for ending in (b"\r\n", b"\r"):
        fake.reply = Reply(parts=split_every(body.replace(b"\n", ending), 7))
        assert ask(client, provider) == (text, None, True)


READERS = {"openai": ChatCompletionsReader, "anthropic": MessagesReader}


@pytest.mark.parametrize(
    "provider, name, text", [STREAMS[0], STREAMS[3]], ids=["openai", "anthropic"]
)
def test_body_split_at_every_byte_offset(provider, name, text):
    """Below HTTP: the decoder and the reader, fed the body in two reads
    split at every offset, inside CRLFs, JSON strings and 4-byte UTF-8
    characters. (Over HTTP, a few chosen offsets: the next test.)"""
    body = transcript(name).replace(b"\n", b"\r\n")
    for cut in range(1, len(body)):
        reader, decoder, parts = READERS[provider](provider), SSEDecoder(), []
        for piece in (body[:cut], body[cut:]):
            for event in decoder.feed(piece):
                reader.parse(event, parts)
        assert "".join(p for p in parts if p.__class__ is str) == text, f"split at {cut}"
        assert reader.finished, f"split at {cut}"


def chosen_offsets(body: bytes) -> list[int]:
    """Where a split hurts: inside a CRLF, inside a 4-byte character, inside a
    JSON string, right after a blank line."""
    four_bytes = [i for i, byte in enumerate(body) if byte >= 0xF0]  # a 4-byte character
    emoji = four_bytes[0] if four_bytes else body.index(b"\\ud83c")
    return sorted(
        {
            body.index(b"\r\n") + 1,
            body.index(b"\r\n\r\n") + 3,
            body.index(b"\r\n\r\n") + 4,
            emoji + 1,
            emoji + 2,
            body.index(b'"content"' if b'"content"' in body else b'"text"') + 3,
            len(body) - 1,
        }
    )


@pytest.mark.parametrize(
    "provider, name, text", [STREAMS[0], STREAMS[3]], ids=["openai", "anthropic"]
)
def test_body_split_at_chosen_offsets_over_http(client, fake, provider, name, text):
    """Each split puts the two halves in separate TCP writes (and HTTP chunks)."""
    body = transcript(name).replace(b"\n", b"\r\n")
    for cut in chosen_offsets(body):
        for framing in ("chunked", "close"):
            fake.reply = Reply(parts=[body[:cut], body[cut:]], framing=framing)
            assert ask(client, provider) == (text, None, True), f"split at {cut}, {framing}"


def test_one_byte_per_write(client, fake):
    fake.reply = Reply(parts=split_every(transcript("openai_basic.sse"), 1))
    assert ask(client, "openai") == (OPENAI_TEXT, None, True)


def test_comments_bom_and_keepalives_are_ignored(client, fake):
    body = (
        b"\xef\xbb\xbf: OPENROUTER PROCESSING\n\n"
        + b":\n\n"
        + transcript("openai_basic.sse").replace(b"\n\n", b"\n: keep-alive\n\n", 3)
    )
    fake.reply = Reply.sse(body)
    assert ask(client, "openai") == (OPENAI_TEXT, None, True)


def test_every_text_delta_is_its_own_event(client, fake):
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    response = client.post("/chat", json={"question": "hi", "provider": "anthropic"})
    assert response.get_data().split(b"\n\n")[:-1] == [
        b'data: {"content": "Hello! Rayleigh"}',
        b'data: {"content": " scattering \\u2014 \\ud83c\\udf08 \\u7a7a."}',
        b"id: flask-aistream:done",  # the id an EventSource comes back with: answered 204
        b"data: [DONE]",
    ]


# --- what we send to each provider --------------------------------------------


def test_openai_request(client, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    ask(client, "openai", system="Be brief.", temperature=0, max_tokens=50, model="gpt-test")
    seen = fake.last
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer sk-proj-TESTKEY0123456789abcdefSECRET"
    assert seen.json() == {
        "model": "gpt-test",
        "stream": True,
        "stream_options": {"include_usage": True},  # else a stream reports no usage
        "temperature": 0.0,  # zero is a value, not "unset"
        "max_completion_tokens": 50,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why is the sky blue?"},
        ],
    }


@pytest.mark.parametrize("provider", ["groq", "mistral"])
def test_openai_compatible_requests(client, fake, provider):
    fake.reply = Reply.sse(transcript(f"{provider}_basic.sse"))
    ask(client, provider, system="Be brief.", max_tokens=50)
    body = fake.last.json()
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.headers["authorization"].startswith("Bearer ")
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["max_tokens"] == 50 and "temperature" not in body


def test_anthropic_request(client, fake):
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    history = [
        {"role": "user", "content": "What is recursion?"},
        {"role": "assistant", "content": "A function calling itself."},
    ]
    ask(
        client,
        "anthropic",
        question="An example?",
        system="Be brief.",
        messages=history,
        temperature=0,
    )
    seen = fake.last
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.headers["x-api-key"] == "sk-ant-api03-TESTKEY0123456789SECRET"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.json() == {
        "model": "claude-sonnet-4-5",
        "stream": True,
        "max_tokens": 4096,  # required by the Messages API
        "system": "Be brief.",
        "temperature": 0.0,
        "messages": history + [{"role": "user", "content": "An example?"}],
    }


def test_system_messages_in_history_become_the_system_prompt(client, fake):
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    messages = [{"role": "system", "content": "Answer in French."}]
    ask(client, "anthropic", system="Be brief.", messages=messages)
    body = fake.last.json()
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_we_ask_for_no_compression_but_decode_gzip_if_sent(client, fake):
    import zlib

    compressor = zlib.compressobj(wbits=31)  # gzip, flushed after every event as a server would
    body = transcript("openai_basic.sse")
    parts = [
        compressor.compress(event + b"\n\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
        for event in body.split(b"\n\n")[:-1]
    ]
    parts.append(compressor.flush())
    fake.reply = Reply(
        parts=parts,
        headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
    )
    assert ask(client, "openai") == (OPENAI_TEXT, None, True)
    assert fake.last.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        ' \t\r\n{"a": 1} \n',
        "[1, 2]",
        '"s"',
        "5",
        "",
        " ",
        "\x0b{}",
        "{} x",
        "{}\x0b",
        "{",
        "x",
    ],
)
def test_event_json_is_read_exactly_as_json_loads_reads_it(text):
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_json(text)
    else:
        assert parse_json(text) == expected
