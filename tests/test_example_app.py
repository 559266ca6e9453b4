"""The example app works with no API key, through the offline provider."""

from conftest import relayed

from example_app import create_app


def test_example_app_answers_offline(monkeypatch):
    for var in ("OPENAI_API_KEY", "AI_PROVIDER"):
        monkeypatch.delenv(var, raising=False)
    app = create_app({"AI_OFFLINE_DELAY": 0})
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"offline" in page.data
    response = client.post("/api/chat/stream", json={"question": "What is AI?"})
    assert relayed(response.get_data()) == ("You asked: What is AI?", None, True)
    assert client.post("/api/chat/stream", json={"question": "  "}).status_code == 400
    assert client.post("/api/chat/stream", data="nope").status_code == 400


def test_example_app_uses_a_real_provider_when_its_key_is_set(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("AI_PROVIDER", raising=False)
    assert create_app().config["AI_PROVIDER"] == "openai"
