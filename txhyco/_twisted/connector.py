"""Opening TCP (and TLS) connections to a relay, the way every leg does it."""
from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import connectionDone

from txhyco._twisted import eagerwrite
from txhyco._twisted.clienttls import client_tls_options
from txhyco.errors import RelayUnreachable


def relay_endpoint(reactor, host: str, port: int, *, secure: bool, ca_file: str | None = None, timeout: float = 30):
    """A client endpoint for a relay host: TCP, wrapped in verified TLS for wss/https."""
    if isIPAddress(host):
        # No name to resolve: skip HostnameEndpoint's resolver round trip.
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    else:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if secure:
        endpoint = wrapClientTLS(client_tls_options(host, ca_file), endpoint)
    return endpoint


@defer.inlineCallbacks
def connect(reactor, host: str, port: int, factory, *, secure: bool, ca_file: str | None = None, timeout: float = 30):
    """Connect ``factory``; connection failures become :class:`RelayUnreachable` with the cause."""
    endpoint = relay_endpoint(reactor, host, port, secure=secure, ca_file=ca_file, timeout=timeout)
    try:
        proto = yield endpoint.connect(factory)
    except (error.ConnectError, error.DNSLookupError, error.TimeoutError) as e:
        why = " ".join(str(e).split()).rstrip(".")  # Twisted's own sentences end with a full stop
        raise RelayUnreachable(
            f"Cannot reach the relay at {host}:{port}: {e.__class__.__name__}: {why}; {_advice(e, host)}."
        ) from None
    eagerwrite.install(proto.transport)
    if secure:
        _remember_loss(proto)
    return proto


def _advice(e: Exception, host: str) -> str:
    """What a newcomer does next when the relay cannot be reached."""
    if isinstance(e, error.ConnectionRefusedError):
        if host in ("127.0.0.1", "::1", "localhost"):
            return "no relay runs there: start one with 'txhyco relay', or check the connection string's Endpoint"
        return "nothing listens on that port: check the connection string's Endpoint (host and port)"
    if isinstance(e, error.DNSLookupError):
        return "check the host name in the connection string's Endpoint"
    return "check the connection string's Endpoint and the network between here and the relay"


def _remember_loss(proto) -> None:
    """Keep why a TLS leg was lost as ``proto.txhyco_lost``: a failed TLS handshake shows only there."""
    lost = proto.connectionLost

    def connection_lost(reason=connectionDone):
        proto.txhyco_lost = reason
        return lost(reason)

    proto.connectionLost = connection_lost
