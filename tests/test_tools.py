"""``@tool``: a function as a Tool, its JSON Schema read from the signature
and the docstring at decoration time; and Tools offered to the providers."""

import dataclasses
import enum
from typing import Literal, Optional, TypedDict, Union

import pytest

from fakeprovider import Reply, openai_events
from flask_aistream import ConfigurationError, Tool, ToolError, tool


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(TypedDict):
    city: str
    country: str


@dataclasses.dataclass
class Window:
    days: int
    hourly: bool = False


def props(t: Tool) -> dict:
    return t.parameters["properties"]


def test_plain_types_required_and_defaults():
    @tool
    def f(s: str, i: int, x: float, b: bool, n: None, o: Optional[int] = None, d: str = "a"):  # noqa: UP045
        """Does f."""

    assert f.name == "f" and f.description == "Does f."
    assert props(f) == {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "x": {"type": "number"},
        "b": {"type": "boolean"},
        "n": {"type": "null"},
        "o": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "d": {"type": "string", "default": "a"},
    }
    assert f.parameters["required"] == ["s", "i", "x", "b", "n"]
    assert f.parameters["additionalProperties"] is False


def test_containers_choices_and_classes():
    @tool
    def g(
        tags: list[str],
        pair: tuple[float, float],
        many: tuple[int, ...],
        counts: dict[str, int],
        mode: Literal["fast", "slow"],
        unit: Unit,
        place: Place,
        window: Window,
        either: Union[int, str],  # noqa: UP007
    ):
        """Does g."""

    p = props(g)
    assert p["tags"] == {"type": "array", "items": {"type": "string"}}
    assert p["pair"] == {
        "type": "array",
        "prefixItems": [{"type": "number"}, {"type": "number"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert p["many"] == {"type": "array", "items": {"type": "integer"}}
    assert p["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert p["mode"] == {"enum": ["fast", "slow"], "type": "string"}
    assert p["unit"] == {"enum": ["celsius", "fahrenheit"], "type": "string"}  # by value
    assert p["place"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    assert p["window"] == {
        "type": "object",
        "properties": {"days": {"type": "integer"}, "hourly": {"type": "boolean"}},
        "required": ["days"],
        "additionalProperties": False,
    }
    assert p["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}


def test_a_pydantic_model_when_pydantic_is_installed():
    pydantic = pytest.importorskip("pydantic")

    class Order(pydantic.BaseModel):
        id: int
        note: str = ""

    @tool
    def refund(order: Order):
        """Refund an order."""

    schema = props(refund)["order"]
    assert schema["type"] == "object" and schema["required"] == ["id"]
    assert schema["properties"]["id"]["type"] == "integer"


def test_google_docstrings():
    @tool
    def get_weather(city: str, days: int = 1) -> str:
        """The weather in a city.

        Looks it up, every time.

        Args:
            city: The city's name,
                in English.
            days (int): How many days.

        Returns:
            A sentence.
        """
        return f"sunny in {city}"

    assert get_weather.description == "The weather in a city.\n\nLooks it up, every time."
    assert props(get_weather)["city"]["description"] == "The city's name, in English."
    assert props(get_weather)["days"]["description"] == "How many days."
    assert get_weather("Paris") == "sunny in Paris"  # calling the Tool calls the function
    assert get_weather.__name__ == "get_weather"


def test_sphinx_docstrings_and_options():
    @tool(name="add_numbers", strict=True)
    def add(x: int, y: int = 0) -> int:
        """Adds two numbers.

        :param x: the first
        :param y: the second,
            if any
        :returns: their sum
        """
        return x + y

    assert add.name == "add_numbers" and add.strict
    assert add.description == "Adds two numbers."
    assert props(add)["x"]["description"] == "the first"
    assert props(add)["y"]["description"] == "the second, if any"
    assert add.definition()["strict"] is True
    assert add(2, 3) == 5
    assert tool(description="Said otherwise.")(add.execute).description == "Said otherwise."


@pytest.mark.parametrize(
    "annotation, words",
    [("set[int]", "'values'"), ("object", "'values'"), ("dict[int, str]", "'values'")],
)
def test_an_annotation_with_no_schema_fails_at_decoration(annotation, words):
    namespace: dict = {}
    exec(f"def lookup(values: {annotation}):\n    pass", namespace)
    with pytest.raises(ConfigurationError, match=f"tool lookup: parameter {words}"):
        tool(namespace["lookup"])


def test_unannotated_and_star_parameters_are_refused():
    def bare(city):
        pass

    def star(*cities: str):
        pass

    with pytest.raises(ConfigurationError, match="'city' needs a type annotation"):
        tool(bare)
    with pytest.raises(ConfigurationError, match=r"\*cities"):
        tool(star)


def test_a_hand_written_tool_and_a_client_tool():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    search = Tool("search", "Searches.", schema, execute=lambda q: [q])
    assert search(q="x") == ["x"]
    location = Tool("get_location", "The user's location.", {"type": "object", "properties": {}})
    assert location.execute is None and "client tool" in repr(location)
    with pytest.raises(TypeError, match="client tool"):
        location()
    with pytest.raises(ConfigurationError, match="name"):
        Tool("no spaces allowed", "", schema)
    with pytest.raises(ConfigurationError, match="JSON Schema object"):
        Tool("t", "", {"type": "string"})
    assert issubclass(ToolError, Exception)


def test_tools_are_offered_in_each_providers_shape(make_app, fake):
    @tool(strict=True)
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    fake.reply = Reply(parts=openai_events(["ok"]))
    app = make_app()
    with app.app_context():
        ai = app.extensions["ai"]
        ai.ask("Weather?", tools=[get_weather])
        [offered] = fake.last.json()["tools"]
        assert offered == {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": get_weather.parameters,
                "strict": True,
            },
        }
        fake.reply = Reply.sse(
            b'event: message_start\ndata: {"type": "message_start", "message": {"usage": {}}}\n\n'
            b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
        )
        ai.ask("Weather?", provider="anthropic", tools=[get_weather], fallbacks=[])
        [offered] = fake.last.json()["tools"]
        assert offered == {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": get_weather.parameters,
        }


# --- tool calls and results in the conversation, every provider's dialect ----------

CALL = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
HISTORY = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            CALL,
            {"id": "call_2", "name": "get_weather", "arguments": {"city": "Rome"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": {"sky": "rain"}},
]


def asked(make_app, fake, provider, reply, **options):
    fake.reply = reply
    app = make_app(AI_MAX_RETRIES=0)
    with app.app_context():
        app.extensions["ai"].ask(
            "And tomorrow?", provider=provider, messages=HISTORY, fallbacks=[], **options
        )
    return fake.last.json()


def test_openai_gets_tool_calls_and_tool_messages(make_app, fake):
    body = asked(make_app, fake, "openai", Reply(parts=openai_events(["ok"])))
    assert body["messages"][1:4] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"sky": "rain"}'},
    ]
    assert body["messages"][-1] == {"role": "user", "content": "And tomorrow?"}


def test_anthropic_gets_tool_use_and_one_message_of_results(make_app, fake):
    from fakeprovider import transcript

    body = asked(make_app, fake, "anthropic", Reply.sse(transcript("anthropic_basic.sse")))
    assert body["messages"][1:3] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": '{"sky": "rain"}'},
            ],
        },
    ]


def test_gemini_gets_function_calls_and_responses(make_app, fake):
    from fakeprovider import transcript

    body = asked(make_app, fake, "gemini", Reply.sse(transcript("gemini_basic.sse")))
    assert body["contents"][1:3] == [
        {
            "role": "model",
            "parts": [
                # a history's calls carry no signature we saw: Google's placeholder
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"result": {"sky": "rain"}},
                    }
                },
            ],
        },
    ]


def test_ollama_gets_tool_calls_and_tool_messages(make_app, fake):
    from fakeprovider import transcript

    body = asked(
        make_app,
        fake,
        "ollama",
        Reply.ndjson(transcript("ollama_basic.ndjson")),
    )
    assert body["messages"][1:4] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            ],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        {"role": "tool", "content": '{"sky": "rain"}', "tool_name": "get_weather"},
    ]


def test_a_call_without_its_result_is_dropped_with_a_log_line(make_app, fake, log_records):
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]},  # Stop pressed
        {"role": "tool", "tool_call_id": "call_9", "content": "orphan"},
    ]
    fake.reply = Reply(parts=openai_events(["ok"]))
    app = make_app()
    with app.app_context():
        app.extensions["ai"].ask("Again?", messages=history)
    assert fake.last.json()["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me look."},
        {"role": "user", "content": "Again?"},
    ]
    assert "call_1, call_9" in log_records.text


def test_the_task_builder_carries_calls_and_results(make_app, fake):
    from flask_aistream import ToolCall

    fake.reply = Reply(parts=openai_events(["ok"]))
    app = make_app()
    with app.app_context():
        (
            app.extensions["ai"]
            .task()
            .message("user", "Weather?")
            .message(
                "assistant", "", tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Paris"}')]
            )
            .tool_result("call_1", {"sky": "clear"})
            .prompt("Thanks")
            .ask()
        )
    sent = fake.last.json()["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'}


@pytest.mark.parametrize(
    "message",
    [
        {"role": "tool", "content": "x"},  # answers nothing
        {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": "{}"}]},
        {"role": "assistant", "content": "", "tool_calls": "f"},
    ],
)
def test_malformed_tool_turns_are_refused(app, message):
    from flask_aistream import InvalidRequestError

    with app.app_context(), pytest.raises(InvalidRequestError):
        app.extensions["ai"].ask("hi", messages=[message])
