"""txhyco._twisted.eagerwrite: writes leave at once, and nothing changes order or gets lost."""
import io
import os
import socket

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.protocols.basic import FileSender
from twisted.test.proto_helpers import StringTransport

from tests.support.rawtcp import wait_until
from txhyco._twisted import eagerwrite


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


@pytest_twisted.inlineCallbacks
def test_on_a_senders_leg_a_large_write_waits_for_twisteds_own_send():
    received = Collect()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: received))
    try:
        sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        eagerwrite.install(sender.transport, large_writes_wait=True)  # as a sender's legs are
        large = os.urandom(eagerwrite._LARGE)
        sender.transport.writeSequence([b"<", large])
        sender.transport.write(b">")  # a small write after it: queued behind, not sent ahead
        # Twisted's buffers hold all of it until the reactor polls (the
        # caller's objects, not a part of them the kernel has not taken).
        assert sender.transport._tempDataBuffer == [b"<", large, b">"]
        sender.transport.loseConnection()
        assert (yield received.lost) == b"<" + large + b">"
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
        eagerwrite.install(self.transport, large_writes_wait=True)

    def dataReceived(self, data):
        for piece in data.split(b","):
            self.transport.write(piece + b";")
        self.transport.writeSequence([b"x", b"y"])
        self.transport.write(b"z" * 100000)  # bulk: not held back
        self.transport.write(b"w")
        self.transport.write(b"L" * eagerwrite._LARGE)  # large: Twisted's to send, behind "w"
        self.transport.write(b"end")
        self.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_writes_during_one_read_leave_together_and_in_order():
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(EagerEcho))
    try:
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        client.transport.write(b",".join(b"%d" % i for i in range(200)))
        data = yield client.lost
        assert data == b"".join(b"%d;" % i for i in range(200)) + b"xy" + b"z" * 100000 + b"w" + b"L" * eagerwrite._LARGE + b"end"
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


# Where Twisted's own write() semantics must win over sending at once.


@pytest_twisted.inlineCallbacks
def test_a_pull_producer_is_asked_for_more_until_done():
    # A pull producer (registerProducer(p, False), e.g. FileSender) writes one
    # chunk per resumeProducing() and is asked for the next one by doWrite
    # once the buffer drains. A chunk the kernel takes whole queues nothing,
    # so doWrite never runs and the producer must not be left waiting.
    payload = os.urandom(1024 * 1024)
    received = Collect()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: received))
    try:
        sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        eagerwrite.install(sender.transport)
        done = FileSender().beginFileTransfer(io.BytesIO(payload), sender.transport)
        done.addTimeout(5, reactor)
        try:
            yield done
        finally:
            sender.transport.loseConnection()
        assert (yield received.lost) == payload
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_nothing_is_sent_after_abort_connection():
    # abortConnection() "drops any buffered data": Twisted sends nothing
    # written after it (or held from before it, in the same read).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1]), Collect())
        peer, _ = listener.accept()
        eagerwrite.install(sender.transport)
        sender.transport.abortConnection()
        sender.transport.write(b"late")
        # The reset is sent only at the reactor's next turn: anything the
        # kernel got from write() is readable now.
        peer.settimeout(0.5)
        try:
            got = peer.recv(100)
        except socket.timeout:
            got = b""
        peer.close()
        assert got == b""
        yield sender.lost
    finally:
        listener.close()


class WritesAStrByMistake(protocol.Protocol):
    """Writes bytes, then (by mistake, caught) a str, then more bytes, in one read."""

    def connectionMade(self):
        eagerwrite.install(self.transport)

    def dataReceived(self, data):
        self.transport.write(b"1")
        self.transport.write(b"2")
        try:
            self.transport.write("3")
        except TypeError:
            pass  # Twisted refuses the str here, at the call
        self.transport.write(b"4")
        self.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_a_refused_non_bytes_write_during_a_read_does_not_lose_the_bytes_around_it():
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(WritesAStrByMistake))
    try:
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect())
        client.transport.write(b"go")
        assert (yield client.lost) == b"124"
        assert not eagerwrite._held and not eagerwrite._reading
    finally:
        yield port.stopListening()


class WritesWhenPaused:
    """A push producer that tells another connection when it is paused (a flow-control message)."""

    def __init__(self, other):
        self.other = other

    def pauseProducing(self):
        self.other.write(b"P")

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class Relayer(protocol.Protocol):
    """On one read: writes to B (1 eagerly, 2 held) and to A, whose full buffer pauses a producer that writes to B."""

    other = None

    def dataReceived(self, data):
        a, b = self.transport, self.other.transport
        a.write(b"a")  # A is busy: queued with Twisted, buffer still under bufferSize
        b.write(b"1")  # leaves at once
        b.write(b"2")  # held until the read ends
        a.write(b"bcdef")  # held; at the flush it fills A's buffer and pauses A's producer


@pytest_twisted.inlineCallbacks
def test_a_write_made_while_held_writes_are_flushed_does_not_overtake_them():
    peers = []

    def make_peer():
        peers.append(Collect())
        return peers[-1]

    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(make_peer))
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        a = yield connectProtocol(endpoint, Relayer())
        b = yield connectProtocol(endpoint, Collect())
        yield wait_until(lambda: len(peers) == 2)
        a.other = b
        eagerwrite.install(a.transport)
        eagerwrite.install(b.transport)
        peers[0].transport.pauseProducing()  # A's peer does not read: A's buffers stay full
        a.transport.write(b"x" * (32 * 1024 * 1024))  # the kernel takes some, Twisted keeps the rest
        assert a.transport.dataBuffer
        # Twisted pauses A's producer once 4 more bytes are buffered.
        a.transport.bufferSize = len(a.transport.dataBuffer) + a.transport._tempDataLen + 3
        a.transport.registerProducer(WritesWhenPaused(b.transport), True)
        peers[0].transport.write(b"go")  # A reads: Relayer.dataReceived
        yield wait_until(lambda: len(peers[1].data) >= 3)
        assert bytes(peers[1].data) == b"12P"  # Twisted's order: 1 and 2 were written before P
        a.transport.unregisterProducer()
        a.transport.abortConnection()
        b.transport.loseConnection()
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_twisted_internals_are_checked_before_use():
    """install() checks once per connection class that Twisted's private state is what it reads."""
    received = Collect()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: received))
    try:
        sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), protocol.Protocol())
        conn = sender.transport
        assert eagerwrite._has_internals(conn)

        class Renamed(type(conn)):
            """A Twisted whose send buffer went by another name."""
            dataBuffer = None

        conn.__class__ = Renamed
        try:
            assert not eagerwrite._has_internals(conn)
            assert not eagerwrite.internals_usable(conn)
            eagerwrite.install(conn)
            assert "write" not in conn.__dict__  # Twisted's own write
            assert eagerwrite.unsent_bytes(conn) == 0
        finally:
            conn.__class__ = Renamed.__mro__[1]
        conn.loseConnection()
        yield received.lost
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_without_the_internals_writes_are_twisteds_own(monkeypatch):
    """The fallback: install() does nothing, and every byte still arrives in order."""
    monkeypatch.setattr(eagerwrite, "internals_usable", lambda conn: False)
    big = os.urandom(4 * 1024 * 1024)
    pieces = [b"a", big, [b"c", b"d"], b"end"]
    received = Collect()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(protocol.Factory.forProtocol(lambda: received))
    try:
        sender = Send(pieces)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), sender)
        assert "write" not in sender.transport.__dict__
        assert (yield received.lost) == b"a" + big + b"cdend"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_senders_leg_hands_its_large_writes_to_twisted(relay):
    """connect_relay's leg waits with large writes (the listener's legs do not); a 1 MiB echo arrives whole."""
    from autobahn.twisted.websocket import WebSocketServerProtocol

    from tests.support.wsclient import Leg
    from txhyco import RelayedServerFactory, connect_relay

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = RelayedServerFactory(relay.connection_string.format(), path="large")
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        client = yield connect_relay(Leg, relay.connection_string.format(), path="large")
        assert client.transport.write.__self__.large == eagerwrite._LARGE
        payload = os.urandom(1024 * 1024)
        for _ in range(3):
            client.sendMessage(payload, isBinary=True)
        for _ in range(3):
            assert (yield client.messages.get().addTimeout(30, reactor)) == (payload, True)
        # The listener's control channel (a leg of its own, like its rendezvous legs) sends at once.
        assert port.listener._proto.transport.write.__self__.large == eagerwrite._NEVER
        client.sendClose(1000)
        yield client.closed
    finally:
        yield port.stopListening()
