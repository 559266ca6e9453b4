"""The OpenAI-compatible endpoint under attack (the second review's D10, D14,
D15), through the Flask test client: whatever a client sends, it gets OpenAI's
error shape, never HTML, and never a model outside its aliases."""

import threading

import pytest

from fakeprovider import Reply, openai_events

TOKEN = "client-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def endpoint(make_app):
    def build(**config):
        app = make_app(AI_RATELIMIT=None, AI_MAX_RETRIES=0, **config)
        app.register_blueprint(
            app.extensions["ai"].openai_blueprint(
                authorize=lambda request: request.headers["Authorization"] == AUTH["Authorization"],
                models={"cheap": "groq:llama-3.1-8b-instant"},
            ),
            url_prefix="/oa",
        )
        return app

    return build


def ask(client, **fields):
    body = {"model": "cheap", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return client.post("/oa/v1/chat/completions", json=body, headers=AUTH)


@pytest.mark.parametrize(
    "fields",
    [
        {"tool_choice": {"type": "function", "function": "get_weather"}},
        {"response_format": {"type": "json_schema", "json_schema": "strict"}},
        {"response_format": "json"},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
    ],
)
def test_malformed_fields_are_a_400_in_openais_shape(endpoint, fake, log_records, fields):
    response = ask(endpoint().test_client(), **fields)
    assert response.status_code == 400
    assert response.is_json and response.json["error"]["type"] == "invalid_request_error"
    assert fake.requests == []
    assert not [r for r in log_records.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_non_json_numbers_are_a_400(endpoint, fake, constant):
    body = '{"model": "cheap", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": %s}'
    response = (
        endpoint()
        .test_client()
        .post(
            "/oa/v1/chat/completions",
            data=body % constant,
            headers={**AUTH, "Content-Type": "application/json"},
        )
    )
    assert response.status_code == 400 and response.is_json
    assert fake.requests == []


def test_other_methods_are_a_json_405(endpoint):
    response = endpoint().test_client().get("/oa/v1/chat/completions", headers=AUTH)
    assert response.status_code == 405 and response.is_json
    assert response.headers["Allow"] == "POST"
    assert response.json["error"]["code"] == "method_not_allowed"


def test_an_unexpected_failure_is_a_json_500_and_logged(endpoint, monkeypatch, log_records):
    import flask_aistream.endpoints.openai as module

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(module, "_options", broken)
    response = ask(endpoint().test_client())
    assert response.status_code == 500 and response.is_json
    assert "a bug" not in response.get_data(as_text=True)
    assert any("a bug" in r.exc_text for r in log_records.records if r.exc_text)


def test_a_client_cannot_reach_a_model_outside_its_aliases(endpoint, fake):
    """D14: app-wide fallbacks fired on a 400 the client caused (five stop
    sequences), and another model answered under the alias."""

    def reply(seen):
        if seen.json()["model"] == "llama-3.1-8b-instant":
            return Reply(status=400, parts=[b'{"error": {"message": "too many stop sequences"}}'])
        return Reply(parts=openai_events(["answered by the fallback"]))

    fake.reply_for = reply
    app = endpoint(AI_FALLBACKS=["openai:gpt-5"])
    response = ask(app.test_client(), stop=["a", "b", "c", "d", "e"])
    assert response.status_code == 400
    assert [seen.json()["model"] for seen in fake.requests] == ["llama-3.1-8b-instant"]


def test_the_browser_blueprint_does_not_fall_back_on_a_refused_request(make_app, fake):
    """A 400 is the request's fault: another provider would answer a different request."""

    def reply(seen):
        if seen.path.endswith("/messages"):
            return Reply(parts=openai_events(["no"]))
        return Reply(status=400, parts=[b'{"error": {"message": "bad"}}'])

    fake.reply_for = reply
    app = make_app(AI_FALLBACKS=["anthropic"], AI_MAX_RETRIES=0)
    body = app.test_client().post("/chat", json={"question": "Hi"}).get_data(as_text=True)
    assert "rejected the request" in body
    assert len(fake.requests) == 1


def test_a_done_id_does_not_skip_metering(endpoint, fake):
    """D15: ``Last-Event-ID: flask-aistream:done`` returned a 204 after the
    provider was called: no hook, no metering."""
    from flask_aistream import answer_finished

    fake.reply = Reply(parts=openai_events(["Hello"]))
    app = endpoint()
    seen = []
    with answer_finished.connected_to(lambda sender, answer: seen.append(answer), app):
        response = app.test_client().post(
            "/oa/v1/chat/completions",
            json={
                "model": "cheap",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": True,
            },
            headers={**AUTH, "Last-Event-ID": "flask-aistream:done"},
        )
        assert response.status_code == 200
        assert b"Hello" in response.get_data()
    assert len(fake.requests) == 1
    assert [answer.finish_reason for answer in seen] == ["stop"]


@pytest.mark.system
@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_while_the_view_reads_stops_the_provider(endpoint, fake, live, stream):
    """D13: a non-streamed answer was generated (and billed) in full after its
    client left; a streamed one waited for its first token to notice."""
    import json
    import socket

    from helpers import address_of

    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(100)]), delay=0.1)
    if stream:
        fake.reply.head_delay = 60  # silent before its first token
    address = address_of(live(endpoint(AI_HTTP_TIMEOUT=60)))  # longer than the test waits
    body = json.dumps(
        {"model": "cheap", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    ).encode()
    sock = socket.create_connection(address)
    sock.sendall(
        b"POST /oa/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (TOKEN.encode(), len(body), body)
    )
    for _ in range(200):  # the provider has the question
        if fake.requests:
            break
        threading.Event().wait(0.05)
    sock.close()  # the client gives up
    assert fake.wait_for_hangup(fake.last, timeout=20) is not None
    assert fake.last.parts_sent < 100
