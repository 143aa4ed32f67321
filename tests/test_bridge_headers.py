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
