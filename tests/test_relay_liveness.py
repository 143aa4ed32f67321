"""The relay notices a listener that went silent (issue 14, "Liveness").

A frozen listener process (``kill -STOP``) or a silently cut network looks
the same to the relay: the control channel stays open and nothing is read.
The relay pings control channels; one that answers neither a Ping nor with
anything else within ``listenerPingTimeout`` is dropped, and its senders go
to the other listeners.
"""
import pytest_twisted
from twisted.internet import defer

from tests.support.rawlistener import RawListener
from tests.support.rawtcp import limited_config, wait_until
from tests.support.wsclient import HandshakeFailed, ws_connect
from tests.test_relay_websocket import auth, sender_url
from txhyco.testing import start_relay


def _frozen(listener: RawListener) -> RawListener:
    """Stop reading the listener's control channel, as a stopped process would."""
    listener.control.transport.pauseProducing()
    return listener


@defer.inlineCallbacks
def _echo_senders(relay, path: str, count: int):
    for n in range(count):
        sender = yield ws_connect(sender_url(relay, path), headers=auth(relay, path))
        sender.sendMessage(b"ping %d" % n, isBinary=True)
        payload, _ = yield sender.messages.get()
        assert payload == b"ping %d" % n
        sender.sendClose(1000)
        yield sender.closed


@pytest_twisted.inlineCallbacks
def test_a_silent_listener_is_dropped_and_the_other_gets_every_sender():
    relay = yield start_relay(limited_config(listener_ping_interval=0.2, listener_ping_timeout=1.5))
    try:
        frozen = _frozen((yield RawListener(relay, "live").start()))
        alive = yield RawListener(relay, "live").start()
        entity = relay.relay.registry.entity("live", create=False)
        yield wait_until(lambda: len(entity.listeners) == 1, timeout=10)
        (survivor,) = entity.listeners.values()
        assert survivor.tracking_id == alive.tracking_id
        yield _echo_senders(relay, "live", 6)
        assert len(alive.accepts) == 6 and frozen.accepts == []
        # The one that answers is kept: pings do not cut a healthy listener.
        assert alive.control.state == alive.control.STATE_OPEN
        assert relay.relay.metrics.listeners.labels("live")._value.get() == 1
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_a_listener_with_a_ping_long_unanswered_gets_no_work_while_others_answer():
    # A long timeout: the frozen listener is still registered, but its Ping
    # has waited more than half the timeout, so routing passes it over.
    relay = yield start_relay(limited_config(listener_ping_interval=0.1, listener_ping_timeout=4.0))
    try:
        frozen = _frozen((yield RawListener(relay, "slow").start()))
        alive = yield RawListener(relay, "slow").start()
        entity = relay.relay.registry.entity("slow", create=False)
        channel = next(ch for ch in entity.listeners.values() if ch.tracking_id == frozen.tracking_id)
        yield wait_until(lambda: channel.unanswered, timeout=10)
        yield _echo_senders(relay, "slow", 6)
        assert len(alive.accepts) == 6 and frozen.accepts == []
        assert channel in entity.listeners.values(), "dropped already: the test proved nothing"
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_a_closing_control_channel_gets_no_work(relay):
    # The relay closed the channel (say, a refused renewToken: 1008) and
    # waits for the listener's answer, which does not come: the channel is
    # still registered until the closing handshake times out, but senders
    # go to the other listener (they used to get 500 half of the time).
    closing = _frozen((yield RawListener(relay, "closing").start()))
    entity = relay.relay.registry.entity("closing", create=False)
    (channel,) = entity.listeners.values()
    channel.proto.close_with(1008, "renewToken refused")
    alive = yield RawListener(relay, "closing").start()
    assert channel in entity.listeners.values()
    yield _echo_senders(relay, "closing", 6)
    assert len(alive.accepts) == 6 and closing.accepts == []
    yield alive.stop()
    try:
        yield ws_connect(sender_url(relay, "closing"), headers=auth(relay, "closing"))
    except HandshakeFailed as e:
        assert e.status == 404 and "no listeners" in e.reason
    else:
        raise AssertionError("a sender was offered to a closing listener")


class _Leg:
    """Just what PingWatch uses of a control channel leg."""

    STATE_OPEN, STATE_CLOSED = 3, 0

    def __init__(self):
        self.state = self.STATE_OPEN
        self.pings = 0
        self.dropped = None

    def sendPing(self, payload):
        self.pings += 1

    def dropConnection(self, abort=False):
        self.dropped = abort
        self.state = self.STATE_CLOSED


def test_the_ping_cycle_on_a_clock():
    from twisted.internet.task import Clock

    from txhyco.relay.liveness import PingWatch

    clock, leg, silent = Clock(), _Leg(), []
    watch = PingWatch(leg, clock, interval=20, timeout=10, silent=lambda: silent.append(clock.seconds()))
    watch.start()
    clock.advance(20)
    assert leg.pings == 1 and not watch.unanswered
    clock.advance(5.5)
    assert watch.unanswered  # half the timeout: routing passes it over
    watch.heard()  # a Pong, or any frame
    assert not watch.unanswered
    clock.advance(19.9)
    assert leg.pings == 1
    clock.advance(0.1)
    assert leg.pings == 2
    clock.advance(10)  # silent from here: dropped at interval + timeout at most
    assert silent == [55.5] and leg.dropped is True and not leg.wasClean
    watch.stop()
    assert clock.getDelayedCalls() == []
