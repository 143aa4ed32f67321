"""A connection to a relay through an HTTP proxy's CONNECT tunnel, as a Twisted client endpoint.

:class:`ProxyTunnelEndpoint` connects to the proxy, asks it for a tunnel
to the relay (``CONNECT host:port``, read with h11 by
:mod:`txhyco.protocol.proxy`), then starts the caller's protocol inside the
tunnel: wrapped in TLS for wss/https, verified against the *relay's* host
name (the proxy only ever sees encrypted bytes). Failures are
:class:`txhyco.errors.ProxyError`, which names the proxy without its
credentials.
"""
from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import HostnameAddress
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from txhyco.errors import ProxyError
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.proxy import ConnectResponseReader, ProxyURL, connect_request


def tcp_endpoint(reactor, host: str, port: int, timeout: float):
    """A plain TCP client endpoint; no resolver round trip for an IP address."""
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def _refusal(proxy: ProxyURL, target: str, status: int, reason: str) -> ProxyError:
    said = f"{status} {reason}".strip()
    if status in (407, 401):  # 407 is the standard answer; some proxies (tinyproxy) say 401 to a wrong password
        if proxy.has_credentials:
            why = "it refused the user name and password in the proxy URL: check them"
        else:
            why = "it wants credentials: put them in the proxy URL, http://USER:PASSWORD@host:port (in HTTPS_PROXY, say)"
        return ProxyError(f"The proxy {proxy} answered {said} to CONNECT {target}: {why}.", proxy.display, status)
    if status == 403:
        return ProxyError(
            f"The proxy {proxy} refused the tunnel to {target} ({said}): its rules do not allow CONNECT to "
            "that host or port; ask its administrator to allow the relay's host and port.",
            proxy.display, status,
        )
    if status >= 500:
        return ProxyError(
            f"The proxy {proxy} could not open a tunnel to the relay at {target} ({said}): check the relay's "
            "address, and that the proxy can reach it.",
            proxy.display, status,
        )
    return ProxyError(f"The proxy {proxy} answered {said} to CONNECT {target}; no tunnel to the relay.", proxy.display, status)


class _Tunnel(Protocol):
    """Asks the proxy for the tunnel, then hands every byte to the protocol inside it."""

    def __init__(self, reactor, proxy: ProxyURL, host: str, port: int, factory, timeout: float) -> None:
        self.reactor = reactor
        self.proxy = proxy
        self.host, self.port = host, port
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.factory_inside = factory
        self.timeout = timeout
        self.reader = ConnectResponseReader(host, port)
        self.inner = None
        #: fires with the inner protocol once the tunnel is up, or fails with a ProxyError
        self.established: defer.Deferred = defer.Deferred()
        self._timer = None

    def connectionMade(self) -> None:
        self.transport.write(connect_request(self.proxy, self.host, self.port))
        self._timer = self.reactor.callLater(self.timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(ProxyError(
            f"The proxy {self.proxy} did not answer CONNECT {self.target} within {self.timeout:g} seconds.", self.proxy.display
        ))
        self.transport.abortConnection()

    def _fail(self, problem: ProxyError) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.established.called:
            self.established.errback(problem)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self.established.called:
            return  # failed; the connection is on its way down
        try:
            answer = self.reader.receive(data)
        except ProtocolError as e:
            self._fail(ProxyError(f"The proxy {self.proxy} broke the tunnel set-up to {self.target}: {e.message}.", self.proxy.display))
            self.transport.abortConnection()
            return
        if answer is None:
            return
        if not answer.established:
            self._fail(_refusal(self.proxy, self.target, answer.status, answer.reason))
            self.transport.loseConnection()
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.factory_inside.doStart()
        # The protocol inside talks to the relay: its address is the relay's, not the proxy's.
        self.inner = self.factory_inside.buildProtocol(HostnameAddress(self.host.encode("ascii", "replace"), self.port))
        self.inner.makeConnection(self.transport)
        self.established.callback(self.inner)
        if answer.leftover and self.inner is not None:
            self.inner.dataReceived(answer.leftover)

    def connectionLost(self, reason) -> None:
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connectionLost(reason)
            self.factory_inside.doStop()
            return
        self._fail(ProxyError(
            f"The proxy {self.proxy} closed the connection before the tunnel to {self.target} was set up.", self.proxy.display
        ))


@implementer(IStreamClientEndpoint)
class ProxyTunnelEndpoint:
    """Connects to ``host:port`` through ``proxy``'s CONNECT tunnel; TLS inside with ``tls_options``.

    ``connect(factory)`` fires with the factory's protocol once the tunnel
    is up (its TLS handshake, if any, then runs as on a direct connection),
    or fails with :class:`txhyco.errors.ProxyError`. Cancellable.
    """

    def __init__(self, reactor, proxy: ProxyURL, host: str, port: int, *, tls_options=None, timeout: float = 30) -> None:
        self.reactor = reactor
        self.proxy = proxy
        self.host, self.port = host, port
        self.tls_options = tls_options
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ProxyTunnelEndpoint({self.host}:{self.port} via {self.proxy})"

    def connect(self, factory) -> defer.Deferred:
        inside = factory if self.tls_options is None else TLSMemoryBIOFactory(self.tls_options, True, factory)
        tunnel = _Tunnel(self.reactor, self.proxy, self.host, self.port, inside, self.timeout)
        connecting = tcp_endpoint(self.reactor, self.proxy.host, self.proxy.port, self.timeout).connect(
            Factory.forProtocol(lambda: tunnel)
        )

        def cancel(_):
            connecting.cancel()
            if tunnel.transport is not None:
                tunnel.transport.abortConnection()

        result: defer.Deferred = defer.Deferred(cancel)

        def unreachable(failure):
            e = failure.value
            if isinstance(e, (error.ConnectError, error.DNSLookupError, error.TimeoutError)) and not failure.check(error.ConnectingCancelledError):
                why = " ".join(str(e).split()).rstrip(".")
                raise ProxyError(
                    f"Cannot reach the proxy {self.proxy} (on the way to the relay at {self.host}:{self.port}): "
                    f"{e.__class__.__name__}: {why}; check the proxy setting (proxy=, --proxy, HTTPS_PROXY/HTTP_PROXY).",
                    self.proxy.display,
                ) from None
            return failure

        connecting.addCallbacks(lambda _: tunnel.established, unreachable)
        if self.tls_options is not None:
            connecting.addCallback(lambda protocol: protocol.wrappedProtocol)
        connecting.chainDeferred(result)
        return result
