"""An HTTP application that fails before it answers: the sender gets 500 at once, not the relay's timeout."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from tests.test_listener_stop import _get_in_thread, _hc
from txhyco.endpoint import HybridConnectionServerEndpoint


class FailsOnItsRequest(Protocol):
    def dataReceived(self, data):
        raise RuntimeError("the application broke on its request")


@pytest_twisted.inlineCallbacks
def test_an_application_that_raises_before_answering_gets_the_sender_a_500(relay):
    endpoint = HybridConnectionServerEndpoint(reactor, _hc(relay, "raises"), mode="http")
    port = yield endpoint.listen(Factory.forProtocol(FailsOnItsRequest))
    try:
        status, body = yield _get_in_thread(relay, "raises")
        assert (status, body) == (500, b"The listener application failed before it answered.\n")
        assert not port.listener.requests  # over, not left to a drain
    finally:
        yield port.stopListening()
