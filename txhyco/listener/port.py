"""The listening port of a hybrid connection, and where each ``accept`` goes.

:func:`listen` starts a control channel for any protocol factory and fires
with a :class:`RelayListeningPort` once the relay has registered it; every
public way to listen (``RelayedServerFactory.listen``, the ``hyco:`` server
endpoint, ``txhyco listen``) comes through here. The port knows its relayed
connections (:mod:`txhyco.listener.drain`): stopping it, or the reactor
shutting down, closes them with 1001 after a bounded drain.
"""
from __future__ import annotations

from functools import partial

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from zope.interface import implementer

from txhyco._twisted.autobahn_speedups import lean_instance
from txhyco._twisted.handshake import CLOSE_HANDSHAKE_TIMEOUT
from txhyco.address import HybridConnection, peer_address
from txhyco.listener.accept import AcceptBridge
from txhyco.listener.control import KEEPALIVE, HybridConnectionListener, ListenerStatus
from txhyco.listener.drain import DRAIN_TIMEOUT, RelayedConnections
from txhyco.listener.stream import reject_accept


@implementer(IListeningPort)
class RelayListeningPort:
    """A port listening through a relay: ``getHost()``, ``stopListening()``, status."""

    #: Seconds ``stopListening`` waits for relayed connections to close before dropping them.
    drain_timeout = DRAIN_TIMEOUT

    def __init__(self, listener: HybridConnectionListener, factory, connections: RelayedConnections | None = None) -> None:
        self.listener = listener
        self.factory = factory
        self.connected = True
        #: the live relayed connections, closed when the port stops
        self.connections = connections if connections is not None else RelayedConnections(listener.reactor)
        self._stopped: defer.Deferred | None = None
        #: other ports that stop with this one (an inspector's page)
        self.companions: list = []
        add_trigger = getattr(listener.reactor, "addSystemEventTrigger", None)  # (a test's fake reactor may have none)
        self._shutdown_trigger = add_trigger("before", "shutdown", self._shutting_down) if add_trigger else None

    def _shutting_down(self) -> defer.Deferred:
        self._shutdown_trigger = None  # firing: not to be removed
        return self.stopListening()

    def getHost(self):
        return self.listener.hc.address

    def startListening(self):  # IListeningPort; listening starts in listen()
        return None

    def stopListening(self) -> defer.Deferred:
        """Close the control channel and every relayed connection (1001, then at most ``drain_timeout`` s).

        Fires when both are done; a second call fires with the first.
        """
        if self._stopped is None:
            self.connected = False
            trigger, self._shutdown_trigger = self._shutdown_trigger, None
            if trigger is not None:
                self.listener.reactor.removeSystemEventTrigger(trigger)
            # Relayed HTTP requests may answer on the control channel: it
            # closes once they are answered (or the drain time is up).
            requests = self.listener.requests.close_all(self.drain_timeout)
            requests.addBoth(lambda _: self.listener.stop())
            d = defer.gatherResults([requests, self.connections.close_all(self.drain_timeout)], consumeErrors=True)
            d.addBoth(lambda r: self.factory.doStop() if hasattr(self.factory, "doStop") else None)
            for companion in self.companions:
                d.addBoth(lambda r, c=companion: defer.maybeDeferred(c.stopListening).addBoth(lambda _: r))
            self._stopped = d
        forked: defer.Deferred = defer.Deferred()
        self._stopped.addBoth(lambda r: (forked.callback(None), r)[1])
        return forked

    loseConnection = stopListening

    @property
    def status(self) -> ListenerStatus:
        return self.listener.status

    @property
    def last_error(self):
        return self.listener.last_error

    @property
    def next_retry_at(self) -> float | None:
        return self.listener.next_retry_at

    def add_status_observer(self, observer) -> None:
        self.listener.add_status_observer(observer)


def accept_with_factory(reactor, hc, factory, accept, *, connections: RelayedConnections | None = None,
                        inspector=None) -> None:
    """Serve one ``accept`` with a fresh protocol from ``factory`` over a bridge (kept in ``connections``;
    seen by ``inspector``, a :class:`txhyco.inspector.capture.Inspector`, if one is given)."""
    protocol = factory.buildProtocol(peer_address(accept.remote_endpoint))
    if protocol is None:
        # The factory declined (as a Twisted factory may): tell the sender.
        reject_accept(reactor, hc, accept, 503, "The listener declined the connection.")
        return
    masked_by_us = True
    if isinstance(protocol, WebSocketServerProtocol):
        # The rendezvous is a client leg: the relay sends unmasked server
        # frames and requires masked client frames. An Autobahn server
        # protocol can do both itself through per-instance options Autobahn
        # honours (set before the connection starts), so its bytes pass the
        # bridge untouched in both directions.
        protocol.requireMaskedClientFrames = False
        protocol.maskServerFrames = True
        masked_by_us = False
        # A close this side sends queues behind what it sent before, which
        # drains at the sender's pace through the relay; Autobahn's default
        # close handshake timeout (1 s) would then reset the rendezvous and
        # lose the messages still on their way (see CLOSE_HANDSHAKE_TIMEOUT).
        timeout = getattr(protocol, "closeHandshakeTimeout", getattr(factory, "closeHandshakeTimeout", None))
        if timeout and timeout < CLOSE_HANDSHAKE_TIMEOUT:
            protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT
        # This instance runs on the bridge's connection, ours: it may have our
        # speed-ups (its class and every other Autobahn protocol keep Autobahn's).
        lean_instance(protocol)
    bridge = AcceptBridge(reactor, accept, hc, protocol, mask_inbound=masked_by_us, mask_outbound=masked_by_us)
    if connections is not None:
        connections.add(bridge)
    if inspector is not None:
        bridge.observer = inspector.websocket_observer(accept)
    bridge.start()


def listen(reactor, hc: HybridConnection, factory, *, on_accept=None, on_request=None,
           keepalive: float = KEEPALIVE, connections: RelayedConnections | None = None) -> defer.Deferred:
    """Listen on ``hc`` for ``factory``; fires with a :class:`RelayListeningPort`, cancellable.

    ``on_accept(accept)`` serves each relayed WebSocket (by default a
    protocol from ``factory`` over the accept bridge); ``on_request`` serves
    relayed HTTP requests (none: the listener answers 501). Relayed
    connections kept in ``connections`` (the default accept's are) are closed
    when the port stops. The factory is started here and stopped when
    listening fails or stops.
    """
    if connections is None:
        connections = RelayedConnections(reactor)
    if on_accept is None:
        on_accept = partial(accept_with_factory, reactor, hc, factory, connections=connections)
    listener = HybridConnectionListener(reactor, hc, on_accept=on_accept, on_request=on_request, keepalive=keepalive)
    if hasattr(factory, "doStart"):
        factory.doStart()
    d = listener.start()

    def failed(f):
        if hasattr(factory, "doStop"):
            factory.doStop()
        return f

    d.addCallbacks(lambda _: RelayListeningPort(listener, factory, connections), failed)
    return d
