"""Who caused an error decides its type: the caller (local), a peer (remote), or the relay's refusal.

Each type still carries its status and a sentence; the old names and the old
``except`` clauses keep working.
"""
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

import txhyco
from txhyco._twisted.clienttls import client_tls_options
from txhyco._twisted.handshake import open_raw_websocket, split_ws_url
from txhyco.errors import (
    RelayError,
    RelayHandshakeError,
    RelayProtocolError,
    RelayRefused,
    RelaySettingError,
    RelayUnreachable,
)
from txhyco.protocol import ConnectionString, Namespace, Response, parse_command, serialize_command, verify_token
from txhyco.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from txhyco.protocol.channel import ROLE_LISTENER, ROLE_RELAY, ChannelReader
from txhyco.protocol.sas import Rights
from txhyco.relay.config import HybridConnectionConfig, RelayConfig
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory, connect_relay


def test_the_hierarchy_keeps_the_old_names_catching():
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(ProtocolError, ValueError)
    assert RelayHandshakeError is RelayRefused
    for cls in (RelayRefused, RelayUnreachable, RelayProtocolError, RelaySettingError):
        assert issubclass(cls, RelayError)
    assert issubclass(RelayProtocolError, RemoteProtocolError)
    assert issubclass(RelaySettingError, LocalProtocolError)
    assert not issubclass(RelayRefused, ProtocolError)  # a refusal is an answer, not a broken rule
    for name in ("LocalProtocolError", "RemoteProtocolError", "RelayRefused", "RelayHandshakeError",
                 "RelayProtocolError", "RelaySettingError", "RelayUnreachable", "RelayError", "ProtocolError"):
        assert getattr(txhyco, name) is not None and name in txhyco.__all__


# -- the caller's mistakes ----------------------------------------------------

def test_a_garbage_connection_string_is_the_callers_error():
    with pytest.raises(LocalProtocolError) as info:
        ConnectionString.parse("garbage")
    assert info.value.status == 400
    assert "connection string" in info.value.message.lower()


def test_a_bad_namespace_or_argument_is_the_callers_error():
    with pytest.raises(LocalProtocolError, match="port"):
        Namespace.parse("host:99999")
    with pytest.raises(LocalProtocolError, match="statusCode"):
        Response("id", 12, "Odd")


def test_a_message_that_cannot_be_sent_is_the_callers_error():
    with pytest.raises(LocalProtocolError, match="not a command"):
        serialize_command("a string")


def test_an_unreadable_ca_file_is_the_callers_error(tmp_path):
    with pytest.raises(RelaySettingError, match="Cannot read the CA file") as info:
        client_tls_options("relay.example", ca_file=str(tmp_path / "missing.pem"))
    assert isinstance(info.value, LocalProtocolError) and isinstance(info.value, RelayError)


# -- a peer's mistakes ---------------------------------------------------------

def test_a_garbage_control_message_is_the_peers_error():
    reader = ChannelReader(ROLE_LISTENER)
    with pytest.raises(RemoteProtocolError, match="not valid JSON") as info:
        reader.text(b"garbage")
    assert info.value.status == 400
    with pytest.raises(RemoteProtocolError, match="already broke the framing rules"):
        reader.text(b'{"accept": {}}')


def test_a_received_command_that_the_constructors_refuse_is_the_peers_error():
    # The same check a caller meets as LocalProtocolError (above) is the peer's fault here.
    with pytest.raises(RemoteProtocolError, match="statusCode"):
        parse_command(b'{"response": {"requestId": "1", "statusCode": 12}}')


def test_a_forged_token_is_the_peers_error():
    rules = RelayConfig.with_key().rules
    with pytest.raises(RemoteProtocolError) as info:
        verify_token("SharedAccessSignature sr=x&sig=y&se=1&skn=nobody", rules=rules, hosts=None,
                     entity_path="hc", required=Rights.LISTEN, now=0)
    assert info.value.status == 401


def test_a_relay_target_a_peer_sent_is_the_peers_error():
    from txhyco.protocol import parse_relay_target

    with pytest.raises(RemoteProtocolError, match="fragment"):
        parse_relay_target("/$hc/x#frag")


def test_an_address_that_is_not_a_websocket_url_is_the_relays_error():
    with pytest.raises(RelayProtocolError, match="Not a WebSocket URL") as info:
        split_ws_url("http://relay/x")
    assert info.value.status == 502


class WrongAccept(Protocol):
    """A 'relay' whose 101 answer has the wrong Sec-WebSocket-Accept."""

    def dataReceived(self, data):
        if b"\r\n\r\n" in data:
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n")


@pytest_twisted.inlineCallbacks
def test_a_broken_handshake_answer_is_the_relays_error():
    port = reactor.listenTCP(0, Factory.forProtocol(WrongAccept), interface="127.0.0.1")
    try:
        with pytest.raises(RelayProtocolError, match="wrong Sec-WebSocket-Accept"):
            yield open_raw_websocket(reactor, f"ws://127.0.0.1:{port.getHost().port}/$hc/x?sb-hc-action=accept")
    finally:
        yield port.stopListening()


# -- the relay's refusals -------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_a_404_from_the_relay_is_a_refusal_with_its_status():
    base = RelayConfig.with_key()
    relay = yield start_relay(RelayConfig(rules=base.rules, hybrid_connections={"known": HybridConnectionConfig("known")},
                                          restrict=True))
    try:
        with pytest.raises(RelayRefused) as info:
            yield RelayedServerFactory(relay.connection_string.format(), path="unknown").listen()
        error = info.value
        assert error.status == 404 and error.reason.startswith("Endpoint does not exist.")
        assert str(error).startswith("The relay answered 404 Endpoint does not exist.")
        assert "check the namespace and hybrid connection name" in str(error)
        assert not isinstance(error, ProtocolError)
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_no_listener_is_a_refusal_the_sender_sees(relay):
    with pytest.raises(RelayHandshakeError) as info:  # the old name catches it too
        yield connect_relay(WebSocketClientProtocol, relay.connection_string.format(), path="nobody")
    assert isinstance(info.value, RelayRefused) and info.value.status == 404
    assert "start a listener on this path" in str(info.value)


@pytest_twisted.inlineCallbacks
def test_a_relay_that_is_not_there_is_unreachable():
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    yield port.stopListening()
    cs = f"Endpoint=sb://127.0.0.1:{number}/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=x;UseDevelopmentEmulator=true"
    with pytest.raises(RelayUnreachable, match="Cannot reach the relay"):
        yield RelayedServerFactory(cs).listen()


def test_the_relay_reader_also_calls_a_listeners_garbage_the_peers():
    with pytest.raises(RemoteProtocolError):
        ChannelReader(ROLE_RELAY).text(b"{}")
