"""Request options and image parts: what each provider is sent for each, and
the calls refused before anything is sent."""

import pytest

from fakeprovider import Reply, transcript
from flask_aistream import ConfigurationError, InvalidRequestError, UnsupportedOptionError

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
PNG = "iVBORw0KGgo="  # base64 of the PNG signature: enough to check the mapping
TRANSCRIPTS = {
    "openai": "openai_basic.sse",
    "groq": "groq_basic.sse",
    "mistral": "mistral_basic.sse",
    "azure": "openai_basic.sse",
    "anthropic": "anthropic_basic.sse",
    "gemini": "gemini_basic.sse",
    "ollama": "ollama_basic.ndjson",
}


def sent(make_app, fake, provider, question="Why?", app_config=None, **options):
    """The JSON body and headers the provider got for one call."""
    name = TRANSCRIPTS[provider]
    body = transcript(name)
    fake.reply = Reply.ndjson(body) if name.endswith(".ndjson") else Reply.sse(body)
    app = make_app(**(app_config or {}))
    with app.app_context():
        app.extensions["ai"].ask(question, provider=provider, **options)
    return fake.last.json(), fake.last.headers


EVERYTHING = dict(
    top_p=0.9,
    stop=["END"],
    seed=7,
    response_format=SCHEMA,
    tools=[WEATHER],
    tool_choice={"name": "get_weather"},
    reasoning="high",
)


@pytest.mark.parametrize("provider", ["openai", "groq", "azure"])
def test_chat_completions_fields(make_app, fake, provider):
    body, _ = sent(make_app, fake, provider, **EVERYTHING)
    assert body["top_p"] == 0.9 and body["stop"] == ["END"] and body["seed"] == 7
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA},
    }
    assert body["tools"] == [{"type": "function", "function": WEATHER}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["reasoning_effort"] == "high"
    body, _ = sent(
        make_app, fake, provider, response_format="json", tool_choice="none", tools=[WEATHER]
    )
    assert body["response_format"] == {"type": "json_object"} and body["tool_choice"] == "none"


def test_mistral_fields(make_app, fake):
    body, _ = sent(
        make_app, fake, "mistral", seed=7, stop="END", tools=[WEATHER], tool_choice="required"
    )
    assert body["random_seed"] == 7 and "seed" not in body  # Mistral's name for it
    assert body["stop"] == ["END"] and body["tool_choice"] == "required"
    assert "stream_options" not in body


def test_anthropic_fields(make_app, fake):
    options = {k: v for k, v in EVERYTHING.items() if k != "seed"}
    body, _ = sent(make_app, fake, "anthropic", max_tokens=500, **options)
    assert body["top_p"] == 0.9 and body["stop_sequences"] == ["END"]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    # a budget the API takes (>= 1024, below max_tokens), max_tokens raised to leave 500 to answer
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert body["max_tokens"] == 16384 + 500
    body, _ = sent(
        make_app, fake, "anthropic", reasoning="low", tools=[WEATHER], tool_choice="required"
    )
    assert body["thinking"]["budget_tokens"] == 1024 and body["max_tokens"] == 4096
    assert body["tool_choice"] == {"type": "any"}


def test_gemini_fields(make_app, fake):
    body, _ = sent(make_app, fake, "gemini", **EVERYTHING)
    config = body["generationConfig"]
    assert config["topP"] == 0.9 and config["stopSequences"] == ["END"] and config["seed"] == 7
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert config["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 24576}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER["parameters"],
                }
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    # Gemini 3 takes a level, not a budget
    body, _ = sent(
        make_app,
        fake,
        "gemini",
        model="gemini-3-pro-preview",
        reasoning="low",
        response_format="json",
    )
    assert body["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingLevel": "low",
    }
    assert "responseJsonSchema" not in body["generationConfig"]


def test_ollama_fields(make_app, fake):
    options = {k: v for k, v in EVERYTHING.items() if k != "tool_choice"}
    body, _ = sent(make_app, fake, "ollama", max_tokens=64, temperature=0.2, **options)
    assert body["options"] == {
        "temperature": 0.2,
        "num_predict": 64,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
    }
    assert body["format"] == SCHEMA and body["think"] == "high"
    assert body["tools"] == [{"type": "function", "function": WEATHER}]


@pytest.mark.parametrize("provider", list(TRANSCRIPTS))
def test_extra_body_and_extra_headers(make_app, fake, provider):
    body, headers = sent(
        make_app,
        fake,
        provider,
        extra_body={"custom_field": [1, 2]},
        extra_headers={"X-Trace": "abc"},
    )
    assert body["custom_field"] == [1, 2] and headers["x-trace"] == "abc"


@pytest.mark.parametrize(
    "provider, options, option",
    [
        ("anthropic", {"seed": 1}, "seed"),
        ("anthropic", {"response_format": "json"}, "response_format"),
        ("anthropic", {"reasoning": "low", "temperature": 0.3}, "temperature"),
        ("mistral", {"reasoning": "low"}, "reasoning"),
        ("ollama", {"tools": [WEATHER], "tool_choice": "required"}, "tool_choice"),
        (
            "ollama",
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "url": "https://x.test/a.png"}]}
                ]
            },
            "images",
        ),
    ],
)
def test_an_option_a_provider_cannot_map_is_refused_before_sending(
    make_app, fake, provider, options, option
):
    app = make_app()
    with app.app_context(), pytest.raises(UnsupportedOptionError) as failure:
        app.extensions["ai"].ask("Why?", provider=provider, **options)
    assert failure.value.option == option and failure.value.provider == provider
    assert provider in str(failure.value) and option.split("_")[0].rstrip("s") in str(failure.value)
    assert isinstance(failure.value, ConfigurationError)
    assert fake.requests == []  # nothing was sent


def test_ollama_takes_tool_choice_auto(make_app, fake):
    body, _ = sent(make_app, fake, "ollama", tools=[WEATHER], tool_choice="auto")
    assert "tool_choice" not in body and body["tools"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"top_p": 1.5}, "top_p"),
        ({"stop": []}, "stop"),
        ({"stop": [3]}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"response_format": "xml"}, "response_format"),
        ({"tools": [{"name": "bad name!"}]}, "name"),
        ({"tools": [{"name": "f", "parameter": {}}]}, "unknown field"),
        ({"tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": {"name": "missing"}, "tools": [WEATHER]}, "not in tools"),
        ({"tool_choice": "required"}, "needs tools"),
        ({"reasoning": "max"}, "reasoning"),
        ({"extra_body": ["x"]}, "extra_body"),
        ({"extra_headers": {"X-A": "b\r\nX-Evil: 1"}}, "extra_headers"),
        ({"fallbacks": ["nowhere"]}, "Unknown AI provider"),
    ],
)
def test_bad_option_values_raise_in_the_view(make_app, fake, options, message):
    app = make_app()
    with app.app_context(), pytest.raises(ConfigurationError, match=message):
        app.extensions["ai"].ask("Why?", provider="openai", **options)
    assert fake.requests == []


def test_openai_shaped_tools_are_taken_too(make_app, fake):
    body, _ = sent(make_app, fake, "openai", tools=[{"type": "function", "function": WEATHER}])
    assert body["tools"] == [{"type": "function", "function": WEATHER}]


# --- images ---------------------------------------------------------------------

IMAGE_MESSAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "data": PNG, "media_type": "image/png"},
            {"type": "image", "url": "https://example.test/cat.jpg"},
        ],
    }
]


def test_openai_image_parts(make_app, fake):
    body, _ = sent(make_app, fake, "openai", question="And?", messages=IMAGE_MESSAGE)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
    ]
    assert body["messages"][1] == {"role": "user", "content": "And?"}


def test_anthropic_image_parts(make_app, fake):
    body, _ = sent(make_app, fake, "anthropic", question="And?", messages=IMAGE_MESSAGE)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
    ]


def test_gemini_image_parts(make_app, fake):
    body, _ = sent(make_app, fake, "gemini", question="And?", messages=IMAGE_MESSAGE)
    assert body["contents"][0]["parts"] == [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"fileUri": "https://example.test/cat.jpg"}},
    ]


def test_ollama_image_parts(make_app, fake):
    message = [{"role": "user", "content": IMAGE_MESSAGE[0]["content"][:2]}]
    body, _ = sent(make_app, fake, "ollama", question="And?", messages=message)
    assert body["messages"][0] == {"role": "user", "content": "What is in these?", "images": [PNG]}


def test_a_data_url_image_becomes_data_and_media_type(make_app, fake):
    message = [
        {"role": "user", "content": [{"type": "image", "url": f"data:image/png;base64,{PNG}"}]}
    ]
    body, _ = sent(make_app, fake, "anthropic", messages=message)
    source = body["messages"][0]["content"][0]["source"]
    assert source == {"type": "base64", "media_type": "image/png", "data": PNG}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image", "data": "not base64!", "media_type": "image/png"},
        {"type": "image", "data": PNG, "media_type": "text/html"},
        {"type": "image", "url": "file:///etc/passwd"},
        {"type": "video", "url": "https://x.test/v.mp4"},
        {"type": "text"},
    ],
)
def test_bad_content_parts_are_refused(make_app, fake, part):
    app = make_app()
    with app.app_context(), pytest.raises(InvalidRequestError):
        app.extensions["ai"].ask("Why?", messages=[{"role": "user", "content": [part]}])
    assert fake.requests == []


def test_the_builder_has_a_method_for_each_option(make_app, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    app = make_app()
    with app.app_context():
        task = (
            app.extensions["ai"]
            .task()
            .prompt("Why?")
            .top_p(0.5)
            .stop("A", "B")
            .seed(3)
            .response_format("json")
            .tools([WEATHER], choice="auto")
            .reasoning("low")
            .extra_body({"user": "u1"})
            .extra_headers({"X-Tag": "t"})
        )
        task.ask()
    body = fake.last.json()
    assert (body["top_p"], body["stop"], body["seed"]) == (0.5, ["A", "B"], 3)
    assert body["tool_choice"] == "auto" and body["reasoning_effort"] == "low"
    assert body["user"] == "u1" and fake.last.headers["x-tag"] == "t"


def test_offline_takes_every_option(make_app):
    app = make_app(AI_OFFLINE_DELAY=0)
    with app.app_context():
        events = list(
            app.extensions["ai"].iter_events(
                "Why?",
                provider="offline",
                messages=IMAGE_MESSAGE,
                **EVERYTHING,
                extra_body={"x": 1},
                extra_headers={"X": "y"},
            )
        )
    answer = events[-1].answer
    assert answer.reasoning and answer.tool_calls[0].name == "get_weather"
    assert answer.finish_reason == "tool_calls"
    assert [e.type for e in events][0] == "reasoning"


# --- images from a browser ---------------------------------------------------------


def chat_app(make_app, **blueprint_options):
    app = make_app()
    app.register_blueprint(
        app.extensions["ai"].blueprint(ratelimit=None, **blueprint_options), url_prefix="/api"
    )
    return app.test_client()


def test_the_blueprint_refuses_images_unless_allowed(make_app, fake):
    client = chat_app(make_app)
    image = {"data": PNG, "media_type": "image/png"}
    response = client.post("/api/stream", json={"question": "What is it?", "images": [image]})
    assert response.status_code == 400 and "images" in response.get_json()["error"]
    history = [{"role": "user", "content": [{"type": "image", **image}]}]
    response = client.post("/api/stream", json={"question": "And?", "history": history})
    assert response.status_code == 400
    assert fake.requests == []


def test_the_blueprint_takes_images_when_allowed(make_app, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = chat_app(make_app, allow_images=True, max_image_bytes=1000)
    response = client.post(
        "/api/stream",
        json={"question": "What is it?", "images": [{"url": f"data:image/png;base64,{PNG}"}]},
    )
    assert response.status_code == 200
    response.get_data()
    assert fake.last.json()["messages"][-1]["content"] == [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]


@pytest.mark.parametrize(
    "images, status",
    [
        (
            [{"url": "https://example.test/cat.png"}],
            400,
        ),  # the provider would fetch it for a stranger
        ([{"data": "@@@", "media_type": "image/png"}], 400),
        ([{"data": PNG, "media_type": "image/svg+xml"}], 400),
        ([{"data": "A" * 2000, "media_type": "image/png"}], 413),  # 1,500 bytes > 1,000
        ("not a list", 400),
    ],
)
def test_the_blueprint_checks_images(make_app, fake, images, status):
    client = chat_app(make_app, allow_images=True, max_image_bytes=1000)
    response = client.post("/api/stream", json={"question": "What is it?", "images": images})
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"] and fake.requests == []


def test_the_request_limit_grows_with_the_image_limit(make_app, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = chat_app(make_app, allow_images=True, max_image_bytes=200_000)
    big = "A" * 200_000  # 150,000 bytes decoded: far over the 64 kB body limit as base64
    response = client.post(
        "/api/stream",
        json={"question": "What?", "images": [{"data": big, "media_type": "image/png"}]},
    )
    assert response.status_code == 200
