"""A broken or hostile relay must not crash, flood or wedge a sender.

Each fake relay here is a raw TCP server on 127.0.0.1 that reads the
sender's request head and answers however the test scripts it.
"""
import re
import struct

import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol

from tests.support.procs import spawn
from tests.test_cli_tunnels import assert_one_line_error, finished
from txhyco.address import HybridConnection
from txhyco.endpoint import HybridConnectionClientEndpoint
from txhyco.errors import RelayError
from txhyco._twisted.handshake import accept_value
from txhyco.websocket import RelayedClientFactory

MIB = 1 << 20


def upgrade_ok(request_head: bytes) -> bytes:
    """The head of a correct 101 answer to ``request_head`` (without the final blank line)."""
    key = re.search(rb"(?i)sec-websocket-key: *([^\r]+)\r\n", request_head)[1]
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_value(key) + b"\r\n")


def frame(payload: bytes, opcode: int = 2) -> bytes:
    """A final, unmasked server frame (payloads under 126 bytes)."""
    return bytes([0x80 | opcode, len(payload)]) + payload


def huge_binary_frame_head(length: int = 1 << 30) -> bytes:
    return bytes([0x82, 127]) + struct.pack("!Q", length)


class FakeRelay(Protocol):
    """Reads the request head, then runs ``factory.answer(self, head)``; may keep writing via ``pump``."""

    def __init__(self):
        self.head = b""
        self.answered = False
        self.loop = None

    def dataReceived(self, data):
        self.head += data
        if not self.answered and b"\r\n\r\n" in self.head:
            self.answered = True
            self.factory.answer(self, self.head)

    def pump(self, chunk: bytes, total: int | None = None) -> None:
        """Write ``chunk`` again and again (``total`` bytes at most), paced by the reactor."""
        self.pumped = 0

        def write():
            if total is not None and self.pumped >= total:
                self.loop.stop()
                return
            self.transport.write(chunk)
            self.pumped += len(chunk)

        self.loop = task.LoopingCall(write)
        self.loop.start(0.002)

    def connectionLost(self, reason):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.factory.lost.append(self)


def fake_relay(answer):
    factory = Factory.forProtocol(FakeRelay)
    factory.answer = answer
    factory.lost = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    port.factory_ = factory
    return port


def connection_string(port) -> str:
    return (f"Endpoint=sb://127.0.0.1:{port.getHost().port}/;SharedAccessKeyName=k;"
            "SharedAccessKey=c2VjcmV0;UseDevelopmentEmulator=true")


def cli(port, *args):
    env = {"HYCO_CONNECTION_STRING": connection_string(port), "HYCO_RELAY_KEY": ""}
    return spawn(["-m", "txhyco.cli", *args], env=env)


@defer.inlineCallbacks
def poll(condition, tries: int = 200, interval: float = 0.05):
    """Whether ``condition()`` became true within ``tries`` checks."""
    for _ in range(tries):
        if condition():
            return True
        yield task.deferLater(reactor, interval, lambda: None)
    return condition()


class Quiet(WebSocketClientProtocol):
    pass


# -- Autobahn client legs (connect_relay, the hyco: client endpoint, txhyco connect) ----


@pytest_twisted.inlineCallbacks
def test_a_close_the_relay_never_follows_by_dropping_the_tcp_still_ends_the_connection():
    # RFC 6455 §7.1.1: the server drops the TCP after the close handshake. Autobahn's client
    # waits for that forever when the *server* started the handshake.
    port = fake_relay(lambda p, head: p.transport.write(upgrade_ok(head) + b"\r\n" + frame(b"\x03\xe8bye", opcode=8)))
    factory = RelayedClientFactory(connection_string(port), path="x")
    factory.protocol = Quiet
    factory.setProtocolOptions(closeHandshakeTimeout=0.2)
    try:
        proto = yield factory.connect()
        closed = yield poll(lambda: proto.is_closed.called)
        assert closed, "the sender still waits for the relay to drop the connection"
        assert port.factory_.lost
    finally:
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_an_endless_handshake_head_is_cut_off_with_a_sentence():
    def answer(p, head):
        p.transport.write(upgrade_ok(head))
        p.pump(b"X-Filler: " + b"a" * 8000 + b"\r\n")

    port = fake_relay(answer)
    factory = RelayedClientFactory(connection_string(port), path="x")
    factory.protocol = Quiet
    try:
        d = factory.connect()
        failed = yield poll(lambda: d.called)
        assert failed, "the sender keeps buffering the relay's endless head"
        error = yield d.addCallbacks(lambda _: None, lambda f: f.value)
        assert isinstance(error, RelayError) and "head" in str(error), error
    finally:
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_txhyco_connect_explains_an_answer_head_autobahn_cannot_decode():
    # Not UTF-8 (legal in an HTTP reason phrase): Autobahn raises a UnicodeDecodeError from dataReceived.
    port = fake_relay(lambda p, head: p.transport.write(b"HTTP/1.1 404 Nicht gefunden \xfc\r\n\r\n"))
    child = cli(port, "connect", "x")
    try:
        code, _, stderr = yield finished(child)
        assert_one_line_error(code, stderr, "could not be parsed")
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


class Gather(Protocol):
    def __init__(self):
        self.size = 0

    def dataReceived(self, data):
        self.size += len(data)


@pytest_twisted.inlineCallbacks
def test_the_client_endpoint_hands_on_a_huge_message_as_it_arrives():
    # A stream has no message boundaries: a 1 GiB message need not be held whole.
    def answer(p, head):
        p.transport.write(upgrade_ok(head) + b"\r\n" + huge_binary_frame_head())
        p.pump(b"x" * 65536, total=8 * MIB)

    port = fake_relay(answer)
    hc = HybridConnection.from_args(connection_string=connection_string(port), path="x")
    try:
        app = yield HybridConnectionClientEndpoint(reactor, hc).connect(Factory.forProtocol(Gather))
        arrived = yield poll(lambda: app.size >= 8 * MIB)
        assert arrived, f"only {app.size} bytes reached the application; the rest is buffered"
        app.transport.abortConnection()
    finally:
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_txhyco_connect_prints_a_huge_message_as_it_arrives():
    def answer(p, head):
        p.transport.write(upgrade_ok(head) + b"\r\n" + huge_binary_frame_head())
        p.pump(b"x" * 65536, total=4 * MIB)

    port = fake_relay(answer)
    child = cli(port, "connect", "x")
    try:
        arrived = yield poll(lambda: len(child._partial) >= 4 * MIB)
        assert arrived, f"only {len(child._partial)} bytes printed; the rest is buffered"
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_txhyco_connect_fails_in_one_line_while_stdin_is_still_open():
    # A protocol violation (a masked frame from the server) ends the session while
    # the stdin reader thread waits for input: that must not abort the interpreter.
    port = fake_relay(lambda p, head: p.transport.write(upgrade_ok(head) + b"\r\n" + b"\x82\x85abcd" + b"x" * 5))
    child = cli(port, "connect", "x")
    try:
        code, _, stderr = yield finished(child)
        assert "Fatal Python error" not in stderr
        assert_one_line_error(code, stderr, "masked")
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


# -- txhyco request (twisted.web's Agent) -----------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_txhyco_request_prints_an_endless_body_as_it_arrives():
    def answer(p, head):
        p.transport.write(b"HTTP/1.1 200 OK\r\nVia: 1.1 relay\r\nTransfer-Encoding: chunked\r\n\r\n")
        p.pump(b"10000\r\n" + b"x" * 65536 + b"\r\n")

    port = fake_relay(answer)
    child = cli(port, "request", "x", "--no-headers")
    try:
        arrived = yield poll(lambda: len(child._partial) >= 4 * MIB)
        assert arrived, f"only {len(child._partial)} bytes printed; the body is buffered"
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_txhyco_request_reports_a_relay_refusal_without_reading_its_endless_body():
    def answer(p, head):
        p.transport.write(b"HTTP/1.1 401 Unauthorized TrackingId:1\r\nTransfer-Encoding: chunked\r\n\r\n")
        p.pump(b"10000\r\n" + b"x" * 65536 + b"\r\n")

    port = fake_relay(answer)
    child = cli(port, "request", "x", "--max-time", "120")
    try:
        code, out, stderr = yield finished(child, timeout=20)
        assert_one_line_error(code, stderr, "401", "refused")
        assert out == ""
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_txhyco_request_explains_an_unparseable_answer_in_one_sentence():
    port = fake_relay(lambda p, head: p.transport.write(b"HTTP/1.1 200 OK\r\n" + b"a" * 70000))
    child = cli(port, "request", "x")
    try:
        code, _, stderr = yield finished(child)
        assert_one_line_error(code, stderr, "no response")
        assert ".." not in stderr
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_txhyco_request_to_a_relay_that_never_answers_names_the_max_time():
    port = fake_relay(lambda p, head: None)
    child = cli(port, "request", "x", "--max-time", "0.5")
    try:
        code, out, stderr = yield finished(child)
        assert_one_line_error(code, stderr, "no response", "within 0.5 seconds", "--max-time")
        assert out == ""
    finally:
        yield child.stop()
        yield defer.maybeDeferred(port.stopListening)


def test_a_request_cancelled_by_max_time_is_told_apart_from_other_failures():
    from twisted.internet.address import IPv4Address
    from twisted.internet.error import ConnectingCancelledError, ConnectionLost
    from twisted.python.failure import Failure
    from twisted.web._newclient import ResponseNeverReceived

    from txhyco.cli.request import _timed_out

    assert _timed_out(ResponseNeverReceived([Failure(defer.CancelledError())]))  # while waiting for the head
    assert _timed_out(ConnectingCancelledError(IPv4Address("TCP", "127.0.0.1", 1)))  # while connecting
    assert not _timed_out(ResponseNeverReceived([Failure(ConnectionLost())]))


@pytest_twisted.inlineCallbacks
def test_an_idle_tunnel_pings_and_is_not_cut_for_a_pong_that_does_not_come(monkeypatch):
    # Pings keep load balancers from cutting an idle tunnel. A pong can queue behind
    # data while a reader is slow or paused, so a late one must not end a busy tunnel;
    # a relay that vanished is noticed when the kernel cannot deliver the ping.
    from txhyco._twisted import streamleg as stream
    from txhyco._twisted.handshake import KEEPALIVE

    assert stream.STREAM_LEG_OPTIONS["autoPingInterval"] == KEEPALIVE  # on by default; shortened here
    monkeypatch.setitem(stream.STREAM_LEG_OPTIONS, "autoPingInterval", 0.1)
    seen = []

    def answer(p, head):
        seen.append(p)
        p.transport.write(upgrade_ok(head) + b"\r\n")  # then never a pong

    def pinged():  # the first frame after the head is a Ping (FIN, opcode 9)
        return any(p.head.split(b"\r\n\r\n", 1)[1][:1] == b"\x89" for p in seen)

    port = fake_relay(answer)
    hc = HybridConnection.from_args(connection_string=connection_string(port), path="x")
    try:
        app = yield HybridConnectionClientEndpoint(reactor, hc).connect(Factory.forProtocol(Gather))
        assert (yield poll(pinged)), "an idle tunnel sends no keep-alive ping"
        yield task.deferLater(reactor, 0.5, lambda: None)  # five intervals without a pong
        assert not port.factory_.lost, "a tunnel was cut for a pong that did not come"
        app.transport.loseConnection()
    finally:
        yield defer.maybeDeferred(port.stopListening)


@pytest_twisted.inlineCallbacks
def test_frames_right_behind_a_head_that_ended_in_time_are_not_mistaken_for_a_long_head():
    # The 101 comes in two reads, the second carrying a 100 KiB message behind the head's end.
    def answer(p, head):
        whole = upgrade_ok(head) + b"\r\n"
        p.transport.write(whole[:20])
        payload = b"m" * (100 * 1024)
        rest = whole[20:] + bytes([0x82, 127]) + struct.pack("!Q", len(payload)) + payload
        reactor.callLater(0.05, p.transport.write, rest)

    port = fake_relay(answer)
    factory = RelayedClientFactory(connection_string(port), path="x")
    factory.protocol = Quiet
    try:
        proto = yield factory.connect()
        assert proto.state == proto.STATE_OPEN
        proto.dropConnection(abort=True)
    finally:
        yield defer.maybeDeferred(port.stopListening)
