"""Tools a model may call: ``@tool`` turns a function into a :class:`Tool`,
its parameters' JSON Schema read from the signature and the docstring."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Generic, TypeVar, Union, overload

from ..errors import ConfigurationError
from ..parts import JSONObject, ToolCall
from .schema import parameters_schema, split_docstring

R = TypeVar("R", covariant=True)
#: Whether a call needs a person's yes first: always, or as a function of the call decides.
NeedsApproval = Union[bool, Callable[[ToolCall], bool]]
#: OpenAI's rule for tool names, which the other providers accept too.
TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


class Tool(Generic[R]):
    """A tool a model may call: its ``name``, ``description`` and
    ``parameters`` (a JSON Schema object), and ``execute``, the function that
    runs it (calling the Tool calls it). A Tool without ``execute`` is a
    *client tool*: its calls go to the client. ``strict`` asks providers that
    can for strict schema adherence (OpenAI's ``strict: true``).
    ``needs_approval`` (``True``, or a function of the :class:`ToolCall`
    run in the asking request's context) makes a call wait for a person's
    decision before it runs."""

    def __init__(
        self,
        name: str,
        description: str,
        parameters: JSONObject,
        execute: Callable[..., R] | None = None,
        *,
        strict: bool = False,
        needs_approval: NeedsApproval = False,
    ) -> None:
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise ConfigurationError(
                f"a tool's name must be 1 to 64 letters, digits, '_', '.' or '-', not {name!r}"
            )
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            raise ConfigurationError(
                f"tool {name}: parameters must be a JSON Schema object ({{'type': 'object', ...}})"
            )
        self.name = name
        self.description = description
        self.parameters = parameters
        self.execute = execute
        self.strict = strict
        self.needs_approval = needs_approval
        if execute is not None:
            functools.update_wrapper(self, execute)

    def __call__(self, *args: object, **kwargs: object) -> R:
        if self.execute is None:
            raise TypeError(f"tool {self.name} is a client tool: it has no function to call")
        return self.execute(*args, **kwargs)

    def definition(self) -> JSONObject:
        """The tool as a call's ``tools=`` entry takes it."""
        tool: JSONObject = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        if self.strict:
            tool["strict"] = True
        return tool

    def __repr__(self) -> str:
        kind = "client tool" if self.execute is None else "tool"
        return f"<{kind} {self.name}>"


@overload
def tool(function: Callable[..., R], /) -> Tool[R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool = False,
    needs_approval: NeedsApproval = False,
) -> Callable[[Callable[..., R]], Tool[R]]: ...


def tool(
    function: Callable[..., R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool = False,
    needs_approval: NeedsApproval = False,
) -> Tool[R] | Callable[[Callable[..., R]], Tool[R]]:
    """``@tool`` or ``@tool(name=, description=, strict=)``: the function as
    a :class:`Tool`. Its parameters' schema comes from their annotations
    (``str``, ``int``, ``float``, ``bool``, ``None``/``Optional``,
    ``list[T]``, ``tuple[...]``, ``dict[str, T]``, ``Literal``, ``Enum`` (by
    value), ``TypedDict``, dataclasses, pydantic models), their
    descriptions from the docstring (Google ``Args:`` or Sphinx ``:param
    x:``); the tool's description is the rest of the docstring. An
    annotation with no JSON Schema is a :class:`ConfigurationError` now."""

    def make(function: Callable[..., R]) -> Tool[R]:
        text, descriptions = split_docstring(function)
        return Tool(
            name or function.__name__,
            text if description is None else description,
            parameters_schema(function, descriptions),
            function,
            strict=strict,
            needs_approval=needs_approval,
        )

    return make if function is None else make(function)


__all__ = ["Tool", "tool"]
