"""One workaround for Autobahn, applied when txhyco's relay or bridges load.

Autobahn's ``WebSocketProtocol._connectionMade`` pretty-prints its whole
configuration for a debug log line on *every* connection, whether or not
debug logging is on (the argument is built before the call). That costs about
a millisecond per WebSocket -- the largest single cost of opening a relayed
connection (benchmarks/, "connection set-up"). Replacing the module's
``pformat`` with a lazy one keeps the log text identical and only formats it
when a debug observer actually reads the event.
"""
from __future__ import annotations

import pprint

import autobahn.websocket.protocol as _protocol


class LazyPformat:
    """``pformat(obj)``, computed when the log event is formatted."""

    __slots__ = ("_obj",)

    def __init__(self, obj, *args, **kwargs) -> None:
        self._obj = obj

    def __str__(self) -> str:
        return pprint.pformat(self._obj)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def apply() -> None:
    if _protocol.pformat is not LazyPformat:
        _protocol.pformat = LazyPformat


apply()
