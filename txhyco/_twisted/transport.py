"""The part of a transport every relayed connection's application protocol is given."""
from __future__ import annotations

from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from zope.interface import implementer


@implementer(ITransport, IConsumer, IPushProducer)
class TransportBase:
    """What every transport of ours offers an application protocol besides writing.

    ``protocol`` is whoever receives data now (a twisted.web ``Site`` hands
    the connection to a WebSocket protocol by reassigning it).
    """

    disconnecting = False
    disconnected = False

    def __init__(self, peer, host) -> None:
        self.protocol = None
        self._peer = peer
        self._host = host

    def writeSequence(self, seq) -> None:
        self.write(b"".join(seq))

    def getPeer(self):
        return self._peer

    def getHost(self):
        return self._host

    # TCP-ish no-ops that servers call
    def setTcpNoDelay(self, enabled) -> None:
        pass

    def setTcpKeepAlive(self, enabled) -> None:
        pass

    def stopProducing(self) -> None:
        self.abortConnection()
