"""Every failure ends the stream the same way: the text that did arrive, one
short ``{"error"}`` event that leaks nothing, then ``[DONE]``; the detail goes
to the app's log, with API keys redacted."""

import socket

import pytest

from fakeprovider import FakeProvider, Reply, transcript
from helpers import SECRET_KEYS, relayed

OPENAI_KEY = SECRET_KEYS["openai"]


def stream(client, provider="openai", question="Why?"):
    response = client.post("/chat", json={"question": question, "provider": provider})
    assert response.status_code == 200  # errors travel inside the stream
    assert response.mimetype == "text/event-stream"
    body = response.get_data()
    return body, relayed(body)


def assert_nothing_leaks(body, fake):
    for secret in list(SECRET_KEYS.values()) + [fake.url, "127.0.0.1", "Traceback", "Bearer"]:
        assert secret.encode() not in body


def test_401_whose_body_echoes_the_key(client, fake, log_records):
    fake.reply = Reply.json(
        401,
        {
            "error": {
                "message": f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
    )
    body, (text, error, done) = stream(client)
    assert (text, done) == ("", True)
    assert error == "The AI provider refused the server's credentials. (HTTP 401)"
    assert_nothing_leaks(body, fake)
    log = log_records.text
    assert "invalid_api_key" in log and "HTTP 401" in log  # the detail is logged...
    assert OPENAI_KEY not in log and "[redacted]" in log  # ...without the key


@pytest.mark.parametrize(
    "status, payload, message",
    [
        (
            429,
            {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "Slow down"}},
            "The AI provider is rate limiting requests; try again in a moment. (HTTP 429)",
        ),
        (
            429,
            {
                "error": {
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                    "message": "Billing",
                }
            },
            "The AI provider account has run out of quota. (HTTP 429)",
        ),
        (
            500,
            {"error": {"type": "server_error", "message": "oops"}},
            "The AI provider is unavailable or overloaded; try again later. (HTTP 500)",
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "The AI provider is unavailable or overloaded; try again later. (HTTP 529)",
        ),
        (
            404,
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                    "message": "no model",
                }
            },
            "The AI provider does not know the model or endpoint asked for. (HTTP 404)",
        ),
    ],
)
def test_http_errors_before_the_first_token(client, fake, log_records, status, payload, message):
    fake.reply = Reply.json(status, payload)
    body, result = stream(client)
    assert result == ("", message, True)
    assert_nothing_leaks(body, fake)
    assert payload["error"]["message"] in log_records.text


@pytest.mark.parametrize(
    "status, code, kind, retryable",
    [
        (400, "", "bad_request", False),
        (401, "", "auth", False),
        (402, "", "quota", False),
        (403, "", "auth", False),
        (404, "", "not_found", False),
        (408, "", "timeout", True),
        (409, "", "rate_limit", True),
        (413, "", "bad_request", False),
        (422, "", "bad_request", False),
        (429, "rate_limit_exceeded", "rate_limit", True),
        (429, "insufficient_quota", "quota", False),
        (500, "", "unavailable", True),
        (503, "", "unavailable", True),
        (529, "", "unavailable", True),
    ],
)
def test_each_status_has_a_kind_and_says_try_again_only_when_it_helps(
    app, fake, status, code, kind, retryable
):
    from flask_aistream import ProviderError

    fake.reply = Reply.json(status, {"error": {"code": code, "message": "m"}})
    with app.app_context(), pytest.raises(ProviderError) as failure:
        app.extensions["ai"].ask("hi")
    error = failure.value
    assert (error.kind, error.retryable, error.status) == (kind, retryable, status)
    assert ("try again" in error.message) is retryable


def test_an_in_stream_error_that_a_retry_cannot_help_does_not_say_try_again(client, fake):
    fake.reply = Reply.sse(
        transcript("openai_midstream_error.sse").replace(b"server_error", b"invalid_request_error")
    )
    _, (text, error, _) = stream(client)
    assert error == "The AI provider reported an error during the answer (invalid_request_error)."


def test_html_error_page_from_a_proxy(client, fake):
    fake.reply = Reply(
        parts=[b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"],
        status=502,
        headers={"Content-Type": "text/html"},
        framing="length",
    )
    body, result = stream(client)
    assert result == (
        "",
        "The AI provider is unavailable or overloaded; try again later. (HTTP 502)",
        True,
    )
    assert b"nginx" not in body


def test_openai_error_chunk_mid_stream(client, fake, log_records):
    fake.reply = Reply.sse(transcript("openai_midstream_error.sse"))
    body, result = stream(client)
    assert result == (
        "Before the error",
        "The AI provider reported an error during the answer (server_error); try again.",
        True,
    )
    assert "Sorry about that" in log_records.text and b"Sorry" not in body


def test_anthropic_error_event_mid_stream(client, fake, log_records):
    fake.reply = Reply.sse(transcript("anthropic_overloaded.sse"))
    _, result = stream(client, "anthropic")
    assert result == (
        "Partial",
        "The AI provider reported an error during the answer (overloaded_error); try again.",
        True,
    )
    assert "Overloaded" in log_records.text


@pytest.mark.parametrize(
    "provider, name, marker",
    [
        ("openai", "openai_basic.sse", b'"finish_reason":"stop"'),
        ("anthropic", "anthropic_basic.sse", b"event: message_delta"),
    ],
)
def test_stream_cut_off_before_the_end(client, fake, provider, name, marker):
    body = transcript(name)
    fake.reply = Reply.sse(body[: body.index(marker)])
    _, (text, error, done) = stream(client, provider)
    assert text and done
    assert error == "The answer was cut off: the AI provider closed the stream early."


def test_finish_reason_without_done_marker_is_complete(client, fake):
    body = transcript("openai_basic.sse")
    fake.reply = Reply.sse(body[: body.index(b"data: [DONE]")])
    _, (text, error, _) = stream(client)
    assert error is None and text.endswith("Line two.")


def test_non_json_data_line(client, fake, log_records):
    fake.reply = Reply.sse(
        b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\ndata: <html>oops\n\n'
    )
    _, result = stream(client)
    assert result == ("ok", "The AI provider sent a malformed answer.", True)
    assert "<html>oops" in log_records.text


def test_json_of_the_wrong_shape(client, fake):
    fake.reply = Reply.sse(b'data: {"choices":[{"index":0,"delta":"nope"}]}\n\ndata: [1, 2]\n\n')
    _, result = stream(client)
    assert result == ("", "The AI provider sent a malformed answer.", True)


def test_200_with_a_json_error_body_instead_of_a_stream(client, fake, log_records):
    fake.reply = Reply.json(200, {"error": {"message": "Model is loading", "type": "server_error"}})
    _, result = stream(client)
    assert result == ("", "The AI provider answered with an error instead of a stream.", True)
    assert "Model is loading" in log_records.text


def test_a_line_that_never_ends(make_app, fake, monkeypatch):
    monkeypatch.setattr("flask_aistream.providers.sse.MAX_LINE_BYTES", 64 * 1024)
    monkeypatch.setattr(
        "flask_aistream.providers.sse.SSEDecoder.__init__.__defaults__", (64 * 1024,)
    )
    fake.reply = Reply(
        parts=[b'data: {"choices":[{"index":0,"delta":{"content":"x' + b"x" * 8192] * 20, hold=True
    )
    _, result = stream(make_app().test_client())
    assert result == ("", "The AI provider sent a malformed answer.", True)
    assert fake.wait_for_hangup(fake.last) is not None


def test_connection_refused(make_app, log_records):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(AI_OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    body, result = stream(app.test_client())
    assert result == ("", "Could not connect to the AI provider; try again later.", True)
    assert str(port).encode() not in body
    assert str(port) in log_records.text


def test_idle_timeout_before_the_first_token(make_app, fake):
    app = make_app(AI_HTTP_TIMEOUT=0.3)
    fake.reply = Reply(parts=[b": still thinking\n\n"], hold=True)
    _, result = stream(app.test_client())
    assert result == ("", "The AI provider stopped responding (no data for 0.3 s).", True)
    assert fake.wait_for_hangup(fake.last) is not None


def test_idle_timeout_is_silence_not_total_time(make_app, fake):
    """Six tokens 0.2 s apart take longer than the 0.5 s idle timeout, but no
    gap does: the answer completes."""
    app = make_app(AI_HTTP_TIMEOUT=0.5)
    body = transcript("openai_basic.sse")
    fake.reply = Reply(parts=[event + b"\n\n" for event in body.split(b"\n\n")], delay=0.2)
    _, (text, error, _) = stream(app.test_client())
    assert error is None and text.endswith("Line two.")


def test_ask_raises_provider_error_with_details(app, fake):
    from flask_aistream import ProviderError

    fake.reply = Reply.json(
        503, {"error": {"message": f"down, key {OPENAI_KEY}", "type": "server_error"}}
    )
    with app.app_context(), pytest.raises(ProviderError) as info:
        app.extensions["ai"].ask("Hi")
    error = info.value
    assert (error.status, error.provider, error.retryable) == (503, "openai", True)
    assert OPENAI_KEY not in error.detail and "down, key [redacted]" in error.detail
    assert OPENAI_KEY not in str(error)


def test_iter_text_raises_after_the_text_that_arrived(app, fake):
    from flask_aistream import ProviderError

    fake.reply = Reply.sse(transcript("anthropic_overloaded.sse"))
    got = []
    with pytest.raises(ProviderError) as info:
        for text in app.extensions["ai"].iter_text("Hi", provider="anthropic"):
            got.append(text)
    assert got == ["Partial"]
    assert info.value.retryable and info.value.status is None


def test_unexpected_exception_becomes_a_generic_error(app, fake, monkeypatch, log_records):
    def broken(self, event, out):
        raise ZeroDivisionError("internal detail")

    monkeypatch.setattr("flask_aistream.providers.openai.ChatCompletionsReader.parse", broken)
    fake.reply = Reply.sse(transcript("openai_basic.sse"))
    body, result = stream(app.test_client())
    assert result == ("", "Something went wrong while streaming the answer.", True)
    assert b"internal detail" not in body
    assert "ZeroDivisionError: internal detail" in log_records.text


@pytest.fixture
def elsewhere():
    """A second loopback server: where a redirect would send us."""
    server = FakeProvider()
    server.reply = Reply.sse(transcript("openai_basic.sse"))
    yield server
    server.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_redirect_is_never_followed(make_app, fake, elsewhere, log_records, status, provider):
    """requests would follow it and strip only ``Authorization``: Anthropic's
    ``x-api-key``, the conversation and the system prompt went to the other
    host, and a 302 streamed the other host's text as the answer."""
    location = f"{elsewhere.url}/v1/steal?key={SECRET_KEYS[provider]}"
    fake.reply = Reply(status=status, headers={"Location": location}, framing="length")
    response = (
        make_app()
        .test_client()
        .post(
            "/chat", json={"question": "secret question", "provider": provider, "system": "secret"}
        )
    )
    body = response.get_data()
    text, error, done = relayed(body)
    assert elsewhere.requests == []
    assert (text, done) == ("", True)
    assert "redirect" in error and elsewhere.url.encode() not in body
    assert len(fake.requests) == 1  # not retried: it would answer the same
    [record] = [r for r in log_records.records if "failed" in r.getMessage()]
    assert "/v1/steal" in record.getMessage()  # where it pointed goes to the log...
    assert SECRET_KEYS[provider] not in record.getMessage()  # ...redacted


def test_every_form_of_a_key_is_redacted(make_app):
    from urllib.parse import quote, quote_plus

    key = "mistral+Key/With'Odd\\Chars0123456789"
    app = make_app(AI_MISTRAL_API_KEY=key)
    settings = app.extensions["ai"].settings
    for form in (key, repr(key), quote(key, safe=""), quote_plus(key)):
        redacted = settings.redact(f"the upstream said: {form}!")
        assert "Key" not in redacted and "[redacted]" in redacted, (form, redacted)


def test_a_deeply_nested_provider_event_is_a_provider_error(client, fake):
    deep = b"[" * 100_000 + b"]" * 100_000
    fake.reply = Reply(parts=[b'data: {"choices": %s}\n\n' % deep])
    text, error, done = relayed(client.post("/chat", json={"question": "q"}).data)
    assert error == "The AI provider sent a malformed answer." and done
