"""WAMP through the relay, as a sender: reach a router (Crossbar) listening behind ``hyco:``.

A WAMP router behind the ``hyco:`` endpoint is an ordinary WebSocket server
to its senders, so any Autobahn ``WebSocketClientFactory`` reaches it once
it is pointed at the hybrid connection's sender URL with a token
(Hybrid Connections protocol, "Web Socket connect protocol")::

    session = ApplicationSession(ComponentConfig("realm1"))
    session = yield connect_wamp(session, connection_string=..., path="crossbar")
    yield session.call("com.example.add", 2, 3)

:func:`connect_client_factory` does the pointing for any client factory
instance (``WampWebSocketClientFactory`` or your own); :func:`connect_wamp`
builds the WAMP one and fires once the session has joined its realm.
"""
from __future__ import annotations

from autobahn.twisted.websocket import WampWebSocketClientFactory, WebSocketClientFactory
from twisted.internet import defer

from txhyco._twisted.handshake import CLOSE_HANDSHAKE_TIMEOUT
from txhyco.address import HybridConnection
from txhyco.errors import RelayError
from txhyco.protocol.addresses import connect_url
from txhyco.sender.leg import SENDER_HANDSHAKE_TIMEOUT, open_leg


@defer.inlineCallbacks
def connect_client_factory(
    factory: WebSocketClientFactory,
    *,
    reactor=None,
    suffix: str = "",
    query: str = "",
    token_in_query: bool = False,
    **relay,
) -> defer.Deferred:
    """Connect any Autobahn client factory through the relay; fires with the open protocol.

    ``relay`` names the hybrid connection as :meth:`HybridConnection.from_args`
    does (``connection_string=``, ``path=``, ``namespace=``, ``key_name=``,
    ``key=``, ``token=``, ``ca_file=``, ``proxy=``...). The factory keeps its protocols,
    origin, user agent and headers; its URL becomes the sender URL and the
    token is added as ``ServiceBusAuthorization`` (or ``sb-hc-token`` with
    ``token_in_query=True``). A handshake timeout shorter than the relay's
    hold time is raised to it. Fails like ``RelayedClientFactory.connect``.
    """
    if reactor is None:
        from twisted.internet import reactor
    if getattr(factory, "proxy", None) is not None and "proxy" not in relay:
        # Autobahn's own proxy= ({"host", "port"}): tunnelled our way, on every leg.
        relay["proxy"] = factory.proxy
    hc = HybridConnection.from_args(**relay)
    if not factory.openHandshakeTimeout or factory.openHandshakeTimeout < SENDER_HANDSHAKE_TIMEOUT:
        factory.setProtocolOptions(openHandshakeTimeout=SENDER_HANDSHAKE_TIMEOUT)
    if factory.closeHandshakeTimeout < CLOSE_HANDSHAKE_TIMEOUT:
        factory.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT)

    def url_for(token):
        return connect_url(hc.namespace, hc.path, suffix=suffix, query=query, token=token)

    proto = yield open_leg(reactor, hc, factory, url_for, token_in_query=token_in_query)
    return proto


def connect_wamp(session, *, serializers=None, reactor=None, **relay) -> defer.Deferred:
    """Run ``session`` (an ``ApplicationSession``) through the relay; fires with it once joined.

    Fires on the session's ``join`` event (before its ``onJoin`` has run),
    or fails with :class:`txhyco.errors.RelayError` if the session leaves
    or its transport closes first, or with the relay's own handshake error.
    ``serializers`` are Autobahn serializer instances (default: all
    available; the router picks one by WebSocket sub-protocol).
    """
    joined: defer.Deferred = defer.Deferred()

    def on_join(session, details):
        if not joined.called:
            joined.callback(session)

    def on_leave(session, details):
        if not joined.called:
            joined.errback(RelayError(f"The WAMP session left before joining: {details.reason} {details.message or ''}".rstrip() + "."))

    def on_disconnect(session, was_clean=None):
        if not joined.called:
            joined.errback(RelayError("The WAMP transport closed before the session joined."))

    session.on("join", on_join)
    session.on("leave", on_leave)
    session.on("disconnect", on_disconnect)
    factory = WampWebSocketClientFactory(lambda: session, serializers=serializers)
    connected = connect_client_factory(factory, reactor=reactor, **relay)

    def failed(failure):
        if not joined.called:
            joined.errback(failure)

    connected.addErrback(failed)
    return joined
