"""Approvals: a call whose tool needs a person's yes waits, stored
server-side; only a decision that passes every check against what was
stored runs it, with the stored arguments, once."""

import json
import threading

import pytest
from flask import request

from flask_aistream import tool
from flask_aistream.testing import fake_provider, read_events, tool_call


def approval_app(make_app, ran, **config):
    @tool(needs_approval=True)
    def refund(order_id: str, amount: int) -> dict:
        """Refunds an order."""
        ran.append((order_id, amount))
        return {"refunded": order_id, "amount": amount}

    @tool(needs_approval=lambda call: json.loads(call.arguments)["amount"] > 100)
    def credit(order_id: str, amount: int) -> str:
        """Credits an account; large credits need a yes."""
        ran.append(("credit", order_id, amount))
        return "credited"

    app = make_app(AI_RATELIMIT=None, **config)
    app.register_blueprint(
        app.extensions["ai"].blueprint(
            tools=[refund, credit],
            owner=lambda: request.headers.get("X-User"),
            events=["tool_results", "finish"],
        ),
        url_prefix="/api/chat",
    )
    return app


def ask(client, user="ann"):
    return read_events(
        client.post("/api/chat/stream", json={"question": "Refund A1"}, headers={"X-User": user})
    )


def decide(client, approval_id, user="ann", **body):
    return client.post(f"/api/chat/approvals/{approval_id}", json=body, headers={"X-User": user})


def requests_of(events):
    return [e for e in events if e.type == "approval_request"]


@pytest.fixture
def ran():
    return []


def test_approve_runs_the_stored_call_once_and_the_answer_goes_on(make_app, ran):
    app = approval_app(make_app, ran)
    client = app.test_client()
    with fake_provider(app) as kit:
        kit.reply("Let me refund it.", tool_call("refund", order_id="A1", amount=30))
        kit.reply("Refunded.")
        first = ask(client)
        [waiting] = requests_of(first)
        assert waiting.call.name == "refund" and json.loads(waiting.call.arguments)["amount"] == 30
        assert first[-1].answer.finish_reason == "tool_calls" and not ran
        # the client may send other fields (a changed amount): only the decision counts
        go_on = read_events(decide(client, waiting.id, approved=True, amount=9999))
        again = decide(client, waiting.id, approved=True)
    assert ran == [("A1", 30)]
    results = [e for e in go_on if e.type == "tool_result"]
    assert results[0].output == {"refunded": "A1", "amount": 30}
    assert go_on[-1].answer.text == "Refunded."
    told = kit.requests[1].messages
    assert told[-2]["tool_calls"][0]["name"] == "refund"
    assert json.loads(told[-1]["content"]) == {"refunded": "A1", "amount": 30}
    assert again.status_code == 409  # a decision is used once


def test_deny_tells_the_model_why_and_runs_nothing(make_app, ran):
    app = approval_app(make_app, ran)
    client = app.test_client()
    with fake_provider(app) as kit:
        kit.reply(tool_call("refund", order_id="A1", amount=30)).reply("Understood.")
        [waiting] = requests_of(ask(client))
        go_on = read_events(decide(client, waiting.id, approved=False, reason="Too late"))
    assert not ran and go_on[-1].answer.text == "Understood."
    assert kit.requests[1].messages[-1]["content"] == (
        "The user did not approve this call. Their reason: Too late"
    )
    assert go_on[0].type == "tool_result" and go_on[0].error.startswith("The user did not")


def test_forged_foreign_expired_and_malformed_decisions_fail_closed(make_app, ran, monkeypatch):
    app = approval_app(make_app, ran, AI_APPROVAL_TTL=60)
    client = app.test_client()
    with fake_provider(app) as kit:
        kit.reply(tool_call("refund", order_id="A1", amount=30)).reply("Done.")
        [waiting] = requests_of(ask(client))
        assert decide(client, "apr-" + "0" * 32, approved=True).status_code == 404  # forged
        assert decide(client, waiting.id, user="bob", approved=True).status_code == 404
        assert decide(client, waiting.id, approved="yes").status_code == 400
        assert not ran
        # bob's try consumed nothing: ann's own decision still counts
        assert read_events(decide(client, waiting.id, approved=True))[-1].answer.text == "Done."
    assert ran == [("A1", 30)]

    ran.clear()
    with fake_provider(app) as kit:
        kit.reply(tool_call("refund", order_id="B2", amount=10))
        [late] = requests_of(ask(client))
        import flask_aistream.approvals as approvals

        later = approvals.time.time() + 61
        monkeypatch.setattr(approvals.time, "time", lambda: later)
        assert decide(client, late.id, approved=True).status_code == 410
    assert not ran


def test_two_approvals_in_one_answer_go_on_once_both_are_decided(make_app, ran):
    app = approval_app(make_app, ran)
    client = app.test_client()
    with fake_provider(app) as kit:
        kit.reply(
            tool_call("refund", order_id="A1", amount=30),
            tool_call("credit", order_id="A1", amount=500),
            tool_call("credit", order_id="A2", amount=5),  # small: runs at once
        )
        kit.reply("All done.")
        first = ask(client)
        waiting = requests_of(first)
        assert [w.call.name for w in waiting] == ["refund", "credit"]
        assert ran == [("credit", "A2", 5)]
        pending = decide(client, waiting[0].id, approved=True)
        assert pending.status_code == 202 and len(kit.requests) == 1
        go_on = read_events(decide(client, waiting[1].id, approved=False))
    assert ran == [("credit", "A2", 5), ("A1", 30)]
    assert go_on[-1].answer.text == "All done."
    contents = [m["content"] for m in kit.requests[1].messages if m["role"] == "tool"]
    assert contents == [
        "credited",  # ran in the first answer
        "The user did not approve this call.",
        '{"refunded": "A1", "amount": 30}',
    ]


def test_a_vercel_blueprint_with_approval_tools_is_refused_in_the_view(make_app):
    from flask_aistream import ConfigurationError

    @tool(needs_approval=True)
    def refund(order_id: str) -> str:
        """Refunds."""
        return "ok"

    app = make_app()
    with app.test_request_context(), pytest.raises(ConfigurationError, match="aistream"):
        app.extensions["ai"].ask_stream("Go", tools=[refund], format="vercel")


@pytest.mark.system
def test_the_same_approval_sent_at_once_to_two_workers_over_redis_runs_once(
    make_app, ran, redis_server
):
    """Two apps (two workers) sharing Redis; the decision arrives at both at
    the same time, eight times over: the call runs once."""
    apps = [approval_app(make_app, ran, AI_APPROVAL_STORAGE_URI=redis_server.url) for _ in range(2)]
    with fake_provider(apps[0]) as kit0, fake_provider(apps[1]) as kit1:
        kit0.reply(tool_call("refund", order_id="A1", amount=30))
        [waiting] = requests_of(ask(apps[0].test_client()))
        for kit in (kit0, kit1):
            kit.replies(*["Done."] * 8)
        statuses = []
        barrier = threading.Barrier(8)

        def send(app):
            barrier.wait()
            response = decide(app.test_client(), waiting.id, approved=True)
            statuses.append(response.status_code)
            response.close()

        threads = [threading.Thread(target=send, args=(apps[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted(statuses) == [200] + [409] * 7
    assert ran == [("A1", 30)]


def test_a_new_message_while_an_approval_waits_leaves_the_call_out_unrun(make_app, ran):
    """The vercel/ai#17033 case: the user writes again instead of deciding;
    the waiting call is neither run nor sent to the model as a dangling call."""
    from flask_aistream.testing import read_answer

    @tool(needs_approval=True)
    def refund(order_id: str) -> str:
        """Refunds."""
        ran.append(order_id)
        return "refunded"

    app = make_app(AI_RATELIMIT=None, AI_VERCEL_PROTOCOL=6)
    app.register_blueprint(
        app.extensions["ai"].blueprint(format="vercel", tools=[refund]), url_prefix="/v"
    )
    client = app.test_client()
    asked = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Refund A1"}]}
    with fake_provider(app) as kit:
        kit.reply(tool_call("refund", order_id="A1")).reply("Sure, what else?")
        first = read_answer(client.post("/v/stream", json={"messages": [asked]}))
        [waiting] = first.approval_requests
        waiting_part = {
            "type": "tool-refund",
            "toolCallId": waiting.call.id,
            "state": "approval-requested",
            "input": {"order_id": "A1"},
            "approval": {"id": waiting.id},
        }
        messages = [
            asked,
            {"id": "a1", "role": "assistant", "parts": [{"type": "step-start"}, waiting_part]},
            {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Never mind, hi"}]},
        ]
        second = read_answer(client.post("/v/stream", json={"messages": messages}))
    assert second.text == "Sure, what else?" and not ran
    assert kit.requests[1].messages == [
        {"role": "user", "content": "Refund A1"},
        {"role": "user", "content": "Never mind, hi"},
    ]


@pytest.mark.system
def test_decisions_at_two_gunicorn_workers_over_redis_run_the_tool_once(
    fake, redis_server, tmp_path
):
    """Two workers share Redis; eight copies of one decision race across them."""
    import requests
    from test_tool_loop import calls_step

    from helpers import gunicorn_server

    runs = tmp_path / "runs.txt"
    fake.reply = calls_step("openai", [("call_r", "refund", {"order_id": "A1"})])
    env = dict(AI_APPROVAL_STORAGE_URI=redis_server.url, TOOL_RUNS_FILE=str(runs))
    with gunicorn_server("gthread", fake, workers=2, **env) as (address, _):
        base = f"http://{address[0]}:{address[1]}/api/approve"
        first = requests.post(
            f"{base}/stream", json={"question": "Refund A1"}, headers={"X-User": "ann"}, timeout=30
        )
        [asked] = [
            json.loads(e.data)
            for e in __import__("helpers").sse_events(first.content)
            if "approval_request" in e.data
        ]
        approval_id = asked["approval_request"]["id"]
        statuses = []
        barrier = threading.Barrier(8)

        def send():
            barrier.wait()
            response = requests.post(
                f"{base}/approvals/{approval_id}",
                json={"approved": True},
                headers={"X-User": "ann"},
                timeout=30,
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert sorted(statuses) == [200] + [409] * 7
    assert runs.read_text().split()[0] == "A1" and len(runs.read_text().splitlines()) == 1


@pytest.mark.system
def test_a_worker_killed_mid_tool_never_runs_it_twice(fake, redis_server, tmp_path):
    """The decision is kept before the tool runs: a worker that dies during
    it leaves the approval used, and the same decision sent again is a 409."""
    import os
    import signal
    import time

    import requests
    from test_tool_loop import calls_step

    from helpers import gunicorn_server, sse_events

    runs = tmp_path / "runs.txt"
    fake.reply = calls_step("openai", [("call_s", "refund", {"order_id": "SLOW"})])
    env = dict(AI_APPROVAL_STORAGE_URI=redis_server.url, TOOL_RUNS_FILE=str(runs))
    with gunicorn_server("gthread", fake, **env) as (address, worker):
        base = f"http://{address[0]}:{address[1]}/api/approve"
        headers = {"X-User": "ann"}
        first = requests.post(
            f"{base}/stream", json={"question": "Refund"}, headers=headers, timeout=30
        )
        [asked] = [
            json.loads(e.data) for e in sse_events(first.content) if "approval_request" in e.data
        ]
        approval = f"{base}/approvals/{asked['approval_request']['id']}"

        def decide_and_lose_the_worker():
            try:
                requests.post(approval, json={"approved": True}, headers=headers, timeout=30)
            except requests.ConnectionError:
                pass  # the worker died under it: what this test does

        deciding = threading.Thread(target=decide_and_lose_the_worker, daemon=True)
        deciding.start()
        deadline = time.monotonic() + 20
        while not (runs.exists() and runs.read_text()):
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.05)
        os.kill(worker, signal.SIGKILL)  # mid-tool
        deadline = time.monotonic() + 30
        while True:  # the master starts a new worker
            try:
                again = requests.post(approval, json={"approved": True}, headers=headers, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "no worker came back"
                time.sleep(0.2)
    assert again.status_code == 409
    assert (
        runs.read_text().splitlines()[0].startswith("SLOW ")
        and len(runs.read_text().splitlines()) == 1
    )
