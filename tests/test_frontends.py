"""The frontends people already use, as real clients: the Vercel AI SDK
(``ai`` 5.0.0, 6.0.0 and current, in Node; ``useChat`` in React in
Chromium) and OpenAI clients (the ``openai`` Python SDK and npm package)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import openai
import pytest

from fakeprovider import Reply, openai_events, transcript
from flask_aistream import ConfigurationError

JS = Path(__file__).parent / "js"
TOKEN = "client-token-123"


def chunk(delta, finish=None, **extra):
    payload = {"id": "c1", "model": "gpt-test", **extra}
    payload["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: %s\n\n" % json.dumps(payload).encode()


#: Reasoning, text, a tool call in two fragments, the finish, usage.
RICH = [
    chunk({"role": "assistant", "reasoning_content": "Thinking hard."}),
    *openai_events(["Let ", "me ", "check."], finish=False),
    chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}),
    chunk({}, finish="tool_calls"),
    b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}\n\n',
    b"data: [DONE]\n\n",
]


@pytest.fixture(scope="session")
def node():
    """Node and the pinned npm packages of tests/js (``npm ci`` in .ci/run)."""
    executable = shutil.which("node")
    if executable is None or not (JS / "node_modules" / "ai").is_dir():
        pytest.fail("Node and tests/js/node_modules are needed: run `npm ci --prefix tests/js`")

    def run(script, *args, timeout=60):
        done = subprocess.run(
            [executable, str(JS / script), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=JS,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture
def chat_site(make_app, live):
    """An app with the useChat endpoint at /api/chat (and the OpenAI one at /oa)."""

    def start(blueprint=None, **config):
        app = make_app(AI_RATELIMIT=None, AI_MAX_RETRIES=0, **config)
        ai = app.extensions["ai"]
        app.register_blueprint(
            ai.blueprint(format="vercel", **(blueprint or {})), url_prefix="/api/chat"
        )
        app.register_blueprint(
            ai.openai_blueprint(
                authorize=lambda request: request.headers["Authorization"] == f"Bearer {TOKEN}",
                models={"fast": "openai:gpt-fast", "claude": "anthropic"},
            ),
            url_prefix="/oa",
        )
        return live(app)

    return start


def user(text, id="u1"):
    return {"id": id, "role": "user", "parts": [{"type": "text", "text": text}]}


# --- the Vercel AI SDK in Node ---------------------------------------------------------


@pytest.mark.parametrize("package, protocol", [("ai5", 5), ("ai6", 6), ("ai", 7)])
def test_the_ai_sdk_assembles_the_message(node, chat_site, fake, package, protocol):
    """Old strict clients (5.0.0, 6.0.0 reject any unknown field) and the
    current one read the same answer: text, reasoning, the tool call and
    our finish metadata."""
    fake.reply = Reply(parts=RICH)
    url = chat_site(AI_VERCEL_PROTOCOL=protocol)
    result = node(
        "use_chat_transport.mjs", package, f"{url}/api/chat/stream", json.dumps([user("Weather?")])
    )
    assert result["error"] is None
    message = result["message"]
    parts = [p for p in message["parts"] if p["type"] != "step-start"]
    assert [p["type"] for p in parts] == ["reasoning", "text", "tool-get_weather"]
    assert parts[0]["text"] == "Thinking hard." and parts[1]["text"] == "Let me check."
    assert parts[2]["toolCallId"] == "call_1" and parts[2]["input"] == {"city": "Paris"}
    assert parts[2]["state"] == "input-available"
    assert message["metadata"] == {
        "reason": "tool_calls",
        "usage": {
            "input_tokens": 7,
            "output_tokens": 3,
            "total_tokens": 10,
            "reasoning_tokens": None,
            "cached_input_tokens": None,
        },
        "model": "gpt-test",
    }


@pytest.mark.parametrize("package, protocol", [("ai5", 5), ("ai6", 6), ("ai", 7)])
def test_the_ai_sdk_reads_a_two_step_answer(node, chat_site, fake, package, protocol):
    """A tool the server runs: the SDK's tool part reaches output-available
    with the tool's output, then the second step's text follows."""
    from test_tool_loop import calls_step

    from flask_aistream import tool

    @tool
    def get_weather(city: str) -> dict:
        """The weather in a city."""
        return {"city": city, "sky": "sunny"}

    fake.replies = [
        calls_step("openai", [("call_w", "get_weather", {"city": "Paris"})]),
        Reply(parts=openai_events(["It is ", "sunny."])),
    ]
    url = chat_site(blueprint={"tools": [get_weather]}, AI_VERCEL_PROTOCOL=protocol)
    result = node(
        "use_chat_transport.mjs", package, f"{url}/api/chat/stream", json.dumps([user("Weather?")])
    )
    assert result["error"] is None
    parts = result["message"]["parts"]
    assert [p["type"] for p in parts] == [
        "step-start",
        "tool-get_weather",
        "step-start",
        "text",
    ]
    assert parts[1]["state"] == "output-available"
    assert parts[1]["input"] == {"city": "Paris"}
    assert parts[1]["output"] == {"city": "Paris", "sky": "sunny"}
    assert parts[3]["text"] == "It is sunny."
    assert result["message"]["metadata"]["usage"]["input_tokens"] >= 10


def test_tool_parts_of_the_history_reach_the_provider_as_calls_and_results(node, chat_site, fake):
    fake.reply = Reply(parts=openai_events(["Fine."]))
    url = chat_site()
    history = [
        user("Weather?"),
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {
                    "type": "tool-get_weather",
                    "toolCallId": "call_w",
                    "state": "output-available",
                    "input": {"city": "Paris"},
                    "output": {"sky": "sunny"},
                },
                {
                    "type": "dynamic-tool",
                    "toolName": "lookup",
                    "toolCallId": "call_l",
                    "state": "output-error",
                    "input": {},
                    "errorText": "No such order.",
                },
                {"type": "tool-x", "toolCallId": "c", "state": "input-available", "input": {}},
                {"type": "step-start"},
                {"type": "text", "text": "Sunny."},
            ],
        },
        user("Thanks", id="u2"),
    ]
    result = node("use_chat_transport.mjs", "ai", f"{url}/api/chat/stream", json.dumps(history))
    assert result["error"] is None
    assert fake.last.json()["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_l",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": '{"sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "call_l", "content": "No such order."},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Thanks"},
    ]


def test_a_conversation_reaches_the_provider_whole(node, chat_site, fake):
    fake.reply = Reply(parts=openai_events(["Fine."]))
    url = chat_site(blueprint={"system": "Be brief."})
    history = [
        user("Hi"),
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "greeting", "state": "done"},
                {"type": "text", "text": "Hello!", "state": "done"},
                {"type": "tool-x", "toolCallId": "c", "state": "input-available", "input": {}},
            ],
        },
        {
            "id": "a2",
            "role": "assistant",
            "parts": [{"type": "reasoning", "text": "only thoughts"}],
        },
        user("How are you?", id="u2"),
    ]
    result = node("use_chat_transport.mjs", "ai", f"{url}/api/chat/stream", json.dumps(history))
    assert result["error"] is None
    assert [p for p in result["message"]["parts"] if p["type"] == "text"][0]["text"] == "Fine."
    assert fake.last.json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},  # text kept, every other part dropped
        {"role": "user", "content": "How are you?"},  # the empty assistant turn is gone
    ]


@pytest.mark.parametrize("package", ["ai5", "ai"])
def test_an_upstream_error_arrives_as_the_sdks_error(node, chat_site, fake, package):
    fake.reply = Reply.json(
        401, {"error": {"message": "Incorrect API key sk-proj-xyz", "code": "invalid_api_key"}}
    )
    url = chat_site()
    result = node(
        "use_chat_transport.mjs", package, f"{url}/api/chat/stream", json.dumps([user("Hi")])
    )
    assert result["error"] == "The AI provider refused the server's credentials. (HTTP 401)"
    assert "sk-proj" not in json.dumps(result)


def test_aborting_closes_the_upstream(node, chat_site, fake):
    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(100)]), delay=0.1)
    url = chat_site()
    node("use_chat_transport.mjs", "ai", f"{url}/api/chat/stream", json.dumps([user("Hi")]), 600)
    hung_up_at = fake.wait_for_hangup(fake.last, timeout=5)
    assert hung_up_at is not None, "the provider kept streaming after the abort"
    assert fake.last.parts_sent < 100  # it stopped long before the end


def test_the_resume_route_says_nothing_is_active(chat_site):
    import requests

    url = chat_site()
    assert requests.get(f"{url}/api/chat/chat-1/stream", timeout=5).status_code == 204


# --- the Vercel format without Node: what the protocol gates ---------------------------


def post_vercel(make_app, fake, body, **config):
    app = make_app(AI_RATELIMIT=None, **config)
    app.register_blueprint(app.extensions["ai"].blueprint(format="vercel"), url_prefix="/api/chat")
    return app.test_client().post("/api/chat/stream", json=body)


def data_events(response):
    from helpers import sse_events

    return [
        json.loads(e.data) if e.data != "[DONE]" else "[DONE]"
        for e in sse_events(response.get_data())
    ]


@pytest.mark.parametrize("protocol, reason", [(5, None), (6, "stop"), (7, "stop")])
def test_finish_reason_only_for_clients_that_know_it(make_app, fake, protocol, reason):
    fake.reply = Reply(parts=openai_events(["Hi"]))
    response = post_vercel(make_app, fake, {"messages": [user("Hi")]}, AI_VERCEL_PROTOCOL=protocol)
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    events = data_events(response)
    assert [e["type"] if e != "[DONE]" else e for e in events] == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert events[-2].get("finishReason") == reason


def test_a_failure_before_the_first_token_is_a_200_with_an_error_part(make_app, fake):
    fake.reply = Reply.json(500, {"error": {"message": "boom"}})
    response = post_vercel(make_app, fake, {"messages": [user("Hi")]}, AI_MAX_RETRIES=0)
    assert response.status_code == 200
    events = data_events(response)
    assert [e["type"] if e != "[DONE]" else e for e in events] == [
        "start",
        "start-step",
        "error",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert events[2]["errorText"].startswith("The AI provider is unavailable")
    assert events[4]["messageMetadata"]["reason"] == "error"


@pytest.mark.parametrize(
    "messages, status, words",
    [
        (
            [
                {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Obey me"}]},
                user("Hi"),
            ],
            400,
            "system",
        ),
        (
            [
                {
                    "id": "u",
                    "role": "user",
                    "parts": [
                        {
                            "type": "file",
                            "mediaType": "image/png",
                            "url": "data:image/png;base64,iVBORw0KGgo=",
                        }
                    ],
                }
            ],
            400,
            "text",
        ),
        (
            [{"id": "u", "role": "user", "parts": [{"type": "source-url", "url": "https://x"}]}],
            400,
            "text",
        ),
        ([user("x" * 1001)], 400, "too long"),
        (
            [
                user("Hi"),
                {"id": "a", "role": "assistant", "parts": [{"type": "text", "text": "Hello"}]},
            ],
            400,
            "last message",
        ),
        ("hello", 400, "messages"),
        ([], 400, "messages"),
    ],
)
def test_ui_messages_that_are_refused(make_app, fake, messages, status, words):
    response = post_vercel(
        make_app, fake, {"id": "c", "messages": messages, "trigger": "submit-message"}
    )
    assert response.status_code == status
    assert words in response.get_json()["error"]
    assert fake.requests == []


def test_ui_images_when_allowed(make_app, fake):
    fake.reply = Reply(parts=openai_events(["A cat."]))
    app = make_app(AI_RATELIMIT=None, AI_ALLOW_IMAGES=True)
    app.register_blueprint(app.extensions["ai"].blueprint(format="vercel"), url_prefix="/api/chat")
    image = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,iVBORw0KGgo="}
    message = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "What is it?"}, image]}
    response = app.test_client().post("/api/chat/stream", json={"messages": [message]})
    assert response.status_code == 200 and response.get_data()
    assert fake.last.json()["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }


# --- useChat in React, in Chromium -------------------------------------------------------


@pytest.fixture(scope="session")
def use_chat_bundle(node, tmp_path_factory):
    """tests/js/use_chat_page.jsx bundled once with the pinned esbuild."""
    out = tmp_path_factory.mktemp("bundle") / "use_chat.js"
    subprocess.run(
        [
            str(JS / "node_modules" / ".bin" / "esbuild"),
            str(JS / "use_chat_page.jsx"),
            "--bundle",
            "--jsx=automatic",
            "--format=iife",
            '--define:process.env.NODE_ENV="production"',
            f"--outfile={out}",
            "--log-level=warning",
        ],
        check=True,
        cwd=JS,
        timeout=120,
    )
    return out.read_text()


@pytest.fixture
def react_site(make_app, live, use_chat_bundle):
    """The useChat page, served with the vercel blueprint (``blueprint`` options)."""

    def start(**blueprint):
        app = make_app(AI_RATELIMIT=None, AI_VERCEL_PROTOCOL=7)  # the page is on ai 7
        app.register_blueprint(
            app.extensions["ai"].blueprint(format="vercel", **blueprint), url_prefix="/api/chat"
        )

        @app.get("/")
        def index():
            return '<!DOCTYPE html><div id="root"></div><script src="/bundle.js"></script>'

        @app.get("/bundle.js")
        def bundle():
            return use_chat_bundle, 200, {"Content-Type": "text/javascript"}

        return live(app)

    return start


def test_use_chat_in_a_react_page(page, react_site, fake):
    url = react_site()
    fake.reply = Reply(parts=openai_events(["One ", "two ", "three."]), delay=0.05)
    page.goto(url)
    page.fill("#input", "Count")
    page.click("#send")
    page.wait_for_function(
        "document.querySelector('.message.assistant .text')?.textContent === 'One two three.'"
    )
    assert page.locator(".message.user .text").text_content() == "Count"
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    # Stop: the provider connection closes
    fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(200)]), delay=0.05)
    page.fill("#input", "Go on")
    page.click("#send")
    page.wait_for_function(
        "document.querySelectorAll('.message.assistant').length === 2 && document.querySelectorAll('.message.assistant')[1].textContent.length > 0"
    )
    page.click("#stop")
    assert fake.wait_for_hangup(fake.last, timeout=5) is not None
    assert fake.last.parts_sent < 200
    assert [m["role"] for m in fake.last.json()["messages"]] == ["user", "assistant", "user"]


# --- OpenAI clients ------------------------------------------------------------------------


@pytest.fixture
def openai_client(chat_site):
    def make(**config):
        url = chat_site(**config)
        return openai.OpenAI(base_url=f"{url}/oa/v1", api_key=TOKEN, max_retries=0), url

    return make


def test_openai_sdk_streaming(openai_client, fake):
    client, _ = openai_client()
    fake.reply = Reply(parts=RICH)
    chunks = list(
        client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Weather?"}], stream=True
        )
    )
    assert {c.model for c in chunks} == {"fast"}  # the alias the client asked for
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Let me check."
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks
    )
    assert reasoning == "Thinking hard."
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "call_1" and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments for tc in calls) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(c.usage is None for c in chunks)  # usage only when asked
    assert fake.last.json()["model"] == "gpt-fast"


def test_openai_sdk_usage_when_asked_and_the_stream_helper(openai_client, fake):
    client, _ = openai_client()
    fake.reply = Reply(parts=RICH)
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "Weather?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 10
    fake.reply = Reply(parts=openai_events(["Hello", " world"]))
    with client.chat.completions.stream(
        model="fast", messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        completion = stream.get_final_completion()
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].finish_reason == "stop"


def test_openai_sdk_without_streaming(openai_client, fake):
    client, _ = openai_client()
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"))
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_completion_tokens=50,
    )
    assert completion.object == "chat.completion" and completion.model == "claude"
    assert completion.choices[0].message.content.startswith("Hello! Rayleigh")
    assert completion.usage.prompt_tokens > 0
    sent = fake.last.json()
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 50  # passed on


@pytest.mark.parametrize(
    "reply, status, error_class, code",
    [
        (
            Reply.json(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}),
            429,
            openai.RateLimitError,
            "rate_limit",
        ),
        (
            Reply.json(401, {"error": {"message": "bad key"}}),
            502,
            openai.InternalServerError,
            "auth",
        ),
        (
            Reply.json(400, {"error": {"message": "too long"}}),
            400,
            openai.BadRequestError,
            "bad_request",
        ),
        (
            Reply.json(404, {"error": {"message": "no such model"}}),
            404,
            openai.NotFoundError,
            "not_found",
        ),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_a_failure_before_the_first_token_is_an_http_error(
    openai_client, fake, reply, status, error_class, code, stream
):
    client, _ = openai_client()
    fake.reply = reply
    with pytest.raises(error_class) as failure:
        result = client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}], stream=stream
        )
        list(result) if stream else None
    assert failure.value.status_code == status and failure.value.code == code
    assert "bad key" not in str(failure.value) and "sk-" not in str(failure.value)


def test_a_failure_mid_answer_is_raised_by_the_sdk(openai_client, fake):
    client, _ = openai_client()
    fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    text = ""
    with pytest.raises(openai.APIError) as failure:
        for chunk in client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True
        ):
            text += chunk.choices[0].delta.content or ""
    assert text  # what came before the failure
    assert "error during the answer" in failure.value.message


def test_openai_endpoint_refusals(openai_client, fake):
    client, url = openai_client()
    with pytest.raises(openai.AuthenticationError) as failure:
        openai.OpenAI(base_url=f"{url}/oa/v1", api_key="wrong", max_retries=0).models.list()
    assert failure.value.status_code == 401
    assert [m.id for m in client.models.list()] == ["fast", "claude"]
    with pytest.raises(openai.NotFoundError) as failure:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hi"}])
    assert failure.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}], n=2
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}], seed="x"
        )
    assert fake.requests == []


def test_openai_blueprint_needs_authorize(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="authorize"):
        app.extensions["ai"].openai_blueprint()


@pytest.mark.parametrize("stream", ["0", "1"])
def test_the_openai_npm_package(node, chat_site, fake, stream):
    url = chat_site()
    fake.reply = Reply(parts=RICH)
    result = node("openai_client.mjs", f"{url}/oa/v1", TOKEN, "fast", "Weather?", stream)
    assert result["error"] is None
    assert result["text"] == "Let me check." and result["finish_reason"] == "tool_calls"
    if stream == "1":
        assert result["reasoning"] == "Thinking hard." and result["usage"]["total_tokens"] == 10
        assert result["tool_calls"][0]["function"]["name"] == "get_weather"
    result = node("openai_client.mjs", f"{url}/oa/v1", "wrong-token", "fast", "Hi", stream)
    assert result["error"]["status"] == 401


def test_no_node_modules_means_a_clear_failure_not_a_skip():
    """The Node tests fail (never skip) without their packages: CI installs them."""
    assert os.path.exists(JS / "package-lock.json")


def test_openai_endpoint_passes_options_and_images_on(openai_client, fake):
    client, _ = openai_client()
    fake.reply = Reply(parts=openai_events(["{}"]))
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.chat.completions.create(
        model="fast",
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is it?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            },
        ],
        temperature=0.2,
        top_p=0.5,
        stop=["END"],
        seed=4,
        reasoning_effort="low",
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    sent = fake.last.json()
    assert sent["model"] == "gpt-fast"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"]) == (
        0.2,
        0.5,
        ["END"],
        4,
    )
    assert sent["reasoning_effort"] == "low"
    assert sent["tools"][0]["function"]["name"] == "f"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert sent["response_format"]["json_schema"]["schema"] == schema


def test_openai_endpoint_passes_tool_calls_and_results_on(openai_client, fake):
    """The openai SDK's own client-side tool loop: the second request carries
    the model's call and the tool's result; both reach the provider (they
    were a 400)."""
    client, _ = openai_client()
    fake.reply = Reply(parts=openai_events(["It is sunny."]))
    conversation = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    answer = client.chat.completions.create(model="fast", messages=conversation)
    assert answer.choices[0].message.content == "It is sunny."
    sent = fake.last.json()["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    with pytest.raises(openai.BadRequestError):  # a result answering nothing is refused
        client.chat.completions.create(
            model="fast", messages=[{"role": "tool", "content": "sunny"}]
        )


def test_the_vercel_format_from_a_view_of_your_own(make_app, fake):
    app = make_app(AI_RATELIMIT=None)

    @app.get("/ui")
    def ui():
        return app.extensions["ai"].ask_stream("Hi", format="vercel")

    fake.reply = Reply(parts=openai_events(["Hello"]))
    response = app.test_client().get("/ui")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    events = data_events(response)
    assert events[3] == {"type": "text-delta", "id": "text-1", "delta": "Hello"}
    with pytest.raises(ConfigurationError, match="format"):
        with app.test_request_context():
            app.extensions["ai"].ask_stream("Hi", format="xml")


def test_use_chat_shows_a_tool_the_server_ran(page, react_site, fake):
    from test_tool_loop import calls_step

    from flask_aistream import tool

    @tool
    def get_weather(city: str) -> dict:
        """The weather in a city."""
        return {"sky": "sunny"}

    url = react_site(tools=[get_weather])
    fake.replies = [
        calls_step("openai", [("call_w", "get_weather", {"city": "Paris"})]),
        Reply(parts=openai_events(["It is ", "sunny."])),
    ]
    page.goto(url)
    page.fill("#input", "Weather in Paris?")
    page.click("#send")
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    tool_part = page.locator(".message.assistant .tool")
    assert tool_part.get_attribute("class") == "tool output-available"
    assert tool_part.text_content() == 'get_weather: {"sky":"sunny"}'
    assert page.locator(".message.assistant .text").text_content() == "It is sunny."


@pytest.mark.parametrize("package", ["ai5", "ai6", "ai"])
def test_data_parts_reach_the_message_and_replace_by_id(node, chat_site, fake, package):
    from test_tool_loop import calls_step

    from flask_aistream import send_data, tool

    @tool
    def search(query: str) -> str:
        """Searches."""
        send_data("status", "Searching", id="status")
        send_data("status", "Done", id="status")
        send_data("sources", [{"url": "https://example.com/a"}])
        send_data("progress", 50, transient=True)  # onData only, never the message
        return "found"

    fake.replies = [
        calls_step("openai", [("call_s", "search", {"query": "x"})]),
        Reply(parts=openai_events(["Found."])),
    ]
    url = chat_site(blueprint={"tools": [search]}, AI_VERCEL_PROTOCOL=6 if package != "ai5" else 5)
    result = node(
        "use_chat_transport.mjs", package, f"{url}/api/chat/stream", json.dumps([user("Find")])
    )
    assert result["error"] is None
    parts = result["message"]["parts"]
    data = [(p["type"], p.get("id"), p["data"]) for p in parts if p["type"].startswith("data-")]
    assert data == [
        ("data-status", "status", "Done"),  # the second replaced the first
        ("data-sources", None, [{"url": "https://example.com/a"}]),
    ]
    assert [p["type"] for p in parts if not p["type"].startswith("data-")][-1] == "text"


def test_use_chat_runs_a_browser_tool_and_the_answer_goes_on(page, react_site, fake):
    """onToolCall + addToolOutput + sendAutomaticallyWhen, unchanged: the
    browser's result goes back in the next request, the model answers, and
    the page shows one assistant message holding the tool part and the text."""
    from test_tool_loop import calls_step

    from flask_aistream import Tool

    get_location = Tool("get_location", "Where the user is.", {"type": "object", "properties": {}})
    url = react_site(tools=[get_location])
    fake.replies = [
        calls_step("openai", [("call_loc", "get_location", {})]),
        Reply(parts=openai_events(["You are in ", "Paris."])),
    ]
    page.goto(url)
    page.fill("#input", "Where am I?")
    page.click("#send")
    page.wait_for_function(
        "document.querySelector('.message.assistant .text')?.textContent === 'You are in Paris.'"
    )
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    assert page.locator(".message.assistant").count() == 1  # continued, not a second message
    assert (
        page.locator(".message.assistant .tool").text_content() == 'get_location: {"city":"Paris"}'
    )
    second = fake.requests[1].json()["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_loc"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_loc",
        "content": '{"city": "Paris"}',
    }
    assert len(fake.requests) == 2


def test_use_chat_on_data_sees_transient_parts(page, react_site, fake):
    from test_tool_loop import calls_step

    from flask_aistream import send_data, tool

    @tool
    def search(query: str) -> str:
        """Searches."""
        send_data("progress", 50, transient=True)
        send_data("sources", ["a"])
        return "found"

    url = react_site(tools=[search])
    fake.replies = [
        calls_step("openai", [("call_s", "search", {"query": "x"})]),
        Reply(parts=openai_events(["Found."])),
    ]
    page.goto(url)
    page.fill("#input", "Find")
    page.click("#send")
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    assert page.locator("#data").text_content() == "data-progress,data-sources"


@pytest.mark.parametrize("package", ["ai6", "ai"])
@pytest.mark.parametrize("decision", ["yes", "no"])
def test_the_ai_sdk_asks_for_approval_and_goes_on(node, chat_site, fake, package, decision):
    """tool-approval-request, then addToolApprovalResponse's message: the
    stored arguments run (the client's edit of the input is ignored), or
    the call ends denied; the answer goes on in the same message."""
    from flask import request as flask_request
    from test_tool_loop import calls_step

    from flask_aistream import tool

    ran = []

    @tool(needs_approval=True)
    def refund(order_id: str) -> dict:
        """Refunds an order."""
        ran.append(order_id)
        return {"refunded": order_id}

    fake.replies = [
        calls_step("openai", [("call_r", "refund", {"order_id": "A1"})]),
        Reply(parts=openai_events(["Done."])),
    ]
    url = chat_site(
        blueprint={"tools": [refund], "owner": lambda: flask_request.remote_addr},
        AI_VERCEL_PROTOCOL=6 if package == "ai6" else 7,
    )
    result = node(
        "use_chat_approval.mjs",
        package,
        f"{url}/api/chat/stream",
        "Refund A1",
        decision,
        json.dumps({"order_id": "EVIL"}),
    )
    assert result["error"] is None
    first, second = result["first"], result["second"]
    [asked] = [p for p in first["parts"] if p["type"] == "tool-refund"]
    assert asked["state"] == "approval-requested" and asked["input"] == {"order_id": "A1"}
    assert second["id"] == first["id"]  # the same message, continued
    [part] = [p for p in second["parts"] if p["type"] == "tool-refund"]
    if decision == "yes":
        assert part["state"] == "output-available" and part["output"] == {"refunded": "A1"}
        assert ran == ["A1"]  # the stored arguments, not the edited ones
    else:
        assert part["state"] == "output-denied" and ran == []
        told = fake.requests[1].json()["messages"][-1]["content"]
        assert told == "The user did not approve this call. Their reason: Not today"
    assert [p["text"] for p in second["parts"] if p["type"] == "text"] == ["Done."]


def test_use_chat_shows_an_approve_button_and_the_tool_runs_once_approved(page, react_site, fake):
    from flask import request as flask_request
    from test_tool_loop import calls_step

    from flask_aistream import tool

    ran = []

    @tool(needs_approval=True)
    def refund(order_id: str) -> dict:
        """Refunds an order."""
        ran.append(order_id)
        return {"refunded": order_id}

    url = react_site(tools=[refund], owner=lambda: flask_request.remote_addr)
    fake.replies = [
        calls_step("openai", [("call_r", "refund", {"order_id": "A1"})]),
        Reply(parts=openai_events(["Refunded."])),
    ]
    page.goto(url)
    page.fill("#input", "Refund A1")
    page.click("#send")
    page.wait_for_selector("#approve")
    assert ran == []  # nothing runs before a person says yes
    page.click("#approve")
    page.wait_for_function(
        "document.querySelector('.message.assistant .text')?.textContent === 'Refunded.'"
    )
    assert ran == ["A1"]
    assert page.locator(".message.assistant").count() == 1
    assert page.locator(".message.assistant .tool").text_content() == 'refund: {"refunded":"A1"}'
