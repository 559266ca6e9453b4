"""One connection per provider: a complete answer hands its connection back
for the next one; an aborted or failed one closes it (that is what stops the
provider generating); a connection the provider dropped while idle is
replaced at once. Over plain TCP and TLS."""

import logging
import ssl
import threading

import pytest
import trustme

from fakeprovider import FakeProvider, Reply, openai_events, transcript
from helpers import relayed

WORDS = ["Hello", " there", "."]


@pytest.fixture
def keepalive(fake):
    fake.keep_alive = True
    return fake


def ask(client, **body):
    response = client.post("/chat", json={"question": "Hi", **body})
    return relayed(response.get_data())


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_sequential_answers_share_one_connection(make_app, keepalive, framing):
    client = make_app().test_client()
    for _ in range(5):
        keepalive.reply = Reply(parts=openai_events(WORDS), framing=framing)
        assert ask(client) == ("Hello there.", None, True)
    assert keepalive.connections == 1
    assert len(keepalive.requests) == 5


def test_anthropic_and_gemini_too(make_app, keepalive):
    client = make_app().test_client()
    for provider, name in [
        ("anthropic", "anthropic_basic.sse"),
        ("gemini", "gemini_basic.sse"),
    ] * 2:
        keepalive.reply = Reply.sse(transcript(name))
        text, error, done = ask(client, provider=provider)
        assert text and error is None and done
    assert keepalive.connections == 1


def test_a_close_delimited_body_cannot_be_kept(make_app, keepalive):
    client = make_app().test_client()
    for _ in range(3):
        keepalive.reply = Reply(parts=openai_events(WORDS), framing="close")
        assert ask(client)[0] == "Hello there."
    assert keepalive.connections == 3


def test_an_abandoned_answer_closes_its_connection(make_app, keepalive, live):
    """The client leaves mid-answer: the provider sees the hang-up (it stops
    generating), and the next answer opens a new connection."""
    import requests

    url = live(make_app())
    keepalive.reply = Reply(parts=openai_events([f"w{i} " for i in range(100)]), delay=0.05)
    with requests.post(f"{url}/chat", json={"question": "Hi"}, stream=True, timeout=10) as response:
        next(response.iter_content(1))
    assert keepalive.wait_for_hangup(keepalive.last) is not None
    keepalive.reply = Reply(parts=openai_events(WORDS))
    response = requests.post(f"{url}/chat", json={"question": "Hi"}, timeout=10)
    assert relayed(response.content)[0] == "Hello there."
    assert keepalive.connections == 2


def test_an_answer_failed_midway_closes_its_connection(make_app, keepalive):
    """An error status whose whole body was read leaves a clean connection
    (the provider generated nothing); a failure mid-answer does not."""
    client = make_app(AI_MAX_RETRIES=0).test_client()
    keepalive.reply = Reply.json(400, {"error": {"message": "bad"}})
    assert ask(client)[1].startswith("The AI provider rejected the request")
    keepalive.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    assert ask(client)[1]
    assert keepalive.connections == 1
    keepalive.reply = Reply(parts=openai_events(WORDS))
    assert ask(client)[0] == "Hello there."
    assert keepalive.connections == 2


def test_a_slow_end_of_body_loses_the_connection_not_the_answer(make_app, keepalive):
    client = make_app().test_client()
    keepalive.reply = Reply(parts=openai_events(WORDS), end_delay=1.5)
    assert ask(client) == ("Hello there.", None, True)
    keepalive.reply = Reply(parts=openai_events(WORDS))
    assert ask(client) == ("Hello there.", None, True)
    assert keepalive.connections == 2


def test_a_connection_the_provider_dropped_while_idle_is_replaced_at_once(
    make_app, keepalive, log_records
):
    """No error, no retry with backoff: the stale connection is noticed when
    taken from the pool, and a new one is opened."""
    client = make_app(AI_RETRY_BACKOFF=30).test_client()  # a backoff would hang this test
    keepalive.reply = Reply(parts=openai_events(WORDS), close_after=0.05)
    assert ask(client) == ("Hello there.", None, True)
    assert keepalive.idle_closed.wait(10)  # the provider has closed its end
    keepalive.reply = Reply(parts=openai_events(WORDS))
    assert ask(client) == ("Hello there.", None, True)
    assert keepalive.connections == 2
    assert "retrying" not in log_records.text


def test_more_streams_than_the_pool_holds_log_nothing(make_app, keepalive, live, caplog):
    import requests

    caplog.set_level(logging.DEBUG, logger="urllib3")
    url = live(make_app(AI_POOL_MAXSIZE=2))
    keepalive.reply = Reply(parts=openai_events(WORDS), delay=0.2)
    results = []

    def one():
        results.append(
            relayed(requests.post(f"{url}/chat", json={"question": "Hi"}, timeout=10).content)
        )

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [("Hello there.", None, True)] * 5
    assert "pool is full" not in caplog.text.lower()
    assert keepalive.connections == 5
    # two were kept: the next two answers open nothing new
    keepalive.reply = Reply(parts=openai_events(WORDS))
    for _ in range(2):
        one()
    assert keepalive.connections == 5


def test_pool_size_setting_is_checked():
    from flask import Flask

    from flask_aistream import AIStream, ConfigurationError

    app = Flask(__name__)
    app.config["AI_POOL_MAXSIZE"] = 0
    with pytest.raises(ConfigurationError, match="AI_POOL_MAXSIZE"):
        AIStream(app)


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture
def tls_fake(tmp_path, monkeypatch):
    """The fake provider over TLS, with a certificate our transport trusts
    through REQUESTS_CA_BUNDLE (as a corporate CA would be)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    server = FakeProvider(tls=context)
    server.keep_alive = True
    yield server
    server.close()


def tls_app(make_app, tls_fake, **config):
    return make_app(AI_OPENAI_BASE_URL=f"{tls_fake.url}/v1", **config)


def test_tls_answers_share_one_connection(make_app, tls_fake):
    assert tls_fake.url.startswith("https://")
    client = tls_app(make_app, tls_fake).test_client()
    for _ in range(4):
        tls_fake.reply = Reply(parts=openai_events(WORDS))
        assert ask(client) == ("Hello there.", None, True)
    assert tls_fake.connections == 1


def test_tls_abandoned_answer_stops_the_provider(make_app, tls_fake, live):
    import requests

    url = live(tls_app(make_app, tls_fake))
    tls_fake.reply = Reply(parts=openai_events([f"w{i} " for i in range(100)]), delay=0.05)
    with requests.post(f"{url}/chat", json={"question": "Hi"}, stream=True, timeout=10) as response:
        next(response.iter_content(1))
    assert tls_fake.wait_for_hangup(tls_fake.last) is not None
    assert tls_fake.last.parts_sent < 100


def test_an_untrusted_certificate_is_a_clear_error(make_app, tls_fake, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    client = tls_app(make_app, tls_fake, AI_MAX_RETRIES=0).test_client()
    tls_fake.reply = Reply(parts=openai_events(WORDS))
    text, error, done = ask(client)
    assert error == "Could not connect to the AI provider; try again later." and done
