"""A stream leg: any Twisted protocol over a relayed WebSocket, one binary message per write.

Both sides of stream mode use it: the listener opens one per accepted
connection (:mod:`txhyco.listener.stream`), a sender connects with one
(:mod:`txhyco.sender.stream`). The application protocol gets a byte stream,
``write`` becoming one binary message and each received message one
``dataReceived``.
"""
from __future__ import annotations

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from txhyco._twisted.autobahn_speedups import LeanClientProtocol
from txhyco._twisted.handshake import CLOSE_HANDSHAKE_TIMEOUT, KEEPALIVE
from txhyco._twisted.transport import TransportBase


#: Bytes a Close frame's reason may take (RFC 6455 §5.5: 125 bytes of payload, 2 for the code).
MAX_CLOSE_REASON = 123


class ClosedByPeer(ConnectionDone):
    """The other side closed the stream; ``reason`` is the text it gave in its Close (may be empty)."""

    def __init__(self, code, reason: str) -> None:
        super().__init__(f"closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


def fit_close_reason(text: str) -> str:
    """``text`` cut to what a Close frame carries, on a character boundary."""
    data = text.encode("utf-8")[:MAX_CLOSE_REASON]
    return data.decode("utf-8", "ignore")


class StreamTransport(TransportBase):
    """The application's transport: bytes in binary messages on a WebSocket leg."""

    def __init__(self, leg, peer, host) -> None:
        super().__init__(peer, host)
        self.leg = leg

    def write(self, data: bytes) -> None:
        if data and not self.disconnecting:
            self.leg.sendMessage(data, isBinary=True)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.leg.sendClose(1000)

    def loseConnectionWithReason(self, reason: str) -> None:
        """Close, telling the other side why in the Close frame (a tunnel's sender logs it)."""
        if not self.disconnecting:
            self.disconnecting = True
            self.leg.sendClose(1000, fit_close_reason(reason))

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.leg.dropConnection(abort=True)

    def registerProducer(self, producer, streaming) -> None:
        self.leg.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.leg.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.leg.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.leg.transport.resumeProducing()


#: Options of both ends' stream legs (see CLOSE_HANDSHAKE_TIMEOUT for why it
#: waits). A tunnel may idle for hours: pings keep load balancers from cutting
#: it, and a relay that vanished is noticed when the kernel cannot deliver one.
#: There is no deadline for the pong: it can queue behind data in either
#: direction while a reader is slow or paused, and busy is not dead.
STREAM_LEG_OPTIONS = {"maxMessagePayloadSize": 0, "closeHandshakeTimeout": CLOSE_HANDSHAKE_TIMEOUT,
                      "autoPingInterval": KEEPALIVE, "autoPingTimeout": 0}


class StreamLeg(LeanClientProtocol):
    """A WebSocket leg that carries a byte stream for an application protocol."""

    def __init__(self, app_factory, app_peer, local, opened_app: defer.Deferred | None = None) -> None:
        super().__init__()
        self.app_factory = app_factory
        #: the application's peer (not ``peer``: Autobahn keeps its own string there)
        self.app_peer = app_peer
        self.local = local
        self.opened_app = opened_app
        self.app = None

    def onOpen(self) -> None:
        app = self.app_factory.buildProtocol(self.app_peer)
        if app is None:
            self.sendClose(1000)
            return
        self.app = app
        self.stream = StreamTransport(self, self.app_peer, self.local)
        self.stream.protocol = app
        app.makeConnection(self.stream)
        if self.opened_app is not None:
            self.opened_app.callback(app)

    # A byte stream has no message boundaries, so each piece of a message is
    # handed on as it arrives rather than collected into the whole message
    # (Autobahn's default): a peer's 1 GiB message costs no memory here, and
    # a slow application pauses the socket through the usual backpressure.

    def onMessageFrameData(self, payload: bytes) -> None:
        app = self.app
        if app is not None and payload and not self.failedByMe:
            app.dataReceived(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        pass

    # A listener's relayed connection (txhyco.listener.drain)

    @property
    def done(self) -> defer.Deferred:
        return self.is_closed

    def going_away(self, reason: str) -> None:
        """Close with 1001 after the messages already written (sendClose allows only 1000 and 3000-4999)."""
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=1001, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)
        elif self.state == self.STATE_CONNECTING:
            self.dropConnection(abort=True)

    def abort(self) -> None:
        if self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)

    def onClose(self, wasClean, code, reason) -> None:
        app = self.app
        if app is not None:
            self.app = None
            why = ClosedByPeer(code, reason or "") if wasClean else ConnectionLost(reason or "connection lost")
            app.connectionLost(Failure(why))
