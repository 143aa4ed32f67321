"""txhyco.eagerwrite: writes leave at once, and nothing changes order or gets lost."""
import os

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.test.proto_helpers import StringTransport

from tests.support.rawtcp import wait_until
from txhyco import eagerwrite


class Collect(protocol.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lost.callback(bytes(self.data))


class Send(protocol.Protocol):
    """Writes a script of pieces (eagerly) right after connecting, then closes."""

    def __init__(self, pieces):
        self.pieces = pieces

    def connectionMade(self):
        eagerwrite.install(self.transport)
        for piece in self.pieces:
            if isinstance(piece, list):
                self.transport.writeSequence(piece)
            else:
                self.transport.write(piece)
        self.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_every_byte_arrives_in_order_through_short_writes_and_sequences():
    # Large writes overflow the socket buffer: the rest is queued behind
    # them, and later small writes must wait their turn, not jump ahead.
    big = os.urandom(8 * 1024 * 1024)
    pieces = [b"a", big, b"b", [b"c", b"d"], b"", os.urandom(100), big[:12345], b"end"]
    expected = b"".join(b"".join(p) if isinstance(p, list) else p for p in pieces)
    received = Collect()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: received))
    try:
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Send(pieces))
        data = yield received.lost
        assert len(data) == len(expected) and data == expected
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_small_write_leaves_before_the_reactor_turns():
    received = Collect()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: received))
    try:
        sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        eagerwrite.install(sender.transport)
        eagerwrite.install(sender.transport)  # idempotent
        sender.transport.write(b"now")
        # Nothing is left in Twisted's buffers: the kernel has the bytes.
        assert not sender.transport._tempDataBuffer and not sender.transport.dataBuffer
        sender.transport.loseConnection()
        assert (yield received.lost) == b"now"
    finally:
        yield port.stopListening()


def test_other_transports_are_left_alone():
    transport = StringTransport()
    eagerwrite.install(transport)
    assert "write" not in transport.__dict__
    transport.write(b"x")
    assert transport.value() == b"x"


class EagerEcho(protocol.Protocol):
    """Answers one read with many writes (as a listener answers a batch of messages)."""

    def connectionMade(self):
        eagerwrite.install(self.transport)

    def dataReceived(self, data):
        for piece in data.split(b","):
            self.transport.write(piece + b";")
        self.transport.writeSequence([b"x", b"y"])
        self.transport.write(b"z" * 100000)  # bulk: not held back
        self.transport.write(b"end")
        self.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_writes_during_one_read_leave_together_and_in_order():
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(EagerEcho))
    try:
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        client.transport.write(b",".join(b"%d" % i for i in range(200)))
        data = yield client.lost
        assert data == b"".join(b"%d;" % i for i in range(200)) + b"xy" + b"z" * 100000 + b"end"
        assert not eagerwrite._held
    finally:
        yield port.stopListening()


class Flood:
    """A push producer writing 64 KiB chunks until paused (or 64 MiB)."""

    def __init__(self, transport):
        self.transport, self.paused, self.chunks = transport, False, 0

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.chunks < 1024:
            self.chunks += 1
            self.transport.write(b"f" * 65536)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.paused = True


class FloodOnRead(protocol.Protocol):
    def connectionMade(self):
        eagerwrite.install(self.transport)
        self.flood = Flood(self.transport)

    def dataReceived(self, data):
        self.transport.registerProducer(self.flood, True)
        self.flood.resumeProducing()  # inside a read: writes must still pause it


@pytest_twisted.inlineCallbacks
def test_a_producer_writing_inside_a_read_is_still_paused_by_a_full_socket():
    server = FloodOnRead()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: server))
    try:
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        client.transport.pauseProducing()  # the reader does not read
        client.transport.write(b"go")
        yield wait_until(lambda: server.flood.paused)
        assert server.flood.chunks < 1024
        client.transport.abortConnection()
    finally:
        yield port.stopListening()
