"""A sender's upgrade while it waits for the listener: one offer, bounded input, early frames kept.

While the listener has not accepted yet, the relay's ``onConnect`` Deferred is
pending and Autobahn would process the handshake again on every read. These
tests write raw bytes to the relay, so what arrives during the wait is under
the test's control.
"""
import os
import struct

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import RawClient, Sampler, raw_connect, sleep, wait_until
from tests.support.wsclient import Leg, ws_connect
from tests.test_relay_robustness import round_trip, upgrade_head

MIB = 1024 * 1024


def client_frame(payload: bytes, opcode: int = 2) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Errors:
    """Log events at error level or carrying a failure, while a test runs."""

    def __init__(self):
        self.events = []
        globalLogPublisher.addObserver(self)

    def __call__(self, event):
        level = event.get("log_level")
        if event.get("log_failure") is not None or event.get("isError") or (level is not None and level.name in ("error", "critical")):
            self.events.append(event)

    def stop(self):
        globalLogPublisher.removeObserver(self)
        return self.events


def next_message(leg, timeout=10.0):
    """The leg's next message; a missing one fails the test instead of hanging it."""
    return leg.messages.get().addTimeout(timeout, reactor)


def sender_head(relay, path):
    return upgrade_head(f"/$hc/{path}", host=relay.host, extra=f"ServiceBusAuthorization: {make_token(relay, path)}\r\n")


@pytest_twisted.inlineCallbacks
def test_repeated_heads_and_trickled_bytes_make_one_accept(relay):
    errors = Errors()
    try:
        listener = yield RawListener(relay, "wait", mode="ignore").start()
        client = yield raw_connect(relay.port)
        client.transport.write(sender_head(relay, "wait") * 5)
        yield wait_until(lambda: listener.accepts)
        for _ in range(5):
            yield sleep(0.05)
            client.transport.write(b"x")
        yield sleep(0.2)
        assert len(listener.accepts) == 1
        # The listener accepts late; the sender gets exactly one 101. The
        # extra heads then count as frames, which are not valid frames, so the
        # relay ends the connection -- but as a protocol error, not a crash.
        yield ws_connect(listener.accepts[0]["address"])
        yield client.wait_for(b"HTTP/1.1 101")
        data = yield client.closed
        assert data.count(b"HTTP/1.1 101") == 1
        assert len(listener.accepts) == 1
        yield wait_until(lambda: not relay.relay.registry.pending)
        yield round_trip(relay)
    finally:
        events = errors.stop()
    assert events == []


@pytest_twisted.inlineCallbacks
def test_frame_pipelined_after_the_head_reaches_the_listener(relay):
    listener = yield RawListener(relay, "early").start()  # echoes
    client = yield raw_connect(relay.port)
    client.transport.write(sender_head(relay, "early") + client_frame(b"early bird", opcode=1))
    data = yield client.wait_for(b"early bird")
    assert data.startswith(b"HTTP/1.1 101")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == b"\x81\x0aearly bird"  # the echo, an unmasked text frame
    assert (yield next_message(listener.legs[0])) == (b"early bird", False)
    client.transport.loseConnection()
    yield client.closed


@pytest_twisted.inlineCallbacks
def test_flood_while_waiting_stays_bounded_and_arrives_after_accept(relay):
    errors = Errors()
    try:
        listener = yield RawListener(relay, "flood", mode="ignore").start()
        client = yield raw_connect(relay.port)
        sampler = Sampler(relay)
        chunk = bytes(range(256)) * 256  # 64 KiB
        count = 32  # 2 MiB, written before the listener answers
        client.transport.write(sender_head(relay, "flood") + b"".join(client_frame(chunk) for _ in range(count)))
        yield wait_until(lambda: listener.accepts)
        yield sleep(0.3)
        peak = sampler.stop()
        # One read past the early-data limit at most, not the whole flood.
        assert peak <= 512 * 1024, peak
        assert len(listener.accepts) == 1
        leg = yield ws_connect(listener.accepts[0]["address"], cls=Leg)
        for _ in range(count):
            assert (yield next_message(leg)) == (chunk, True)
        assert client.data.count(b"HTTP/1.1 101") == 1
        client.transport.loseConnection()
        yield client.closed
    finally:
        events = errors.stop()
    assert events == []


@pytest_twisted.inlineCallbacks
def test_sender_hanging_up_while_waiting_is_noticed(relay):
    # Reading goes on below the early-data limit, so a sender that leaves is
    # seen at once and its pending offer dropped.
    listener = yield RawListener(relay, "bye", mode="ignore").start()
    client = yield raw_connect(relay.port, cls=RawClient)
    client.transport.write(sender_head(relay, "bye") + client_frame(b"hi"))
    yield wait_until(lambda: listener.accepts)
    assert relay.relay.registry.pending
    client.transport.abortConnection()
    yield client.closed
    yield wait_until(lambda: not relay.relay.registry.pending)
