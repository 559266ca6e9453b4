"""OpenAI's Responses API as an upstream: transcripts written from the API
reference, replayed through the loopback provider (split anywhere), the
request body of every option, openai-responses, Azure, Open Responses."""

import json

import pytest

from fakeprovider import Reply, split_every, transcript
from flask_aistream import ProviderError, UnsupportedOptionError, tool
from flask_aistream.providers.responses import ResponsesReader
from flask_aistream.providers.sse import SSEDecoder

TEXT = "The sky is blue — café 🌍."


def app_for(make_app, **config):
    return make_app(
        AI_PROVIDERS={
            "resp": {
                "api": "responses",
                "base_url": "http://127.0.0.1:1/v1",
                "api_key": "sk-r",
                "model": "gpt-5-mini",
            }
        },
        AI_MAX_RETRIES=0,
        **config,
    )


@pytest.fixture
def responses_app(make_app, fake):
    def build(**config):
        app = make_app(
            AI_PROVIDERS={
                "resp": {
                    "api": "responses",
                    "base_url": f"{fake.url}/v1",
                    "api_key": "sk-resp-0000",
                    "model": "gpt-5-mini",
                }
            },
            AI_MAX_RETRIES=0,
            **config,
        )
        return app

    return build


def events_of(app, provider="resp", **options):
    with app.app_context():
        return list(app.extensions["ai"].iter_events("Why?", provider=provider, **options))


@pytest.mark.parametrize(
    "name", ["responses_basic.sse", "responses_basic_crlf.sse", "responses_open_done.sse"]
)
def test_text_usage_model_and_finish(responses_app, fake, name):
    fake.reply = Reply(parts=[transcript(name)], framing="close" if "crlf" in name else "chunked")
    events = events_of(responses_app())
    answer = events[-1].answer
    assert answer.text == TEXT and answer.finish_reason == "stop"
    assert (answer.model, answer.response_id) == ("gpt-5-mini-2025-08-07", "resp_0a1b2c")
    usage = answer.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (24, 31, 55)
    assert (usage.cached_input_tokens, usage.reasoning_tokens) == (8, 12)
    assert fake.last.path == "/v1/responses"


def test_reasoning_summaries_and_two_parallel_calls(responses_app, fake):
    fake.reply = Reply(parts=[transcript("responses_reasoning_tools.sse")])
    answer = events_of(responses_app())[-1].answer
    assert answer.reasoning == "**Planning** the lookups\n\nTwo cities: one call each"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
        ("call_paris", "get_weather", {"city": "Paris"}),
        ("call_rome", "get_weather", {"city": "Rome"}),
    ]
    assert answer.finish_reason == "tool_calls" and answer.text == ""


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("responses_refusal.sse", ("content_filter", None)),
        ("responses_incomplete.sse", ("length", None)),
        ("responses_failed.sse", ("error", "rate_limit")),
        ("responses_error.sse", ("error", "quota")),
        ("responses_truncated.sse", ("error", "cut_off")),
    ],
)
def test_endings(responses_app, fake, name, outcome):
    fake.reply = Reply(parts=[transcript(name)])
    app = responses_app()
    with app.app_context():
        try:
            answer = list(app.extensions["ai"].iter_events("Why?", provider="resp"))[-1].answer
            got = (answer.finish_reason, None)
        except ProviderError as exc:
            got = ("error", exc.kind)
    assert got == outcome


def test_an_error_in_the_stream_says_only_its_code(responses_app, fake):
    fake.reply = Reply(parts=[transcript("responses_failed.sse")])
    app = responses_app()
    body = app.test_client().post("/chat", json={"question": "Why?", "provider": "resp"}).data
    assert b"rate_limit_exceeded" in body and b"gpt-5-mini on tokens" not in body


@pytest.mark.parametrize("name", ["responses_basic.sse", "responses_reasoning_tools.sse"])
def test_split_at_every_byte_offset(name):
    body = transcript(name)
    whole = read(split_every(body, len(body)))
    for size in (1, 2, 3, 7):
        assert read(split_every(body, size)) == whole


def read(chunks):
    decoder, reader, parts = SSEDecoder(), ResponsesReader("resp"), []
    for chunk in chunks:
        for event in decoder.feed(chunk):
            reader.parse(event, parts)
    for event in decoder.flush():
        reader.parse(event, parts)
    text = "".join(p for p in parts if isinstance(p, str))
    return text, [p for p in parts if not isinstance(p, str) and p.type in ("tool_call", "stop")]


def test_the_request_body_of_every_option(responses_app, fake):
    fake.reply = Reply(parts=[transcript("responses_basic.sse")])
    image = {"type": "image", "data": "aGVsbG8=", "media_type": "image/png"}
    events_of(
        responses_app(),
        system="Be brief.",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Look"}, image]},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [{"id": "call_1", "name": "f", "arguments": "{}"}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
        max_tokens=50,
        temperature=0.3,
        top_p=0.9,
        tools=[
            {"name": "f", "description": "F.", "parameters": {"type": "object", "properties": {}}}
        ],
        tool_choice={"name": "f"},
        response_format={"type": "object"},
        reasoning="low",
        extra_body={"store": True},
    )
    body = fake.last.json()
    assert body["instructions"] == "Be brief." and body["stream"] is True
    assert body["store"] is True  # extra_body merged last: the app may keep responses
    assert body["stream_options"] == {"include_obfuscation": False}
    assert body["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look"},
                {"type": "input_image", "image_url": "data:image/png;base64,aGVsbG8="},
            ],
        },
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "done"},
        {"role": "user", "content": "Why?"},
    ]
    assert (body["max_output_tokens"], body["temperature"], body["top_p"]) == (50, 0.3, 0.9)
    assert body["tools"] == [
        {
            "type": "function",
            "name": "f",
            "description": "F.",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "f"}
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "response", "schema": {"type": "object"}}
    }
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert fake.last.headers["authorization"] == "Bearer sk-resp-0000"


@pytest.mark.parametrize("option", [{"stop": ["x"]}, {"seed": 1}])
def test_stop_and_seed_have_no_equivalent(responses_app, fake, option):
    app = responses_app()
    with app.app_context(), pytest.raises(UnsupportedOptionError):
        app.extensions["ai"].ask("Why?", provider="resp", **option)
    assert not fake.requests


def test_openai_responses_reads_openais_settings_unless_its_own_are_set(make_app, fake):
    fake.reply = Reply(parts=[transcript("responses_basic.sse")])
    app = make_app(AI_OPENAI_API_KEY="sk-openai-1111", AI_MAX_RETRIES=0)
    events_of(app, provider="openai-responses")
    assert fake.last.path == "/v1/responses"
    assert fake.last.headers["authorization"] == "Bearer sk-openai-1111"
    assert fake.last.json()["model"] == "gpt-4o-mini"
    fake.reply = Reply(parts=[transcript("responses_basic.sse")])
    app = make_app(
        AI_OPENAI_RESPONSES_API_KEY="sk-own-2222",
        AI_OPENAI_RESPONSES_MODEL="gpt-5",
        AI_OPENAI_RESPONSES_BASE_URL=f"{fake.url}/own/v1",
        AI_MAX_RETRIES=0,
    )
    events_of(app, provider="openai-responses")
    assert fake.last.path == "/own/v1/responses"
    assert fake.last.headers["authorization"] == "Bearer sk-own-2222"
    assert fake.last.json()["model"] == "gpt-5"


def test_azure_speaks_responses_when_asked(make_app, fake):
    fake.reply = Reply(parts=[transcript("responses_basic.sse")])
    app = make_app(AI_AZURE_API="responses", AI_MAX_RETRIES=0)
    answer = events_of(app, provider="azure")[-1].answer
    assert answer.text == TEXT
    assert fake.last.path == "/openai/v1/responses"
    assert fake.last.headers["api-key"] and "authorization" not in fake.last.headers
    assert fake.last.json()["model"] == "my-deployment"


def test_a_tool_loop_over_responses(responses_app, fake):
    @tool
    def get_weather(city: str) -> str:
        """Weather."""
        return f"sunny in {city}"

    fake.replies = [
        Reply(parts=[transcript("responses_reasoning_tools.sse")]),
        Reply(parts=[transcript("responses_basic.sse")]),
    ]
    answer = events_of(responses_app(), tools=[get_weather])[-1].answer
    assert answer.text == TEXT and len(answer.steps) == 2
    items = fake.requests[1].json()["input"]
    outputs = [item for item in items if item.get("type") == "function_call_output"]
    assert [(o["call_id"], o["output"]) for o in outputs] == [
        ("call_paris", "sunny in Paris"),
        ("call_rome", "sunny in Rome"),
    ]


def test_the_openai_endpoint_in_front_of_a_responses_upstream(responses_app, fake):
    fake.reply = Reply(parts=[transcript("responses_basic.sse")])
    app = responses_app(AI_RATELIMIT=None)
    app.register_blueprint(
        app.extensions["ai"].openai_blueprint(authorize=lambda r: True, models={"r": "resp"}),
        url_prefix="/oa",
    )
    response = app.test_client().post(
        "/oa/v1/chat/completions",
        json={"model": "r", "messages": [{"role": "user", "content": "Why?"}], "stream": False},
        headers={"Authorization": "Bearer app-token"},
    )
    assert response.json["choices"][0]["message"]["content"] == TEXT, response.json
