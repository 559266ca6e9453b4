"""The example chat page and the spec's own client snippets, in a real
headless Chromium (Debian's package, driven by Playwright), against a real
server on loopback whose provider is the loopback fake."""

import json
import threading
import time
from pathlib import Path

import pytest

from example_app import create_app
from fakeprovider import Reply, openai_events

pytestmark = pytest.mark.system

SNIPPETS = Path(__file__).parent / "spec_snippets"
EVERY_EVENT = ["reasoning", "tool_calls", "finish"]
ANSWER = [f"word{i} " for i in range(12)]


@pytest.fixture
def site(fake, live):
    """Start the example app (pointed at the fake provider); returns its URL."""

    def start(**config):
        app = create_app(
            {
                "AI_PROVIDER": "openai",
                "AI_OPENAI_API_KEY": "sk-browser-test",
                "AI_OPENAI_BASE_URL": f"{fake.url}/v1",
                "AI_RATELIMIT": None,
                "AI_MAX_RETRIES": 0,
                **config,
            }
        )

        @app.get("/spec/<name>")
        def spec_page(name):
            script = (SNIPPETS / f"{name}.js").read_text()
            return f'<!DOCTYPE html><div id="response"></div><script>{script}</script>'

        return live(app)

    return start


def chunk(delta, finish=None, **extra):
    payload = {"id": "c1", "model": "gpt-test", **extra}
    payload["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: %s\n\n" % json.dumps(payload).encode()


def rich_events(texts):
    """A stream with every kind of part: reasoning, text, a tool call, usage."""
    return (
        [chunk({"role": "assistant", "reasoning_content": "Thinking <b>hard</b>."})]
        + openai_events(texts, finish=False)
        + [
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            chunk({}, finish="stop"),
            b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n',
            b"data: [DONE]\n\n",
        ]
    )


def ask(page, question):
    page.fill("#question", question)
    page.click("#ask")


def last_answer(page):
    return page.locator(".message.assistant").last


def test_the_answer_grows_token_by_token(page, site, fake):
    fake.reply = Reply(parts=openai_events(ANSWER), delay=0.12)
    page.goto(site())
    ask(page, "Tell me twelve words")
    answer = last_answer(page)
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = answer.locator(".text").text_content()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if "typing" not in (answer.get_attribute("class") or ""):
            break
        time.sleep(0.03)
    final = answer.locator(".text").text_content()
    assert final == "".join(ANSWER).strip() or final == "".join(ANSWER)
    growing = [t for t in seen if t != final]
    assert len(growing) >= 4, f"the answer appeared in {len(seen)} steps: {seen}"
    assert all(final.startswith(t) for t in seen)  # each step extends the last
    assert page.locator(".message.user").last.text_content() == "Tell me twelve words"

    # The conversation goes along with the next question.
    fake.reply = Reply(parts=openai_events(["Second."]))
    ask(page, "And another?")
    page.wait_for_function(
        "document.querySelectorAll('.message.assistant .text')[1].textContent === 'Second.'"
    )
    assert [m["role"] for m in fake.last.json()["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


def test_stop_closes_the_provider_connection(page, site, fake):
    fake.reply = Reply(parts=openai_events([f"t{i} " for i in range(500)]), delay=0.05, hold=True)
    page.goto(site())
    ask(page, "Talk for a long time")
    page.wait_for_function(
        "(document.querySelector('.message.assistant .text').textContent || '').includes('t3')"
    )
    page.click("#stop")
    stopped_at = time.monotonic()
    hung_up_at = fake.wait_for_hangup(fake.last, timeout=5)
    assert hung_up_at is not None, "the provider kept streaming after Stop"
    print(
        f"\nStop clicked -> provider saw the hang-up after {(hung_up_at - stopped_at) * 1000:.0f} ms"
    )
    assert hung_up_at - stopped_at < 1.0
    page.wait_for_selector(".message.assistant.stopped")
    assert page.is_enabled("#ask")


def test_rate_limit_and_provider_errors_are_readable(page, site, fake):
    fake.reply = Reply(parts=openai_events(["fine"]))
    page.goto(site(AI_RATELIMIT="1 per minute"))
    ask(page, "first")
    page.wait_for_function(
        "document.querySelector('.message.assistant .text').textContent === 'fine'"
    )
    page.wait_for_selector("#ask:enabled")
    ask(page, "second")
    error = page.locator(".message.assistant").nth(1).locator(".error")
    error.wait_for()
    assert "Too many questions" in error.text_content()
    assert "Try again in" in error.text_content()

    fake.reply = Reply.json(
        401, {"error": {"message": "Incorrect API key provided: sk-browser-test"}}
    )
    page.goto(site())
    ask(page, "third")
    error = last_answer(page).locator(".error")
    error.wait_for()
    assert error.text_content() == "The AI provider refused the server's credentials. (HTTP 401)"
    assert "sk-browser" not in page.content()


def test_event_source_mode(page, site, fake):
    fake.reply = Reply(parts=openai_events(["Via ", "EventSource"]), delay=0.05)
    page.goto(site())
    page.select_option("#mode", "eventsource")
    ask(page, "hello")
    page.wait_for_function(
        "document.querySelector('.message.assistant .text').textContent === 'Via EventSource'"
    )
    page.wait_for_selector(".message.assistant:not(.typing)")
    assert fake.last.json()["messages"][-1] == {"role": "user", "content": "hello"}


def test_event_source_mode_shows_why_a_request_was_refused(page, site, fake):
    page.goto(site(AI_MAX_QUESTION_CHARS=10))
    page.select_option("#mode", "eventsource")
    ask(page, "a question that is too long")
    error = last_answer(page).locator(".error")
    error.wait_for()
    assert "too long" in error.text_content()


@pytest.mark.parametrize("events", [[], EVERY_EVENT], ids=["default", "every-event"])
def test_the_specs_event_source_snippet_unchanged(page, site, fake, events):
    fake.reply = Reply(parts=rich_events(["AI is ", "artificial ", "intelligence."]), delay=0.05)
    page.goto(f"{site(AI_STREAM_EVENTS=events)}/spec/eventsource")
    page.wait_for_function(
        "document.getElementById('response').textContent === 'AI is artificial intelligence.'"
    )
    assert fake.last.json()["messages"][-1] == {"role": "user", "content": "What is AI"}


@pytest.mark.parametrize("events", [[], EVERY_EVENT], ids=["default", "every-event"])
def test_the_specs_fetch_snippet_unchanged(page, site, fake, events):
    fake.reply = Reply(parts=rich_events(["Caf\u00e9 ", "\U0001f642 ", "done"]), delay=0.05)
    page.goto(f"{site(AI_STREAM_EVENTS=events)}/spec/fetch")
    errors = []  # the snippet's own console.error, as for a JSON.parse that failed
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.evaluate("streamAI('Hello from fetch')")
    assert page.text_content("#response") == "Caf\u00e9 \U0001f642 done"
    # no event it did not expect made it stumble (the page has no favicon: that 404 is fine)
    assert [e for e in errors if "Failed to load resource" not in e] == []
    assert fake.last.json()["messages"][-1] == {"role": "user", "content": "Hello from fetch"}


def test_the_page_shows_how_an_answer_ended_and_its_reasoning(page, site, fake):
    fake.reply = Reply(parts=rich_events(["Blue ", "light."]), delay=0.03)
    page.goto(site())
    ask(page, "Why is the sky blue?")
    answer = last_answer(page)
    answer.locator(".finish").wait_for()
    assert answer.locator(".text").text_content() == "Blue light."
    assert (
        answer.locator(".finish").text_content()
        == "stop \u00b7 7 in / 3 out tokens \u00b7 gpt-test"
    )
    reasoning = answer.locator("details.reasoning")
    assert reasoning.get_attribute("open") is None  # collapsed
    assert reasoning.locator(".reasoning-text").text_content() == "Thinking <b>hard</b>."
    assert answer.locator("b").count() == 0  # model output is text, never markup


def readme_fetch_snippet():
    """The README's fetch example, as a user would copy it."""
    readme = (Path(__file__).parent.parent / "README.rst").read_text()
    block = readme.split(".. code-block:: javascript\n\n", 1)[1].split("\n\n``", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def test_the_readme_fetch_snippet_shows_text_and_refusals(page, site, fake):
    fake.reply = Reply(parts=openai_events(["Hello ", "there."]))
    url = site(AI_RATELIMIT="1 per minute")
    page.goto(url)  # the app's own page (asks nothing by itself): same origin
    script = (
        "async (question) => { const output = {textContent: ''}; const errors = [];"
        "const showError = (m) => errors.push(m);"
        f"await (async () => {{ {readme_fetch_snippet()} }})();"
        "return [output.textContent, errors]; }"
    )
    assert page.evaluate(script, "first") == ["Hello there.", []]
    text, errors = page.evaluate(script, "second")  # over the limit: a 429 with JSON
    assert text == "" and len(errors) == 1 and "Too many questions" in errors[0]


def test_an_event_source_that_never_closes_asks_only_once(page, site, fake):
    """It reconnects after every stream: three paid answers in nine seconds,
    until the reconnect carried [DONE]'s id and got a 204."""
    fake.reply = Reply(parts=openai_events(["once"]))
    page.goto(site())
    page.evaluate(
        "window.seen = []; window.failed = 0;"
        "const source = new EventSource('/api/chat/stream?question=hi');"
        "source.onmessage = (e) => window.seen.push(e.data);"
        "source.onerror = () => { window.failed += 1; window.state = source.readyState; };"
    )
    page.wait_for_function("window.failed >= 1 && window.state === EventSource.CLOSED")
    time.sleep(4)  # longer than its reconnection delay (3 s): any re-ask would be here
    seen = page.evaluate("window.seen")
    assert seen[0] == '{"content": "once"}' and seen.count("[DONE]") == 1
    assert len(fake.requests) == 1


@pytest.mark.parametrize("mode", ["fetch", "eventsource"])
def test_the_provider_picker_offers_what_is_configured(page, site, fake, mode):
    local = {"api": "openai", "base_url": f"{fake.url}/local/v1", "model": "qwen-local"}
    page.goto(site(AI_PROVIDERS={"local": local}))
    options = page.locator("#provider option").all_text_contents()
    # no key for anthropic, gemini...; OpenAI's key serves its Responses API too
    assert options == ["openai", "openai-responses", "local", "offline"]
    assert page.locator("#provider").input_value() == "openai"
    page.select_option("#mode", mode)
    page.select_option("#provider", "local")
    fake.reply = Reply(parts=openai_events(["From ", "local."]))
    ask(page, "Who are you?")
    page.wait_for_function(
        "document.querySelector('.message.assistant:last-child .text').textContent === 'From local.'"
    )
    assert fake.last.path == "/local/v1/chat/completions"
    assert fake.last.json()["model"] == "qwen-local"
    page.select_option("#provider", "offline")
    asked = len(fake.requests)
    ask(page, "Echo me")
    page.wait_for_function(
        "document.querySelector('.message.assistant:last-child .text').textContent === 'You asked: Echo me'"
    )
    assert len(fake.requests) == asked  # the offline provider needs no network


def test_the_offline_model_calls_the_demo_tool_once_allowed(page, site, fake):
    """The example app's one tool, called by the offline provider when asked
    the time, behind an approval: the page asks, Allow runs it, and the
    answer made of its result streams into the same bubble."""
    page.goto(site(AI_PROVIDER="offline"))
    ask(page, "What time is it?")
    page.wait_for_selector(".message.assistant:last-child .approval button.approve")
    assert "Allow current_time" in last_answer(page).locator(".approval").text_content()
    page.click(".message.assistant:last-child .approval button.approve")
    page.wait_for_function(
        "document.querySelector('.message.assistant:last-child .text').textContent"
        ".startsWith('current_time says: ')"
    )
    tools = last_answer(page).locator(".tools").text_content()
    assert tools.startswith("🔧 current_time → ") and "(UTC)" in tools
    assert last_answer(page).locator(".approval").count() == 0
    assert not fake.requests


def test_denying_the_demo_tool_tells_the_model(page, site, fake):
    page.goto(site(AI_PROVIDER="offline"))
    ask(page, "What time is it?")
    page.click(".message.assistant:last-child .approval button.deny")
    page.wait_for_function(
        "document.querySelector('.message.assistant:last-child .text').textContent"
        ".includes('did not approve')"
    )


MARKDOWN = [
    "Here is **bold** and *italic* and `code`.\n\n",
    "- one\n- two\n\n1. first\n2. second\n\n",
    "```python\nprint('hi')\n```\n\n",
    "See [the docs](https://example.com/docs) or [bad](javascript:alert(1)).\n\n",
    '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">',
]


def test_answers_are_markdown_and_model_html_never_runs(page, site, fake):
    fake.reply = Reply(parts=openai_events(MARKDOWN))
    page.goto(site())
    ask(page, "Show me markdown")
    page.wait_for_function(
        "!document.querySelector('.message.assistant').classList.contains('typing')"
    )
    answer = last_answer(page)
    assert answer.locator("strong").text_content() == "bold"
    assert answer.locator("em").text_content() == "italic"
    assert answer.locator("p code").first.text_content() == "code"
    assert answer.locator("ul li").all_text_contents() == ["one", "two"]
    assert answer.locator("ol li").all_text_contents() == ["first", "second"]
    assert answer.locator("pre code").text_content() == "print('hi')"
    assert answer.locator(".code button.copy").count() == 1
    links = answer.locator("a")
    assert links.count() == 1 and links.get_attribute("href") == "https://example.com/docs"
    # the model's HTML is text on the page, and never ran
    assert "<script>window.pwned = 1</script>" in answer.text_content()
    assert answer.locator("script, img").count() == 0
    assert page.evaluate("window.pwned") is None
    # the copy button copies the code
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    answer.locator("button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"


def test_enter_sends_and_shift_enter_makes_a_new_line(page, site, fake):
    fake.reply = Reply(parts=openai_events(["Ok."]))
    page.goto(site())
    page.click("#question")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#question") == "line one\nline two"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelector('.message.assistant .text').textContent === 'Ok.'"
    )
    assert fake.last.json()["messages"][-1]["content"] == "line one\nline two"


def test_a_reload_keeps_the_conversation(page, site, fake):
    fake.reply = Reply(parts=openai_events(["First ", "answer."]))
    url = site()
    page.goto(url)
    ask(page, "First question")
    page.wait_for_function("document.querySelector('.message.assistant .finish') !== null")
    page.reload()
    assert page.locator(".message.user .text").all_text_contents() == ["First question"]
    assert page.locator(".message.assistant .text").all_text_contents() == ["First answer."]
    assert "stop" in page.locator(".message.assistant .finish").text_content()
    fake.reply = Reply(parts=openai_events(["Second."]))
    ask(page, "Second question")
    page.wait_for_function("document.querySelectorAll('.message.assistant .finish').length === 2")
    # the conversation from before the reload went to the provider
    assert [m["content"] for m in fake.last.json()["messages"][1:]] == [
        "First question",
        "First answer.",
        "Second question",
    ]
    page.click("#clear")
    page.reload()
    assert page.locator(".message").count() == 0


@pytest.mark.parametrize("mode", ["fetch", "eventsource"])
def test_a_reload_mid_answer_continues_it(page, site, fake, mode):
    gate = threading.Semaphore(0)
    fake.reply = Reply(parts=openai_events(ANSWER), gate=gate)
    page.goto(site())
    page.select_option("#mode", mode)
    ask(page, "Tell me")
    for _ in range(3):
        gate.release()
    page.wait_for_function(
        "document.querySelector('.message.assistant .text').textContent.includes('word3')"
    )
    page.reload()  # mid-answer: the answer goes on on the server meanwhile
    for _ in ANSWER:
        gate.release()
    page.wait_for_function(
        f"document.querySelector('.message.assistant .text').textContent === {''.join(ANSWER)!r}"
    )
    page.wait_for_function("!document.querySelector('.message.assistant.typing')")
    assert page.is_enabled("#ask")
    assert len(fake.requests) == 1  # resumed, never asked again
    page.reload()  # over now: nothing to resume, nothing asked
    assert page.locator(".message.assistant .text").all_text_contents() == ["".join(ANSWER)]
    assert len(fake.requests) == 1


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_control_fits_a_phone(browser, site, fake, scheme, tmp_path):
    context = browser.new_context(viewport={"width": 375, "height": 667}, color_scheme=scheme)
    page = context.new_page()
    try:
        fake.reply = Reply(parts=openai_events(MARKDOWN[:3]))
        page.goto(site())
        ask(page, "A long question that wraps on a small screen, to see the layout hold")
        page.wait_for_function("document.querySelector('.message.assistant .finish') !== null")
        for selector in ("#question", "#ask", "#stop", "#provider", "#mode", "#clear"):
            box = page.locator(selector).bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (selector, box)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways ({width} px)"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(17, 20, 24)") == (scheme == "dark")  # follows the system
        page.screenshot(path=str(tmp_path / f"phone-{scheme}.png"), full_page=True)
    finally:
        context.close()
