"""A WebSocket sender at the relay: held until its listener accepts, then spliced.

The relay (:mod:`txhyco.relay.core`) sends the listener an ``accept`` and
parks the sender's upgrade as a :class:`PendingConnect`; when the listener
opens its rendezvous, both legs become a :class:`RelaySplice` that forwards
frames (:mod:`txhyco.relay.splice`), flow control and closes between them.
"""
from __future__ import annotations

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred

from .registry import Entity
from .splice import Forwarder


class PendingConnect:
    """A sender's upgrade held open until the listener accepts, rejects or times out
    (Hybrid Connections protocol, "Web Socket connect protocol")."""

    def __init__(self, relay, sender, entity: Entity, offered_protocols: list[str], listener) -> None:
        self.relay = relay
        self.sender = sender
        self.entity = entity
        self.offered_protocols = offered_protocols
        self.listener = listener
        self.issued_query = ""
        self.deferred: Deferred = Deferred()
        self.key = relay.registry.park(self)
        listener.pending_connects.add(self)
        timeout = relay.config.limits.accept_timeout
        self._timer = relay.reactor.callLater(timeout, self._timed_out, timeout)

    def _timed_out(self, timeout: float) -> None:
        self.relay.registry.drop(self.key)
        self.fail(404, f"The listener did not accept the connection within the allowed timeout of {timeout:g} seconds.")

    def listener_gone(self) -> None:
        # 404 like the accept timeout: .NET senders treat it as transient
        # and may retry onto another listener.
        self.relay.registry.drop(self.key)
        self.fail(404, "The listener that was offered the connection went away before accepting it.")

    def _settled(self) -> None:
        if self._timer.active():
            self._timer.cancel()
        self.listener.pending_connects.discard(self)

    def fail(self, status: int, reason: str) -> None:
        self._settled()
        if not self.deferred.called:
            self.relay.metrics.rejects.labels(str(status)).inc()
            self.deferred.errback(ConnectionDeny(status, reason))

    def reject(self, status: int, description: str) -> None:
        self.fail(status, description)

    def accept(self, listener_leg, protocol: str | None) -> None:
        self._settled()
        RelaySplice(self.relay, self.entity, self.sender, listener_leg)
        self.deferred.callback(protocol)

    # role interface (the sender leg while waiting)
    def leg_opened(self, proto) -> None:
        pass

    def leg_closed(self, proto, was_clean, code, reason) -> None:
        # The sender gave up before the listener answered.
        self._settled()
        self.relay.registry.drop(self.key)


class RelaySplice:
    """Two legs relayed to each other: frames, flow control and closes
    (Hybrid Connections protocol, "Accepting the socket")."""

    def __init__(self, relay, entity: Entity, sender, listener) -> None:
        self.relay = relay
        self.entity = entity
        self.sender = sender
        self._open = 0
        self._counted = False
        sender.partner, listener.partner = listener, sender
        metrics = relay.metrics
        sender.sink = Forwarder(sender, listener, metrics.bytes_to_listener)
        listener.sink = Forwarder(listener, sender, metrics.bytes_to_sender)
        sender.role = listener.role = self
        sender.maxMessagePayloadSize = listener.maxMessagePayloadSize = relay.config.limits.max_message_size

    def leg_opened(self, proto) -> None:
        self._open += 1
        if self._open == 2:
            a, b = proto, proto.partner
            # Each side's socket is the producer of the other's writes: a slow
            # reader on one side stops the relay reading from the other.
            a.transport.registerProducer(b.transport, True)
            b.transport.registerProducer(a.transport, True)
            self._counted = True
            self.relay.metrics.connections.inc()
            self.relay.metrics.connections_total.labels(self.entity.name).inc()

    def leg_closed(self, proto, was_clean, code, reason) -> None:
        other = proto.partner
        if self._counted:
            self._counted = False
            self.relay.metrics.connections.dec()
        if other is None:
            return
        if other.owes_close_reply:
            # The far end went away instead of answering the forwarded Close.
            other.answer_close(1001 if proto.remoteCloseCode is None else proto.remoteCloseCode, proto.remoteCloseReason)
        elif other.state == other.STATE_OPEN and not was_clean:
            # A leg dropped without a Close: the other side must see an error,
            # not a clean end (Hybrid Connections protocol, "Accept message"), and why:
            # a Close 1011 with a reason rather than a bare TCP drop it would report as
            # 1006. What it was sent before is written first. A frame half-forwarded
            # into it cannot be ended, so that leg is dropped.
            if other.frame_in_progress:
                other.dropConnection(abort=True)
            else:
                lost = "sender's" if proto is self.sender else "listener's"
                other.close_with(1011, f"The {lost} connection was lost.")
        elif other.state == other.STATE_OPEN:
            other.close_with(1001, "The peer went away.")
