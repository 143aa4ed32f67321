"""A listener's connection attempts time out within its keep-alive (issue 14, "Liveness").

A relay address that accepts TCP but never answers the upgrade (a path that
is half back, or a relay that hangs) used to hold each attempt for 30 s.
"""
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from tests.test_listener_lifecycle import Echo, free_port, wait_for
from txhyco.listener.control import attempt_timeout
from txhyco.relay.config import RelayConfig
from txhyco.relay.service import RelayService
from txhyco.websocket import RelayedServerFactory


class Silent(Protocol):
    """Accepts the connection, reads the upgrade and never answers."""

    def connectionMade(self) -> None:
        self.factory.attempts.append(self)


def test_the_attempt_timeout_follows_the_keepalive():
    assert attempt_timeout(1) == 3 and attempt_timeout(10) == 10 and attempt_timeout(180) == 30
    assert attempt_timeout(0) == 30  # no keep-alive: Autobahn's usual 30 s


@pytest_twisted.inlineCallbacks
def test_a_listener_retries_a_silent_relay_quickly_and_is_back_when_the_relay_is():
    listen = f"tcp:{free_port()}:interface=127.0.0.1"
    config = RelayConfig.with_key()
    relay = RelayService(config, listen)
    relay.startService()
    yield relay.ready
    factory = RelayedServerFactory(relay.connection_string().format(), path="back", keepalive=2)
    factory.protocol = Echo
    port = yield factory.listen()
    silent = Factory.forProtocol(Silent)
    silent.attempts = []
    try:
        yield relay.stopService()
        from twisted.internet.endpoints import serverFromString

        blackhole = yield serverFromString(reactor, listen).listen(silent)
        # The first attempt into the silence timed out (3 s, not 30) and the
        # listener tried again.
        yield wait_for(lambda: len(silent.attempts) >= 2, timeout=15)
        assert port.status == "connecting"
        yield blackhole.stopListening()
        for attempt in silent.attempts:
            attempt.transport.abortConnection()
        relay = RelayService(config, listen)
        relay.startService()
        yield relay.ready
        yield wait_for(lambda: port.status == "online", timeout=15)
        assert len(relay.relay.registry.entities["back"].listeners) == 1
    finally:
        yield port.stopListening()
        yield relay.stopService()
