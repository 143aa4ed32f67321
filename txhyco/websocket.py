"""Autobahn through the relay: ``RelayedServerFactory`` to listen, ``RelayedClientFactory`` to send.

Listening::

    factory = RelayedServerFactory(connection_string=..., path="echo")
    factory.protocol = MyServerProtocol      # an unmodified WebSocketServerProtocol
    port = yield factory.listen()            # once the control channel is registered

Each relayed connection reaches ``MyServerProtocol`` as a direct one would:
its handshake runs on a synthetic Upgrade request (see :mod:`txhyco.listener.accept`),
so ``onConnect`` sees the sender's path (relative to the hybrid connection),
query, headers and peer; ``ConnectionDeny`` becomes a reject the sender sees.
"""
from __future__ import annotations

from urllib.parse import urlencode

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from twisted.internet import defer

from txhyco._twisted.autobahn_speedups import lean_instance
from txhyco._twisted.handshake import CLOSE_HANDSHAKE_TIMEOUT
from txhyco.address import HybridConnection
from txhyco.listener.control import KEEPALIVE
from txhyco.listener.port import RelayListeningPort, listen
from txhyco.protocol.addresses import connect_url
from txhyco.sender.leg import SENDER_HANDSHAKE_TIMEOUT, open_leg

__all__ = ["RelayListeningPort", "RelayedClientFactory", "RelayedServerFactory", "connect_relay"]


def _relay_args(kwargs: dict) -> dict:
    names = ("connection_string", "namespace", "path", "key_name", "key", "token", "token_provider", "credential", "ca_file", "secure", "proxy")
    return {name: kwargs.pop(name) for name in names if name in kwargs}


class RelayedServerFactory(WebSocketServerFactory):
    """A ``WebSocketServerFactory`` whose servers listen through a relay.

    Takes the relay arguments of :meth:`HybridConnection.from_args`
    (``connection_string`` or ``namespace``/``path``/``key_name``/``key``/
    ``token``/``token_provider``/``credential``, ``ca_file``, ``proxy``) plus Autobahn's own keyword
    arguments (``protocols``, ``headers``, ``server``, ``reactor``...).
    ``proxy`` (an ``http://`` URL, ``"none"``, or None for the environment's)
    is the HTTP proxy every connection to the relay goes through.
    """

    def __init__(self, connection_string=None, **kwargs) -> None:
        relay = _relay_args(kwargs)
        if connection_string is not None:
            relay["connection_string"] = connection_string
        self.keepalive = kwargs.pop("keepalive", KEEPALIVE)
        self.hybrid_connection = HybridConnection.from_args(**relay)
        ns = self.hybrid_connection.namespace
        scheme = "wss" if ns.secure else "ws"
        kwargs.setdefault("url", f"{scheme}://{ns.host}/{self.hybrid_connection.path}")
        super().__init__(**kwargs)
        # The synthetic Upgrade names the namespace host without a port.
        self.externalPort = None
        # A sender that breaks the protocol (invalid UTF-8: 1007, a bad frame:
        # 1002) is told so with a close frame the relay passes on; Autobahn's
        # default drops the connection, which the sender only sees as 1006.
        self.setProtocolOptions(failByDrop=False)

    def listen(self) -> defer.Deferred:
        """Register with the relay; fires with a :class:`RelayListeningPort`, cancellable."""
        from twisted.internet import reactor as default_reactor

        reactor = getattr(self, "reactor", None) or default_reactor
        return listen(reactor, self.hybrid_connection, self, keepalive=self.keepalive)


class RelayedClientFactory(WebSocketClientFactory):
    """A ``WebSocketClientFactory`` that connects to a hybrid connection as a sender.

    The token travels in the ``ServiceBusAuthorization`` header, or in the
    ``sb-hc-token`` query parameter with ``token_in_query=True``
    (Hybrid Connections protocol, "Web Socket connect protocol"). ``suffix`` and
    ``query`` reach the listener as path and query; ``query`` is an encoded string
    (``"a=1&b=2"``), a mapping or (name, value) pairs.
    """

    def __init__(self, connection_string=None, *, suffix: str = "", query="", token_in_query: bool = False, **kwargs) -> None:
        if not isinstance(query, str):
            query = urlencode(query, doseq=True)
        relay = _relay_args(kwargs)
        if connection_string is not None:
            relay["connection_string"] = connection_string
        self.hybrid_connection = HybridConnection.from_args(**relay)
        self.suffix, self.query, self.token_in_query = suffix, query, token_in_query
        kwargs.setdefault("url", connect_url(self.hybrid_connection.namespace, self.hybrid_connection.path, suffix=suffix, query=query))
        super().__init__(**kwargs)
        self.openHandshakeTimeout = SENDER_HANDSHAKE_TIMEOUT
        # A Close travels to the listener and its answer back (the relay
        # half-closes, as .NET's HybridConnectionStream.Shutdown expects); Autobahn's 1
        # s default would turn a slow answer into an unclean drop that the listener sees
        # as 1006.
        self.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT

    def buildProtocol(self, addr):
        # Each client this factory builds runs on a leg :meth:`connect` opens,
        # ours: it may have our speed-ups (see autobahn_speedups.lean_instance).
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            lean_instance(protocol)
        return protocol

    def connect(self) -> defer.Deferred:
        """Connect through the relay; fires with the client protocol once open.

        Fails with :class:`txhyco.errors.RelayRefused` (404 when no
        listener is online, 401/403 for credentials, the listener's own
        status when it rejects) or :class:`txhyco.errors.RelayUnreachable`.
        """
        from twisted.internet import reactor as default_reactor

        reactor = getattr(self, "reactor", None) or default_reactor
        hc = self.hybrid_connection

        def url_for(token):
            return connect_url(hc.namespace, hc.path, suffix=self.suffix, query=self.query, token=token)

        return open_leg(reactor, hc, self, url_for, token_in_query=self.token_in_query)


def connect_relay(protocol=None, connection_string=None, **kwargs) -> defer.Deferred:
    """Connect an Autobahn client protocol class through the relay; fires with the open protocol.

    ``connect_relay(MyClientProtocol, connection_string=..., path="echo")``
    """
    factory = RelayedClientFactory(connection_string, **kwargs)
    factory.noisy = False  # one per call: no "Starting factory" line per connection
    if protocol is not None:
        factory.protocol = protocol
    return factory.connect()
