"""The tool loop: a step ends with tool calls, the server runs its tools,
and the next step is asked with the calls and results, in each provider's
dialect, streamed on in the same response."""

import json

import pytest

from fakeprovider import Reply, transcript
from flask_aistream import Step, StepFinish, ToolError, ToolResult, tool
from helpers import sse_events

TEXT = {  # what each provider's basic transcript says in step 2
    "openai": "The sky is blue",
    "anthropic": "Hello! Rayleigh",
    "gemini": "The sky appears blue",
    "ollama": "The sky",
}
STEP2 = {
    "openai": "openai_basic.sse",
    "anthropic": "anthropic_basic.sse",
    "gemini": "gemini_basic.sse",
    "ollama": "ollama_basic.ndjson",
}


def sse(*events) -> bytes:
    return b"".join(b"data: %s\n\n" % json.dumps(event).encode() for event in events)


def calls_step(provider: str, calls: list[tuple[str, str, dict]]) -> Reply:
    """Step 1 in ``provider``'s wire format: these tool calls (id, name,
    arguments) and nothing else; 10 tokens in, 5 out."""
    if provider == "openai":
        chunks = []
        for index, (call_id, name, arguments) in enumerate(calls):
            head = {"index": index, "id": call_id, "type": "function"}
            chunks.append({**head, "function": {"name": name, "arguments": ""}})
            chunks.append({"index": index, "function": {"arguments": json.dumps(arguments)}})
        body = sse(
            *(
                {
                    "id": "c1",
                    "model": "gpt-x",
                    "choices": [{"index": 0, "delta": {"tool_calls": [c]}}],
                }
                for c in chunks
            ),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {
                "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
        )
        return Reply.sse(body + b"data: [DONE]\n\n")
    if provider == "anthropic":
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-x",
                        "content": [],
                        "usage": {"input_tokens": 10, "output_tokens": 1},
                    },
                },
            ),
        ]
        for index, (call_id, name, arguments) in enumerate(calls):
            events += [
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": call_id,
                            "name": name,
                            "input": {},
                        },
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(arguments),
                        },
                    },
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": index}),
            ]
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        body = b"".join(
            b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data).encode())
            for name, data in events
        )
        return Reply.sse(body)
    if provider == "gemini":
        parts = [
            {
                "functionCall": {"name": name, "args": arguments},
                **({"thoughtSignature": f"sig-{i}"} if i == 0 else {}),
            }
            for i, (_, name, arguments) in enumerate(calls)
        ]
        return Reply.sse(
            sse(
                {
                    "candidates": [
                        {
                            "content": {"parts": parts, "role": "model"},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 10,
                        "candidatesTokenCount": 5,
                        "totalTokenCount": 15,
                    },
                    "modelVersion": "gemini-x",
                }
            )
        )
    lines = [
        {
            "model": "llama-x",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": name, "arguments": arguments}}
                    for _, name, arguments in calls
                ],
            },
            "done": False,
        },
        {
            "model": "llama-x",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 10,
            "eval_count": 5,
        },
    ]
    return Reply.ndjson(b"".join(json.dumps(line).encode() + b"\n" for line in lines))


def text_step(provider: str) -> Reply:
    body = transcript(STEP2[provider])
    return Reply.ndjson(body) if provider == "ollama" else Reply.sse(body)


@tool
def get_weather(city: str) -> dict:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return {"city": city, "sky": "sunny", "celsius": 21}


@tool
def get_time(tz: str) -> str:
    """The time in a time zone."""
    return f"12:00 in {tz}"


PROVIDERS = ["openai", "anthropic", "gemini", "ollama"]


def step2_messages(provider: str, body: dict) -> list:
    return body["contents"] if provider == "gemini" else body["messages"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_steps_in_each_dialect(make_app, fake, provider):
    fake.replies = [
        calls_step(
            provider,
            [("call_w", "get_weather", {"city": "Paris"}), ("call_t", "get_time", {"tz": "UTC"})],
        ),
        text_step(provider),
    ]
    app = make_app()
    with app.app_context():
        events = list(
            app.extensions["ai"].iter_events(
                "Weather and time?", provider=provider, tools=[get_weather, get_time]
            )
        )
    kinds = [event.type for event in events]
    assert kinds[:5] == ["tool_call", "tool_call", "tool_result", "tool_result", "step_finish"]
    assert kinds[-2:] == ["step_finish", "finish"] and "text" in kinds[5:]
    results = [event for event in events if isinstance(event, ToolResult)]
    assert results[0].output == {"city": "Paris", "sky": "sunny", "celsius": 21}
    assert results[1].output == "12:00 in UTC" and results[1].error is None
    answer = events[-1].answer
    assert len(answer.steps) == 2 and answer.finish_reason == "stop"
    first, second = answer.steps
    assert first.finish_reason == "tool_calls" and [c.name for c in first.tool_calls] == [
        "get_weather",
        "get_time",
    ]
    assert first.tool_results == answer.tool_results == tuple(results)
    assert answer.text == second.text and answer.text.startswith(TEXT[provider])
    # usage adds up: every step counts
    assert answer.usage.input_tokens == first.usage.input_tokens + second.usage.input_tokens
    assert answer.usage.output_tokens == first.usage.output_tokens + second.usage.output_tokens
    assert first.usage.input_tokens == 10
    # ids stay unique within the answer, even where the provider gives none
    ids = [call.id for call in answer.tool_calls]
    assert len(set(ids)) == 2 and [r.call_id for r in results] == ids

    assert len(fake.requests) == 2
    sent = step2_messages(provider, fake.requests[1].json())
    check_dialect(provider, sent, ids)


def check_dialect(provider, sent, ids):
    weather = {"city": "Paris", "sky": "sunny", "celsius": 21}
    if provider == "openai":
        calls = sent[-3]["tool_calls"]
        assert sent[-3]["role"] == "assistant"
        assert [c["id"] for c in calls] == ids and calls[0]["function"]["name"] == "get_weather"
        assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
        assert sent[-2] == {"role": "tool", "tool_call_id": ids[0], "content": json.dumps(weather)}
        assert sent[-1] == {"role": "tool", "tool_call_id": ids[1], "content": "12:00 in UTC"}
    elif provider == "anthropic":
        assistant, results = sent[-2], sent[-1]
        uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
        assert [u["id"] for u in uses] == ids and uses[0]["input"] == {"city": "Paris"}
        assert results["role"] == "user"
        assert [b["tool_use_id"] for b in results["content"]] == ids  # one user turn, both results
        assert json.loads(results["content"][0]["content"]) == weather
    elif provider == "gemini":
        model, results = sent[-2], sent[-1]
        assert model["role"] == "model"
        assert model["parts"][0]["functionCall"] == {
            "name": "get_weather",
            "args": {"city": "Paris"},
        }
        # the signature goes back with its call; the unsigned parallel call stays unsigned
        assert model["parts"][0]["thoughtSignature"] == "sig-0"
        assert "thoughtSignature" not in model["parts"][1]
        assert results["role"] == "user"
        assert results["parts"][0] == {
            "functionResponse": {"name": "get_weather", "response": {"result": weather}}
        }
        assert results["parts"][1]["functionResponse"]["response"] == {"result": "12:00 in UTC"}
    else:
        assistant = sent[-3]
        assert assistant["role"] == "assistant"
        assert [c["function"]["name"] for c in assistant["tool_calls"]] == [
            "get_weather",
            "get_time",
        ]
        assert sent[-2]["role"] == "tool" and json.loads(sent[-2]["content"]) == weather
        assert sent[-1]["role"] == "tool" and sent[-1]["content"] == "12:00 in UTC"


def test_the_browser_gets_one_stream_with_both_steps(make_app, fake):
    fake.replies = [
        calls_step("openai", [("call_w", "get_weather", {"city": "Paris"})]),
        text_step("openai"),
    ]
    app = make_app()

    @app.post("/tools")
    def tools():
        return app.extensions["ai"].ask_stream(
            "Weather?",
            tools=[get_weather],
            events=["tool_calls", "tool_results", "steps", "finish"],
        )

    events = [
        json.loads(e.data)
        for e in sse_events(app.test_client().post("/tools").data)
        if e.data != "[DONE]"
    ]
    assert events[0] == {
        "tool_call": {"id": "call_w", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    }
    assert events[1] == {
        "tool_result": {
            "id": "call_w",
            "name": "get_weather",
            "output": {"city": "Paris", "sky": "sunny", "celsius": 21},
        }
    }
    assert events[2] == {
        "step": {
            "finish_reason": "tool_calls",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "total_tokens": 15,
                "reasoning_tokens": None,
                "cached_input_tokens": None,
            },
        }
    }
    text = "".join(e["content"] for e in events if "content" in e)
    assert text.startswith(TEXT["openai"])
    assert "step" in events[-2] and events[-2]["step"]["finish_reason"] == "stop"
    assert events[-1]["finish"]["reason"] == "stop"
    assert events[-1]["finish"]["usage"]["input_tokens"] > 10  # both steps


def test_vercel_stream_has_a_step_per_call_and_tool_outputs(make_app, fake):
    fake.replies = [
        calls_step("anthropic", [("toolu_1", "get_weather", {"city": "Paris"})]),
        text_step("anthropic"),
    ]
    app = make_app()

    @app.post("/v")
    def v():
        return app.extensions["ai"].ask_stream(
            "Weather?", provider="anthropic", tools=[get_weather], format="vercel"
        )

    events = [
        json.loads(e.data)
        for e in sse_events(app.test_client().post("/v").data)
        if e.data != "[DONE]"
    ]
    types = [e["type"] for e in events]
    assert types.count("start") == 1 and types.count("finish") == 1
    assert types.count("start-step") == 2 and types.count("finish-step") == 2
    first_finish = types.index("finish-step")
    assert types[: first_finish + 2] == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
    ]
    output = events[types.index("tool-output-available")]
    assert output == {
        "type": "tool-output-available",
        "toolCallId": "toolu_1",
        "output": {"city": "Paris", "sky": "sunny", "celsius": 21},
    }
    assert "text-delta" in types[first_finish:]


def bad_call_replies(provider="openai", arguments=None, name="get_weather"):
    return [
        calls_step(
            provider, [("call_1", name, arguments if arguments is not None else {"city": "Paris"})]
        ),
        text_step(provider),
    ]


def ask_events(app, **options):
    with app.app_context():
        return list(app.extensions["ai"].iter_events("Go", **options))


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ({"town": "Paris"}, "lacks required city"),
        ({"city": 3}, "arguments.city must be string, not integer"),
        ({"city": "Paris", "x": 1}, "has no parameter 'x'"),
    ],
)
def test_arguments_that_do_not_fit_are_an_error_result_and_the_model_may_retry(
    make_app, fake, arguments, why
):
    ran = []

    @tool
    def get_weather(city: str) -> str:
        """Weather."""
        ran.append(city)
        return "sunny"

    fake.replies = bad_call_replies(arguments=arguments)
    events = ask_events(make_app(), tools=[get_weather])
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert not ran and result.output is None and why in result.error
    sent = fake.requests[1].json()["messages"][-1]
    assert sent["role"] == "tool" and why in sent["content"]  # the model is told why
    assert events[-1].answer.finish_reason == "stop"


def test_arguments_that_are_not_json(make_app, fake):
    body = (
        sse(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c",
                                    "type": "function",
                                    "function": {
                                        "name": "get_weather",
                                        "arguments": "{city: Paris",
                                    },
                                }
                            ]
                        },
                    }
                ]
            },
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        )
        + b"data: [DONE]\n\n"
    )
    fake.replies = [Reply.sse(body), text_step("openai")]
    events = ask_events(make_app(), tools=[get_weather])
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.error == "Invalid arguments for get_weather: the arguments are not valid JSON."


def test_tool_error_text_reaches_model_and_client_other_exceptions_do_not(
    make_app, fake, log_records
):
    @tool
    def refuses(city: str) -> str:
        """Refuses."""
        raise ToolError("No weather for Atlantis.")

    @tool
    def breaks(city: str) -> str:
        """Breaks."""
        raise RuntimeError("db password is hunter2")

    fake.replies = [
        calls_step(
            "openai", [("c1", "refuses", {"city": "Atlantis"}), ("c2", "breaks", {"city": "X"})]
        ),
        text_step("openai"),
    ]
    app = make_app()

    @app.post("/t")
    def t():
        return app.extensions["ai"].ask_stream(
            "Go", tools=[refuses, breaks], events=["tool_results"]
        )

    body = app.test_client().post("/t").data
    assert b"hunter2" not in body
    events = [json.loads(e.data) for e in sse_events(body) if e.data != "[DONE]"]
    assert events[0] == {
        "tool_result": {"id": "c1", "name": "refuses", "error": "No weather for Atlantis."}
    }
    assert events[1] == {"tool_result": {"id": "c2", "name": "breaks", "error": "The tool failed."}}
    sent = fake.requests[1].json()["messages"]
    assert (
        sent[-2]["content"] == "No weather for Atlantis."
        and sent[-1]["content"] == "The tool failed."
    )
    assert "hunter2" not in json.dumps(sent)
    assert any("hunter2" in (r.exc_text or "") for r in log_records.records)  # the log has it all


def test_a_result_with_no_json_form_is_a_tool_error(make_app, fake):
    @tool
    def opaque(city: str) -> object:
        """Opaque."""
        return object()

    fake.replies = bad_call_replies(name="opaque")
    events = ask_events(make_app(), tools=[opaque])
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.error == "The tool returned a object, which is not JSON."


# The loop's rules, with the test kit's scripted provider (the dialects are above).


def kit_events(app, **options):
    with app.app_context():
        return list(app.extensions["ai"].iter_events("Go", **options))


def test_max_steps_reached_ends_with_the_calls_not_run(make_app):
    from flask_aistream.testing import fake_provider, tool_call

    ran = []

    @tool
    def get_weather(city: str) -> str:
        """Weather."""
        ran.append(city)
        return "sunny"

    app = make_app()
    with fake_provider(app) as kit:
        kit.replies(*[[tool_call("get_weather", city=city)] for city in "ABC"])
        answer = kit_events(app, tools=[get_weather], max_steps=2)[-1].answer
    assert ran == ["A"] and len(kit.requests) == 2
    assert len(answer.steps) == 2 and answer.finish_reason == "tool_calls"
    assert len(answer.tool_calls) == 2 and len(answer.tool_results) == 1


def test_ai_max_steps_is_the_default(make_app):
    from flask_aistream.testing import fake_provider, tool_call

    app = make_app(AI_MAX_STEPS=1)
    with fake_provider(app) as kit:
        kit.reply(tool_call("get_weather", city="A"))
        answer = kit_events(app, tools=[get_weather])[-1].answer
        kit.assert_all_used()
    assert len(kit.requests) == 1 and answer.finish_reason == "tool_calls"
    assert not answer.tool_results


def test_a_client_tool_ends_the_answer_after_the_server_tools_ran(make_app):
    from flask_aistream import Tool
    from flask_aistream.testing import fake_provider, tool_call

    confirm = Tool("confirm", "Ask the user to confirm.", {"type": "object", "properties": {}})
    app = make_app()
    with fake_provider(app) as kit:
        weather, confirmation = tool_call("get_weather", city="A"), tool_call("confirm")
        kit.reply(weather, confirmation)
        answer = kit_events(app, tools=[get_weather, confirm])[-1].answer
    assert len(kit.requests) == 1  # not asked again
    assert answer.finish_reason == "tool_calls"
    assert [r.call_id for r in answer.tool_results] == [weather.id]
    assert [c.id for c in answer.tool_calls] == [weather.id, confirmation.id]  # one pending


def test_a_call_to_a_tool_nobody_offered_ends_the_answer_like_a_client_tool(make_app):
    from flask_aistream.testing import fake_provider, tool_call

    app = make_app()
    with fake_provider(app) as kit:
        kit.reply(tool_call("launch_missiles"))
        answer = kit_events(app, tools=[get_weather])[-1].answer
    assert not answer.tool_results and answer.finish_reason == "tool_calls"
    assert len(kit.requests) == 1  # not asked again: no step loops on a made-up name


def test_without_server_tools_one_step_and_no_loop(make_app, fake):
    fake.reply = calls_step("openai", [("c1", "get_weather", {"city": "A"})])
    events = ask_events(make_app(), tools=[get_weather.definition()])
    assert [e.type for e in events] == ["tool_call", "step_finish", "finish"]
    assert isinstance(events[1], StepFinish) and isinstance(events[1].step, Step)
    assert len(fake.requests) == 1


def test_tools_see_typed_arguments(make_app, fake):
    import dataclasses
    import enum

    class Unit(enum.Enum):
        C = "celsius"

    @dataclasses.dataclass
    class Place:
        city: str
        days: int = 1

    got = []

    @tool
    def forecast(place: Place, unit: Unit, span: tuple[int, int]) -> str:
        """Forecast."""
        got.append((place, unit, span))
        return "ok"

    fake.replies = bad_call_replies(
        name="forecast", arguments={"place": {"city": "Oslo"}, "unit": "celsius", "span": [1, 2]}
    )
    ask_events(make_app(), tools=[forecast])
    assert got == [(Place("Oslo"), Unit.C, (1, 2))]


# --- context, and the client leaving during a tool (real servers) -------------------


def leaving_app(make_app, fake, policy, release, seen):
    """An app whose tool waits for ``release``; it and the hook note what they see."""
    import threading

    from flask import g, request

    from flask_aistream.signals import watched_by

    app = make_app(AI_ON_DISCONNECT=policy)
    app.runs = []
    app.hook_ran = threading.Event()
    app.teardowns = 0

    @app.before_request
    def load_user():
        g.user = request.headers.get("X-User", "ann")

    @app.teardown_appcontext
    def count_teardown(exc):
        app.teardowns += 1

    @tool
    def slow_lookup(city: str) -> str:
        """Looks slowly."""
        seen["tool"] = (g.user, request.path)
        g.tool_was_here = True
        release.wait(10)
        return "found"

    def hook(answer):
        seen["hook"] = (g.user, getattr(g, "tool_was_here", False), request.path)
        seen["answer"] = answer
        app.hook_ran.set()

    class Watcher:
        def started(self, run, chat):
            app.runs.append(run)

        def ended(self, answer):
            pass

    @app.post("/leave")
    def leave():
        with watched_by(Watcher()):
            return app.extensions["ai"].ask_stream(
                "Go", tools=[slow_lookup], on_finish=hook, events=["tool_calls"]
            )

    fake.replies = [
        calls_step("openai", [("c1", "slow_lookup", {"city": "X"})]),
        text_step("openai"),
    ]
    return app


def wait_until(condition, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.system
def test_a_client_that_left_during_a_tool_ends_the_answer_before_the_next_step(
    make_app, fake, live
):
    import threading

    from helpers import address_of, raw_request, read_until

    release, seen = threading.Event(), {}
    app = leaving_app(make_app, fake, "cancel", release, seen)
    sock = raw_request(address_of(live(app)), "/leave")
    read_until(sock, lambda received: b'"tool_call"' in received)
    wait_until(lambda: "tool" in seen)  # the tool is running
    sock.close()
    wait_until(lambda: app.runs[0].cancelled)  # the server saw the client go
    release.set()
    assert app.hook_ran.wait(10)
    answer = seen["answer"]
    assert len(fake.requests) == 1  # step 2 was never asked
    assert answer.finish_reason == "cancelled" and len(answer.steps) == 1
    assert [r.output for r in answer.tool_results] == ["found"]  # it ran: the answer says so


@pytest.mark.system
def test_with_finish_the_tool_and_the_hook_run_on_after_the_client_left(make_app, fake, live):
    """Tools and hooks run in the asking request's context (its g, request),
    each in a fresh app context torn down after it, also after the client left."""
    import threading

    from helpers import address_of, raw_request, read_until

    release, seen = threading.Event(), {}
    app = leaving_app(make_app, fake, "finish", release, seen)
    sock = raw_request(address_of(live(app)), "/leave")
    read_until(sock, lambda received: b'"tool_call"' in received)
    wait_until(lambda: "tool" in seen)
    teardowns = app.teardowns  # the request's own, now done
    sock.close()
    release.set()
    assert app.hook_ran.wait(10)
    answer = seen["answer"]
    assert len(fake.requests) == 2 and answer.finish_reason == "stop"
    assert [step.finish_reason for step in answer.steps] == ["tool_calls", "stop"]
    assert seen["tool"] == ("ann", "/leave")
    assert seen["hook"] == ("ann", True, "/leave")  # what the tool put on g, the hook sees
    assert app.teardowns == teardowns + 2  # one app context for the tool, one for the hooks


def test_each_step_is_retried_before_its_first_token_and_a_late_failure_is_an_error_event(
    make_app, fake
):
    overloaded = Reply.json(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    )
    fake.replies = [
        calls_step("openai", [("c1", "get_weather", {"city": "A"})]),
        Reply.json(503, {"error": {"message": "try later"}}),  # step 2, retried
        text_step("openai"),
    ]
    events = ask_events(make_app(AI_MAX_RETRIES=1), tools=[get_weather])
    assert events[-1].answer.finish_reason == "stop" and len(fake.requests) == 3

    fake.replies = [calls_step("openai", [("c1", "get_weather", {"city": "A"})]), overloaded]
    app = make_app(AI_MAX_RETRIES=0)

    @app.post("/t")
    def t():
        return app.extensions["ai"].ask_stream("Go", tools=[get_weather], events=["tool_results"])

    body = [e.data for e in sse_events(app.test_client().post("/t").data)]
    assert json.loads(body[0])["tool_result"]["name"] == "get_weather"  # what was sent stays
    assert "error" in json.loads(body[-2]) and body[-1] == "[DONE]"


def test_tools_run_in_order_and_a_task_takes_them(make_app, fake):
    order = []

    @tool
    def first(x: int) -> int:
        """First."""
        order.append("first")
        return x + 1

    @tool
    def second(x: int) -> int:
        """Second."""
        order.append("second")
        return x * 2

    fake.replies = [
        calls_step("openai", [("c1", "second", {"x": 2}), ("c2", "first", {"x": 2})]),
        text_step("openai"),
    ]
    app = make_app()
    with app.app_context():
        events = list(
            app.extensions["ai"].task().tools(first, second).max_steps(3).prompt("Go").iter_events()
        )
    assert order == ["second", "first"]
    assert [e.output for e in events if isinstance(e, ToolResult)] == [4, 3]
    assert fake.requests[0].json()["tools"][0]["function"]["name"] == "first"


@pytest.mark.system
@pytest.mark.parametrize("worker", ["gthread", "gevent"])
def test_a_two_step_answer_under_gunicorn(fake, tmp_path, worker):
    """The loop under a real gunicorn, threads and greenlets: the tool runs
    in the asking request's context, the stream carries both steps."""
    from test_hooks import answers_in

    from helpers import gunicorn_server

    fake.replies = [
        calls_step("openai", [("c1", "lookup", {"order": "A1"})]),
        Reply(parts=__import__("fakeprovider").openai_events(["Shipped", "."])),
    ]
    saved = tmp_path / "answers.jsonl"
    with gunicorn_server(worker, fake, ANSWERS_FILE=str(saved)) as (address, _):
        import requests

        response = requests.post(
            f"http://{address[0]}:{address[1]}/tools",
            json={"question": "Where is A1?"},
            headers={"X-User": "ann"},
            timeout=30,
        )
        [answer] = answers_in(saved)
    events = [json.loads(e.data) for e in sse_events(response.content) if e.data != "[DONE]"]
    assert events[1] == {
        "tool_result": {
            "id": "c1",
            "name": "lookup",
            "output": {"order": "A1", "status": "shipped", "user": "ann"},
        }
    }
    assert [e["step"]["finish_reason"] for e in events if "step" in e] == ["tool_calls", "stop"]
    assert answer == {"text": "Shipped.", "finish_reason": "stop"}


def test_outside_a_request_a_tool_sees_the_app_contexts_g(make_app, fake):
    from flask import g, has_request_context

    seen = []

    @tool
    def whoami() -> str:
        """Who is asking."""
        seen.append((g.user, has_request_context()))
        return g.user

    fake.replies = [calls_step("openai", [("c1", "whoami", {})]), text_step("openai")]
    app = make_app()
    with app.app_context():  # a CLI command, a job
        g.user = "cron"
        app.extensions["ai"].ask("Who?", tools=[whoami])
    assert seen == [("cron", False)]


# --- app data from a tool (send_data) ---------------------------------------------------


def test_send_data_goes_out_live_in_order_and_in_every_format(make_app):
    import threading

    from flask_aistream import AIStreamError, send_data
    from flask_aistream.testing import fake_provider, read_answer, tool_call

    go_on = threading.Event()

    @tool
    def search(query: str) -> str:
        """Searches."""
        send_data("status", "Searching…", id="status")
        assert go_on.wait(10), "the status never reached the client while the tool ran"
        send_data("status", "Done", id="status")
        send_data("sources", [{"url": "https://example.com/a"}])
        send_data("progress", 100, transient=True)
        return "found"

    app = make_app()

    @app.post("/search")
    def view():
        from flask import request

        return app.extensions["ai"].ask_stream("Find it", tools=[search], **request.get_json())

    with fake_provider(app) as kit:
        for _ in range(2):
            kit.reply(tool_call("search", query="x")).reply("Here.")
        # aistream, read as it streams: the first status arrives while the tool still runs
        response = app.test_client().post(
            "/search", json={"events": ["data", "tool_results"]}, buffered=False
        )
        body = b""
        for chunk in response.response:
            body += chunk
            if b"Searching" in body:
                go_on.set()
        response.close()
        ours = read_answer(body)
        go_on.set()
        vercel = read_answer(app.test_client().post("/search", json={"format": "vercel"}))
    assert [(d.name, d.value) for d in ours.data] == [
        ("status", "Searching…"),
        ("status", "Done"),
        ("sources", [{"url": "https://example.com/a"}]),
        ("progress", 100),
    ]
    events = [line for line in body.split(b"\n\n") if line.startswith(b"data: {")]
    kinds = [json.loads(line[6:]).popitem()[0] for line in events]
    assert kinds[:5] == [
        "data",
        "data",
        "data",
        "data",
        "tool_result",
    ]  # in order, before the result
    assert [(d.name, d.id, d.transient) for d in vercel.data] == [
        ("status", "status", False),
        ("status", "status", False),
        ("sources", None, False),
        ("progress", None, True),
    ]
    with pytest.raises(AIStreamError, match="no answer is running"):
        send_data("status", "nobody listens")


def test_the_vercel_route_continues_after_browser_tools_and_leaves_out_an_unfinished_call(make_app):
    from flask_aistream import Tool
    from flask_aistream.testing import fake_provider, read_events

    where = Tool("get_location", "Where the user is.", {"type": "object", "properties": {}})
    app = make_app(AI_RATELIMIT=None)
    app.register_blueprint(
        app.extensions["ai"].blueprint(format="vercel", tools=[where]), url_prefix="/v"
    )

    def conversation(state, **outcome):
        part = {"type": "tool-get_location", "toolCallId": "c1", "state": state, "input": {}}
        return [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Where am I?"}]},
            {
                "id": "a1",
                "role": "assistant",
                "parts": [{"type": "step-start"}, {**part, **outcome}],
            },
        ]

    with fake_provider(app) as kit:
        kit.replies("In Paris.", "Asked again.")
        client = app.test_client()
        events = read_events(
            client.post(
                "/v/stream", json={"messages": conversation("output-available", output="Paris")}
            )
        )
        # a call the browser never answered (Stop pressed) is left out: the question is asked again
        again = read_events(
            client.post("/v/stream", json={"messages": conversation("input-available")})
        )
    assert [e.text for e in events if e.type == "text"] == ["In", " Paris."]
    assert kit.requests[0].messages[-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "get_location",
        "content": "Paris",
        "error": False,
    }
    assert again[-1].answer.text == "Asked again."
    assert kit.requests[1].messages == [{"role": "user", "content": "Where am I?"}]


def test_every_step_is_asked_with_the_whole_conversation(make_app):
    """Step 3 carries step 1's and step 2's calls and results."""
    from flask_aistream.testing import fake_provider, tool_call

    app = make_app()
    with fake_provider(app) as kit:
        kit.reply(tool_call("get_weather", city="A")).reply(tool_call("get_weather", city="B"))
        kit.reply("Both sunny.")
        kit_events(app, tools=[get_weather])
    third = kit.requests[2].messages
    assert [m["role"] for m in third] == ["user", "assistant", "tool", "assistant", "tool"]
    cities = [
        json.loads(m["tool_calls"][0]["arguments"])["city"] for m in third if m.get("tool_calls")
    ]
    assert cities == ["A", "B"]
