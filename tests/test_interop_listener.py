"""txhyco's listener and sender with Microsoft's Node clients, through our relay.

* hyco-ws ``relayedConnect`` and a plain ``ws`` 8 sender reach a
  ``RelayedServerFactory`` echo server;
* txhyco's ``connect_relay`` sender reaches a hyco-ws listener.
"""
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny

from tests.interop import nodeclients as nc
from tests.support.wsclient import Leg
from txhyco.errors import RelayHandshakeError
from txhyco.websocket import RelayedServerFactory, connect_relay


@pytest.fixture(autouse=True)
def _node_clients_required():
    if not nc.node_available():
        pytest.fail(f"Microsoft's Node relay clients are not usable: {nc.unavailable_reason()}. Run `make setup`.", pytrace=False)


class Echo(WebSocketServerProtocol):
    def onConnect(self, request):
        if request.path == "/deny":
            raise ConnectionDeny(403, "No entry")
        if request.protocols:
            return request.protocols[0]

    def onMessage(self, payload, isBinary):
        if payload.startswith(b"close:"):
            _, code, reason = payload.decode().split(":", 2)
            self.sendClose(int(code), reason)
        else:
            self.sendMessage(payload, isBinary)


class Client(Leg):
    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda failure: None)


def base(relay):
    return f"ws://{relay.host}"


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("plain", [False, True], ids=["hyco-ws", "ws8-query-token"])
def test_node_senders_reach_relayed_server_factory(relay, plain):
    factory = RelayedServerFactory(relay.connection_string.format(), path="pyecho")
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        args = {"base": base(relay), "path": "pyecho", "key-name": relay.rule.name,
                "messages": "t:0,b:0,t:1,b:125,t:126,b:127,b:65535,t:65536,b:1048576"}
        if plain:
            args["plain"] = True
        result = yield nc.run_node_to_exit("hyco_ws_sender.js", args, key=relay.rule.primary_key, timeout=30)
        assert result.ok, result.describe()
        final = result.last("result")
        assert final["echoed"] == final["expected"] == 9
        # Closing from our side with a code and reason.
        args.update({"messages": "t:3", "remote-close": "4002:server done"})
        result = yield nc.run_node_to_exit("hyco_ws_sender.js", args, key=relay.rule.primary_key, timeout=30)
        assert result.ok, result.describe()
        close = result.last("result")["close"]
        assert close["reason"] == "server done"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_node_sender_sees_our_reject_and_subprotocol(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="pygate")
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        args = {"base": base(relay), "path": "pygate", "key-name": relay.rule.name, "plain": True, "suffix": "deny"}
        result = yield nc.run_node_to_exit("hyco_ws_sender.js", args, key=relay.rule.primary_key, timeout=30)
        refused = result.last("error")
        assert refused is not None and refused.get("status") == 403, result.describe()
        assert refused.get("reason") == "No entry"
        args = {"base": base(relay), "path": "pygate", "key-name": relay.rule.name, "protocol": ["chat", "v2"], "messages": "t:4"}
        result = yield nc.run_node_to_exit("hyco_ws_sender.js", args, key=relay.rule.primary_key, timeout=30)
        assert result.ok, result.describe()
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_our_sender_reaches_hyco_ws_listener(relay):
    node = nc.spawn_node("hyco_ws_listener.js", {"base": base(relay), "path": "nodeecho", "key-name": relay.rule.name}, key=relay.rule.primary_key)
    try:
        yield node.wait_ready(20)
        client = yield connect_relay(Client, relay.connection_string.format(), path="nodeecho")
        for payload, binary in [(b"hello node", False), (b"\x00\xff" * 40000, True), (b"", True), ("ünïcode".encode(), False)]:
            client.sendMessage(payload, isBinary=binary)
            assert (yield client.messages.get()) == (payload, binary)
        client.sendMessage(b"close:4001:node says bye")
        was_clean, code, reason = yield client.closed
        assert (code, reason) == (4001, "node says bye")
        with pytest.raises(RelayHandshakeError) as info:
            yield connect_relay(Client, relay.connection_string.format(), path="nobody-here")
        assert info.value.status == 404
    finally:
        yield node.stop()


@pytest_twisted.inlineCallbacks
def test_hyco_ws_sender_reaches_a_site_behind_the_endpoint(relay, both_site_paths, tmp_path):
    """relayedConnect to a twisted.web Site's WebSocketResource, through serverFromString("hyco:...")."""
    import os

    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    root = Resource()
    ws_factory = WebSocketServerFactory()
    ws_factory.protocol = Echo
    root.putChild(b"ws", WebSocketResource(ws_factory))
    os.environ["TXHYCO_INTEROP_KEY"] = relay.rule.primary_key
    description = f"hyco:127.0.0.1\\:{relay.port}:site:keyName={relay.rule.name}:keyEnv=TXHYCO_INTEROP_KEY:tls=no"
    port = yield serverFromString(reactor, description).listen(Site(root))
    try:
        args = {"base": base(relay), "path": "site", "suffix": "ws", "key-name": relay.rule.name,
                "messages": "t:0,b:1,t:125,b:126,b:65536,t:70000,b:1048576"}
        result = yield nc.run_node_to_exit("hyco_ws_sender.js", args, key=relay.rule.primary_key, timeout=30)
        assert result.ok, result.describe()
        assert result.last("result")["echoed"] == 7
    finally:
        yield port.stopListening()
