"""A model's arguments for a tool, checked against the tool's JSON Schema and
turned into what the function's annotations ask for (an ``Enum`` member, a
dataclass, a pydantic model), and a tool's return value turned into JSON.

A model gets arguments wrong often enough that the check must say *why*, in
words it can act on: the message goes back to it as the call's result, and
it may try again. Only the schema keywords ``@tool`` writes are checked
(``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``enum``, ``anyOf``); a
hand-written schema's other keywords are the function's to enforce.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import sys
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from ..parts import JSONObject

_TYPES: dict[str, Callable[[object], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


class BadArguments(ValueError):
    """The model's arguments do not fit; the message says where and why."""


def parsed_arguments(text: str, schema: JSONObject) -> JSONObject:
    """The arguments' JSON text as an object that fits ``schema``."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise BadArguments("the arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise BadArguments("the arguments must be a JSON object")
    problem = _problem(value, schema, "arguments")
    if problem:
        raise BadArguments(problem)
    return value


def _problem(value: object, schema: object, where: str) -> str | None:
    """Why ``value`` does not fit ``schema``, or ``None``."""
    if not isinstance(schema, dict):
        return None
    if "anyOf" in schema:
        if not any(_problem(value, option, where) is None for option in schema["anyOf"]):
            return f"{where} fits none of the allowed types"
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(choice) for choice in schema["enum"])
        return f"{where} must be one of {choices}"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(kind in _TYPES and _TYPES[kind](value) for kind in kinds):
            return f"{where} must be {' or '.join(map(str, kinds))}, not {_json_type(value)}"
    if isinstance(value, dict):
        return _object_problem(value, schema, where)
    if isinstance(value, list):
        return _array_problem(value, schema, where)
    return None


def _object_problem(value: JSONObject, schema: JSONObject, where: str) -> str | None:
    properties = schema.get("properties") or {}
    missing = [name for name in schema.get("required") or () if name not in value]
    if missing:
        return f"{where} lacks required {', '.join(map(str, missing))}"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problem = _problem(item, properties[name], f"{where}.{name}")
        elif extra is False:
            problem = f"{where} has no parameter {name!r}"
        else:
            problem = _problem(item, extra, f"{where}.{name}")
        if problem:
            return problem
    return None


def _array_problem(value: list[object], schema: JSONObject, where: str) -> str | None:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if isinstance(low, int) and len(value) < low or isinstance(high, int) and len(value) > high:
        size = low if low == high else f"{low or 0} to {high if high is not None else 'any'}"
        return f"{where} must hold {size} items, not {len(value)}"
    fixed = schema.get("prefixItems") or []
    for index, item in enumerate(value):
        item_schema = fixed[index] if index < len(fixed) else schema.get("items")
        problem = _problem(item, item_schema, f"{where}[{index}]")
        if problem:
            return problem
    return None


def _json_type(value: object) -> str:
    for name in ("boolean", "null", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def call_with(function: Callable[..., object], arguments: JSONObject) -> object:
    """Call ``function`` with the checked arguments, each as its annotation
    asks (plain JSON values pass as they are)."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:
        hints = {}
    parameters = inspect.signature(function).parameters
    converted = {
        name: as_annotated(value, hints[name]) if name in hints and name in parameters else value
        for name, value in arguments.items()
    }
    return function(**converted)


def as_annotated(value: object, annotation: object) -> object:
    """A JSON value as ``annotation`` asks for it: what ``@tool``'s schema
    describes, read back (an ``Enum`` by value, a dataclass or a pydantic
    model from its object, a tuple from its array)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union or (
        sys.version_info >= (3, 10) and type(annotation).__name__ == "UnionType"
    ):
        for option in args:
            if option is type(None) and value is None:
                return None
        for option in args:
            if option is not type(None):
                try:
                    return as_annotated(value, option)
                except (TypeError, ValueError):
                    continue
        return value
    if origin is Literal or annotation is Any:
        return value
    if origin in (list, tuple) and isinstance(value, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(as_annotated(item, arg) for item, arg in zip(value, args))
        items = [as_annotated(item, args[0]) if args else item for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: as_annotated(item, args[1]) for key, item in value.items()}
    if not isinstance(annotation, type):
        return value
    if issubclass(annotation, enum.Enum):
        return annotation(value)
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        hints = typing.get_type_hints(annotation)
        return annotation(**{k: as_annotated(v, hints.get(k, object)) for k, v in value.items()})
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(annotation, pydantic.BaseModel):
        return annotation.model_validate(value)  # type: ignore[attr-defined]
    if annotation is float and isinstance(value, int):
        return float(value)
    if annotation is int and isinstance(value, float):
        return int(value)
    return value


class NotJSON(TypeError):
    """A tool returned a value with no JSON form."""


def json_value(value: object) -> object:
    """A tool's return value as a JSON value: a ``str`` as it is, JSON
    values, dataclasses and pydantic models as their JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.loads(json.dumps(value, default=_default, allow_nan=False))
    except (TypeError, ValueError):
        raise NotJSON(type(value).__name__) from None


def _default(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    dump = getattr(value, "model_dump", None)
    pydantic = sys.modules.get("pydantic")
    if dump is not None and pydantic is not None and isinstance(value, pydantic.BaseModel):
        return dump(mode="json")
    raise TypeError(type(value).__name__)
