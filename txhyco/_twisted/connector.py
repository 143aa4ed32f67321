"""Opening TCP (and TLS) connections to a relay, the way every leg does it.

:func:`relay_endpoint` is the one place that decides how a relay is reached:
directly, or through an HTTP proxy's CONNECT tunnel when one applies
(:class:`txhyco.protocol.proxy.ProxyPolicy`: ``proxy=`` settings and
curl's environment variables). Every connection toward a relay, whatever
its leg, comes through it.
"""
from __future__ import annotations

import os

from twisted.internet import defer, error
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.protocol import connectionDone

from txhyco._twisted import eagerwrite
from txhyco._twisted.clienttls import client_tls_options
from txhyco._twisted.proxytunnel import ProxyTunnelEndpoint, tcp_endpoint
from txhyco.errors import RelaySettingError, RelayUnreachable
from txhyco.protocol.proxy import ProxyPolicy, ProxyURLError


def proxy_for(proxy: ProxyPolicy | None, host: str, *, secure: bool):
    """The :class:`~txhyco.protocol.proxy.ProxyURL` toward ``host``, or None for direct.

    ``proxy`` None reads the process environment now. An unusable proxy
    URL in the environment is a :class:`RelaySettingError`.
    """
    policy = proxy if proxy is not None else ProxyPolicy.from_environment(os.environ)
    try:
        return policy.proxy_for(host, secure=secure)
    except ProxyURLError as e:
        raise RelaySettingError(e.message) from None


def relay_endpoint(reactor, host: str, port: int, *, secure: bool, ca_file: str | None = None, timeout: float = 30,
                   proxy: ProxyPolicy | None = None):
    """A client endpoint for a relay host: TCP (or a proxy tunnel), wrapped in verified TLS for wss/https.

    TLS is always verified against the relay's ``host``; through a proxy it
    runs inside the tunnel.
    """
    tls_options = client_tls_options(host, ca_file) if secure else None
    via = proxy_for(proxy, host, secure=secure)
    if via is not None:
        return ProxyTunnelEndpoint(reactor, via, host, port, tls_options=tls_options, timeout=timeout)
    endpoint = tcp_endpoint(reactor, host, port, timeout)
    if tls_options is not None:
        endpoint = wrapClientTLS(tls_options, endpoint)
    return endpoint


@defer.inlineCallbacks
def connect(reactor, host: str, port: int, factory, *, secure: bool, ca_file: str | None = None, timeout: float = 30,
            proxy: ProxyPolicy | None = None, large_writes_wait: bool = False):
    """Connect ``factory``; connection failures become :class:`RelayUnreachable` with the cause.

    ``large_writes_wait``: see :func:`txhyco._twisted.eagerwrite.install` (a sender's legs).

    Through a proxy, they are :class:`ProxyError` (a kind of ``RelayUnreachable``).
    """
    endpoint = relay_endpoint(reactor, host, port, secure=secure, ca_file=ca_file, timeout=timeout, proxy=proxy)
    try:
        proto = yield endpoint.connect(factory)
    except (error.ConnectError, error.DNSLookupError, error.TimeoutError) as e:
        why = " ".join(str(e).split()).rstrip(".")  # Twisted's own sentences end with a full stop
        raise RelayUnreachable(
            f"Cannot reach the relay at {host}:{port}: {e.__class__.__name__}: {why}; {_advice(e, host)}."
        ) from None
    eagerwrite.install(proto.transport, large_writes_wait=large_writes_wait)
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
