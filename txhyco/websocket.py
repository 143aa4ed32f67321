"""Autobahn through the relay: ``RelayedServerFactory`` to listen, ``RelayedClientFactory`` to send.

Listening::

    factory = RelayedServerFactory(connection_string=..., path="echo")
    factory.protocol = MyServerProtocol      # an unmodified WebSocketServerProtocol
    port = yield factory.listen()            # once the control channel is registered

Each relayed connection reaches ``MyServerProtocol`` as a direct one would:
its handshake runs on a synthetic Upgrade request (see :mod:`txhyco.bridge`),
so ``onConnect`` sees the sender's path (relative to the hybrid connection),
query, headers and peer; ``ConnectionDeny`` becomes a reject the sender sees.
"""
from __future__ import annotations

from urllib.parse import urlencode

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from zope.interface import implementer

from txhyco.address import HybridConnection, peer_address
from txhyco.bridge import AcceptBridge
from txhyco.connector import connect
from txhyco.handshake import CLOSE_HANDSHAKE_TIMEOUT, wait_open
from txhyco.listener import KEEPALIVE, HybridConnectionListener
from txhyco.protocol.addresses import connect_url, reject_url

log = Logger()


@implementer(IListeningPort)
class RelayListeningPort:
    """A port listening through a relay: ``getHost()``, ``stopListening()``, status."""

    def __init__(self, listener: HybridConnectionListener, factory) -> None:
        self.listener = listener
        self.factory = factory
        self.connected = True

    def getHost(self):
        return self.listener.hc.address

    def startListening(self):  # IListeningPort; listening starts in listen()
        return None

    def stopListening(self) -> defer.Deferred:
        self.connected = False
        d = self.listener.stop()
        d.addBoth(lambda r: self.factory.doStop() if hasattr(self.factory, "doStop") else None)
        return d

    loseConnection = stopListening

    @property
    def status(self) -> str:
        return self.listener.status

    @property
    def last_error(self):
        return self.listener.last_error

    @property
    def next_retry_at(self) -> float | None:
        return self.listener.next_retry_at

    def add_status_observer(self, observer) -> None:
        self.listener.add_status_observer(observer)


def accept_with_factory(reactor, hc, factory, accept) -> None:
    """Serve one ``accept`` with a fresh protocol from ``factory`` over a bridge."""
    protocol = factory.buildProtocol(peer_address(accept.remote_endpoint))
    if protocol is None:
        # The factory declined (as a Twisted factory may): tell the sender.
        url = reject_url(accept.address, 503, "The listener declined the connection.")
        from txhyco.handshake import open_raw_websocket

        open_raw_websocket(reactor, url, ca_file=hc.ca_file).addErrback(lambda f: None)
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
    AcceptBridge(reactor, accept, hc, protocol, mask_inbound=masked_by_us, mask_outbound=masked_by_us).start()


def listen_websocket(reactor, hc: HybridConnection, factory, *, keepalive: float = KEEPALIVE, on_request=None) -> defer.Deferred:
    """Listen on ``hc`` with any server protocol factory; fires with a :class:`RelayListeningPort`."""
    listener = HybridConnectionListener(
        reactor, hc, on_accept=lambda accept: accept_with_factory(reactor, hc, factory, accept),
        on_request=on_request, keepalive=keepalive,
    )
    if hasattr(factory, "doStart"):
        factory.doStart()
    d = listener.start()

    def failed(f):
        if hasattr(factory, "doStop"):
            factory.doStop()
        return f

    d.addCallbacks(lambda _: RelayListeningPort(listener, factory), failed)
    return d


def _relay_args(kwargs: dict) -> dict:
    names = ("connection_string", "namespace", "path", "key_name", "key", "token", "token_provider", "ca_file", "secure")
    return {name: kwargs.pop(name) for name in names if name in kwargs}


class RelayedServerFactory(WebSocketServerFactory):
    """A ``WebSocketServerFactory`` whose servers listen through a relay.

    Takes the relay arguments of :meth:`HybridConnection.from_args`
    (``connection_string`` or ``namespace``/``path``/``key_name``/``key``/
    ``token``/``token_provider``, ``ca_file``) plus Autobahn's own keyword
    arguments (``protocols``, ``headers``, ``server``, ``reactor``...).
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

    def listen(self) -> defer.Deferred:
        """Register with the relay; fires with a :class:`RelayListeningPort`, cancellable."""
        from twisted.internet import reactor as default_reactor

        reactor = getattr(self, "reactor", None) or default_reactor
        return listen_websocket(reactor, self.hybrid_connection, self, keepalive=self.keepalive)


class RelayedClientFactory(WebSocketClientFactory):
    """A ``WebSocketClientFactory`` that connects to a hybrid connection as a sender.

    The token travels in the ``ServiceBusAuthorization`` header, or in the
    ``sb-hc-token`` query parameter with ``token_in_query=True`` (§2.6).
    ``suffix`` and ``query`` reach the listener as path and query; ``query``
    is an encoded string (``"a=1&b=2"``), a mapping or (name, value) pairs.
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
        # The relay holds a sender's upgrade until a listener accepts (up to
        # ~30 s); wait like .NET's sender does (70 s) unless told otherwise.
        self.openHandshakeTimeout = 70
        # A Close travels to the listener and its answer back (the relay
        # half-closes, protocol.md §6); Autobahn's 1 s default would turn a
        # slow answer into an unclean drop that the listener sees as 1006.
        self.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT

    @defer.inlineCallbacks
    def connect(self):
        """Connect through the relay; fires with the client protocol once open.

        Fails with :class:`txhyco.errors.RelayHandshakeError` (404 when no
        listener is online, 401/403 for credentials, the listener's own
        status when it rejects) or :class:`txhyco.errors.RelayUnreachable`.
        """
        from twisted.internet import reactor as default_reactor

        reactor = getattr(self, "reactor", None) or default_reactor
        hc = self.hybrid_connection
        token = yield hc.get_token(reactor)
        url = connect_url(hc.namespace, hc.path, suffix=self.suffix, query=self.query, token=token if self.token_in_query else None)
        headers = dict(self.headers or {})
        if token and not self.token_in_query:
            headers["ServiceBusAuthorization"] = token
        self.setSessionParameters(
            url=url, origin=self.origin, protocols=self.protocols, useragent=self.useragent, headers=headers, proxy=self.proxy
        )
        ns = hc.namespace
        proto = yield connect(reactor, ns.host, ns.effective_port, self, secure=ns.secure, ca_file=hc.ca_file)
        yield wait_open(proto, url.split("?", 1)[0])
        return proto


def connect_relay(protocol=None, connection_string=None, **kwargs) -> defer.Deferred:
    """Connect an Autobahn client protocol class through the relay; fires with the open protocol.

    ``connect_relay(MyClientProtocol, connection_string=..., path="echo")``
    """
    factory = RelayedClientFactory(connection_string, **kwargs)
    if protocol is not None:
        factory.protocol = protocol
    return factory.connect()
