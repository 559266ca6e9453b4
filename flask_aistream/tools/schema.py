"""A function's signature as the JSON Schema a model is offered, and its
docstring as the descriptions: what ``@tool`` reads, at decoration time, so
that a mistake fails where the tool is written, not in a stream."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Literal, Union

from ..errors import ConfigurationError
from ..parts import JSONObject

_NONE = type(None)
#: JSON Schema types of Python's plain values (``bool`` before ``int``: it is one).
_PLAIN: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
)
#: The parameter sections of a docstring: Google's and Sphinx's.
_GOOGLE_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params)\s*:\s*$")
_OTHER_SECTION = re.compile(
    r"^\s*(Returns?|Yields?|Raises|Examples?|Notes?|Attributes|See Also)\s*:\s*$"
)
_SPHINX_FIELD = re.compile(r"^\s*:(param|type|raises?|returns?|rtype)\b[^:]*:(.*)$")
#: ``name (type): what it is`` in a Google ``Args:`` section.
_GOOGLE_ENTRY = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class SchemaError(Exception):
    """An annotation that has no JSON Schema; ``where`` names it."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def parameters_schema(
    function: Callable[..., object], descriptions: Mapping[str, str]
) -> JSONObject:
    """The object schema of ``function``'s parameters: one property each,
    required unless it has a default, nothing else allowed."""
    try:
        hints = typing.get_type_hints(function, include_extras=False)
    except Exception as exc:  # a forward reference that does not resolve
        raise ConfigurationError(
            f"tool {function.__name__}: cannot read its annotations ({exc})"
        ) from None
    properties: JSONObject = {}
    required: list[str] = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ConfigurationError(
                f"tool {function.__name__}: *{name} cannot be offered to a model; "
                "name each parameter"
            )
        if name not in hints:
            raise ConfigurationError(
                f"tool {function.__name__}: parameter {name!r} needs a type annotation"
            )
        try:
            schema = schema_of(hints[name])
        except SchemaError as exc:
            raise ConfigurationError(
                f"tool {function.__name__}: parameter {name!r} has a type no JSON Schema "
                f"describes ({exc.where})"
            ) from None
        if name in descriptions:
            schema = {**schema, "description": descriptions[name]}
        if parameter.default is parameter.empty:
            required.append(name)
        elif _plain_default(parameter.default):
            schema = {**schema, "default": _json_default(parameter.default)}
        properties[name] = schema
    return closed_object(properties, required)


def schema_of(annotation: object) -> JSONObject:
    """The JSON Schema of one annotation; :class:`SchemaError` if it has none."""
    if annotation is _NONE or annotation is None:
        return {"type": "null"}
    for kind, name in _PLAIN:
        if annotation is kind:
            return {"type": name}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        return _union(args)
    if origin is Literal:
        return _enum(list(args), repr(annotation))
    if origin in (list, typing.List) or annotation is list:  # noqa: UP006
        return {"type": "array", "items": schema_of(args[0]) if args else {}}
    if origin is tuple:
        return _tuple(args, annotation)
    if origin in (dict, typing.Dict) or annotation is dict:  # noqa: UP006
        if args and args[0] is not str:
            raise SchemaError(f"{annotation!r}: JSON object keys are strings")
        values = schema_of(args[1]) if args else {}
        return {"type": "object", "additionalProperties": values}
    if isinstance(annotation, type):
        return _class(annotation)
    raise SchemaError(repr(annotation))


def _union(args: tuple[object, ...]) -> JSONObject:
    options = [schema_of(arg) for arg in args]
    return {"anyOf": options}


def _enum(values: list[object], where: str) -> JSONObject:
    kinds = {name for kind, name in _PLAIN for value in values if type(value) is kind}
    if not values or not all(type(value) in (bool, int, float, str) for value in values):
        raise SchemaError(f"{where}: only strings, numbers and booleans can be choices")
    schema: JSONObject = {"enum": values}
    if len(kinds) == 1:
        schema["type"] = kinds.pop()
    return schema


def _tuple(args: tuple[object, ...], annotation: object) -> JSONObject:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        return {"type": "array", "items": schema_of(args[0]) if args else {}}
    if Ellipsis in args:
        raise SchemaError(repr(annotation))
    return {
        "type": "array",
        "prefixItems": [schema_of(arg) for arg in args],
        "minItems": len(args),
        "maxItems": len(args),
    }


def _class(cls: type) -> JSONObject:
    if issubclass(cls, enum.Enum):
        return _enum([member.value for member in cls], cls.__name__)
    if _is_typeddict(cls):
        hints = typing.get_type_hints(cls)
        required = sorted(getattr(cls, "__required_keys__", hints))
        return _object(cls.__name__, hints, required)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        fields = [field for field in dataclasses.fields(cls) if field.init]
        required = [
            field.name
            for field in fields
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        ]
        return _object(cls.__name__, {f.name: hints[f.name] for f in fields}, required)
    schema = _pydantic(cls)
    if schema is not None:
        return schema
    raise SchemaError(cls.__name__)


def _object(name: str, hints: Mapping[str, object], required: list[str]) -> JSONObject:
    properties = {}
    for key, hint in hints.items():
        try:
            properties[key] = schema_of(hint)
        except SchemaError as exc:
            raise SchemaError(f"{name}.{key}: {exc.where}") from None
    return closed_object(properties, required)


def closed_object(properties: JSONObject, required: list[str]) -> JSONObject:
    """An object with these properties and no others."""
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _is_typeddict(cls: type) -> bool:
    return isinstance(getattr(cls, "__annotations__", None), dict) and hasattr(cls, "__total__")


def _pydantic(cls: type) -> JSONObject | None:
    """A pydantic model's own schema, when pydantic is installed (it is not
    a dependency: only a class of a loaded pydantic can be one)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not issubclass(cls, pydantic.BaseModel):
        return None
    schema: JSONObject = cls.model_json_schema()  # type: ignore[attr-defined]
    schema.setdefault("additionalProperties", False)
    return schema


def _plain_default(value: object) -> bool:
    return value is None or type(value) in (bool, int, float, str) or isinstance(value, enum.Enum)


def _json_default(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def split_docstring(function: Callable[..., object]) -> tuple[str, dict[str, str]]:
    """The docstring without its parameter sections, and each parameter's
    description from them (Google ``Args:`` or Sphinx ``:param x:``). Other
    sections (``Returns:``, ``Raises:``, ``:returns:``...) are left out too:
    the model needs what the tool does and what each argument means."""
    description: list[str] = []
    params: dict[str, list[str]] = {}
    section: str | None = None  # "args", "other", or None: the description
    header = 0  # the indent of the section's header
    current: list[str] | None = None  # the parameter a continuation belongs to
    for line in (inspect.getdoc(function) or "").splitlines():
        indent = len(line) - len(line.lstrip())
        if line.strip() and section is not None and indent <= header:
            section, current = None, None  # a dedented line ends a section
        google = _GOOGLE_SECTION.match(line) or _OTHER_SECTION.match(line)
        sphinx = _SPHINX_FIELD.match(line)
        if google:
            section, header, current = (
                ("args" if _GOOGLE_SECTION.match(line) else "other"),
                indent,
                None,
            )
        elif sphinx:
            field = line.strip()[1:].split(":", 1)[0].split()
            section, header = "other", indent
            current = params.setdefault(field[-1], []) if field[0] == "param" else None
            if current is not None:
                current.append(sphinx.group(2).strip())
        elif section == "args" and line.strip():
            entry = _GOOGLE_ENTRY.match(line)
            if entry and (current is None or indent <= header + 4):
                current = params.setdefault(entry.group(1), [entry.group(2).strip()])
            elif current is not None:
                current.append(line.strip())
        elif section == "other" and line.strip():
            if current is not None:
                current.append(line.strip())
        elif section is None:
            description.append(line)
    return (
        "\n".join(description).strip(),
        {name: " ".join(w for w in words if w) for name, words in params.items() if any(words)},
    )
