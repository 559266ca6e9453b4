"""Bytes to parts: every provider an app can name, and the provider SPI.

A provider of your own subclasses :class:`Provider` (or :class:`HTTPProvider`
for one streaming POST), opens a :class:`PartStream` of parts, and, over
HTTP, gives meaning to its wire format's events in an :class:`EventReader`;
everything it needs is importable from here."""

from ..parts import (
    Metadata,
    Part,
    ReasoningDelta,
    Source,
    Stop,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
)
from .base import (
    REQUEST_OPTIONS,
    ChatRequest,
    Decoder,
    EventReader,
    PartStream,
    Provider,
    ProviderSettings,
)
from .http import HTTPProvider, HTTPStream
from .ndjson import NDJSONDecoder
from .registry import (
    APIS,
    BUILT_IN,
    ENTRY_POINT_GROUP,
    build_providers,
    entry_point_providers,
    provider_settings,
)
from .sse import ServerSentEvent, SSEDecoder

__all__ = [
    "APIS",
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "REQUEST_OPTIONS",
    "ChatRequest",
    "Decoder",
    "EventReader",
    "HTTPProvider",
    "HTTPStream",
    "Metadata",
    "NDJSONDecoder",
    "Part",
    "PartStream",
    "Provider",
    "ProviderSettings",
    "ReasoningDelta",
    "SSEDecoder",
    "ServerSentEvent",
    "Source",
    "Stop",
    "ToolCall",
    "ToolCallDelta",
    "UsageUpdate",
    "build_providers",
    "entry_point_providers",
    "provider_settings",
]
