"""The HTTP side, below the providers: ``requests`` sessions whose calls
another thread can abort in any phase, the response :class:`Body` read by
read, and the process's watchdog. It knows no provider."""

from .http import CONNECTION_LOST, READ_TIMEOUT, Body, Transport
from .opening import Opening
from .watchdog import WATCHDOG, Watchdog

__all__ = [
    "CONNECTION_LOST",
    "READ_TIMEOUT",
    "WATCHDOG",
    "Body",
    "Opening",
    "Transport",
    "Watchdog",
]
