"""AG-UI: the agui format and blueprint, read by @ag-ui/client's own
HttpAgent in Node, every event validated with @ag-ui/core's schemas."""

import json

import pytest
from flask import request
from test_frontends import node  # noqa: F401 - the fixture
from test_tool_loop import calls_step

from fakeprovider import Reply, openai_events
from flask_aistream import send_data, tool

pytestmark = pytest.mark.system


def user(text, id="u1"):
    return {"id": id, "role": "user", "content": text}


@pytest.fixture
def agui_site(make_app, live):
    def start(**blueprint):
        app = make_app(AI_RATELIMIT=None, AI_MAX_RETRIES=0)
        app.register_blueprint(
            app.extensions["ai"].blueprint(format="agui", **blueprint), url_prefix="/agent"
        )
        return f"{live(app)}/agent/stream"

    return start


def rich_step():
    """Reasoning, text, then a call of the server's tool (lookup)."""

    def chunk(delta, finish=None):
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return (
            b"data: %s\n\n"
            % json.dumps({"id": "c", "model": "gpt-x", "choices": [choice]}).encode()
        )

    return Reply(
        parts=[
            chunk({"reasoning_content": "Thinking."}),
            chunk({"content": "Let me look."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_l",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"order": "A1"}'}}]}),
            chunk({}, finish="tool_calls"),
            b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n',
            b"data: [DONE]\n\n",
        ]
    )


def test_a_run_with_reasoning_text_a_server_tool_and_data(node, agui_site, fake):  # noqa: F811
    @tool
    def lookup(order: str) -> dict:
        """Looks an order up."""
        send_data("status", "found it")
        return {"order": order, "status": "shipped"}

    fake.replies = [rich_step(), Reply(parts=openai_events(["It has ", "shipped."]))]
    url = agui_site(tools=[lookup])
    result = node("agui_run.mjs", url, json.dumps([user("Where is A1?")]), "[]", "", "thread-1")
    assert result["error"] is None and result["invalid"] == []
    types = [e["type"] for e in result["events"]]
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED"
    assert "[DONE]" not in json.dumps(result["events"])
    for kind in (
        "REASONING_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_END",
        "TEXT_MESSAGE_START",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "CUSTOM",
    ):
        assert kind in types, kind
    assert types.count("STEP_STARTED") == types.count("STEP_FINISHED") == 2
    started = result["events"][0]
    assert started["threadId"] == "thread-1"
    finished = result["events"][-1]
    assert finished["outcome"] == {"type": "success"}
    assert (finished["usage"][0]["inputTokens"], finished["usage"][0]["outputTokens"]) == (7, 3)
    tool_result = next(e for e in result["events"] if e["type"] == "TOOL_CALL_RESULT")
    assert json.loads(tool_result["content"]) == {"order": "A1", "status": "shipped"}
    texts = [m.get("content") for m in result["messages"] if m["role"] == "assistant"]
    assert "It has shipped." in texts
    # the page's context reached the system prompt
    assert "The page: Orders" in fake.requests[0].json()["messages"][0]["content"]


def test_a_browser_tool_ends_the_run_and_its_result_comes_back(node, agui_site, fake):  # noqa: F811
    fake.replies = [
        calls_step("openai", [("call_c", "confirm", {"question": "Sure?"})]),
        Reply(parts=openai_events(["Confirmed."])),
    ]
    url = agui_site()
    tools = [
        {
            "name": "confirm",
            "description": "Asks the user.",
            "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
        }
    ]
    first = node("agui_run.mjs", url, json.dumps([user("Do it")]), json.dumps(tools))
    assert first["error"] is None and first["invalid"] == []
    finished = first["events"][-1]
    assert finished["outcome"] == {"type": "success", "pendingToolCallIds": ["call_c"]}
    assert fake.requests[0].json()["tools"][0]["function"]["name"] == "confirm"
    # the client runs it and sends the conversation with the result
    messages = first["messages"] + [
        {"id": "t1", "role": "tool", "toolCallId": "call_c", "content": "yes"}
    ]
    second = node("agui_run.mjs", url, json.dumps(messages), json.dumps(tools))
    assert second["error"] is None and second["invalid"] == []
    assert fake.requests[1].json()["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_c",
        "content": "yes",
    }


def test_an_approval_is_an_interrupt_and_a_resume_entry_decides_it(node, agui_site, fake):  # noqa: F811
    ran = []

    @tool(needs_approval=True)
    def refund(order: str) -> str:
        """Refunds."""
        ran.append(order)
        return "refunded"

    fake.replies = [
        calls_step("openai", [("call_r", "refund", {"order": "A1"})]),
        Reply(parts=openai_events(["Done."])),
    ]
    url = agui_site(tools=[refund], owner=lambda: request.remote_addr)
    first = node("agui_run.mjs", url, json.dumps([user("Refund A1")]), "[]", "", "thread-9")
    assert first["error"] is None and first["invalid"] == []
    outcome = first["events"][-1]["outcome"]
    assert outcome["type"] == "interrupt" and not ran
    [interrupt] = outcome["interrupts"]
    assert interrupt["reason"] == "tool_approval" and interrupt["toolCallId"] == "call_r"
    resume = [
        {"interruptId": "apr-unknown", "status": "resolved", "payload": {"approved": True}},
        {"interruptId": interrupt["id"], "status": "resolved", "payload": {"approved": True}},
    ]
    second = node(
        "agui_run.mjs", url, json.dumps(first["messages"]), "[]", json.dumps(resume), "thread-9"
    )
    assert second["error"] is None and second["invalid"] == []
    assert ran == ["A1"]
    assert second["events"][-1]["outcome"] == {"type": "success"}
    assert any(
        e["type"] == "TOOL_CALL_RESULT" and e["content"] == "refunded" for e in second["events"]
    )
