"""The control channel's own reading of whole simple messages (txhyco._twisted.quickframes):
what it takes, what it leaves to Autobahn, and the fallback when it is off."""
import struct

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.httpclient import http_request
from tests.support.rawlistener import make_token
from tests.test_endpoint import endpoint_string
from txhyco._twisted import quickframes
from txhyco.listener.control import ControlProtocol


class Stats:
    incomingOctetsWireLevel = 0


class FakeLeg:
    """The attributes of an open Autobahn client leg that quickframes reads."""

    state = ControlProtocol.STATE_OPEN

    def __init__(self, close_after=None):
        self.data = b""
        self.current_frame = None
        self.inside_message = False
        self._perMessageCompress = None
        self.logOctets = self.logFrames = False
        self.failedByMe = False
        self.trackedTimings = None
        self.maxMessagePayloadSize = 1000
        self.maxFramePayloadSize = 1000
        self.utf8validateIncoming = True
        self.trafficStats = Stats()
        self.messages = []
        self.close_after = close_after

    def onMessage(self, payload, is_binary):
        self.messages.append((payload, is_binary))
        if self.close_after is not None and len(self.messages) >= self.close_after:
            self.state = ControlProtocol.STATE_CLOSING


def frame(opcode, payload, fin=True, masked=False, long_form=False):
    head = bytes([(0x80 if fin else 0) | opcode])
    mask = 0x80 if masked else 0
    if len(payload) < 126 and not long_form:
        head += bytes([mask | len(payload)])
    elif len(payload) < 65536:
        head += bytes([mask | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([mask | 127]) + struct.pack("!Q", len(payload))
    return head + (b"\0\0\0\0" if masked else b"") + payload


def test_whole_text_and_binary_messages_are_taken_and_a_ping_left_to_autobahn():
    leg = FakeLeg()
    ping = frame(0x9, b"hi")
    data = frame(0x1, b'{"request": {}}') + frame(0x2, b"\x00" * 300) + ping + frame(0x1, b"after")
    assert quickframes.read_whole_messages(leg, data) == ping + frame(0x1, b"after")
    assert leg.messages == [(b'{"request": {}}', False), (b"\x00" * 300, True)]
    assert leg.trafficStats.incomingOctetsWireLevel == len(data) - len(ping) - len(frame(0x1, b"after"))


@pytest.mark.parametrize("label, data", [
    ("partial frame", frame(0x1, b"abcdef")[:-1]),
    ("one byte", b"\x81"),
    ("fragment", frame(0x1, b"abc", fin=False)),
    ("continuation", frame(0x0, b"abc")),
    ("masked", frame(0x1, b"abc", masked=True)),
    ("rsv bit", bytes([0xC1, 3]) + b"abc"),
    ("non-minimal length", frame(0x1, b"abc", long_form=True)),
    ("64-bit length", frame(0x2, b"x" * 70000)),
    ("beyond the limit", frame(0x2, b"x" * 1001)),
    ("invalid UTF-8 text", frame(0x1, b"\xff\xfe")),
    ("close", frame(0x8, b"\x03\xe8")),
])
def test_anything_else_goes_to_autobahn_untouched(label, data):
    leg = FakeLeg()
    assert quickframes.read_whole_messages(leg, data) == data
    assert leg.messages == [] and leg.trafficStats.incomingOctetsWireLevel == 0


def test_nothing_is_taken_while_autobahn_holds_part_of_a_frame_or_a_message():
    data = frame(0x1, b"abc")
    for attribute, value in [("data", b"\x81"), ("inside_message", True), ("current_frame", object()),
                             ("state", ControlProtocol.STATE_CLOSING), ("_perMessageCompress", object()), ("logFrames", True)]:
        leg = FakeLeg()
        setattr(leg, attribute, value)
        assert quickframes.read_whole_messages(leg, data) == data and leg.messages == []


def test_a_message_that_closes_the_channel_leaves_the_rest_to_autobahn():
    leg = FakeLeg(close_after=1)
    rest = frame(0x1, b"second")
    assert quickframes.read_whole_messages(leg, frame(0x1, b"first") + rest) == rest
    assert leg.messages == [(b"first", False)]


def test_switched_off_everything_goes_to_autobahn(monkeypatch):
    monkeypatch.setattr(quickframes, "ENABLED", False)
    leg = FakeLeg()
    data = frame(0x1, b"abc")
    assert quickframes.read_whole_messages(leg, data) == data and leg.messages == []


def test_this_autobahn_has_what_it_relies_on():
    assert quickframes.AVAILABLE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.builds(frame, st.sampled_from([0x1, 0x2]), st.binary(max_size=300)), max_size=6))
def test_garbage_is_split_into_messages_taken_and_bytes_left(pieces):
    data = b"".join(pieces)
    leg = FakeLeg()
    rest = quickframes.read_whole_messages(leg, data)
    taken = b"".join(frame(0x2 if binary else 0x1, payload) for payload, binary in leg.messages)
    assert taken + rest == data


class Echo(Resource):
    isLeaf = True

    def render(self, request):
        return b"got " + request.content.read()


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("enabled", [True, False])
def test_requests_with_and_without_inline_bodies_either_way(relay, monkeypatch, enabled):
    monkeypatch.setattr(quickframes, "ENABLED", enabled)
    port = yield serverFromString(reactor, endpoint_string(relay, "qf")).listen(Site(Echo()))
    try:
        auth = {"ServiceBusAuthorization": make_token(relay, "qf")}
        for body in (None, b"payload", b"\xff" * 5000):
            status, _, _, data, _ = yield http_request(relay.port, "POST" if body else "GET", "/qf/x", body, auth)
            assert (status, data) == (200, b"got " + (body or b""))
    finally:
        yield port.stopListening()
