"""Header values of a sender's upgrade reach a bridged WebSocket application as sent."""
import h11
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import reactor

from tests.support.wsclient import Leg
from txhyco.listener import accept as bridge
from txhyco.websocket import RelayedServerFactory, connect_relay


class Client(Leg):
    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda failure: None)  # connect_relay reports it


class HeaderEcho(WebSocketServerProtocol):
    """Records the request headers its onConnect saw; echoes messages."""

    seen: list = []

    def onConnect(self, request):
        type(self).seen.append(dict(request.headers))

    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


@pytest_twisted.inlineCallbacks
def test_non_ascii_header_value_reaches_the_application(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="names")
    factory.protocol = type("Recorder", (HeaderEcho,), {"seen": []})
    port = yield factory.listen()
    try:
        client = yield connect_relay(Client, relay.connection_string.format(), path="names", headers={"X-Name": "caf\u00e9"})
        # Autobahn reads request heads as ISO-8859-1, so the application
        # gets the UTF-8 bytes a direct client would have sent.
        (headers,) = factory.protocol.seen
        assert headers["x-name"].encode("latin-1").decode("utf-8") == "caf\u00e9"
        client.sendMessage(b"hello")
        assert (yield client.messages.get().addTimeout(10, reactor)) == (b"hello", False)
        client.sendClose(1000)
        yield client.closed
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_unrepresentable_request_is_rejected_with_400_at_once(relay, monkeypatch):
    def refuse(*args, **kwargs):
        raise h11.LocalProtocolError("Illegal header value")

    # Headers validation keeps control characters out of an accept, so stand
    # in for whatever else h11 may refuse.
    monkeypatch.setattr(bridge, "synthetic_upgrade", refuse)
    factory = RelayedServerFactory(relay.connection_string.format(), path="refused")
    factory.protocol = type("Recorder", (HeaderEcho,), {"seen": []})
    port = yield factory.listen()
    try:
        with pytest.raises(Exception) as info:
            yield connect_relay(Client, relay.connection_string.format(), path="refused")
        # 400 from the listener's reject, not the 404 of an accept timeout
        assert "400" in str(info.value) and "cannot be passed" in str(info.value), info.value
        assert factory.protocol.seen == []
    finally:
        yield port.stopListening()


# -- the application's answer to the synthetic Upgrade (HandshakeAnswer) -------------------


def test_a_101_answer_gives_the_sub_protocol_and_the_frames_written_along():
    data = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Protocol:  chat \r\nSec-WebSocket-Accept: x\r\n\r\n\x81\x02hi")
    head = len(data) - 4
    for cut in (1, 20, head - 1, head, len(data)):
        answer = bridge.HandshakeAnswer()
        complete = complete_at_once = answer.feed(data[:cut])
        assert complete is (cut >= head)
        if not complete:
            assert answer.feed(data[cut:])
        # Once the head is read, the bridge takes later bytes as frames itself.
        assert (answer.status, answer.protocol, answer.leftover) == (101, "chat", data[head:cut] if complete_at_once else data[head:])


def test_a_refusal_gives_its_status_and_reason():
    answer = bridge.HandshakeAnswer()
    assert answer.feed(b"HTTP/1.1 403 Go Away\r\nContent-Length: 2\r\n\r\nno")
    assert (answer.status, answer.reason, answer.protocol) == (403, b"Go Away", None)


@pytest.mark.parametrize("garbage", [b"garbage\r\n\r\n", b"HTTP/1.1 1x1 Nope\r\n\r\n", b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n",
                                     b"\x00" * 40, b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n"])
def test_a_garbage_answer_is_refused(garbage):
    with pytest.raises(Exception) as info:
        assert not bridge.HandshakeAnswer().feed(garbage)
        raise AssertionError("not refused")
    assert not isinstance(info.value, AssertionError), garbage


class GarbageAnswer(WebSocketServerProtocol):
    def dataReceived(self, data):
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nBad Header: 1\r\n\r\n")


@pytest_twisted.inlineCallbacks
def test_an_application_answering_garbage_gets_the_sender_a_502(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="garbage")
    factory.protocol = GarbageAnswer
    port = yield factory.listen()
    try:
        with pytest.raises(Exception) as info:
            yield connect_relay(Client, relay.connection_string.format(), path="garbage")
        assert "502" in str(info.value) and "malformed handshake answer" in str(info.value), info.value
    finally:
        yield port.stopListening()
