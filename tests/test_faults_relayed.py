"""Faults on relayed connections: a sender's or rendezvous socket reset, messages in flight at a clean close.

Senders and the listener reach the relay through fault proxies
(tests/support/faultproxy.py), one each, so a test can act on one socket.
"""
from __future__ import annotations

import hashlib
import os
import random
from types import SimpleNamespace

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory, Protocol

from tests.support.faultproxy import FaultProxy
from tests.support.faults import scrape_metrics, wait_for
from tests.support.rawlistener import make_token
from tests.support.wsclient import Leg, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory

pytestmark = pytest.mark.timeout(120)  # each test bounded, whatever its own guards

ACCEPT = b"sb-hc-action=accept"
MAX_SIZE = 200 * 1024


class Server(WebSocketServerProtocol):
    """Echoes; ``send N SEED`` sends N messages of its own and closes with 1000 right after the last."""

    def onOpen(self):
        self.factory.opened.append(self)
        self.received: list[bytes] = []
        self.closed = defer.Deferred()

    def onMessage(self, payload, isBinary):
        if not isBinary and payload.startswith(b"send "):
            _, count, seed = payload.split()
            for message in messages(int(count), int(seed)):
                self.sendMessage(message, isBinary=True)
            self.sendClose(1000)
        elif not isBinary and payload == b"echo":
            self.sendMessage(b"echo", isBinary=False)
        else:
            self.received.append(payload)

    def onClose(self, wasClean, code, reason):
        if hasattr(self, "closed") and not self.closed.called:
            self.closed.callback((wasClean, code))


def messages(count: int, seed: int) -> list[bytes]:
    """``count`` messages of sizes up to 200 KiB (the frame-length edges among them), each numbered."""
    rng = random.Random(seed)
    edges = [0, 1, 125, 126, 65535, 65536, MAX_SIZE - 8]
    out = []
    for i in range(count):
        size = edges[i] if i < len(edges) else rng.choice([rng.randint(0, 2048), rng.randint(0, 65536), rng.randint(0, MAX_SIZE - 8)])
        out.append(i.to_bytes(8, "big") + rng.randbytes(size))
    return out


def digest(chunks) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "big") + chunk)
    return h.hexdigest()


@pytest.fixture
def setup():
    state = pytest_twisted.blockon(_setup())
    yield state
    pytest_twisted.blockon(_teardown(state))


@defer.inlineCallbacks
def _setup():
    relay = yield start_relay(metrics_endpoint="tcp:0:interface=127.0.0.1")
    senders = yield FaultProxy("127.0.0.1", relay.port).start()
    listeners = yield FaultProxy("127.0.0.1", relay.port).start()
    cs = relay.connection_string.format().replace(f"127.0.0.1:{relay.port}", f"127.0.0.1:{listeners.port}")
    factory = RelayedServerFactory(cs, path="faults")
    factory.protocol = Server
    factory.opened = []
    port = yield factory.listen()
    return SimpleNamespace(relay=relay, senders=senders, listeners=listeners, factory=factory, port=port)


@defer.inlineCallbacks
def _teardown(state):
    yield state.port.stopListening()
    yield state.senders.stop()
    yield state.listeners.stop()
    yield state.relay.stop()


def gauge(state) -> defer.Deferred:
    port = state.relay.service.metrics_port.getHost().port
    return scrape_metrics(port).addCallback(lambda samples: samples["hyco_relay_connections"])


@defer.inlineCallbacks
def settled_gauge(state, expected: float, tries: int = 100):
    """The connection gauge once it reads ``expected`` (or its last reading after ``tries``)."""
    for _ in range(tries):
        value = yield gauge(state)
        if value == expected:
            break
        yield task.deferLater(reactor, 0.05, lambda: None)
    return value


def open_sender(state) -> defer.Deferred:
    """A sender through the senders' proxy (its token names the address it used)."""
    via = SimpleNamespace(host=f"127.0.0.1:{state.senders.port}", rule=state.relay.rule)
    url = connect_url(Namespace.parse(via.host, secure=False), "faults")
    return ws_connect(url, headers={"ServiceBusAuthorization": make_token(via, "faults")}, cls=Leg,
                      maxMessagePayloadSize=0, maxFramePayloadSize=0)


@defer.inlineCallbacks
def echo_once(sender):
    sender.sendMessage(b"echo", isBinary=False)
    assert (yield sender.messages.get()) == (b"echo", False)


@pytest.mark.parametrize("socket", ["sender", "rendezvous"])
@pytest_twisted.inlineCallbacks
def test_a_reset_relayed_connection_closes_both_ends_and_nothing_else(setup, socket):
    state = setup
    legs = []
    for _ in range(3):
        legs.append((yield open_sender(state)))
        yield wait_for(lambda: len(state.factory.opened) == len(legs), what="the listener's side open")
    for leg in legs:
        yield echo_once(leg)
    assert (yield gauge(state)) == 3
    victim_sender, victim_server = legs[0], state.factory.opened[0]
    proxy = state.senders if socket == "sender" else state.listeners
    (victim,) = [c for c in proxy.live if socket == "sender" or (c.request_line and ACCEPT in c.request_line)][:1]
    victim.reset()
    sender_close, server_close = yield defer.gatherResults([victim_sender.closed, victim_server.closed]).addTimeout(15, reactor)
    print(f"\n{socket} reset: the sender saw (clean, code, reason) {sender_close}, the listener (clean, code) {server_close}")
    yield wait_for(lambda: not victim.proxy.live.count(victim), what="the reset connection gone")
    for leg in legs[1:]:  # the others carry on
        yield echo_once(leg)
    assert (yield settled_gauge(state, 2)) == 2
    for leg in legs[1:]:
        leg.sendClose(1000)
        yield leg.closed
    assert (yield settled_gauge(state, 0)) == 0


def slow_down(state, which: str, bytes_per_second: float) -> None:
    """Rate-limit the newest sender socket or the newest rendezvous socket."""
    if which == "sender":
        state.senders.live[-1].slow(bytes_per_second)
    else:
        state.listeners.listening_on(ACCEPT)[-1].slow(bytes_per_second)


@pytest.mark.parametrize("slowed", ["sender", "rendezvous"])
@pytest_twisted.inlineCallbacks
def test_messages_in_flight_at_a_clean_close_all_arrive_in_order_both_ways(setup, slowed):
    state = setup
    count = 120
    # one socket carries at most 16 MB/s: much is still queued when the close is sent
    sent_up = messages(count, seed=1)
    sender = yield open_sender(state)
    yield wait_for(lambda: len(state.factory.opened) == 1, what="the listener's side open")
    slow_down(state, slowed, 16_000_000)
    server = state.factory.opened[0]
    for message in sent_up:
        sender.sendMessage(message, isBinary=True)
    sender.sendClose(1000)  # right after the last send
    closed_up = yield server.closed.addTimeout(60, reactor)
    yield sender.closed.addTimeout(30, reactor)
    assert closed_up == (True, 1000)
    assert len(server.received) == count
    assert [m[:8] for m in server.received] == [m[:8] for m in sent_up]  # in order
    assert digest(server.received) == digest(sent_up)  # byte-identical

    # listener → sender: the listener sends and closes with 1000 right after its last send
    sent_down = messages(count, seed=2)
    sender = yield open_sender(state)
    yield wait_for(lambda: len(state.factory.opened) == 2, what="the listener's side open")
    # Slower than the listener's close handshake could wait by Autobahn's default (1 s):
    # its close must not cut off what is still on its way.
    slow_down(state, slowed, 4_000_000)
    sender.sendMessage(f"send {count} 2".encode(), isBinary=False)
    was_clean, code, _ = yield sender.closed.addTimeout(60, reactor)
    received = []
    while sender.messages.pending:
        payload, is_binary = yield sender.messages.get()
        received.append(payload)
    assert (was_clean, code) == (True, 1000), f"{len(received)} of {count} messages, then a drop"
    assert len(received) == count
    assert [m[:8] for m in received] == [m[:8] for m in sent_down]
    assert digest(received) == digest(sent_down)
    total = sum(map(len, sent_up)) + sum(map(len, sent_down))
    print(f"\n{slowed} slowed: {count} + {count} messages ({total / 1e6:.1f} MB, up to {MAX_SIZE // 1024} KiB each) all delivered, in order, byte-identical")


@pytest_twisted.inlineCallbacks
def test_a_sender_whose_rendezvous_is_reset_hears_1011(setup):
    state = setup
    sender = yield open_sender(state)
    yield echo_once(sender)
    (rendezvous,) = state.listeners.listening_on(ACCEPT)
    rendezvous.reset()
    was_clean, code, reason = yield sender.closed.addTimeout(15, reactor)
    assert code == 1011 and reason, (was_clean, code, reason)


class Blurt(Protocol):
    """Stream mode: sends its bytes and closes at once (loseConnection right after the last write)."""

    def connectionMade(self):
        for chunk in self.factory.chunks:
            self.transport.write(chunk)
        self.transport.loseConnection()


class Gather(Protocol):
    def connectionMade(self):
        self.data = []
        self.done = defer.Deferred()
        if hasattr(self.factory, "gathered"):
            self.factory.gathered.append(self)

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.data))


@pytest_twisted.inlineCallbacks
def test_stream_bytes_in_flight_at_a_clean_close_all_arrive_both_ways(relay):
    proxy = yield FaultProxy("127.0.0.1", relay.port).start()
    os.environ["TXHYCO_FAULTS_KEY"] = relay.rule.primary_key

    def endpoint(port: int) -> str:
        return f"hyco:127.0.0.1\\:{port}:bytes:keyName={relay.rule.name}:keyEnv=TXHYCO_FAULTS_KEY:tls=no:mode=stream"

    chunks = messages(60, seed=3)
    expected = b"".join(chunks)
    server_factory = Factory.forProtocol(Blurt)
    server_factory.chunks = chunks
    port = yield serverFromString(reactor, endpoint(relay.port)).listen(server_factory)
    try:
        # listener → sender, the sender reading at 4 MB/s through the proxy
        client = yield clientFromString(reactor, endpoint(proxy.port)).connect(Factory.forProtocol(Gather))
        yield wait_for(lambda: proxy.live and proxy.live[0].server is not None, what="the proxied sender")
        proxy.live[0].slow(4_000_000)
        down = yield client.done.addTimeout(60, reactor)
        assert len(down) == len(expected) and down == expected
        # sender → listener
        yield port.stopListening()
        sink = Factory.forProtocol(Gather)
        sink.gathered = []
        port = yield serverFromString(reactor, endpoint(relay.port)).listen(sink)
        blurt_factory = Factory.forProtocol(Blurt)
        blurt_factory.chunks = chunks
        yield clientFromString(reactor, endpoint(proxy.port)).connect(blurt_factory)
        yield wait_for(lambda: sink.gathered, what="the listener's side open")
        up = yield sink.gathered[0].done.addTimeout(60, reactor)
        assert len(up) == len(expected) and up == expected
        print(f"\nstream mode: {len(expected) / 1e6:.1f} MB each way, written then closed at once, all arrived")
    finally:
        yield port.stopListening()
        yield proxy.stop()
