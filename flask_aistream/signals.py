"""Signals, like Flask's own (blinker): subscribe with
``answer_finished.connect(receiver, app)``."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent once per answer, however it was asked for (``ask_stream``, ``ask``,
#: ``iter_text``, ``iter_events``, the blueprint) and however it ended, with
#: ``sender=app`` and ``answer=`` the :class:`~flask_aistream.Answer`, after
#: the call's own ``on_finish`` hook, inside an app context: one place for
#: metering and cost logs.
answer_finished = _signals.signal("answer-finished")
