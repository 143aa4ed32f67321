"""Stream mode on the sender side: a byte-stream protocol connected through the relay (``hyco:`` client)."""
from __future__ import annotations

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import defer
from twisted.internet.address import IPv4Address

from txhyco._twisted.streamleg import STREAM_LEG_OPTIONS, StreamLeg
from txhyco.address import HybridConnection
from txhyco.protocol.addresses import connect_url
from txhyco.sender.leg import SENDER_HANDSHAKE_TIMEOUT, open_leg


@defer.inlineCallbacks
def connect_stream(reactor, hc: HybridConnection, factory):
    """Connect a protocol from ``factory`` to ``hc`` as a sender; fires with it once connected."""
    opened = defer.Deferred()
    local = IPv4Address("TCP", "127.0.0.1", 0)
    ws_factory = WebSocketClientFactory(reactor=reactor)
    ws_factory.protocol = lambda: StreamLeg(factory, hc.address, local, opened)
    ws_factory.setProtocolOptions(openHandshakeTimeout=SENDER_HANDSHAKE_TIMEOUT, **STREAM_LEG_OPTIONS)
    yield open_leg(reactor, hc, ws_factory, lambda _: connect_url(hc.namespace, hc.path))
    app = yield opened
    return app
