"""A TCP server endpoint whose socket has SO_REUSEPORT: several processes share one port.

``reuseport:PORT[:interface=ADDRESS][:backlog=N]`` (the drop-in
``twisted/plugins/txhyco_reuseport.py`` registers the prefix). Linux then
spreads incoming connections over every process listening on the port, which
lets N relay cluster nodes on one host share one public port (README: Scaling
out); each node also listens on a port of its own, the one it advertises for
rendezvous. Twisted's ``tcp:`` endpoint has no such option, so the socket is
made here and handed to the reactor with ``adoptStreamPort``.
"""
from __future__ import annotations

import socket

from twisted.internet import defer
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ReusePortServerEndpoint:
    def __init__(self, reactor, port: int, interface: str = "", backlog: int = 50) -> None:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError("this system has no SO_REUSEPORT; use a TCP load balancer in front of the nodes instead")
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory):
        return defer.maybeDeferred(self._listen, factory)

    def _listen(self, factory):
        from twisted.internet.error import CannotListenError

        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise CannotListenError(self.interface, self.port, e) from None
        try:
            # The reactor takes a duplicate of the descriptor; ours closes here.
            return self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        finally:
            sock.close()


def parse_reuseport(reactor, port: str, interface: str = "", backlog: str = "50") -> ReusePortServerEndpoint:
    """The endpoint for ``reuseport:PORT:interface=...:backlog=...``; ValueError says what is wrong."""
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"reuseport: needs a port from 1 to 65535, not {port!r} (reuseport:9090:interface=127.0.0.1)")
    if not backlog.isdigit() or not 0 < int(backlog) <= 65535:
        raise ValueError(f"reuseport: backlog must be a number from 1 to 65535, not {backlog!r}")
    return ReusePortServerEndpoint(reactor, int(port), interface, int(backlog))
