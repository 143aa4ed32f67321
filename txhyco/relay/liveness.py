"""Pinging a listener's control channel, so that a silent one is dropped.

A frozen listener process or a network cut without FIN or RST leaves the
control channel open with nobody reading: the relay would go on offering it
senders who then wait out the accept timeout. Every ``interval`` seconds the
relay sends a Ping (RFC 6455 §5.5.2); a listener that neither answers with a
Pong nor sends anything else within ``timeout`` seconds is dropped, so a
silent listener is gone at most ``interval + timeout`` seconds after it went
silent. Any frame from the listener counts as an answer, so one that is busy
sending is never cut. A Ping queues behind what the relay has for the
listener already (at most ``core.CONTROL_BACKLOG_LIMIT``): a listener that
cannot read that much within the timeout is taken for gone.

The timers are the reactor's own: Autobahn's auto-ping rounds its deadlines
to whole seconds, which made short timeouts fire at once.
"""
from __future__ import annotations

import os


class PingWatch:
    """The Ping cycle of one control channel leg (``proto``); ``silent()`` runs before it is dropped."""

    def __init__(self, proto, reactor, *, interval: float, timeout: float, silent) -> None:
        self._proto = proto
        self._reactor = reactor
        self._interval = interval
        self._timeout = timeout
        self._silent = silent
        self._next_ping = None
        self._deadline = None
        self._stopped = False
        #: reactor time the unanswered Ping went out, or None
        self.ping_sent_at: float | None = None

    def start(self) -> None:
        if self._interval > 0:
            self._next_ping = self._reactor.callLater(self._interval, self._ping)

    def stop(self) -> None:
        self._stopped = True
        for call in (self._next_ping, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._next_ping = self._deadline = None

    def heard(self) -> None:
        """The listener sent something (a Pong or any frame): it is alive."""
        if self.ping_sent_at is None or self._stopped:
            return
        self.ping_sent_at = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._next_ping = self._reactor.callLater(self._interval, self._ping)

    @property
    def unanswered(self) -> bool:
        """Whether a Ping has waited more than half the timeout: the listener is probably gone."""
        sent = self.ping_sent_at
        return sent is not None and self._reactor.seconds() - sent > self._timeout / 2

    def _ping(self) -> None:
        self._next_ping = None
        proto = self._proto
        if proto.state != proto.STATE_OPEN:
            return
        self.ping_sent_at = self._reactor.seconds()
        proto.sendPing(os.urandom(4))
        self._deadline = self._reactor.callLater(self._timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        self._silent()
        proto = self._proto
        proto.wasClean = False
        proto.wasNotCleanReason = "the listener answered no Ping in time"
        proto.dropConnection(abort=True)
