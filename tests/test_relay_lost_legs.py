"""A relayed connection whose other leg vanishes ends with a Close that says why (issue 14).

When the listener's rendezvous socket (or the sender's) is lost without a
closing handshake, the relay closes the surviving leg with 1011 and a reason,
not a bare TCP drop (which the peer reports as 1006).
"""
import pytest_twisted

from tests.support.rawlistener import RawListener
from tests.support.rawtcp import wait_until
from tests.support.wsclient import Leg, ws_connect
from tests.test_relay_websocket import auth, sender_url


@pytest_twisted.inlineCallbacks
def test_the_sender_hears_1011_when_the_listeners_leg_is_lost(relay):
    listener = yield RawListener(relay, "lost", accept_class=Leg).start()
    sender = yield ws_connect(sender_url(relay, "lost"), headers=auth(relay, "lost"))
    yield wait_until(lambda: listener.legs)
    leg = listener.legs[0]
    leg.sendMessage(b"before the loss")
    assert (yield sender.messages.get()) == (b"before the loss", False)
    leg.transport.abortConnection()
    assert (yield sender.closed) == (True, 1011, "The listener's connection was lost.")
    yield wait_until(lambda: relay.relay.metrics.connections._value.get() == 0)


@pytest_twisted.inlineCallbacks
def test_the_listener_hears_1011_when_the_sender_is_lost(relay):
    listener = yield RawListener(relay, "lost2", accept_class=Leg).start()
    sender = yield ws_connect(sender_url(relay, "lost2"), headers=auth(relay, "lost2"))
    yield wait_until(lambda: listener.legs)
    sender.transport.abortConnection()
    assert (yield listener.legs[0].closed) == (True, 1011, "The sender's connection was lost.")
