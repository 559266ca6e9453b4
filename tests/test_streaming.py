"""The relay writes each token as soon as it arrives, through real servers,
and hangs up on the provider the moment the browser goes away."""

import json
import statistics
import threading
import time

import pytest
import requests
import sseclient
from flask import request

from fakeprovider import Reply, openai_events, transcript
from helpers import address_of, raw_request, read_until, relayed


def test_response_headers(client, fake):
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    response = client.post("/chat", json={"question": "hi"}, buffered=False)
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Connection" not in response.headers  # hop-by-hop: forbidden by PEP 3333
    assert response.is_streamed
    response.close()


def test_sseclient_reads_the_stream_from_a_real_server(live, make_app, fake):
    """The generator runs after the view returned, outside any request context."""
    fake.reply = Reply.sse(transcript("anthropic_basic.sse"), framing="close")
    url = live(make_app())
    with requests.post(
        f"{url}/chat", json={"question": "hi", "provider": "anthropic"}, stream=True
    ) as response:
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        events = [event.data for event in sseclient.SSEClient(response).events()]
    assert events == [
        '{"content": "Hello! Rayleigh"}',
        '{"content": " scattering \\u2014 \\ud83c\\udf08 \\u7a7a."}',
        "[DONE]",
    ]


@pytest.mark.system
@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_no_token_waits_for_the_next_one(live, make_app, fake, framing):
    """The provider sends each token only once the client has received the
    one before: a relay that held a token back (for the next one, or for a
    buffer to fill) would stall the provider, whatever the machine's load."""
    tokens = 20
    gate = threading.Semaphore(0)
    fake.reply = Reply(
        parts=openai_events(["@NOW@"] * tokens), framing=framing, gate=gate, stamp=True
    )
    url = live(make_app())
    delays = []
    with requests.post(f"{url}/chat", json={"question": "hi"}, stream=True) as response:
        for event in sseclient.SSEClient(response).events():
            if event.data == "[DONE]":
                break
            delays.append(time.monotonic() - float(json.loads(event.data)["content"]))
            gate.release()  # now the provider may send the next one
    assert len(delays) == tokens
    assert not fake.last.stalled
    print(
        f"\n{framing}: per-token delay through the relay p50 "
        f"{statistics.median(delays) * 1000:.2f} ms, max {max(delays) * 1000:.2f} ms"
    )


def test_closing_the_response_hangs_up_on_the_provider(client, fake):
    """The test client's close() is what a WSGI server does when the browser left."""
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(200)]), delay=0.02, hold=True)
    response = client.post("/chat", json={"question": "hi"}, buffered=False)
    chunks = iter(response.response)
    assert b"t0" in next(chunks) and b"t1" in next(chunks)
    closed_at = time.monotonic()
    response.close()
    hung_up_at = fake.wait_for_hangup(fake.last)
    assert hung_up_at is not None
    print(
        f"\nresponse.close() -> provider saw the hang-up after {(hung_up_at - closed_at) * 1000:.1f} ms"
    )
    assert hung_up_at - closed_at < 0.2
    assert fake.last.parts_sent < 20


def test_browser_leaving_a_real_server_stops_the_provider(live, make_app, fake):
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(400)]), delay=0.02, hold=True)
    with raw_request(address_of(live(make_app()))) as browser:
        read_until(browser, lambda received: received.count(b'"content"') >= 3)
    left_at = time.monotonic()
    hung_up_at = fake.wait_for_hangup(fake.last)
    assert hung_up_at is not None, "the provider kept streaming after the browser left"
    print(
        f"\nbrowser left -> provider saw the hang-up after {(hung_up_at - left_at) * 1000:.1f} ms"
    )
    # Werkzeug notices on the first or second write after the client left:
    # about two token intervals.
    assert hung_up_at - left_at < 0.5
    assert fake.last.parts_sent < 60


def test_provider_end_marker_ends_the_upstream_at_once(client, fake):
    """After ``[DONE]`` we stop reading and close, even if the provider keeps
    the connection open."""
    fake.reply = Reply(parts=openai_events(["a", "b"]), hold=True)
    started = time.monotonic()
    assert relayed(client.post("/chat", json={"question": "hi"}).get_data()) == ("ab", None, True)
    assert time.monotonic() - started < 1
    assert fake.wait_for_hangup(fake.last) is not None


def test_an_app_may_adjust_the_response(make_app, fake):
    app = make_app()

    @app.get("/custom")
    def custom():
        response = app.extensions["ai"].ask_stream(request.args["q"])
        response.headers["Cache-Control"] = "no-store"
        return response

    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    response = app.test_client().get("/custom?q=hi")
    assert response.headers["Cache-Control"] == "no-store"
    assert relayed(response.get_data())[2]


# --- what the provider connection takes from the environment ------------------


@pytest.mark.ai_live  # the provider is a name only the proxy knows
def test_a_proxy_from_the_environment_is_used(make_app, fake, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", fake.url)  # the fake plays the proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    app = make_app(AI_OPENAI_BASE_URL="http://provider.example/v1")
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    body = app.test_client().post("/chat", json={"question": "hi"}).get_data()
    assert relayed(body)[2] and relayed(body)[1] is None
    assert fake.last.path == "http://provider.example/v1/chat/completions"


def test_no_proxy_from_the_environment_is_honoured(make_app, fake, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    body = make_app().test_client().post("/chat", json={"question": "hi"}).get_data()
    assert relayed(body)[1] is None
    assert fake.last.path == "/v1/chat/completions"


def test_a_netrc_entry_never_replaces_the_api_key(make_app, fake, monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    make_app().test_client().post("/chat", json={"question": "hi"}).get_data()
    assert fake.last.headers["authorization"] == "Bearer sk-proj-TESTKEY0123456789abcdefSECRET"


def test_a_reconnect_after_done_gets_a_204_and_asks_nothing(make_app, fake):
    app = make_app(AI_RATELIMIT="1 per minute")
    app.register_blueprint(app.extensions["ai"].blueprint(), url_prefix="/api")
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    client = app.test_client()
    body = client.get("/api/stream?question=q").get_data()
    assert b"id: flask-aistream:done\n\ndata: [DONE]\n\n" in body
    for _ in range(3):  # past the limit of 1 per minute: not counted
        again = client.get(
            "/api/stream?question=q", headers={"Last-Event-ID": "flask-aistream:done"}
        )
        assert again.status_code == 204 and again.data == b""
    assert len(fake.requests) == 1
    # in the app's own view too
    response = client.post(
        "/chat", json={"question": "q"}, headers={"Last-Event-ID": "flask-aistream:done"}
    )
    assert response.status_code == 204 and len(fake.requests) == 1
    # an id that is not ours is a new question
    other = client.post("/chat", json={"question": "q"}, headers={"Last-Event-ID": "42"})
    assert other.status_code == 200 and len(fake.requests) == 2
