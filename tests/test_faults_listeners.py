"""Faults on a listener's control channel: silent cuts, listeners that die or stop answering, token expiry.

The listener reaches the relay through a fault proxy (tests/support/faultproxy.py)
that can cut (FIN), reset (RST) or stall (a silent cut: nothing passes, nothing
closes) its connections.
"""
from __future__ import annotations

import http.client

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor, threads
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.support.faultproxy import FaultProxy
from tests.support.faults import child_env, wait_for
from tests.support.procs import spawn
from tests.support.rawlistener import make_token
from tests.support.wsclient import HandshakeFailed, ws_connect
from txhyco.address import HybridConnection
from txhyco.listener.control import HybridConnectionListener
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.protocol.sas import dotnet_audience, sign_token
from txhyco.relay.config import Limits, RelayConfig
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory

pytestmark = pytest.mark.timeout(120)  # each test bounded, whatever its own guards

LISTEN = b"sb-hc-action=listen"


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


def relay_with(**limits) -> defer.Deferred:
    base = RelayConfig.with_key()
    return start_relay(RelayConfig(rules=base.rules, limits=Limits(**limits)))


def via(proxy: FaultProxy, relay) -> str:
    """The relay's connection string, pointed at the proxy in front of it."""
    return relay.connection_string.format().replace(f"127.0.0.1:{relay.port}", f"127.0.0.1:{proxy.port}")


def ws_sender(relay, path: str, payload: bytes = b"hello") -> defer.Deferred:
    """Open a sender, send ``payload``, fire with the echo (or fail with HandshakeFailed)."""
    url = connect_url(Namespace.parse(relay.host, secure=False), path)

    @defer.inlineCallbacks
    def run():
        sender = yield ws_connect(url, headers={"ServiceBusAuthorization": make_token(relay, path)})
        sender.sendMessage(payload, isBinary=True)
        echoed, _ = yield sender.messages.get()
        sender.sendClose(1000)
        yield sender.closed
        return echoed
    return run()


def http_sender(relay, path: str, timeout: float = 40, body: bytes | None = None) -> defer.Deferred:
    """GET (or POST ``body``) through the relay in a thread; fires with (status, body)."""
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=timeout)
        conn.request("POST" if body else "GET", f"/{path}/x", body=body,
                     headers={"ServiceBusAuthorization": make_token(relay, path)})
        resp = conn.getresponse()
        answer = resp.read()
        conn.close()
        return resp.status, answer
    return threads.deferToThread(run)


def handshake_status(failure) -> int | None:
    failure.trap(HandshakeFailed)
    return failure.value.status


class Mute:
    """A listener that takes work and never answers (commands land in ``self.commands``)."""

    def __init__(self, relay_cs: str, path: str) -> None:
        self.commands: list = []
        hc = HybridConnection.from_args(connection_string=relay_cs, path=path)
        self.listener = HybridConnectionListener(
            reactor, hc, on_accept=self.commands.append,
            on_request=lambda request, body, listener: self.commands.append(request), keepalive=60)

    def start(self) -> defer.Deferred:
        return self.listener.start()

    def stop(self) -> defer.Deferred:
        return self.listener.stop()


# -- a control channel cut silently ----------------------------------------------


@pytest_twisted.inlineCallbacks
def test_keepalive_detects_a_silent_cut_and_reconnects():
    relay = yield start_relay()
    proxy = yield FaultProxy("127.0.0.1", relay.port).start()
    factory = RelayedServerFactory(via(proxy, relay), path="silent", keepalive=1)
    factory.protocol = Echo
    port = yield factory.listen()
    statuses = []
    port.add_status_observer(lambda status, error: statuses.append((status, error)))
    try:
        (first,) = proxy.listening_on(LISTEN)
        cut_at = reactor.seconds()
        first.stall()  # no FIN, no RST: the relay still holds its end, the listener hears nothing
        # keep-alive: a ping every second, gone after a second without the pong
        yield wait_for(lambda: statuses and statuses[-1][0] == "online", timeout=20, what="back online")
        back = reactor.seconds() - cut_at
        assert [s for s, _ in statuses] == ["connecting", "online"]
        assert "closed" in str(statuses[0][1]) or "ping" in str(statuses[0][1]).lower(), statuses
        channels = proxy.listening_on(LISTEN)
        assert len(channels) == 2 and channels[0] is first  # a new connection; the stalled one still open
        print(f"\nsilent cut noticed and reconnected in {back:.1f} s (keepalive=1 s); attempts {proxy.attempts(LISTEN) - 1}")
        # The network returns with a reset of the stale connection: the relay drops it.
        first.resume()
        first.reset()
        yield wait_for(lambda: len(relay.relay.registry.entities["silent"].listeners) == 1, what="one listener")
        assert (yield ws_sender(relay, "silent", b"after a silent cut")) == b"after a silent cut"
    finally:
        yield port.stopListening()
        yield proxy.stop()
        yield relay.stop()


# -- a listener that dies with senders pending ------------------------------------


@pytest.mark.parametrize("death", ["reset", "cut"])
@pytest_twisted.inlineCallbacks
def test_senders_pending_on_a_dying_listener_fail_at_once_and_another_takes_over(death):
    # Timeouts far beyond the test's guard: a sender answered at all was answered promptly.
    relay = yield relay_with(accept_timeout=600, response_timeout=600)
    proxy = yield FaultProxy("127.0.0.1", relay.port).start()
    mute = Mute(via(proxy, relay), "dying")
    yield mute.start()
    successor = None
    try:
        count = 8
        ws = [ws_sender(relay, "dying").addErrback(handshake_status) for _ in range(count)]
        plain = [http_sender(relay, "dying") for _ in range(count)]
        yield wait_for(lambda: len(mute.commands) == 2 * count, what="every sender offered to the listener")
        # the listener dies: its sockets to the relay reset (or closed), nothing answered,
        # and nothing of it comes back
        proxy.refuse()
        for conn in list(proxy.live):
            getattr(conn, death)()
        ws_results = yield defer.gatherResults(ws).addTimeout(20, reactor)
        http_results = yield defer.gatherResults(plain).addTimeout(20, reactor)
        assert ws_results == [404] * count
        assert [status for status, _ in http_results] == [502] * count
        print(f"\n{death}: {count} WebSocket senders got {set(ws_results)}, {count} HTTP senders got {set(s for s, _ in http_results)}")
        # another listener on the path takes new work
        factory = RelayedServerFactory(relay.connection_string.format(), path="dying")
        factory.protocol = Echo
        successor = yield factory.listen()
        assert (yield ws_sender(relay, "dying", b"next")) == b"next"
        assert len(relay.relay.registry.entities["dying"].listeners) == 1
    finally:
        if successor is not None:
            yield successor.stopListening()
        yield mute.stop()
        yield proxy.stop()
        yield relay.stop()


class Hang(Resource):
    """A web server that takes every request (WebSocket upgrades too) and never answers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.pending: list = []

    def render(self, request):
        self.pending.append(request)
        return NOT_DONE_YET


@pytest_twisted.inlineCallbacks
def test_senders_pending_on_a_sigkilled_listen_process_fail_at_once():
    relay = yield relay_with(accept_timeout=600, response_timeout=600)
    hang = Hang()
    web = reactor.listenTCP(0, Site(hang), interface="127.0.0.1")
    child = spawn(["-m", "txhyco.cli", "listen", "killed", "--http", f"http://127.0.0.1:{web.getHost().port}", "--log"],
                  env=child_env(HYCO_CONNECTION_STRING=relay.connection_string.format()))
    successor = None
    try:
        yield child.wait_for("listening on", timeout=30)
        count = 3
        ws = [ws_sender(relay, "killed").addErrback(handshake_status) for _ in range(count)]
        small = [http_sender(relay, "killed") for _ in range(count)]
        # bodies over 64 KiB travel on a rendezvous of their own
        large = [http_sender(relay, "killed", body=b"x" * 200_000) for _ in range(count)]
        yield wait_for(lambda: len(hang.pending) >= 2 * count, timeout=30, what="the senders at the web server")
        child.transport.signalProcess("KILL")
        ws_results = yield defer.gatherResults(ws).addTimeout(20, reactor)
        small_results = yield defer.gatherResults(small).addTimeout(20, reactor)
        large_results = yield defer.gatherResults(large).addTimeout(20, reactor)
        assert ws_results == [404] * count
        assert [status for status, _ in small_results + large_results] == [502] * (2 * count)
        print(f"\nlisten process killed: WebSocket senders {set(ws_results)}, HTTP senders "
              f"{set(body.decode().strip() for _, body in small_results + large_results)}")
        factory = RelayedServerFactory(relay.connection_string.format(), path="killed")
        factory.protocol = Echo
        successor = yield factory.listen()
        assert (yield ws_sender(relay, "killed", b"next")) == b"next"
    finally:
        if successor is not None:
            yield successor.stopListening()
        yield child.stop()
        yield web.stopListening()
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_senders_of_a_listener_that_stops_answering_get_404_and_504():
    relay = yield relay_with(accept_timeout=1, response_timeout=1)
    mute = Mute(relay.connection_string.format(), "mute")
    yield mute.start()
    try:
        count = 4
        ws = [ws_sender(relay, "mute").addErrback(handshake_status) for _ in range(count)]
        plain = [http_sender(relay, "mute") for _ in range(count)]
        ws_results = yield defer.gatherResults(ws).addTimeout(20, reactor)
        http_results = yield defer.gatherResults(plain).addTimeout(20, reactor)
        assert ws_results == [404] * count
        assert [status for status, _ in http_results] == [504] * count
    finally:
        yield mute.stop()
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_a_silent_listener_gets_no_new_work():
    # The relay pings control channels: a stalled one is dropped within
    # listenerPingInterval + listenerPingTimeout (here 0.5 + 1.5 s).
    relay = yield relay_with(accept_timeout=1, response_timeout=1, listener_ping_interval=0.5, listener_ping_timeout=1.5)
    proxy = yield FaultProxy("127.0.0.1", relay.port).start()
    mute = Mute(via(proxy, relay), "hushed")
    yield mute.start()
    factory = RelayedServerFactory(relay.connection_string.format(), path="hushed")
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        for conn in proxy.live:
            conn.stall()
        yield wait_for(lambda: len(relay.relay.registry.entities["hushed"].listeners) == 1, timeout=15,
                       what="the relay dropping the silent listener")
        results = yield defer.gatherResults([ws_sender(relay, "hushed", b"%d" % i) for i in range(6)]).addTimeout(20, reactor)
        assert results == [b"%d" % i for i in range(6)]
    finally:
        yield port.stopListening()
        yield proxy.stop()  # first: a stalled channel would hold up the listener's clean close
        yield mute.stop()
        yield relay.stop()


# -- token expiry -----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_relay_closes_a_channel_whose_token_expired_with_1008_after_its_grace():
    relay = yield relay_with(token_grace=1)
    path = "expiring"
    # A fixed token that expires in 2 s: the listener can only renew it with itself.
    expiry = int(relay.relay.now()) + 2
    token = sign_token(dotnet_audience(f"http://{relay.host}/{path}"), relay.rule.name, relay.rule.primary_key, expiry)
    hc = HybridConnection.from_args(namespace=relay.host, path=path, token=token, secure=False)
    listener = HybridConnectionListener(reactor, hc, on_accept=lambda accept: None, keepalive=60)
    statuses = []
    listener.add_status_observer(lambda status, error: statuses.append((status, str(error or ""))))
    try:
        yield listener.start()
        yield wait_for(lambda: any(s == "connecting" and e for s, e in statuses), timeout=15, what="the channel closed")
        closed_at = relay.relay.now()
        status, error = next((s, e) for s, e in statuses if s == "connecting" and e)
        assert "1008" in error and "expired" in error, error
        assert closed_at >= expiry + 1  # not before the grace ran out
        # and the expired token does not get it back in
        assert not relay.relay.registry.entities.get(path) or not relay.relay.registry.entities[path].listeners
    finally:
        yield listener.stop()
        yield relay.stop()
