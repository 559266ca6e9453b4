"""POST <prefix>/v1/responses, read by the openai Python SDK's own
responses.create (streamed and not)."""

import json

import pytest
from test_frontends import node  # noqa: F401 - the fixture
from test_tool_loop import calls_step

from fakeprovider import Reply, openai_events, transcript

pytestmark = pytest.mark.system  # a real server, read by the SDK

TOKEN = "app-token-123"


@pytest.fixture
def sdk(make_app, live, fake):
    from openai import OpenAI

    app = make_app(AI_RATELIMIT=None, AI_MAX_RETRIES=0)
    app.register_blueprint(
        app.extensions["ai"].openai_blueprint(
            authorize=lambda r: r.headers["Authorization"] == f"Bearer {TOKEN}",
            models={"fast": "openai:gpt-fast", "claude": "anthropic"},
            system="Be brief.",
        ),
        url_prefix="/oa",
    )
    return OpenAI(base_url=f"{live(app)}/oa/v1", api_key=TOKEN, max_retries=0)


def test_the_sdk_streams_a_response(sdk, fake):
    fake.reply = Reply(parts=openai_events(["The sky ", "is blue."]))
    stream = sdk.responses.create(model="fast", input="Why is the sky blue?", stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "The sky is blue."
    final = events[-1].response
    assert final.output_text == "The sky is blue." and final.status == "completed"
    sent = fake.last.json()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "Why is the sky blue?"}


def test_the_sdk_reads_a_whole_response_with_a_function_call(sdk, fake):
    fake.reply = calls_step("openai", [("call_w", "get_weather", {"city": "Paris"})])
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    response = sdk.responses.create(model="fast", input="Weather in Paris?", tools=tools)
    [call] = [item for item in response.output if item.type == "function_call"]
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_w",
        "get_weather",
        {"city": "Paris"},
    )
    assert response.usage.input_tokens == 10
    assert fake.last.json()["tools"][0]["function"]["name"] == "get_weather"


def test_a_conversation_with_a_function_call_output_reaches_the_provider(sdk, fake):
    fake.reply = Reply(parts=openai_events(["Sunny."]))
    response = sdk.responses.create(
        model="fast",
        instructions="Use the tools.",
        input=[
            {"role": "user", "content": "Weather?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        max_output_tokens=50,
    )
    assert response.output_text == "Sunny."
    sent = fake.last.json()
    assert sent["messages"][0]["content"] == "Be brief.\n\nUse the tools."
    assert sent["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert sent["max_completion_tokens"] == 50


def test_errors_are_the_sdks_errors(sdk, fake):
    import openai

    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="nope", input="Hi")
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="fast", input="Hi", previous_response_id="resp_1")
    fake.reply = Reply.json(429, {"error": {"message": "slow down", "type": "requests"}})
    with pytest.raises(openai.RateLimitError):
        sdk.responses.create(model="fast", input="Hi", stream=True)


def test_a_responses_upstream_behind_a_responses_endpoint(sdk, fake):
    """Claude behind /v1/responses works too: the upstream's format is ours to read."""
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    response = sdk.responses.create(model="claude", input="Hi")
    assert response.output_text.startswith("Hello! Rayleigh")


def test_the_ai_sdks_default_openai_provider_reads_it(make_app, live, fake, node):  # noqa: F811
    """@ai-sdk/openai's openai(model) speaks the Responses API since v5."""
    app = make_app(AI_RATELIMIT=None, AI_MAX_RETRIES=0)
    app.register_blueprint(
        app.extensions["ai"].openai_blueprint(
            authorize=lambda r: r.headers["Authorization"] == f"Bearer {TOKEN}",
            models={"fast": "openai:gpt-fast"},
        ),
        url_prefix="/oa",
    )
    fake.reply = Reply(parts=openai_events(["The sky ", "is blue."]))
    result = node("responses_sdk.mjs", f"{live(app)}/oa/v1", TOKEN, "fast", "Why is the sky blue?")
    assert result["error"] is None, result
    assert result["text"] == "The sky is blue." and result["finishReason"] == "stop"
    assert fake.last.json()["messages"][-1] == {"role": "user", "content": "Why is the sky blue?"}
