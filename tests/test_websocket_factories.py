"""RelayedServerFactory and RelayedClientFactory through the local relay."""
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny


from tests.support.wsclient import Leg
from txhyco.errors import RelayHandshakeError
from txhyco.websocket import RelayedServerFactory, connect_relay


class Echo(WebSocketServerProtocol):
    seen = []

    def onConnect(self, request):
        Echo.seen.append(request)
        if request.path == "/deny":
            raise ConnectionDeny(403, "Not you")
        if "chat" in request.protocols:
            return "chat"

    def onMessage(self, payload, isBinary):
        if payload == b"close-me":
            self.sendClose(4000, "bye")
        else:
            self.sendMessage(payload, isBinary)


class Client(Leg):
    """A Leg whose handshake outcome is read from connect_relay, not from ``opened``."""

    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda failure: None)


@pytest_twisted.inlineCallbacks
def test_echo_server_behind_relay(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="echo")
    factory.protocol = Echo
    port = yield factory.listen()
    assert str(port.getHost()).endswith("/$hc/echo")
    client = yield connect_relay(Client, relay.connection_string.format(), path="echo", suffix="/room", query="x=1", headers={"X-Custom": "v"})
    for payload, binary in [(b"hi", False), (b"\x00" * 70000, True), (b"", False)]:
        client.sendMessage(payload, isBinary=binary)
        assert (yield client.messages.get()) == (payload, binary)
    request = Echo.seen[-1]
    assert request.path == "/room"
    assert request.params == {"x": ["1"]}
    assert request.headers["x-custom"] == "v"
    assert request.headers["x-forwarded-prefix"] == "/echo"
    assert request.peer.startswith("tcp4:127.0.0.1:")
    client.sendMessage(b"close-me")
    assert (yield client.closed)[1:] == (4000, "bye")
    # query= also takes a mapping (or pairs), encoded for the URL
    client = yield connect_relay(Client, relay.connection_string.format(), path="echo", query={"q": "a b&c", "n": ["1", "2"]})
    assert Echo.seen[-1].params == {"q": ["a b&c"], "n": ["1", "2"]}
    client.sendClose(1000)
    yield client.closed
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_deny_becomes_reject_and_subprotocol_negotiates(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="gate")
    factory.protocol = Echo
    port = yield factory.listen()
    with pytest.raises(RelayHandshakeError) as info:
        yield connect_relay(Client, relay.connection_string.format(), path="gate", suffix="/deny")
    assert (info.value.status, info.value.reason) == (403, "Not you")
    client = yield connect_relay(Client, relay.connection_string.format(), path="gate", protocols=["chat", "other"])
    assert client.websocket_protocol_in_use == "chat"
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_sender_errors_are_clear(relay):
    with pytest.raises(RelayHandshakeError) as info:
        yield connect_relay(Client, relay.connection_string.format(), path="nobody")
    assert info.value.status == 404
    assert "start a listener on this path" in str(info.value)
    cs = relay.connection_string.format().replace(relay.rule.primary_key, "d3JvbmcK")
    with pytest.raises(RelayHandshakeError) as info:
        yield RelayedServerFactory(cs, path="x").listen()
    assert info.value.status == 401


@pytest_twisted.inlineCallbacks
def test_http_requests_to_a_websocket_listener_get_501(relay):
    import http.client

    from twisted.internet import threads

    from tests.support.rawlistener import make_token

    factory = RelayedServerFactory(relay.connection_string.format(), path="wsonly")
    factory.protocol = Echo
    port = yield factory.listen()

    def run(body):
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("POST", "/wsonly/x", body=body, headers={"ServiceBusAuthorization": make_token(relay, "wsonly")})
        resp = conn.getresponse()
        return resp.status, resp.read()

    for body in (b"small", b"b" * 100_000):  # inline, and address-only over a rendezvous
        status, text = yield threads.deferToThread(run, body)
        assert status == 501 and b"WebSocket connections only" in text
    yield port.stopListening()
