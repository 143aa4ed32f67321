"""Crossbar behind the ``hyco:`` endpoint: WAMP clients reach the router through the relay.

Runs only in ``make test-crossbar`` (its own venv with Crossbar installed);
``make test`` ignores this directory. The node is the shipped example
(examples/crossbar/.crossbar/config.json), copied into tmp_path and started
as ``crossbar start`` with HYCO_CONNECTION_STRING in its environment, never
in argv. Both WAMP sessions are senders through the in-process local relay.
"""
import os
import shutil
import sys

import psutil
import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions
from twisted.internet import defer, reactor, task

from tests.support.procs import ROOT, Child, spawn
from txhyco.address import HybridConnection
from txhyco._twisted.connector import connect
from txhyco.protocol.addresses import connect_url
from txhyco.wamp import connect_wamp

# "crossbar" alone would find this directory (a namespace package on pytest's
# sys.path); a submodule only the real package has tells them apart.
pytest.importorskip("crossbar.common", reason="Crossbar lives in its own venv: run `make test-crossbar`")

CROSSBAR = os.path.join(os.path.dirname(sys.executable), "crossbar")
EXAMPLE = os.path.join(ROOT, "examples", "crossbar", ".crossbar")
ONLINE = "control channel for"  # txhyco's listener logs "... for ws://.../$hc/crossbar online"


class Node(Child):
    """``crossbar start``; on stop, SIGTERM then SIGKILL for the controller and its workers."""

    @defer.inlineCallbacks
    def stop(self, grace: float = 10.0):
        if self.ended.called:
            return
        try:
            controller = psutil.Process(self.transport.pid)
            workers = controller.children(recursive=True)
        except psutil.Error:
            controller, workers = None, []
        self.transport.signalProcess("TERM")
        timer = reactor.callLater(grace, _kill, [controller, *workers])
        yield self.ended
        if timer.active():
            timer.cancel()
        _kill(workers)  # a worker outliving its controller would keep its listener online


def _kill(processes):
    """SIGKILL each psutil.Process still running (psutil checks the pid was not reused)."""
    for process in processes:
        try:
            if process is not None and process.is_running():
                process.kill()
        except psutil.Error:
            pass


@pytest.fixture
def crossbar_factory(relay, tmp_path):
    """Start nodes from the example config, with its server string optionally replaced."""
    nodes = []

    def start(server_string=None):
        cbdir = tmp_path / f"node{len(nodes)}" / ".crossbar"
        shutil.copytree(EXAMPLE, cbdir)
        if server_string is not None:
            config = (cbdir / "config.json").read_text()
            original = '"hyco:connectionStringEnv=HYCO_CONNECTION_STRING:path=crossbar"'
            assert original in config
            (cbdir / "config.json").write_text(config.replace(original, '"' + server_string + '"'))
        env = dict(os.environ, HYCO_CONNECTION_STRING=relay.connection_string.format(), PYTHONUNBUFFERED="1")
        node = Node()
        reactor.spawnProcess(node, CROSSBAR, [CROSSBAR, "start", "--cbdir", str(cbdir)], env=env, path=str(cbdir.parent))
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        pytest_twisted.blockon(node.stop())


@defer.inlineCallbacks
def join_by_hand(relay, realm="realm1"):
    """What txhyco.wamp.connect_wamp does, spelled out: WAMP over WebSocket to the sender URL."""
    session = ApplicationSession(ComponentConfig(realm))
    joined = defer.Deferred()
    session.on("join", lambda s, details: joined.callback(s))
    hc = HybridConnection.from_args(connection_string=relay.connection_string.format(), path="crossbar")
    token = yield hc.get_token(reactor)
    factory = WampWebSocketClientFactory(
        lambda: session,
        url=connect_url(hc.namespace, hc.path),
        headers={"ServiceBusAuthorization": token},
        serializers=[JsonSerializer()],
    )
    factory.setProtocolOptions(openHandshakeTimeout=30)
    proto = yield connect(reactor, hc.namespace.host, hc.namespace.effective_port, factory, secure=hc.namespace.secure)
    yield joined.addTimeout(30, reactor)
    return session, proto


@pytest_twisted.inlineCallbacks
def test_wamp_rpc_and_pubsub_through_the_relay(relay, crossbar_factory):
    node = crossbar_factory()
    yield node.wait_for(ONLINE, timeout=90)
    assert relay.relay.registry.entities["crossbar"].listeners  # the router's listener is registered

    # The example client, run as a user would.
    client = spawn(["examples/crossbar/client.py"], {"HYCO_CONNECTION_STRING": relay.connection_string.format()})
    assert (yield client.ended) == 0, client.stderr.decode(errors="replace")
    assert [line for line in client.lines if not line.startswith("joined")] == [
        "call: 2 + 3 = 5", "event: Hello through the relay!",
    ]

    # Session A, built by hand from txhyco's parts: token header, sender URL, connector.
    callee, proto = yield join_by_hand(relay)
    assert proto.websocket_protocol_in_use == "wamp.2.json"
    assert callee.session_id
    # Session B through the one-liner, with Autobahn's default serializers (CBOR first).
    caller = yield connect_wamp(
        ApplicationSession(ComponentConfig("realm1")), connection_string=relay.connection_string.format(), path="crossbar",
    ).addTimeout(30, reactor)
    assert caller._transport.websocket_protocol_in_use.startswith("wamp.2.cbor")  # Crossbar picks .batched
    assert caller.session_id != callee.session_id

    # RPC: B calls what A registered.
    yield callee.register(lambda a, b: a + b, "com.example.add2")
    assert (yield caller.call("com.example.add2", 2, 3)) == 5
    big = "x" * 200_000  # more than one relay frame's worth
    yield callee.register(lambda text: text[::-1], "com.example.reverse")
    assert (yield caller.call("com.example.reverse", big + "y")) == "y" + big

    # PubSub: B publishes (acknowledged by the router), A receives.
    received = defer.DeferredQueue()
    yield callee.subscribe(lambda payload, n: received.put((payload, n)), "com.example.topic")
    for n in range(3):
        yield caller.publish("com.example.topic", "hello", n, options=PublishOptions(acknowledge=True))
    events = []
    for _ in range(3):
        events.append((yield received.get().addTimeout(10, reactor)))
    assert events == [("hello", 0), ("hello", 1), ("hello", 2)]

    # And back the other way: A publishes, B subscribed.
    back = defer.Deferred()
    yield caller.subscribe(lambda text: back.callback(text), "com.example.back")
    yield callee.publish("com.example.back", "pong", options=PublishOptions(acknowledge=True))
    assert (yield back.addTimeout(10, reactor)) == "pong"

    key = relay.rule.primary_key
    assert key not in "\n".join(node.lines) and key.encode() not in node.stderr
    for session in (caller, callee):
        session.leave()
    yield task.deferLater(reactor, 0.2, lambda: None)
