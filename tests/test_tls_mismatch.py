"""A plain/TLS mix-up between a client and the relay is named as such, with the fix, at once."""
from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import defer, reactor

from txhyco.errors import RelayUnreachable
from txhyco.relay.tls import write_self_signed
from txhyco.testing import start_relay
from txhyco.websocket import RelayedClientFactory, RelayedServerFactory

GUARD = 8  # seconds: a failure guard only (the relay's own head timeout is 10 s)


@pytest.fixture
def tls_relay(tmp_path):
    running = pytest_twisted.blockon(start_relay(tls=write_self_signed(str(tmp_path / "tls"))))
    yield running
    pytest_twisted.blockon(running.stop())


@defer.inlineCallbacks
def failure_of(attempt) -> str:
    """The text of the RelayUnreachable ``attempt`` (a Deferred) fails with."""
    attempt.addTimeout(GUARD, reactor)
    with pytest.raises(RelayUnreachable) as info:
        yield attempt
    return str(info.value)


def sender(cs: str):
    factory = RelayedClientFactory(cs, path="mixup", reactor=reactor)
    factory.protocol = WebSocketClientProtocol
    return factory.connect()


@pytest_twisted.inlineCallbacks
def test_tls_client_to_a_plain_relay(relay):
    cs = relay.connection_string.format().replace(";UseDevelopmentEmulator=true", "")
    where = f"127.0.0.1:{relay.port}"
    for attempt in (sender(cs), RelayedServerFactory(cs, path="mixup", reactor=reactor).listen()):
        text = yield failure_of(attempt)
        assert f"the relay at {where} speaks plain ws://" in text, text
        assert "add UseDevelopmentEmulator=true" in text and "drop tls" in text


@pytest_twisted.inlineCallbacks
def test_plain_client_to_a_tls_relay(tls_relay):
    cs = tls_relay.connection_string.format() + ";UseDevelopmentEmulator=true"
    where = f"127.0.0.1:{tls_relay.port}"
    for attempt in (sender(cs), RelayedServerFactory(cs, path="mixup", reactor=reactor).listen()):
        text = yield failure_of(attempt)
        assert f"the relay at {where} speaks TLS (wss://)" in text, text
        assert "remove UseDevelopmentEmulator=true" in text


@pytest_twisted.inlineCallbacks
def test_no_relay_running_says_to_start_one(relay):
    cs = relay.connection_string.format()
    yield relay.stop()
    text = yield failure_of(sender(cs))
    assert "Connection refused" in text and "start one with 'txhyco relay'" in text and "Endpoint" in text, text
