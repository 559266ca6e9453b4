"""A test kit for apps built on flask-aistream: a scripted provider
(:func:`fake_provider`), readers for every stream format (:func:`read_events`,
:func:`read_answer`), recorded provider exchanges played back
(:meth:`FakeProvider.replay`), and a pytest plugin (the ``ai_fake`` fixture;
no test reaches a real provider unless marked ``ai_live``)."""

from .fake import FakeProvider, fake_provider
from .readers import ErrorEvent, StreamedAnswer, StreamFinish, read_answer, read_events
from .script import FakeRequest, tool_call

__all__ = [
    "ErrorEvent",
    "FakeProvider",
    "FakeRequest",
    "StreamFinish",
    "StreamedAnswer",
    "fake_provider",
    "read_answer",
    "read_events",
    "tool_call",
]
