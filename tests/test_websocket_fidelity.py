"""An Autobahn server behind the relay behaves like a direct one: sizes, fragments, pings, closes, streaming."""
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor, task

from tests.support.wsclient import Leg
from txhyco.websocket import RelayedServerFactory, connect_relay


class Client(Leg):
    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda failure: None)
        self.pongs = defer.DeferredQueue()

    def onPong(self, payload):
        self.pongs.put(payload)


class Recorder(WebSocketServerProtocol):
    instances = []

    def onOpen(self):
        type(self).instances.append(self)
        self.received = defer.DeferredQueue()
        self.closed = defer.Deferred()
        self.pings = []
        self.pongs = defer.DeferredQueue()

    def onPong(self, payload):
        self.pongs.put(payload)

    def onPing(self, payload):
        self.pings.append(payload)
        super().onPing(payload)

    def onMessage(self, payload, isBinary):
        self.received.put((payload, isBinary))
        if payload == b"stream-back":
            self.stream_back()
        elif payload.startswith(b"frag:"):
            self.sendMessage(payload, isBinary, fragmentSize=7)
        elif payload == b"ping-me":
            self.sendPing(b"server-ping")
        else:
            self.sendMessage(payload, isBinary)

    def stream_back(self):
        self.beginMessage(isBinary=True)
        for i in range(5):
            self.beginMessageFrame(3)
            self.sendMessageFrameData(b"%03d" % i)
        self.endMessage()

    def onClose(self, wasClean, code, reason):
        if hasattr(self, "closed") and not self.closed.called:
            self.closed.callback((wasClean, code, reason))




@defer.inlineCallbacks
def _serve(relay, path, protocol=Recorder, **options):
    factory = RelayedServerFactory(relay.connection_string.format(), path=path)
    factory.protocol = protocol
    if options:
        factory.setProtocolOptions(**options)
    port = yield factory.listen()
    return port


@pytest_twisted.inlineCallbacks
def test_sizes_up_to_16_mib_and_fragmentation(relay):
    port = yield _serve(relay, "sizes")
    client = yield connect_relay(Client, relay.connection_string.format(), path="sizes")
    for size in (0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20):
        payload = bytes((i * 7) & 0xFF for i in range(min(size, 4096))) * (size // 4096) + bytes(size % 4096 if size >= 4096 else 0)
        payload = payload[:size] if size >= 4096 else bytes(i & 0xFF for i in range(size))
        client.sendMessage(payload, isBinary=True, fragmentSize=100_000 if size > 200_000 else None)
        assert (yield client.messages.get()) == (payload, True)
    client.sendMessage("frag:\u00e9t\u00e9 fragmenté".encode(), isBinary=False)
    got = yield client.messages.get()
    assert got == ("frag:\u00e9t\u00e9 fragmenté".encode(), False)
    client.sendMessage(b"stream-back")
    assert (yield client.messages.get()) == (b"000001002003004", True)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_ping_pong_both_ways_and_close_codes(relay):
    class Mine(Recorder):
        instances = []  # this test's servers only

    port = yield _serve(relay, "pp", Mine)
    client = yield connect_relay(Client, relay.connection_string.format(), path="pp")
    client.sendMessage(b"hello")
    yield client.messages.get()
    (server,) = Mine.instances
    client.sendPing(b"client-ping")
    assert (yield client.pongs.get()) == b"client-ping"  # the relay answers pings on its own leg
    client.sendMessage(b"ping-me")
    # Pings are hop-by-hop (Hybrid Connections protocol, "Ping operation"): the relay
    # answers them on each leg.
    assert (yield server.pongs.get()) == b"server-ping"
    client.sendClose(3001, "client leaving")
    was_clean, code, reason = yield server.closed
    assert (code, reason) == (3001, "client leaving")
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_backpressure_from_a_slow_listener(relay):
    """A listener that stops reading makes the relay stop reading from the sender."""
    class Mine(Recorder):
        instances = []

    port = yield _serve(relay, "slow", Mine)
    client = yield connect_relay(Client, relay.connection_string.format(), path="slow")
    client.sendMessage(b"first")
    yield client.messages.get()
    (server,) = Mine.instances
    assert (yield server.received.get()) == (b"first", False)
    server.transport.pauseProducing()
    chunk = b"z" * (1 << 20)
    for _ in range(48):
        client.sendMessage(chunk, isBinary=True)
    yield task.deferLater(reactor, 0.5, lambda: None)
    # With the listener paused, the data waits in the sender's own buffers
    # and the kernel's, not in the relay's.
    relay_buffered = sum(_buffered(door.transport) for door in relay.relay.connections)
    assert relay_buffered < 8 << 20, relay_buffered
    server.transport.resumeProducing()
    for _ in range(48):
        assert (yield server.received.get()) == (chunk, True)
    yield port.stopListening()


def _buffered(transport):
    return len(getattr(transport, "dataBuffer", b"")) + sum(len(x) for x in getattr(transport, "_tempDataBuffer", []))


@pytest_twisted.inlineCallbacks
def test_several_listeners_share_the_load(relay):
    Recorder.instances.clear()

    class A(Recorder):
        pass

    class B(Recorder):
        pass

    port_a = yield _serve(relay, "shared", A)
    port_b = yield _serve(relay, "shared", B)
    for _ in range(30):
        c = yield connect_relay(Client, relay.connection_string.format(), path="shared")
        c.sendMessage(b"x")
        yield c.messages.get()
        c.sendClose(1000)
    kinds = {type(p) for p in Recorder.instances}
    assert kinds == {A, B}
    yield port_a.stopListening()
    yield task.deferLater(reactor, 0.05, lambda: None)
    for _ in range(5):
        c = yield connect_relay(Client, relay.connection_string.format(), path="shared")
        c.sendMessage(b"y")
        assert (yield c.messages.get()) == (b"y", False)
    assert type(Recorder.instances[-1]) is B
    yield port_b.stopListening()
