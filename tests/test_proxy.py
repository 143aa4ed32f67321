"""Every leg toward a relay through a real HTTP CONNECT proxy (Debian's tinyproxy).

The relay records where each TCP connection comes from: tinyproxy's come
from tests.support.tinyproxy.PROXY_SOURCE, direct ones from 127.0.0.1, so
"only through the proxy" is checked, not assumed. tinyproxy's log says
which host:port each CONNECT asked for.
"""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from tests.support.tinyproxy import PROXY_SOURCE, TinyProxy, free_port, record_peers
from tests.support.wsclient import Echo, RelayLeg
from txhyco.errors import ProxyError, RelayUnreachable
from txhyco.relay.tls import write_self_signed
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory, connect_relay


@pytest.fixture
def proxy(tmp_path):
    running = TinyProxy(str(tmp_path)).start()
    yield running
    running.stop()


@pytest.fixture
def auth_proxy(tmp_path):
    running = TinyProxy(str(tmp_path), auth=("relayuser", "s3cret-Pw")).start()
    yield running
    running.stop()


@pytest.fixture
def tls_relay(tmp_path):
    cert, key = write_self_signed(str(tmp_path / "tls"))
    running = pytest_twisted.blockon(start_relay(tls=(cert, key)))
    running.ca_file = cert
    yield running
    pytest_twisted.blockon(running.stop())


@pytest.fixture
def no_proxy_environment(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@defer.inlineCallbacks
def echo_round_trip(connection_string: str, path: str, **relay_args):
    factory = RelayedServerFactory(connection_string, path=path, **relay_args)
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        client = yield connect_relay(RelayLeg, connection_string, path=path, **relay_args)
        for payload in (b"through the proxy", b"\x01" * 100_000):
            client.sendMessage(payload, isBinary=True)
            assert (yield client.messages.get()) == (payload, True)
        client.sendClose(1000)
        yield client.closed
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_websocket_echo_goes_only_through_the_proxy(relay, proxy, no_proxy_environment):
    peers = record_peers(relay)
    yield echo_round_trip(relay.connection_string.format(), "echo", proxy=proxy.url)
    # control channel, sender, accept rendezvous: each a CONNECT to the relay, none direct
    assert len(peers) >= 3 and set(peers) == {PROXY_SOURCE}
    assert proxy.connects().count(f"127.0.0.1:{relay.port}") == len(peers)


@pytest_twisted.inlineCallbacks
def test_tls_relay_inside_the_tunnel_with_basic_auth_from_the_environment(tls_relay, auth_proxy, no_proxy_environment):
    # HTTPS_PROXY for wss://, credentials in the URL; TLS verified against the relay's name.
    no_proxy_environment.setenv("HTTPS_PROXY", auth_proxy.url)
    no_proxy_environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # ws:// only: must not be used
    peers = record_peers(tls_relay)
    yield echo_round_trip(tls_relay.connection_string.format(), "secure", ca_file=tls_relay.ca_file)
    assert len(peers) >= 3 and set(peers) == {PROXY_SOURCE}
    assert auth_proxy.connects().count(f"127.0.0.1:{tls_relay.port}") == len(peers)


@pytest_twisted.inlineCallbacks
def test_wrong_relay_certificate_is_refused_inside_the_tunnel(tls_relay, proxy, tmp_path, no_proxy_environment):
    other_cert, _ = write_self_signed(str(tmp_path / "other"))
    with pytest.raises(RelayUnreachable) as info:
        yield connect_relay(RelayLeg, tls_relay.connection_string.format(), path="x", ca_file=other_cert, proxy=proxy.url)
    assert "certificate is not trusted" in str(info.value)
    assert proxy.connects() == [f"127.0.0.1:{tls_relay.port}"]


@pytest_twisted.inlineCallbacks
def test_proxy_credentials_missing_or_wrong_give_407_in_words(relay, auth_proxy, no_proxy_environment):
    cs = relay.connection_string.format()
    with pytest.raises(ProxyError) as info:
        yield connect_relay(RelayLeg, cs, path="x", proxy=f"http://127.0.0.1:{auth_proxy.port}")
    assert info.value.status == 407 and "wants credentials" in str(info.value)
    with pytest.raises(ProxyError) as info:
        yield connect_relay(RelayLeg, cs, path="x", proxy=f"http://relayuser:wrong-Pw@127.0.0.1:{auth_proxy.port}")
    message = str(info.value)
    # (tinyproxy answers a wrong password with 401, a missing one with 407: both are the proxy's refusal)
    assert info.value.status in (401, 407) and "refused the user name and password" in message
    assert f"http://127.0.0.1:{auth_proxy.port}" in message and "wrong-Pw" not in message and "relayuser" not in message


@pytest_twisted.inlineCallbacks
def test_connect_port_refused_and_proxy_unreachable_and_proxy_closing(relay, tmp_path, no_proxy_environment):
    cs = relay.connection_string.format()
    strict = TinyProxy(str(tmp_path), connect_ports=(443,)).start()
    try:
        with pytest.raises(ProxyError) as info:
            yield connect_relay(RelayLeg, cs, path="x", proxy=strict.url)
        assert info.value.status == 403 and "its rules do not allow CONNECT" in str(info.value)
    finally:
        strict.stop()
    with pytest.raises(ProxyError) as info:
        yield connect_relay(RelayLeg, cs, path="x", proxy=strict.url)  # stopped: nothing listens there now
    assert info.value.status is None and f"Cannot reach the proxy {strict.url}" in str(info.value)
    assert isinstance(info.value, RelayUnreachable)

    from twisted.internet.protocol import Factory, Protocol

    class Hangup(Protocol):
        def dataReceived(self, data):
            self.transport.loseConnection()

    port = reactor.listenTCP(0, Factory.forProtocol(Hangup), interface="127.0.0.1")
    try:
        with pytest.raises(ProxyError) as info:
            yield connect_relay(RelayLeg, cs, path="x", proxy=f"http://127.0.0.1:{port.getHost().port}")
        assert "closed the connection before the tunnel" in str(info.value)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_no_proxy_bypasses_the_environment_proxy(relay, no_proxy_environment):
    dead = f"http://127.0.0.1:{free_port()}"
    no_proxy_environment.setenv("http_proxy", dead)
    cs = relay.connection_string.format()
    with pytest.raises(ProxyError):
        yield connect_relay(RelayLeg, cs, path="x")
    no_proxy_environment.setenv("NO_PROXY", "example.com, 127.0.0.0/8")
    peers = record_peers(relay)
    yield echo_round_trip(cs, "direct")
    assert set(peers) == {"127.0.0.1"}
    # an explicit proxy="none" ignores the environment too
    no_proxy_environment.delenv("NO_PROXY")
    yield echo_round_trip(cs, "direct", proxy="none")


@pytest_twisted.inlineCallbacks
def test_listener_backs_off_while_its_proxy_is_down(relay, tmp_path, no_proxy_environment):
    tiny = TinyProxy(str(tmp_path)).start()
    factory = RelayedServerFactory(relay.connection_string.format(), path="patient", proxy=tiny.url)
    factory.protocol = Echo
    port = yield factory.listen()
    states = []
    back_online = defer.Deferred()

    def observe(status, error):
        states.append((str(status), error))
        if status == "online" and not back_online.called:
            back_online.callback(None)

    port.add_status_observer(observe)
    try:
        tiny.stop()
        relay.drop_control_channels("patient", abortive=True)
        # retries fail at the proxy; the listener keeps trying (not offline for good)
        while not any(isinstance(e, ProxyError) for _, e in states):
            yield deferLater(0.1)
        assert port.status == "connecting"
        tiny = TinyProxy(str(tmp_path), port=tiny.port).start()  # the same address as before
        yield back_online.addTimeout(30, reactor)
        client = yield connect_relay(RelayLeg, relay.connection_string.format(), path="patient", proxy=tiny.url)
        client.sendMessage(b"back")
        assert (yield client.messages.get()) == (b"back", False)
        client.sendClose(1000)
        yield client.closed
    finally:
        yield port.stopListening()
        tiny.stop()


def deferLater(seconds):
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_wamp_and_autobahn_style_proxy_settings_go_through_the_tunnel(relay, proxy, no_proxy_environment):
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.twisted.websocket import WebSocketClientFactory
    from autobahn.wamp.types import ComponentConfig

    from tests.test_wamp import FakeRouter
    from txhyco.wamp import connect_client_factory, connect_wamp

    peers = record_peers(relay)
    cs = relay.connection_string.format()
    server = RelayedServerFactory(cs, path="router", proxy=proxy.url)
    server.protocol = FakeRouter
    port = yield server.listen()
    try:
        session = ApplicationSession(ComponentConfig("realm1"))
        yield connect_wamp(session, connection_string=cs, path="router", proxy=proxy.url)
        assert session.session_id == 4242
        session.disconnect()
        # a factory with Autobahn's own proxy= ({"host", "port"}) is tunnelled our way
        factory = WebSocketClientFactory(protocols=["wamp.2.json"], proxy={"host": "127.0.0.1", "port": proxy.port})
        factory.protocol = RelayLeg
        client = yield connect_client_factory(factory, connection_string=cs, path="router", suffix="/echo")
        client.sendMessage(b'["ping"]')
        assert (yield client.messages.get()) == (b'["ping"]', False)
        client.sendClose(1000)
        yield client.closed
    finally:
        yield port.stopListening()
    assert len(peers) >= 5 and set(peers) == {PROXY_SOURCE}


@pytest_twisted.inlineCallbacks
def test_a_proxy_that_cannot_reach_the_relay_or_never_answers(tmp_path, no_proxy_environment):
    from twisted.internet.protocol import Factory, Protocol

    from txhyco._twisted.proxytunnel import ProxyTunnelEndpoint
    from txhyco.protocol.proxy import ProxyURL

    tiny = TinyProxy(str(tmp_path)).start()
    try:
        with pytest.raises(ProxyError) as info:
            yield connect_relay(RelayLeg, path="x", proxy=tiny.url, namespace=f"127.0.0.1:{free_port()}", secure=False,
                                key_name="k", key="a2V5")
        assert info.value.status == 500 and "could not open a tunnel to the relay" in str(info.value)
    finally:
        tiny.stop()
    silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        endpoint = ProxyTunnelEndpoint(reactor, ProxyURL("127.0.0.1", silent.getHost().port), "relay.test", 443, timeout=0.5)
        with pytest.raises(ProxyError) as info:
            yield endpoint.connect(Factory.forProtocol(Protocol))
        assert "did not answer CONNECT relay.test:443" in str(info.value)
    finally:
        yield silent.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_bad_proxy_in_the_environment_fails_listen_with_its_sentence(relay):
    """The first attempt fails before any connection (the proxy setting itself): listen() still gets its failure."""
    from autobahn.twisted.websocket import WebSocketServerFactory

    from txhyco.address import HybridConnection
    from txhyco.endpoint import HybridConnectionServerEndpoint
    from txhyco.errors import RelaySettingError

    hc = HybridConnection.from_args(connection_string=relay.connection_string.format(), path="x", environ={"http_proxy": "http://h:99999"})
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    with pytest.raises(Exception) as info:
        yield HybridConnectionServerEndpoint(reactor, hc).listen(factory)
    assert isinstance(info.value.socketError, RelaySettingError) and "no valid port" in str(info.value)
