"""The relayed connections a listener serves, and closing them when it stops.

A listener that stops (``stopListening``, reactor shutdown, SIGTERM of
``txhyco listen``) says so to every relayed connection with a Close 1001
"going away" (RFC 6455 §7.4.1), written after what the application already
sent, and waits up to a drain time for the closing handshakes to finish;
what is still open then is dropped. Senders thus get every message sent
before the stop, then 1001, instead of a bare drop (1006).

A connection registers itself here with ``add``; it offers ``done`` (a
Deferred that fires when it is over) or ``when_over(callback)`` (the same
without a Deferred), ``going_away(reason)`` (start closing with 1001) and
``abort()`` (drop it now).
"""
from __future__ import annotations

from twisted.internet import defer

#: Seconds a stopping listener waits for its relayed connections to close.
DRAIN_TIMEOUT = 5.0

#: The reason in the Close frame a stopping listener sends.
GOING_AWAY_REASON = "The listener is stopping."


class RelayedConnections:
    """The live relayed connections of one listener (see the module docstring)."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self._live: set = set()
        self._waiting: list[defer.Deferred] = []
        self._drain_call = None
        #: set once closing started: connections that open later are closed at once
        self.closing = False

    def __len__(self) -> int:
        return len(self._live)

    def add(self, connection) -> None:
        self._live.add(connection)
        when_over = getattr(connection, "when_over", None)
        if when_over is not None:
            when_over(self._over)  # a relayed request: one per request, no Deferred
        else:
            connection.done.addBoth(self._ended, connection)
        if self.closing and connection in self._live:
            connection.going_away(GOING_AWAY_REASON)

    def _ended(self, result, connection):
        self._over(connection)
        return result

    def _over(self, connection) -> None:
        self._live.discard(connection)
        if not self._live and self.closing:
            self._drained()

    def close_all(self, drain_timeout: float = DRAIN_TIMEOUT) -> defer.Deferred:
        """Close every connection with 1001; fires once all are over, or after ``drain_timeout`` s having dropped the rest."""
        self.closing = True
        waiting: defer.Deferred = defer.Deferred()
        self._waiting.append(waiting)
        for connection in list(self._live):
            connection.going_away(GOING_AWAY_REASON)
        if not self._live:
            self._drained()
        elif self._drain_call is None:
            self._drain_call = self.reactor.callLater(drain_timeout, self._drain_expired)
        return waiting

    def _drain_expired(self) -> None:
        self._drain_call = None
        for connection in list(self._live):
            connection.abort()
        self._live.clear()
        self._drained()

    def _drained(self) -> None:
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
