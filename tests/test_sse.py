"""The SSE decoder follows the WHATWG rules, however the bytes are split."""

import json

import pytest

from flask_aistream.errors import StreamFormatError
from flask_aistream.formats.sse import DONE, content_event, error_event
from flask_aistream.providers.sse import ServerSentEvent, SSEDecoder


def decode(body: bytes, reads=None):
    """Events from ``body`` fed whole (reads=None) or in reads of the given size."""
    decoder = SSEDecoder()
    if reads is None:
        return decoder.feed(body)
    events = []
    for i in range(0, len(body), reads):
        events += decoder.feed(body[i : i + reads])
    return events


def summary(events):
    return [(e.event, e.data, e.id) if e.id else (e.event, e.data) for e in events]


# (case, input, expected (event, data[, id]) tuples) -- from sse-parsing.md §2
CASES = [
    ("LF", b"data: a\n\n", [("message", "a")]),
    ("CRLF", b"data: a\r\n\r\n", [("message", "a")]),
    ("bare CR", b"data: a\r\r", [("message", "a")]),
    (
        "mixed endings, EOF mid-event",
        b"id:one\r\ndata:x\r\n\ndata:two\n\rdata:unfinished",
        [("message", "x", "one"), ("message", "two", "one")],
    ),
    ("optional space", b"data:test\n\ndata: test\n\n", [("message", "test")] * 2),
    ("only one space stripped", b"data:  two spaces\n\n", [("message", " two spaces")]),
    ("tab is not the space", b"data:\tx\n\n", [("message", "\tx")]),
    ("multi-line data", b"data: YHOO\ndata: +2\ndata: 10\n\n", [("message", "YHOO\n+2\n10")]),
    (
        "empty data lines kept",
        b'data: {\ndata: "foo":\ndata: \ndata:\ndata: true}\n\n',
        [("message", '{\n"foo":\n\n\ntrue}')],
    ),
    ("field with no colon", b"data\n\ndata\ndata\n\ndata:", [("message", ""), ("message", "\n")]),
    ("comment-only block", b": test stream\n\n", []),
    ("comment inside an event", b"data: a\n: keep-alive\ndata: b\n\n", [("message", "a\nb")]),
    ("named event", b"event: content_block_delta\ndata: {}\n\n", [("content_block_delta", "{}")]),
    (
        "event type does not carry over",
        b"event: ping\ndata: 1\n\ndata: 2\n\n",
        [("ping", "1"), ("message", "2")],
    ),
    ("event with no data", b"event: ping\n\ndata: x\n\n", [("message", "x")]),
    (
        "id carries over",
        b"id: 1\ndata: a\n\ndata: b\n\n",
        [("message", "a", "1"), ("message", "b", "1")],
    ),
    (
        "empty id resets",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [("message", "a", "1"), ("message", "b")],
    ),
    (
        "id with NULL ignored",
        b"id: 7\ndata: a\n\nid: 4\x002\ndata: b\n\n",
        [("message", "a", "7"), ("message", "b", "7")],
    ),
    ("id without data", b"id: 9\n\ndata: a\n\n", [("message", "a", "9")]),
    ("unknown field", b"foo: bar\ndata: a\n\n", [("message", "a")]),
    ("case-sensitive names", b"Data: a\nDATA: b\ndata: c\n\n", [("message", "c")]),
    ("leading BOM", b"\xef\xbb\xbfdata: a\n\n", [("message", "a")]),
    ("two BOMs", b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", []),
    ("final event without blank line", b"data: a\n\ndata: b\n", [("message", "a")]),
    ("final line cut mid-line", b"data: a\n\ndata: b", [("message", "a")]),
    ("U+2028 is data", "data: a\u2028b\n\n".encode(), [("message", "a\u2028b")]),
    ("U+0085 is data", "data: a\u0085b\n\n".encode(), [("message", "a\u0085b")]),
    ("escaped newlines in JSON", b'data: {"t":"x\\n\\ny"}\n\n', [("message", '{"t":"x\\n\\ny"}')]),
    ("extra blank lines", b"\n\n\ndata: a\n\n\n\n", [("message", "a")]),
    ("colons in the value", b"data: a:b: c\n\n", [("message", "a:b: c")]),
    ("trailing whitespace kept", b'data: {"a":1}   \n\n', [("message", '{"a":1}   ')]),
    (
        "multi-byte split",
        'data: {"t":"известни 🙂"}\n\n'.encode(),
        [("message", '{"t":"известни 🙂"}')],
    ),
    ("CRLF twice", b"data: a\r\n\r\ndata: b\r\n\r\n", [("message", "a"), ("message", "b")]),
]


@pytest.mark.parametrize("case, body, expected", CASES, ids=[c[0] for c in CASES])
def test_whatwg_cases_whole_and_one_byte_at_a_time(case, body, expected):
    assert summary(decode(body)) == expected
    assert summary(decode(body, reads=1)) == expected


@pytest.mark.parametrize("case, body, expected", CASES, ids=[c[0] for c in CASES])
def test_whatwg_cases_split_at_every_offset(case, body, expected):
    for cut in range(1, len(body)):
        decoder = SSEDecoder()
        events = decoder.feed(body[:cut]) + decoder.feed(body[cut:])
        assert summary(events) == expected, f"split at {cut}"


def test_retry_takes_digits_only():
    events = decode(b"retry: 3000\ndata: a\n\nretry: +5\ndata: b\n\nretry: 1x\ndata: c\n\n")
    assert [e.retry for e in events] == [3000, 3000, 3000]


def test_crlf_split_between_reads_gives_no_phantom_empty_line():
    decoder = SSEDecoder()
    # An empty line would dispatch "a" early and then "b" alone; a phantom
    # empty line between "data: a" and "data: b" must not appear.
    assert decoder.feed(b"data: a\r") == []
    assert summary(decoder.feed(b"\ndata: b\r\n\r\n")) == [("message", "a\nb")]


def test_an_event_is_dispatched_as_soon_as_its_blank_line_arrives():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert summary(decoder.feed(b"\n")) == [("message", "a")]
    # a CR ending the read already ends the line: no waiting for a possible LF
    assert decoder.feed(b"data: b\r") == []
    assert summary(decoder.feed(b"\r")) == [("message", "b")]


def test_invalid_utf8_is_replaced_not_fatal():
    assert decode(b"data: a\xffb\n\n")[0].data == "a\ufffdb"


def test_a_runaway_line_is_refused_and_memory_is_released():
    decoder = SSEDecoder(max_line_bytes=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(StreamFormatError):
        decoder.feed(b"x" * 200)
    assert decoder._partial == []


def test_an_event_of_many_short_lines_that_never_ends_is_refused():
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(StreamFormatError):
        for _ in range(1000):  # 5 bytes of data each: past the bound after 200
            decoder.feed(b"data: 12345\n")
    assert decoder._data == []


def test_events_longer_in_total_than_the_bound_still_pass_one_by_one():
    decoder = SSEDecoder(max_line_bytes=1000)
    body = b"data: " + b"x" * 600 + b"\n\n"
    events = []
    for _ in range(10):  # 6 kB in all, each event under the bound, in split reads
        events += decoder.feed(body[:300]) + decoder.feed(body[300:])
    assert len(events) == 10


def test_a_long_line_arriving_a_byte_at_a_time_is_not_copied_per_read():
    # The reads of an unfinished line are kept as they came and joined once,
    # when the line ends: 200 kB one byte at a time takes linear time.
    decoder = SSEDecoder()
    body = b"data: " + b"x" * 200_000 + b"\n\n"
    events = []
    for i in range(len(body)):
        events += decoder.feed(body[i : i + 1])
    assert [len(e.data) for e in events] == [200_000]


def test_many_events_in_one_read():
    body = b"".join(b"data: %d\n\n" % i for i in range(2000))
    assert [e.data for e in decode(body)] == [str(i) for i in range(2000)]


def test_event_defaults():
    assert ServerSentEvent() == ServerSentEvent("message", "", "", None)


# --- what we write to the browser -------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hello",
        " world",
        "line\nbreak\r\nand\rcr",
        "data: [DONE]\n\n",
        "emoji 🙂 日本語",
        "\u2028",
        '"quoted"',
    ],
)
def test_content_event_is_one_ascii_data_line(text):
    raw = content_event(text)
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    assert raw.count(b"\n") == 2 and b"\r" not in raw  # model text cannot forge events
    raw.decode("ascii")  # safe for a browser that decodes each read on its own
    assert json.loads(raw[6:]) == {"content": text}
    assert summary(SSEDecoder().feed(raw)) == [("message", json.dumps({"content": text}))]


def test_error_and_done_events():
    assert error_event("Boom\nnext") == b'data: {"error": "Boom\\nnext"}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_empty_data_lines_count_against_the_event_bound():
    """200 MB of ``data:\\n`` with no blank line added 343 MB to a worker: each
    line counts at least its newline."""
    from flask_aistream import StreamFormatError
    from flask_aistream.providers.sse import SSEDecoder

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
