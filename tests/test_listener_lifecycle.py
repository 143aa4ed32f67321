"""The listener's control channel: first failure, reconnects, 404, renewal, keep-alive, TLS."""
import socket

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer, reactor, task

from tests.support.wsclient import Echo, RelayLeg, ws_connect
from txhyco.errors import RelayError, RelayHandshakeError, RelayUnreachable
from txhyco.protocol.sas import dotnet_audience, sign_token
from txhyco.protocol.tokens import CallableTokenProvider
from txhyco.relay.config import HybridConnectionConfig, RelayConfig
from txhyco.relay.tls import write_self_signed
from txhyco.relay.websocket import RelayWebSocketProtocol
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory, connect_relay


def wait_for(predicate, timeout=10.0, step=0.02):
    """Poll a condition on the reactor (bounded), for state that has no event to wait on."""
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if predicate():
            loop.stop()
            d.callback(True)
        elif reactor.seconds() > deadline:
            loop.stop()
            d.errback(AssertionError("condition not reached in time"))

    loop = task.LoopingCall(check)
    loop.start(step)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest_twisted.inlineCallbacks
def test_unreachable_relay_fails_listen_clearly():
    cs = f"Endpoint=sb://127.0.0.1:{free_port()}/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=x;UseDevelopmentEmulator=true"
    factory = RelayedServerFactory(cs)
    with pytest.raises(RelayUnreachable) as info:
        yield factory.listen()
    assert "Cannot reach the relay" in str(info.value)


@pytest_twisted.inlineCallbacks
def test_unknown_hybrid_connection_fails_listen_with_404():
    base = RelayConfig.with_key()
    relay = yield start_relay(RelayConfig(rules=base.rules, hybrid_connections={"known": HybridConnectionConfig("known")}, restrict=True))
    try:
        with pytest.raises(RelayHandshakeError) as info:
            yield RelayedServerFactory(relay.connection_string.format(), path="unknown").listen()
        assert info.value.status == 404
        assert "Endpoint does not exist" in info.value.reason
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_listen_can_be_cancelled(relay):
    d = RelayedServerFactory(relay.connection_string.format(), path="c").listen()
    d.cancel()
    with pytest.raises(defer.CancelledError):
        yield d


@pytest_twisted.inlineCallbacks
def test_local_and_relayed_servers_side_by_side(relay):
    local = WebSocketServerFactory()
    local.protocol = Echo
    port_local = reactor.listenTCP(0, local, interface="127.0.0.1")
    relayed = RelayedServerFactory(relay.connection_string.format(), path="both")
    relayed.protocol = Echo
    port_relayed = yield relayed.listen()
    direct = yield ws_connect(f"ws://127.0.0.1:{port_local.getHost().port}/")
    through = yield connect_relay(RelayLeg, relay.connection_string.format(), path="both")
    for leg in (direct, through):
        leg.sendMessage(b"ping")
        assert (yield leg.messages.get()) == (b"ping", False)
    yield port_relayed.stopListening()
    yield port_local.stopListening()


@pytest_twisted.inlineCallbacks
def test_reconnects_and_existing_connections_survive(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="flaky")
    factory.protocol = Echo
    port = yield factory.listen()
    statuses = []
    port.add_status_observer(lambda status, error: statuses.append(status))
    client = yield connect_relay(RelayLeg, relay.connection_string.format(), path="flaky")
    # The relay drops the control channel (a service error, 1011).
    entity = relay.relay.registry.entities["flaky"]
    (channel,) = entity.listeners.values()
    channel.proto.close_with(1011, "NameRenewalFailed")
    yield wait_for(lambda: statuses[-2:] == ["connecting", "online"])
    client.sendMessage(b"still alive")
    assert (yield client.messages.get()) == (b"still alive", False)
    client2 = yield connect_relay(RelayLeg, relay.connection_string.format(), path="flaky")
    client2.sendMessage(b"new one")
    assert (yield client2.messages.get()) == (b"new one", False)
    yield port.stopListening()
    assert port.status == "offline"
    assert statuses[-2:] == ["online", "offline"]  # observers hear of each change once


@pytest_twisted.inlineCallbacks
def test_stops_for_good_on_404_after_relay_restart():
    port_number = free_port()
    listen = f"tcp:{port_number}:interface=127.0.0.1"
    from txhyco.relay.service import RelayService

    base = RelayConfig.with_key()
    first = RelayService(RelayConfig(rules=base.rules), listen)
    first.startService()
    yield first.ready
    cs = first.connection_string().format()
    factory = RelayedServerFactory(cs, path="doomed", keepalive=60)
    factory.protocol = Echo
    port = yield factory.listen()
    statuses = []
    port.add_status_observer(lambda status, error: statuses.append((status, error)))
    yield first.stopService()
    # The hybrid connection no longer exists on the relay that comes back.
    second = RelayService(RelayConfig(rules=base.rules, hybrid_connections={"other": HybridConnectionConfig("other")}, restrict=True), listen)
    second.startService()
    yield second.ready
    try:
        yield wait_for(lambda: statuses and statuses[-1][0] == "offline", timeout=15)
        assert isinstance(port.last_error, RelayHandshakeError) and port.last_error.status == 404
    finally:
        yield second.stopService()


@pytest_twisted.inlineCallbacks
def test_token_renewed_before_expiry(relay):
    # 4 s tokens: each is renewed once, halfway through its life, and the
    # listener stays registered across several lifetimes. (Renewal used to
    # aim at 60 s before expiry, floored at 1 s: a token this short was
    # renewed every second.)
    lifetime = 4
    issued = []

    def short_tokens(audience):
        issued.append(reactor.seconds())
        return sign_token(dotnet_audience(audience), relay.rule.name, relay.rule.primary_key, int(reactor.seconds()) + lifetime)

    factory = RelayedServerFactory(relay.connection_string.format(), path="renew", token_provider=short_tokens)
    factory.protocol = Echo
    port = yield factory.listen()
    (channel,) = relay.relay.registry.entities["renew"].listeners.values()
    yield wait_for(lambda: len(issued) >= 4, timeout=30)
    gaps = [later - earlier for earlier, later in zip(issued, issued[1:])]
    # (int() above may cut up to a second off a lifetime)
    assert all(gap >= (lifetime - 1) / 2 for gap in gaps), gaps
    assert port.status == "online"
    assert list(relay.relay.registry.entities["renew"].listeners.values()) == [channel]  # never reconnected
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_async_token_provider(relay):
    @defer.inlineCallbacks
    def later(audience):
        yield task.deferLater(reactor, 0.01, lambda: None)
        return sign_token(dotnet_audience(audience), relay.rule.name, relay.rule.primary_key, int(reactor.seconds()) + 3600)

    async def coroutine(audience):
        return await later(audience)

    for provider in (later, coroutine, CallableTokenProvider(coroutine)):
        factory = RelayedServerFactory(relay.connection_string.format(), path="async", token_provider=provider)
        port = yield factory.listen()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_keepalive_pings_the_relay(relay, monkeypatch):
    pings = []
    monkeypatch.setattr(RelayWebSocketProtocol, "onPing", lambda self, payload: pings.append(payload), raising=False)
    factory = RelayedServerFactory(relay.connection_string.format(), path="ka", keepalive=0.1)
    port = yield factory.listen()
    yield wait_for(lambda: len(pings) >= 2)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_tls_relay_with_ca_file(tmp_path):
    cert, key = write_self_signed(str(tmp_path))
    relay = yield start_relay(tls=(cert, key))
    try:
        cs = relay.connection_string.format()
        assert "UseDevelopmentEmulator" not in cs
        factory = RelayedServerFactory(cs, path="secure", ca_file=cert)
        factory.protocol = Echo
        port = yield factory.listen()
        client = yield connect_relay(RelayLeg, cs, path="secure", ca_file=cert)
        client.sendMessage(b"over tls")
        assert (yield client.messages.get()) == (b"over tls", False)
        with pytest.raises(RelayError) as info:
            yield connect_relay(RelayLeg, cs, path="secure")  # the self-signed cert is not trusted
        # The error names the certificate and the fix, not just a closed connection.
        assert "certificate verify failed" in str(info.value) and "ca_file=" in str(info.value)
        with pytest.raises(Exception) as info:
            yield RelayedServerFactory(cs, path="secure").listen()
        assert "certificate verify failed" in str(info.value) and "ca_file=" in str(info.value)
        yield port.stopListening()
    finally:
        yield relay.stop()


def test_404_advice_fits_who_got_it():
    listener_side = str(RelayHandshakeError(404, "Endpoint does not exist."))
    sender_side = str(RelayHandshakeError(404, "There are no listeners connected for the endpoint."))
    assert listener_side.endswith("; check the namespace and hybrid connection name.")
    assert "start a listener on this path" in sender_side
