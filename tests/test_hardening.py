"""What an adversarial review and a first-time user found (issue 10), each
reproduced first: through a real server where the defect needs one."""

import pytest

from conftest import SECRET_KEYS, relayed
from fakeprovider import FakeProvider, Reply, transcript


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


def test_empty_data_lines_count_against_the_event_bound():
    """200 MB of ``data:\\n`` with no blank line added 343 MB to a worker: each
    line counts at least its newline."""
    from flask_aistream import StreamFormatError
    from flask_aistream.sse import SSEDecoder

    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(StreamFormatError):
        for _ in range(200):
            decoder.feed(b"data:\n" * 10)
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(StreamFormatError):
        for _ in range(200):
            decoder.feed(b"data: \n" * 10)
    # a real event of many short lines under the bound still passes
    assert SSEDecoder(max_line_bytes=1000).feed(b"data: a\n" * 50 + b"\n")[0].data == "\n".join(
        ["a"] * 50
    )


def test_a_key_read_from_a_secrets_file_is_stripped(make_app, fake):
    """A trailing newline was sent (and failed as 'could not connect', retried)."""
    fake.reply = Reply.sse(transcript("mistral_basic.sse"))
    client = make_app(AI_MISTRAL_API_KEY=SECRET_KEYS["mistral"] + "\n").test_client()
    text, error, _ = relayed(client.post("/chat", json={"question": "q", "provider": "mistral"}).data)
    assert error is None and len(fake.requests) == 1
    assert fake.last.headers["authorization"] == f"Bearer {SECRET_KEYS['mistral']}"


@pytest.mark.parametrize("bad", ["key\nwith-newline-inside", "key\x00nul", "key\twith-tab"])
def test_a_key_with_control_characters_is_refused_at_start_up(make_app, bad):
    from flask_aistream import ConfigurationError

    with pytest.raises(ConfigurationError, match="AI_MISTRAL_API_KEY") as failure:
        make_app(AI_MISTRAL_API_KEY=bad)
    assert bad not in str(failure.value)  # the error names the key, never shows it


def test_every_form_of_a_key_is_redacted(make_app):
    from urllib.parse import quote, quote_plus

    key = "mistral+Key/With'Odd\\Chars0123456789"
    app = make_app(AI_MISTRAL_API_KEY=key)
    settings = app.extensions["ai"].settings
    for form in (key, repr(key), quote(key, safe=""), quote_plus(key)):
        redacted = settings.redact(f"the upstream said: {form}!")
        assert "Key" not in redacted and "[redacted]" in redacted, (form, redacted)
