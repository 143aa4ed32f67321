"""The proxy process: a minimal byte-forwarding TCP proxy written with Twisted.

It is the floor for any relay in Python on this machine: one extra hop, one
extra process, bytes copied through the reactor with no parsing at all (flow
control via Twisted's producer/consumer so large transfers stay bounded).

Usage: ``proxy_proc.py TARGET_PORT [TARGET_PORT ...]``; for each target on
127.0.0.1 it listens on a free port and prints
``{"event": "ready", "ports": {"TARGET": LISTEN, ...}}``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from twisted.internet import protocol  # noqa: E402


class Outbound(protocol.Protocol):
    """The proxy's connection to the server; mirrors bytes back to the inbound side."""

    def __init__(self, inbound: "Inbound") -> None:
        self.inbound = inbound

    def connectionMade(self):
        self.inbound.outbound = self
        # Each side's writes throttle the other side's reads.
        self.transport.registerProducer(self.inbound.transport, True)
        self.inbound.transport.registerProducer(self.transport, True)
        if self.inbound.pending:
            self.transport.write(b"".join(self.inbound.pending))
            self.inbound.pending = []
        self.inbound.transport.resumeProducing()

    def dataReceived(self, data):
        self.inbound.transport.write(data)

    def connectionLost(self, reason=None):
        self.inbound.transport.loseConnection()


class Inbound(protocol.Protocol):
    def connectionMade(self):
        from twisted.internet import reactor

        self.outbound = None
        self.pending = []
        self.transport.pauseProducing()
        target = self.factory.target
        protocol.ClientCreator(reactor, Outbound, self).connectTCP("127.0.0.1", target).addErrback(
            lambda f: self.transport.loseConnection()
        )

    def dataReceived(self, data):
        if self.outbound is None:
            self.pending.append(data)
        else:
            self.outbound.transport.write(data)

    def connectionLost(self, reason=None):
        if self.outbound is not None:
            self.outbound.transport.loseConnection()


class ProxyFactory(protocol.ServerFactory):
    protocol = Inbound
    noisy = False

    def __init__(self, target: int) -> None:
        self.target = target


def main() -> None:
    common.raise_nofile()
    from twisted.internet import reactor

    ports = {}
    for arg in sys.argv[1:]:
        target = int(arg)
        port = reactor.listenTCP(0, ProxyFactory(target), interface="127.0.0.1", backlog=1024)
        ports[str(target)] = port.getHost().port
    common.emit({"event": "ready", "ports": ports})
    common.exit_on_stdin_eof(reactor)
    reactor.run()


if __name__ == "__main__":
    main()
