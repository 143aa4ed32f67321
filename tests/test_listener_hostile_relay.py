"""A broken or hostile relay must not crash, flood or wedge a listener."""
import re

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol

from txhyco.address import HybridConnection
from txhyco.listener.accept import AcceptBridge, FrameMasker
from txhyco.errors import RelayError
from txhyco._twisted.handshake import accept_value, open_raw_websocket, split_ws_url
from txhyco.listener.control import CONTROL_MESSAGE_LIMIT, HybridConnectionListener
from txhyco.protocol.addresses import Namespace
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.messages import Accept, Headers, Request


def a_listener(**kw):
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    return HybridConnectionListener(task.Clock(), hc, **kw)


@pytest.mark.parametrize("address", ["http://x/?a", "ws:///nohost?x", "", "ws://h:99999/", "ws://h:abc/", "ws://[::1/"])
def test_unusable_rendezvous_addresses_are_refused_in_words(address):
    with pytest.raises(RelayError, match="Not a WebSocket URL"):
        split_ws_url(address)


def test_accepts_and_requests_with_unusable_addresses_are_ignored():
    seen = []
    listener = a_listener(on_accept=seen.append, on_request=lambda *a: seen.append(a))
    listener.commands.dispatch_accept(Accept(address="ws://h:99999/x", id="1", connect_headers=Headers()))
    listener.commands.dispatch_request(Request(address="http://x/?a", id="2"), None)
    assert seen == []
    listener.commands.dispatch_accept(Accept(address="ws://h/x", id="3", connect_headers=Headers()))
    assert [a.id for a in seen] == ["3"]
    # A good address is remembered by its scheme and authority only.
    for n, address in enumerate(["ws://h/y", "ws://h:99999/x", "ws://hx:1/", "wss://h/x", "ws://h?/x", "ws://h:abc/"], 4):
        listener.commands.dispatch_accept(Accept(address=address, id=str(n), connect_headers=Headers()))
    assert [a.id for a in seen] == ["3", "4", "6", "7", "8"]


def test_json_nested_too_deep_for_python_is_skipped():
    listener = a_listener(on_accept=lambda a: None)
    nested = b"[" * 100000 + b"]" * 100000
    listener.commands.refuse_malformed_request(nested, ProtocolError("malformed"))  # no RecursionError
    listener.commands.refuse_malformed_request(b'{"request": ' * 3000 + b"1" + b"}" * 3000, ProtocolError("malformed"))


class RawRendezvous:
    """The relay's end of an accept rendezvous, as the bridge sees it."""

    def __init__(self):
        self.aborted = False
        self.transport = self

    def abortConnection(self):
        self.aborted = True


def test_a_masked_frame_from_the_relay_closes_the_rendezvous_without_a_traceback():
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    accept = Accept(address="ws://127.0.0.1:1/$hc/x?sb-hc-action=accept&sb-hc-id=1", id="1", connect_headers=Headers())
    bridge = AcceptBridge(reactor, accept, hc, protocol=None)
    delivered = []
    bridge._in = FrameMasker(delivered.append)
    bridge.rendezvous = RawRendezvous()
    bridge.dataReceived(b"\x82\x83abcdxyz")  # a masked binary frame: only clients send those
    assert bridge.rendezvous.aborted and delivered == []


class Flood(WebSocketServerProtocol):
    """A fake relay: accepts the control channel, then sends more than any command can be."""

    def onOpen(self):
        self.factory.opened.append(self)
        if len(self.factory.opened) == 1:
            self.sendMessage(b"x" * (CONTROL_MESSAGE_LIMIT + 1), isBinary=False)

    def onClose(self, wasClean, code, reason):
        self.factory.closes.append(code)


@pytest_twisted.inlineCallbacks
def test_a_relay_sending_an_oversized_message_is_cut_off_not_buffered():
    factory = WebSocketServerFactory()
    factory.protocol = Flood
    factory.opened, factory.closes = [], []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    hc = HybridConnection(Namespace.parse(f"127.0.0.1:{port.getHost().port}", secure=False), "x")
    listener = HybridConnectionListener(reactor, hc, on_accept=lambda a: None, backoff=(0,))
    try:
        yield listener.start()
        for _ in range(200):  # the listener refuses the message (1009) and comes back
            if factory.closes and len(factory.opened) >= 2:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        # (Without the cap the message would be buffered whole, then skipped as a bad command.)
        assert factory.closes and len(factory.opened) >= 2
    finally:
        yield listener.stop()
        yield defer.maybeDeferred(port.stopListening)


class SilentLeg:
    """A request rendezvous on which the relay never sends the request."""

    STATE_CLOSED = 3
    state = 1

    def __init__(self):
        self.dropped = False

    def dropConnection(self, abort=False):
        self.dropped = abort


def test_a_request_rendezvous_that_never_brings_the_request_is_closed():
    from txhyco.listener.http import REQUEST_WAIT, HttpExchange

    clock = task.Clock()
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    request = Request(address="ws://127.0.0.1:1/$hc/x?sb-hc-action=request&sb-hc-id=1", id="1")
    exchange = HttpExchange(clock, hc, factory=None, listener=None, request=request)
    leg = SilentLeg()
    exchange.rendezvous_open(leg)
    clock.advance(REQUEST_WAIT - 1)
    assert not leg.dropped
    clock.advance(1)
    assert leg.dropped


class Answers101(Protocol):
    """A fake relay rendezvous: upgrades whatever comes, naming ``factory.subprotocol``."""

    def dataReceived(self, data):
        key = re.search(rb"(?i)sec-websocket-key: *([^\r]+)\r\n", data)[1]
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_value(key) + b"\r\n"
            b"Sec-WebSocket-Protocol: " + self.factory.subprotocol + b"\r\n\r\n")


@pytest.mark.parametrize("offered, named, ok", [
    ("chat", b"chat", True),
    ("chat, mqtt", b"mqtt", True),
    (None, b"chat", False),        # nothing offered
    ("chat", b"mqtt", False),      # not the one offered
    ("chat", b"caf\xc3\xa9", False),  # not even ASCII
])
@pytest_twisted.inlineCallbacks
def test_a_rendezvous_101_may_name_only_an_offered_subprotocol(offered, named, ok):
    factory = Factory.forProtocol(Answers101)
    factory.subprotocol = named
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        d = open_raw_websocket(reactor, f"ws://127.0.0.1:{port.getHost().port}/$hc/x?sb-hc-action=accept", protocol=offered)
        if ok:
            proto, chosen, _ = yield d
            assert chosen == named.decode()
            proto.transport.abortConnection()
        else:
            with pytest.raises(RelayError, match="not offered"):
                yield d
    finally:
        yield defer.maybeDeferred(port.stopListening)
