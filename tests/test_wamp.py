"""txhyco.wamp: any Autobahn client factory, and a WAMP session, through the local relay.

The router here is a few lines of fake (HELLO → WELCOME or ABORT); the real
one, Crossbar behind ``hyco:``, is in tests/crossbar (``make test-crossbar``).
"""
import json

import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerProtocol
from autobahn.wamp.types import ComponentConfig

from tests.support.wsclient import Leg
from txhyco.errors import RelayError, RelayHandshakeError
from txhyco.wamp import SENDER_HANDSHAKE_TIMEOUT, connect_client_factory, connect_wamp
from txhyco.websocket import RelayedServerFactory


class FakeRouter(WebSocketServerProtocol):
    """Speaks just enough WAMP (JSON) to welcome a session, or to abort it for realm "nope"."""

    seen = []

    def onConnect(self, request):
        FakeRouter.seen.append(request)
        self.path = request.path
        if "wamp.2.json" in request.protocols:
            return "wamp.2.json"
        return None

    def onMessage(self, payload, isBinary):
        msg = json.loads(payload)
        if self.path == "/echo":
            self.sendMessage(payload, isBinary)
        elif msg[0] == 1 and msg[1] == "nope":  # HELLO for a realm we refuse
            self.sendMessage(json.dumps([3, {"message": "no such realm"}, "wamp.error.no_such_realm"]).encode())
        elif msg[0] == 1:  # HELLO
            self.sendMessage(json.dumps([2, 4242, {"authrole": "anonymous", "roles": {"broker": {}, "dealer": {}}}]).encode())


@pytest_twisted.inlineCallbacks
def test_any_client_factory_keeps_its_settings(relay):
    server = RelayedServerFactory(relay.connection_string.format(), path="router")
    server.protocol = FakeRouter
    port = yield server.listen()
    factory = WebSocketClientFactory(headers={"X-Custom": "v"}, protocols=["wamp.2.json"])
    factory.protocol = Leg
    client = yield connect_client_factory(factory, connection_string=relay.connection_string.format(), path="router", suffix="/echo")
    assert client.websocket_protocol_in_use == "wamp.2.json"
    assert factory.openHandshakeTimeout == SENDER_HANDSHAKE_TIMEOUT
    client.sendMessage(b'["ping"]')
    assert (yield client.messages.get()) == (b'["ping"]', False)
    request = FakeRouter.seen[-1]
    assert request.headers["x-custom"] == "v"
    assert "servicebusauthorization" not in request.headers  # the relay keeps the token to itself
    client.sendClose()
    yield client.closed
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_wamp_session_joins_through_the_relay(relay):
    server = RelayedServerFactory(relay.connection_string.format(), path="router")
    server.protocol = FakeRouter
    port = yield server.listen()
    session = ApplicationSession(ComponentConfig("realm1"))
    joined = yield connect_wamp(session, connection_string=relay.connection_string.format(), path="router")
    assert joined is session
    assert session.session_id == 4242
    assert session.is_attached()
    with pytest.raises(RelayError, match="left before joining"):
        yield connect_wamp(ApplicationSession(ComponentConfig("nope")), connection_string=relay.connection_string.format(), path="router")
    session.disconnect()
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_wamp_without_a_listener_fails_with_the_relays_status(relay):
    with pytest.raises(RelayHandshakeError) as info:
        yield connect_wamp(ApplicationSession(ComponentConfig("realm1")), connection_string=relay.connection_string.format(), path="nobody")
    assert info.value.status == 404
