"""Limits in time and memory on a kept-alive HTTP sender connection.

Between requests, a sender must send its next head in time
(:class:`NextHeadDeadline`) and must read the answers it was given before it
gets more (:data:`UNREAD_LIMIT`, :class:`WhenDrained`): otherwise an
idle, trickling or non-reading sender would hold the relay's memory and
sockets for ever.
"""
from __future__ import annotations

from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from txhyco._twisted.eagerwrite import unsent_bytes

#: Unsent answer bytes past which a sender's next request waits for them to leave.
UNREAD_LIMIT = 256 * 1024


class NextHeadDeadline:
    """The front door times the first head; each later one on a kept-alive
    connection must also arrive, whole, within streamIdleTimeout (no idle or
    trickling connection is held for ever). One timer per connection checks
    lazily, so a request costs a clock reading, not a timer."""

    __slots__ = ("_sender", "_call", "_since")

    def __init__(self, sender) -> None:
        #: the HttpSender whose connection this times (its relay and transport)
        self._sender = sender
        self._call = None
        self._since: float | None = None

    def waiting(self) -> None:
        """A response is complete: the next head is due within the timeout from now."""
        relay = self._sender.relay
        self._since = relay.reactor.seconds()
        if self._call is None:
            timeout = relay.config.limits.stream_idle_timeout
            self._call = relay.reactor.callLater(timeout, self._check)

    def arrived(self) -> None:
        """A head arrived: nothing is due until the next :meth:`waiting`."""
        self._since = None

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _check(self) -> None:
        self._call = None
        since = self._since
        transport = self._sender.transport
        if since is None or transport is None:
            return  # a request is in progress; the next cycle arms the check again
        relay = self._sender.relay
        timeout = relay.config.limits.stream_idle_timeout
        waited = relay.reactor.seconds() - since
        if waited >= timeout:
            # Nothing is in flight, and a sender that does not read would keep
            # a graceful close (which waits for the send buffer) open for ever.
            transport.abortConnection()
        else:
            self._call = relay.reactor.callLater(timeout - waited, self._check)


@implementer(IPullProducer)
class WhenDrained:
    """Waits on a TCP connection as a pull producer (Twisted asks one for more
    once its buffer is empty), then steps aside and calls ``then``."""

    def __init__(self, transport, then) -> None:
        self.transport = transport
        self.then = then
        self.asked = False

    def resumeProducing(self) -> None:
        if not self.asked or unsent_bytes(self.transport):  # registerProducer asks at once
            self.asked = True
            return
        then, self.then = self.then, None
        if then is not None:
            self.transport.unregisterProducer()
            then()

    def stopProducing(self) -> None:
        self.then = None
