"""Twisted endpoints for hybrid connections: ``serverFromString(reactor, "hyco:...")`` and clients.

:class:`HybridConnectionServerEndpoint` makes any protocol factory listen
through a relay. The mode decides what the factory is fed:

``websocket``
    Autobahn ``WebSocketServerFactory``: relayed WebSocket connections with
    full fidelity (:mod:`txhyco.listener.accept`); HTTP requests get 501.
``http``
    HTTP/1.1 factories (twisted.web ``Site``, Klein): relayed HTTP requests
    as real HTTP/1.1 (:mod:`txhyco.listener.http`) and relayed WebSocket
    connections as an HTTP Upgrade, so a ``Site`` with a
    ``WebSocketResource`` serves both.
``stream``
    anything else: a byte stream in binary messages (:mod:`txhyco.listener.stream`).
``auto`` (the default)
    picks one of these from the factory's type, and logs its choice.

In http mode ``inspect`` (``inspect=`` in a ``hyco:`` string) also serves a
traffic inspector's page (:mod:`txhyco.inspector`); the port it returns
then has ``inspector`` (its ``url``) and stops the page when it stops.
"""
from __future__ import annotations

from functools import partial

from twisted.internet import defer, error
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from txhyco.address import HybridConnection
from txhyco.listener.control import KEEPALIVE
from txhyco.listener.drain import RelayedConnections
from txhyco.listener.port import listen
from txhyco.protocol.errors import ProtocolError

log = Logger()


def detect_mode(factory) -> str:
    """``websocket``, ``http`` or ``stream`` for ``factory`` (see the module doc)."""
    from autobahn.twisted.websocket import WebSocketServerFactory

    # Look through wrappers (twisted.protocols.policies.WrappingFactory and
    # kin: Crossbar limits connections that way) to the factory that speaks.
    seen = set()
    while getattr(factory, "wrappedFactory", None) is not None and id(factory) not in seen:
        seen.add(id(factory))
        factory = factory.wrappedFactory
    if isinstance(factory, WebSocketServerFactory):
        return "websocket"
    from twisted.web.http import HTTPFactory

    if isinstance(factory, HTTPFactory):
        return "http"
    return "stream"


def _given_or_built(hc: HybridConnection | None, relay: dict) -> HybridConnection:
    """``hc``, or the one :meth:`HybridConnection.from_args` builds from ``relay``
    (``connection_string=``, ``namespace=``/``path=``, ``credential=``, ``key=``...)."""
    if hc is not None:
        if relay:
            raise TypeError(f"give a HybridConnection or its arguments ({', '.join(sorted(relay))}), not both")
        return hc
    return HybridConnection.from_args(**relay)


@implementer(IStreamServerEndpoint)
class HybridConnectionServerEndpoint:
    """Listen through a relay with any protocol factory.

    ``hc`` names the hybrid connection, or give the arguments of
    :meth:`HybridConnection.from_args` instead (``connection_string=``,
    ``credential=DefaultAzureCredential()``, ...).
    """

    #: Set by the ``hyco:`` parser under twistd: a refused listen is logged
    #: here in one line, and twistd, which would log it again with a traceback,
    #: is told (by a CancelledError) that nothing is left to report.
    log_refusal = False

    def __init__(self, reactor, hc: HybridConnection | None = None, *, mode: str = "auto", keepalive: float | None = None,
                 inspect=None, **relay) -> None:
        self.reactor = reactor
        self.hc = _given_or_built(hc, relay)
        self.mode = mode
        self.keepalive = keepalive or KEEPALIVE
        #: a txhyco.inspector.options.InspectOptions (http mode), or None
        self.inspect = inspect

    def listen(self, factory) -> defer.Deferred:
        """Fires with a listening port once the control channel is registered.

        Fails with ``CannotListenError`` whose ``socketError`` is the cause
        (a :class:`txhyco.errors.RelayRefused` with the relay's status,
        or :class:`txhyco.errors.RelayUnreachable`). Cancellable.
        """
        mode = detect_mode(factory) if self.mode == "auto" else self.mode
        log.info("listening on {address} in {mode} mode for {factory!r}", address=str(self.hc.address), mode=mode, factory=factory)
        reactor, hc = self.reactor, self.hc
        on_accept = on_request = None
        connections = RelayedConnections(reactor)
        if mode == "stream":
            from txhyco.listener.stream import accept_stream

            on_accept = partial(accept_stream, reactor, hc, factory, connections=connections)
        elif mode == "http":
            from txhyco.listener.http import serve_request

            on_request = partial(serve_request, reactor, hc, factory)
        if self.inspect is not None and mode != "http":
            # Through failed() below, as a refused listen is: one line under twistd, not a traceback.
            d = defer.fail(ValueError(f"inspect= needs http mode, not {mode} mode: give mode=http, or serve an HTTP "
                                      "factory such as twisted.web's Site"))
        elif self.inspect is not None:
            from txhyco.inspector.server import inspected_listen

            d = inspected_listen(reactor, hc, factory, self.inspect, keepalive=self.keepalive, connections=connections)
        else:
            d = listen(reactor, hc, factory, on_accept=on_accept, on_request=on_request, keepalive=self.keepalive,
                       connections=connections)

        def failed(failure):
            if failure.check(defer.CancelledError) or getattr(failure.value, "inspector_page", False):
                return failure
            if self.log_refusal:
                reported = ReportedCannotListen(hc.namespace.authority, hc.path, failure.value)
                log.error("{why}", why=str(reported))
                raise reported
            raise RelayCannotListen(hc.namespace.authority, hc.path, failure.value)

        d.addErrback(failed)
        return d


class RelayCannotListen(error.CannotListenError):
    """Twisted's CannotListenError for a hybrid connection: ``interface`` is the namespace, ``port`` the path."""

    def __str__(self) -> str:
        why = str(self.socketError).rstrip(".")
        return f"Couldn't listen on hybrid connection {self.port!r} at {self.interface}: {why}."


class ReportedCannotListen(RelayCannotListen, defer.CancelledError):
    """A :class:`RelayCannotListen` already logged: twistd's endpoint service ignores a CancelledError."""


@implementer(IStreamClientEndpoint)
class HybridConnectionClientEndpoint:
    """Connect to a hybrid connection as a sender; the protocol gets a byte stream (stream mode)."""

    def __init__(self, reactor, hc: HybridConnection | None = None, **relay) -> None:
        self.reactor = reactor
        self.hc = _given_or_built(hc, relay)

    def connect(self, factory) -> defer.Deferred:
        """Fires with a protocol from ``factory`` once its stream through the relay is open."""
        from txhyco.sender.stream import connect_stream

        return connect_stream(self.reactor, self.hc, factory)


def _hybrid_connection(args, kwargs) -> tuple[HybridConnection, str, float | None, object]:
    from txhyco._twisted.endpointstring import EndpointStringError, parse_hyco

    options = parse_hyco(args, kwargs)
    mode = options.pop("mode")
    keepalive = options.pop("keepalive")
    inspect = options.pop("inspect")
    try:
        hc = HybridConnection.from_args(**options)
    except ProtocolError as e:
        raise EndpointStringError(e.message) from None
    return hc, mode, keepalive, inspect


def server_from_args(reactor, args, kwargs) -> HybridConnectionServerEndpoint:
    """The server endpoint for a parsed ``hyco:`` string (the plugin's job)."""
    hc, mode, keepalive, inspect = _hybrid_connection(args, kwargs)
    return HybridConnectionServerEndpoint(reactor, hc, mode=mode, keepalive=keepalive, inspect=inspect)


def client_from_args(reactor, args, kwargs) -> HybridConnectionClientEndpoint:
    """The client endpoint for a parsed ``hyco:`` string."""
    from txhyco._twisted.endpointstring import EndpointStringError

    hc, _, _, inspect = _hybrid_connection(args, kwargs)
    if inspect is not None:
        raise EndpointStringError("inspect= is for listening (a server endpoint), not for connecting")
    return HybridConnectionClientEndpoint(reactor, hc)
