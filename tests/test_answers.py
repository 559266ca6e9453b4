"""Typed answers: what each provider's stream adds up to (text, reasoning, tool
calls, usage, model, finish reason), the events of ``iter_events``, and the
optional events of the default stream format."""

import json

import pytest
from test_providers import ANTHROPIC_TEXT, OPENAI_TEXT

from fakeprovider import Reply, openai_events, split_every, transcript
from flask_aistream import (
    Answer,
    ConfigurationError,
    Finish,
    ProviderError,
    ReasoningDelta,
    StepFinish,
    TextDelta,
    ToolCall,
    Usage,
)
from helpers import relayed, sse_events

# transcript, provider it is served as, then what the answer must hold
ANSWERS = {
    "openai_basic.sse": (
        "openai",
        dict(
            text=OPENAI_TEXT,
            reasoning="",
            tool_calls=(),
            finish_reason="stop",
            raw_finish_reason="stop",
            usage=Usage(24, 23, 47, reasoning_tokens=0, cached_input_tokens=0),
            model="gpt-4o-mini-2024-07-18",
            response_id="chatcmpl-Ab12",
        ),
    ),
    "groq_basic.sse": (
        "groq",
        dict(
            text="Hello from Groq!",
            reasoning="The user wants a greeting.",
            finish_reason="stop",
            raw_finish_reason="stop",
            usage=Usage(47, 13, 60),  # from x_groq.usage
            model="llama-3.1-8b-instant",
            response_id="chatcmpl-5f0b6c3e-8a1d-4c2e-9b7a-2f7e1c9d4a10",
        ),
    ),
    "mistral_basic.sse": (
        "mistral",
        dict(
            text="Le ciel est bleu.",
            reasoning="Let me think in French.",  # a "thinking" content chunk
            finish_reason="stop",
            usage=Usage(13, 18, 31),  # on the finish chunk
            model="mistral-small-latest",
        ),
    ),
    "deepseek_reasoning.sse": (
        "openai",
        dict(
            text="Blue light scatters",
            reasoning="Light scatters by wavelength.",
            finish_reason="length",
            raw_finish_reason="length",
            usage=Usage(18, 40, 58, reasoning_tokens=34, cached_input_tokens=16),
            model="deepseek-reasoner",
        ),
    ),
    "openrouter_reasoning.sse": (
        "openai",
        dict(
            text="Sure, here.",
            reasoning="Short answer wanted.",
            finish_reason="stop",
            raw_finish_reason="stop",
            # the usage chunk comes after the finish chunk, with a choice of its own
            usage=Usage(16, 14, 30, reasoning_tokens=5, cached_input_tokens=0),
            model="anthropic/claude-sonnet-4.5",
            response_id="gen-1763370000-pQ8vXk2",
        ),
    ),
    "openai_refusal.sse": (
        "openai",
        dict(
            text="",  # the refusal is not the answer's text
            finish_reason="content_filter",
            raw_finish_reason="stop",
            usage=Usage(30, 9, 39),
        ),
    ),
    "openai_tool_calls.sse": (
        "openai",
        dict(
            text="",
            reasoning="thinking...",
            tool_calls=(ToolCall("call_abc123", "get_weather", '{"location": "Paris"}'),),
            finish_reason="tool_calls",
            raw_finish_reason="tool_calls",
            usage=None,
            model="gpt-4o-mini",
        ),
    ),
    "openai_parallel_tools.sse": (
        "openai",
        dict(
            tool_calls=(
                ToolCall("call_paris", "get_weather", '{"city": "Paris"}'),
                ToolCall("call_tokyo", "get_time", '{"tz": "Asia/Tokyo"}'),
            ),
            finish_reason="tool_calls",
            usage=Usage(80, 40, 120, reasoning_tokens=0, cached_input_tokens=64),
        ),
    ),
    "anthropic_basic.sse": (
        "anthropic",
        dict(
            text=ANTHROPIC_TEXT,
            reasoning="",
            finish_reason="stop",
            raw_finish_reason="end_turn",
            usage=Usage(21, 31, 52, cached_input_tokens=0),
            model="claude-sonnet-4-5-20250929",
            response_id="msg_01XFDUDYJgAACzvnptvVoYEL",
        ),
    ),
    "anthropic_thinking_tools.sse": (
        "anthropic",
        dict(
            text="Let me check.",
            reasoning="The user asks about weather; I should call the tool.",
            tool_calls=(
                ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"location": "Paris"}'),
            ),
            finish_reason="tool_calls",
            raw_finish_reason="tool_use",
            usage=Usage(50, 89, 139),
        ),
    ),
    "anthropic_max_tokens.sse": (
        "anthropic",
        dict(
            text="Once upon a time",
            finish_reason="length",
            raw_finish_reason="max_tokens",
            # every input token counts, cache reads and writes included
            usage=Usage(2052, 5, 2057, cached_input_tokens=2000),
            model="claude-haiku-4-5-20251001",
        ),
    ),
    "anthropic_refusal.sse": (
        "anthropic",
        dict(text="I can", finish_reason="content_filter", raw_finish_reason="refusal"),
    ),
}


def answer_to(app, provider, **options):
    """Ask through ``ask()``; return the one answer its hook saw."""
    seen = []
    with app.app_context():
        text = app.extensions["ai"].ask("Why?", provider=provider, on_finish=seen.append, **options)
    assert len(seen) == 1, seen
    assert seen[0].text == text
    return seen[0]


@pytest.mark.parametrize("name", list(ANSWERS))
def test_what_each_provider_stream_adds_up_to(app, fake, name):
    provider, expected = ANSWERS[name]
    fake.reply = Reply(parts=split_every(transcript(name), 37))
    answer = answer_to(app, provider)
    assert isinstance(answer, Answer)
    assert {key: getattr(answer, key) for key in expected} == expected
    assert answer.provider == provider
    assert answer.error is None
    if answer.text:
        assert 0 <= answer.first_token_s <= answer.duration_s
    else:
        assert answer.first_token_s is None


def test_finish_reasons_are_normalized(app, fake):
    cases = {
        b'"finish_reason":"stop"': ("stop", "stop"),
        b'"finish_reason":"length"': ("length", "length"),
        b'"finish_reason":"content_filter"': ("content_filter", "content_filter"),
        b'"finish_reason":"function_call"': ("tool_calls", "function_call"),
        b'"finish_reason":"abort"': ("other", "abort"),
    }
    for finish, (reason, raw) in cases.items():
        fake.reply = Reply.sse(
            transcript("openai_basic.sse").replace(b'"finish_reason":"stop"', finish)
        )
        answer = answer_to(app, "openai")
        assert (answer.finish_reason, answer.raw_finish_reason) == (reason, raw)


def test_an_end_marker_with_no_finish_value_is_other(app, fake):
    fake.reply = Reply(parts=openai_events(["a", "b"], finish=False) + [b"data: [DONE]\n\n"])
    answer = answer_to(app, "openai")
    assert (answer.text, answer.finish_reason, answer.raw_finish_reason) == ("ab", "other", None)


def test_model_is_the_requested_one_when_the_provider_does_not_say(app, fake):
    fake.reply = Reply(parts=openai_events(["a"]))  # chunks with no "model"
    assert answer_to(app, "openai", model="gpt-test").model == "gpt-test"


def test_offline_provider_reports_usage_and_stop(make_app):
    app = make_app(AI_PROVIDER="offline", AI_OFFLINE_DELAY=0, AI_OFFLINE_TEXT="one two three")
    answer = answer_to(app, "offline", system="Be kind.")
    assert (answer.text, answer.finish_reason, answer.raw_finish_reason) == (
        "one two three",
        "stop",
        "stop",
    )
    # words as tokens: "Why?" + "Be kind." in, three out
    assert answer.usage == Usage(3, 3, 6)
    assert answer.model == "offline"


def test_iter_events_yields_typed_events_and_one_finish_last(app, fake):
    fake.reply = Reply.sse(transcript("anthropic_thinking_tools.sse"))
    with app.app_context():
        events = list(app.extensions["ai"].iter_events("Weather?", provider="anthropic"))
    assert [event.type for event in events] == [
        "reasoning",
        "text",
        "tool_call",
        "step_finish",
        "finish",
    ]
    assert [type(event) for event in events] == [
        ReasoningDelta,
        TextDelta,
        ToolCall,
        StepFinish,
        Finish,
    ]
    assert events[1] == TextDelta("Let me check.")
    answer = events[-1].answer
    assert answer.tool_calls == (events[2],)
    assert answer.finish_reason == "tool_calls"


def test_iter_events_raises_a_provider_error_after_the_hook(app, fake):
    fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    seen = []
    with app.app_context():
        events = app.extensions["ai"].iter_events("hi", on_finish=seen.append)
        assert next(events) == TextDelta("Before the error")
        with pytest.raises(ProviderError) as failure:
            next(events)
    assert len(seen) == 1 and seen[0].error is failure.value
    assert (seen[0].finish_reason, seen[0].text) == ("error", "Before the error")


def test_task_builder_iter_events_and_on_finish(app, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    seen = []
    with app.app_context():
        events = list(app.extensions["ai"].task().prompt("hi").on_finish(seen.append).iter_events())
    assert "".join(e.text for e in events if e.type == "text") == OPENAI_TEXT
    assert seen == [events[-1].answer]


# --- the optional events of the default format ---------------------------------


def post(client, **body):
    response = client.post("/chat", json={"question": "Why?", **body})
    assert response.status_code == 200
    return response.get_data()


def test_by_default_the_stream_is_unchanged(client, fake):
    fake.reply = Reply.sse(transcript("anthropic_thinking_tools.sse"))
    body = post(client, provider="anthropic")
    assert (
        body == b'data: {"content": "Let me check."}\n\nid: flask-aistream:done\n\ndata: [DONE]\n\n'
    )


def test_every_optional_event(client, fake):
    fake.reply = Reply.sse(transcript("anthropic_thinking_tools.sse"))
    body = post(client, provider="anthropic", events=["reasoning", "tool_calls", "finish"])
    assert body.split(b"\n\n")[:-1] == [
        b'data: {"reasoning": "The user asks about weather; I should call the tool."}',
        b'data: {"content": "Let me check."}',
        b'data: {"tool_call": {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", '
        b'"arguments": "{\\"location\\": \\"Paris\\"}"}}',
        b'data: {"finish": {"reason": "tool_calls", "usage": {"input_tokens": 50, '
        b'"output_tokens": 89, "total_tokens": 139, "reasoning_tokens": null, '
        b'"cached_input_tokens": null}, "model": "claude-sonnet-4-5-20250929"}}',
        b"id: flask-aistream:done",
        b"data: [DONE]",
    ]
    # the spec's readers still see the same text and no error
    assert relayed(body) == ("Let me check.", None, True)


def test_finish_event_after_an_error(client, fake):
    fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    events = [json.loads(e.data) for e in sse_events(post(client, events=["finish"]))[:-1]]
    assert events[0] == {"content": "Before the error"}
    assert "error" in events[1]
    assert events[2] == {"finish": {"reason": "error", "usage": None, "model": "gpt-4o-mini"}}


def test_configured_events_and_a_call_that_replaces_them(make_app, fake):
    client = make_app(AI_STREAM_EVENTS=["finish"]).test_client()
    fake.reply = Reply.sse(transcript("groq_basic.sse"))
    kinds = [list(json.loads(e.data))[0] for e in sse_events(post(client, provider="groq"))[:-1]]
    assert kinds == ["content", "content", "finish"]
    kinds = [
        list(json.loads(e.data))[0]
        for e in sse_events(post(client, provider="groq", events=["reasoning"]))[:-1]
    ]
    assert kinds == ["reasoning", "content", "content"]


def test_unknown_events_are_refused(make_app, app):
    with pytest.raises(ConfigurationError, match="AI_STREAM_EVENTS.*'usage'"):
        make_app(AI_STREAM_EVENTS=["usage"])
    with app.test_request_context(), pytest.raises(ConfigurationError, match="'thoughts'"):
        app.extensions["ai"].ask_stream("hi", events=["thoughts"])


# --- usage is asked for -------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, config, asked",
    [
        ("openai", {}, True),
        ("groq", {}, True),
        ("mistral", {}, False),  # Mistral answers 422 to stream_options
        ("openai", {"AI_OPENAI_STREAM_USAGE": False}, False),
        ("mistral", {"AI_MISTRAL_STREAM_USAGE": "true"}, True),
    ],
)
def test_stream_options_ask_for_usage(make_app, fake, provider, config, asked):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    post(make_app(**config).test_client(), provider=provider)
    body = fake.last.json()
    assert ("stream_options" in body) is asked
    if asked:
        assert body["stream_options"] == {"include_usage": True}


def test_a_bad_stream_usage_flag_fails_at_start_up(make_app):
    with pytest.raises(ConfigurationError, match="AI_GROQ_STREAM_USAGE"):
        make_app(AI_GROQ_STREAM_USAGE="sometimes")
