"""Gemini's SSE and Ollama's NDJSON, served by the loopback provider: what
each transcript becomes (text, reasoning, tool calls, usage, finish reason,
errors), under every framing and split anywhere."""

import json

import pytest

from fakeprovider import Reply, split_every, transcript
from flask_aistream import ProviderError
from flask_aistream.providers.gemini import GenerateContentReader
from flask_aistream.providers.ndjson import NDJSONDecoder
from flask_aistream.providers.ollama import ChatReader
from flask_aistream.providers.sse import SSEDecoder
from helpers import relayed

GEMINI_TEXT = (
    "The sky appears blue because sunlight is scattered <most> at short wavelengths — café 🌍."
)
OLLAMA_TEXT = "The sky <is> blue & café 🌍."


def reply_for(name: str, **kwargs) -> Reply:
    body = transcript(name)
    return Reply.ndjson(body, **kwargs) if name.endswith(".ndjson") else Reply.sse(body, **kwargs)


def ask_events(app, provider, **options):
    with app.app_context():
        return list(
            app.extensions["ai"].iter_events("Why is the sky blue?", provider=provider, **options)
        )


def answer_of(app, provider, **options):
    return ask_events(app, provider, **options)[-1].answer


STREAMS = [
    ("gemini", "gemini_basic.sse", GEMINI_TEXT),
    ("ollama", "ollama_basic.ndjson", OLLAMA_TEXT),
    ("ollama", "ollama_no_final_newline.ndjson", OLLAMA_TEXT),
    ("gemini", "gemini_thinking_tools.sse", "Let me check."),
    ("ollama", "ollama_thinking_tools.ndjson", "Let me check."),
]


@pytest.mark.parametrize("framing", ["chunked", "close", "length"])
@pytest.mark.parametrize("provider, name, text", STREAMS, ids=[s[1] for s in STREAMS])
def test_each_stream_is_relayed(client, fake, provider, name, text, framing):
    fake.reply = reply_for(name, framing=framing)
    response = client.post("/chat", json={"question": "Why?", "provider": provider})
    assert relayed(response.get_data()) == (text, None, True)


@pytest.mark.parametrize("provider, name, text", STREAMS[:3], ids=[s[1] for s in STREAMS[:3]])
def test_one_byte_per_write(client, fake, provider, name, text):
    fake.reply = Reply(parts=split_every(transcript(name), 1), headers=reply_for(name).headers)
    response = client.post("/chat", json={"question": "Why?", "provider": provider})
    assert relayed(response.get_data()) == (text, None, True)


def decode_all(provider, pieces):
    reader = GenerateContentReader("gemini") if provider == "gemini" else ChatReader("ollama")
    decoder = SSEDecoder() if provider == "gemini" else NDJSONDecoder()
    parts = []
    for piece in pieces:
        for event in decoder.feed(piece):
            reader.parse(event, parts)
    for event in decoder.flush():
        reader.parse(event, parts)
    return reader, "".join(p for p in parts if p.__class__ is str)


@pytest.mark.parametrize("provider, name, text", STREAMS[:3], ids=[s[1] for s in STREAMS[:3]])
def test_split_at_every_byte_offset(provider, name, text):
    """Below HTTP: decoder and reader fed the body in two reads split at
    every offset, inside CRLFs, JSON escapes and 4-byte UTF-8 characters."""
    body = transcript(name)
    for cut in range(1, len(body)):
        reader, got = decode_all(provider, [body[:cut], body[cut:]])
        assert got == text, f"split at {cut}"
        assert reader.finished and reader.done, f"split at {cut}"


def test_gemini_answer(make_app, fake):
    fake.reply = reply_for("gemini_basic.sse")
    answer = answer_of(make_app(), "gemini")
    assert answer.text == GEMINI_TEXT
    assert (answer.finish_reason, answer.raw_finish_reason) == ("stop", "STOP")
    assert (answer.model, answer.response_id) == ("gemini-2.5-flash", "Qm9xF2a1KJyT0gPq7vR3cA")
    # usageMetadata is cumulative: the last one counts
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (9, 58)
    assert answer.usage.total_tokens == 67


def test_gemini_thoughts_and_function_calls(make_app, fake):
    fake.reply = reply_for("gemini_thinking_tools.sse")
    events = ask_events(make_app(), "gemini")
    assert [e.type for e in events] == ["reasoning", "text", "tool_call", "step_finish", "finish"]
    answer = events[-1].answer
    assert answer.reasoning.startswith("**Checking the weather**")
    assert "Checking" not in answer.text  # thoughts are never text
    (call,) = answer.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {
        "city": "Paris",
        "unit": "celsius",
    }
    assert call.id  # Gemini 2.5 sends none: we make one, for the formats that need it
    assert answer.finish_reason == "tool_calls"  # Gemini says STOP after calls
    # output counts the thoughts (candidatesTokenCount leaves them out)
    assert answer.usage.output_tokens == 60 and answer.usage.reasoning_tokens == 40
    assert answer.usage.cached_input_tokens == 8


def test_gemini_max_tokens(make_app, fake):
    fake.reply = reply_for("gemini_max_tokens.sse")
    answer = answer_of(make_app(), "gemini")
    assert answer.finish_reason == "length" and answer.text.endswith("because sunlight")


@pytest.mark.parametrize("name", ["gemini_blocked_prompt.sse", "gemini_safety_finish.sse"])
def test_gemini_blocked_answer_is_a_clear_error(make_app, fake, name, log_records):
    fake.reply = reply_for(name)
    app = make_app()
    response = app.test_client().post("/chat", json={"question": "Why?", "provider": "gemini"})
    text, error, done = relayed(response.get_data())
    assert error == "The AI provider blocked this answer (SAFETY)." and done
    answers = []
    with app.app_context():
        events = app.extensions["ai"].iter_events(
            "Why?", provider="gemini", on_finish=answers.append
        )
        with pytest.raises(ProviderError) as failure:
            list(events)
    assert failure.value.kind == "blocked" and not failure.value.retryable
    assert answers[0].finish_reason == "content_filter"
    assert len(fake.requests) == 2  # a block is never retried


def test_gemini_in_stream_error(make_app, fake):
    fake.reply = reply_for("gemini_midstream_error.sse")
    app = make_app()
    response = app.test_client().post("/chat", json={"question": "Why?", "provider": "gemini"})
    text, error, done = relayed(response.get_data())
    assert text == "The sky appears blue because" and done
    assert error == "The AI provider reported an error during the answer (UNAVAILABLE); try again."


@pytest.mark.parametrize(
    "name, provider", [("gemini_truncated.sse", "gemini"), ("ollama_truncated.ndjson", "ollama")]
)
@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_a_stream_without_its_end_is_cut_off(make_app, fake, name, provider, framing):
    fake.reply = reply_for(name, framing=framing)
    app = make_app(AI_MAX_RETRIES=0)
    response = app.test_client().post("/chat", json={"question": "Why?", "provider": provider})
    text, error, done = relayed(response.get_data())
    assert text and done
    assert error == "The answer was cut off: the AI provider closed the stream early."


def test_gemini_error_statuses(make_app, fake):
    app = make_app(AI_MAX_RETRIES=0)
    bad_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    fake.reply = Reply.json(400, bad_key)
    with app.app_context(), pytest.raises(ProviderError) as failure:
        app.extensions["ai"].ask("hi", provider="gemini")
    assert failure.value.kind == "auth" and failure.value.status == 400
    quota = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota. Please retry in 0.02s.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.02s"}
            ],
        }
    }
    fake.reply = Reply.json(429, quota)
    with app.app_context(), pytest.raises(ProviderError) as failure:
        app.extensions["ai"].ask("hi", provider="gemini")
    assert failure.value.kind == "rate_limit" and failure.value.retry_after == 0.02


def test_gemini_request(make_app, fake):
    fake.reply = reply_for("gemini_basic.sse")
    app = make_app()
    history = [
        {"role": "user", "content": "What is recursion?"},
        {"role": "assistant", "content": "A function calling itself."},
    ]
    with app.app_context():
        app.extensions["ai"].ask(
            "An example?",
            provider="gemini",
            system="Be brief.",
            messages=history,
            temperature=0.5,
            max_tokens=100,
        )
    seen = fake.last
    assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert seen.headers["x-goog-api-key"] == "AIzaSyTESTKEY0123456789abcdefSECRET"
    assert "key=" not in seen.path  # URLs get logged: the key never goes there
    assert seen.json() == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "What is recursion?"}]},
            {"role": "model", "parts": [{"text": "A function calling itself."}]},
            {"role": "user", "parts": [{"text": "An example?"}]},
        ],
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100},
    }


def test_ollama_answer(make_app, fake):
    fake.reply = reply_for("ollama_basic.ndjson")
    answer = answer_of(make_app(), "ollama")
    assert answer.text == OLLAMA_TEXT
    assert (answer.finish_reason, answer.raw_finish_reason) == ("stop", "stop")
    assert answer.model == "llama3.2"
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (31, 23)


def test_ollama_thinking_and_tool_calls(make_app, fake):
    fake.reply = reply_for("ollama_thinking_tools.ndjson")
    events = ask_events(make_app(), "ollama")
    assert [e.type for e in events] == ["reasoning", "text", "tool_call", "step_finish", "finish"]
    answer = events[-1].answer
    assert answer.reasoning == "The user asks about Paris weather."
    assert answer.tool_calls[0].id == "call_k3jd8"
    assert json.loads(answer.tool_calls[0].arguments) == {"city": "Paris"}  # an object on the wire
    assert answer.finish_reason == "tool_calls"


def test_ollama_in_stream_error(client, fake):
    fake.reply = reply_for("ollama_midstream_error.ndjson")
    response = client.post("/chat", json={"question": "Why?", "provider": "ollama"})
    text, error, done = relayed(response.get_data())
    assert text == "The sky <is> blue & café 🌍" and done
    assert error == "The AI provider reported an error during the answer."


def test_ollama_error_status(make_app, fake):
    fake.reply = Reply.json(404, {"error": "model 'nope' not found"})
    app = make_app()
    with app.app_context(), pytest.raises(ProviderError) as failure:
        app.extensions["ai"].ask("hi", provider="ollama", model="nope")
    assert failure.value.kind == "not_found"
    assert "model 'nope' not found" in failure.value.detail


def test_ollama_request(make_app, fake, monkeypatch):
    fake.reply = reply_for("ollama_basic.ndjson")
    app = make_app(AI_OLLAMA_MODEL="llama3.2")
    with app.app_context():
        app.extensions["ai"].ask(
            "Why?", provider="ollama", system="Be brief.", temperature=0, max_tokens=64
        )
    seen = fake.last
    assert seen.path == "/api/chat"
    assert "authorization" not in seen.headers  # a local Ollama takes no key
    assert seen.json() == {
        "model": "llama3.2",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why?"},
        ],
        "options": {"temperature": 0.0, "num_predict": 64},
    }
    monkeypatch.setenv("OLLAMA_API_KEY", "ollama-cloud-key")
    with make_app().app_context() as context:
        context.app.extensions["ai"].ask("Why?", provider="ollama")
    assert fake.last.headers["authorization"] == "Bearer ollama-cloud-key"


# --- the NDJSON decoder, with no network ---------------------------------------


def test_ndjson_lines_split_anywhere():
    body = transcript("ollama_basic.ndjson")
    lines = body.decode().splitlines()
    for cut in range(len(body) + 1):
        decoder = NDJSONDecoder()
        got = decoder.feed(body[:cut]) + decoder.feed(body[cut:]) + decoder.flush()
        assert got == lines, f"split at {cut}"


def test_ndjson_crlf_blank_lines_and_a_last_line_without_newline():
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\r\n\n  \n{"b":') == ['{"a":1}']
    assert decoder.feed(b"2}") == []
    assert decoder.flush() == ['{"b":2}']
    assert decoder.flush() == []


def test_ndjson_utf8_split_inside_a_character():
    line = '{"t":"🌍é"}\n'.encode()
    decoder = NDJSONDecoder()
    got = [piece for byte in line for piece in decoder.feed(bytes([byte]))]
    assert got == ['{"t":"🌍é"}']


def test_ndjson_line_length_is_bounded():
    from flask_aistream import StreamFormatError

    decoder = NDJSONDecoder(max_line_bytes=100)
    with pytest.raises(StreamFormatError):
        for _ in range(20):
            decoder.feed(b"x" * 10)  # no newline ever comes
    with pytest.raises(StreamFormatError):
        NDJSONDecoder(max_line_bytes=100).feed(b"y" * 200 + b"\n")
    assert NDJSONDecoder(max_line_bytes=100).feed(b"z" * 100 + b"\n") == ["z" * 100]


def test_keys_shaped_like_googles_are_redacted_even_when_not_ours(make_app, fake, log_records):
    other_key = "AIzaSyOTHERKEY0123456789abcdefghijklm"
    body = {
        "error": {
            "code": 400,
            "message": f"API key {other_key} not valid.",
            "status": "INVALID_ARGUMENT",
        }
    }
    fake.reply = Reply.json(400, body)
    app = make_app()
    response = app.test_client().post("/chat", json={"question": "Why?", "provider": "gemini"})
    assert relayed(response.get_data())[1] == "The AI provider rejected the request. (HTTP 400)"
    assert "INVALID_ARGUMENT" in log_records.text
    assert other_key not in log_records.text and "AIzaSyTESTKEY" not in log_records.text
