"""Stream answers from LLM providers to browsers as Server-Sent Events."""

import logging

from .client import AIClient
from .config import ConfigVars
from .endpoints.chat_input import ChatInput
from .errors import (
    AIStreamError,
    ConfigurationError,
    ExtensionError,
    InvalidRequestError,
    ProviderError,
    StreamFormatError,
    ToolError,
    UnknownOptionError,
    UnsupportedOptionError,
)
from .extension import AIStream
from .parts import (
    Answer,
    Finish,
    ReasoningDelta,
    Step,
    StepFinish,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from .providers import HTTPProvider, PartStream, Provider
from .providers.sse import ServerSentEvent, SSEDecoder
from .signals import answer_finished
from .task import Task
from .tools import Tool, tool
from .tools.loop import send_data

__version__ = "0.1.0"

# The library reports; the application decides what to show.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AIClient",
    "AIStream",
    "AIStreamError",
    "Answer",
    "ChatInput",
    "ConfigVars",
    "ConfigurationError",
    "ExtensionError",
    "HTTPProvider",
    "PartStream",
    "Provider",
    "Finish",
    "InvalidRequestError",
    "ProviderError",
    "ReasoningDelta",
    "SSEDecoder",
    "ServerSentEvent",
    "Step",
    "StepFinish",
    "StreamFormatError",
    "Task",
    "Tool",
    "ToolError",
    "TextDelta",
    "ToolCall",
    "ToolResult",
    "UnknownOptionError",
    "UnsupportedOptionError",
    "Usage",
    "__version__",
    "answer_finished",
    "send_data",
    "tool",
]
