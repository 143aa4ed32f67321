"""A request rendezvous lost while the sender's body streams to it (found by ``make soak``).

A listener that stops (or dies) while a large request body is on its way
over a request rendezvous: the sender must get the relay's 502, and its
connection must go on (the rest of the body read and dropped), not be reset.
The soak saw it as ``ResponseNeverReceived``: the relay paced the sender by
registering the sender's TCP transport as the rendezvous transport's
producer, and Twisted stops a producer when its consumer's connection is
lost, which closed the sender's connection with its body unread (a reset).
"""
import http.client

import pytest_twisted
from twisted.internet import defer, threads

from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import wait_until
from tests.support.wsclient import Leg, ws_connect

BODY = bytes(range(256)) * (32 * 1024)  # 8 MiB: still on its way when the rendezvous goes


class DropsTheRendezvousMidBody(RawListener):
    """Opens the request rendezvous, lets some of the body arrive, then drops the socket."""

    @defer.inlineCallbacks
    def _rendezvous_request(self, stub):
        leg = yield ws_connect(stub["address"], cls=Leg, maxMessagePayloadSize=0)
        metrics = self.relay.relay.metrics
        yield wait_until(lambda: metrics.bytes_to_listener[0] >= 256 * 1024, timeout=30)
        leg.transport.abortConnection()


@pytest_twisted.inlineCallbacks
def test_rendezvous_lost_mid_body_answers_502_and_the_connection_goes_on(relay):
    yield DropsTheRendezvousMidBody(relay, "gone").start()
    headers = {"ServiceBusAuthorization": make_token(relay, "gone")}

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        try:
            conn.request("POST", "/gone/upload", body=BODY, headers=headers)
            first = conn.getresponse()
            first_status = first.status
            first.read()
            conn.request("GET", "/gone/after", headers=headers)  # small: inline, answered by the listener
            second = conn.getresponse()
            return first_status, second.status, second.read()
        finally:
            conn.close()

    first, second, body = yield threads.deferToThread(run)
    assert first == 502
    assert (second, body) == (200, b"hello ")
