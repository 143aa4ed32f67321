"""A control channel read without Autobahn's per-frame machinery (txhyco/relay/controlframes.py) reads as Autobahn does.

Two relay legs after a real opening handshake, one reading quickly, get the
same client bytes cut at the same places; their sinks must see the same
calls, and both must answer (Pong, Close) and end up alike.
"""
from __future__ import annotations

import random
import struct

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, WebSocketServerFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txhyco.protocol.frames import frame_header
from txhyco.relay.controlframes import read_quickly
from txhyco.relay.websocket import RelayWebSocketProtocol

MASK = b"\x11\x22\x33\x44"


class Recorder:
    """A sink that records what it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._pieces: list[bytes] = []

    def message_begin(self, is_binary: bool) -> None:
        self.calls.append(("begin", is_binary))

    def frame_begin(self, length: int, fin: bool) -> None:
        self.calls.append(("frame", length, fin))

    def frame_data(self, data: bytes) -> None:
        self.calls.append(("data", bytes(data)))

    def message_end(self) -> None:
        self.calls.append(("end",))

    def joined(self) -> list[tuple]:
        """The calls with consecutive payload pieces joined (Autobahn hands a frame over in the pieces that arrived)."""
        out: list[tuple] = []
        for call in self.calls:
            if call[0] == "data" and out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + call[1])
            else:
                out.append(call)
        return out


class Leg(RelayWebSocketProtocol):
    def onConnect(self, request):
        return None


class MemoryTransport(StringTransport):
    def unregisterProducer(self):
        self.producer = None


def opened_leg(limit: int, quick: bool) -> Leg:
    factory = WebSocketServerFactory(reactor=Clock())
    factory.protocol = Leg
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0,
                               utf8validateIncoming=False, maxMessagePayloadSize=limit, failByDrop=False)
    client_factory = WebSocketClientFactory("ws://localhost:9000/", reactor=Clock())
    client_factory.protocol = WebSocketClientProtocol
    client_factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0)
    leg, client = factory.buildProtocol(None), client_factory.buildProtocol(None)
    to_leg, to_client = MemoryTransport(), MemoryTransport()
    leg.makeConnection(to_leg)
    client.makeConnection(to_client)
    leg.dataReceived(to_client.value())
    client.dataReceived(to_leg.value())
    to_leg.clear()
    assert leg.state == leg.STATE_OPEN
    leg.sink = Recorder()
    if quick:
        read_quickly(leg)
    return leg


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True, long16: bool = False) -> bytes:
    """A client frame; ``long16`` writes a short length in the 16-bit encoding (not the shortest)."""
    if long16:
        head = struct.pack("!BBH", (0x80 if fin else 0) | rsv << 4 | opcode, (0x80 if masked else 0) | 126, len(payload))
        head += MASK if masked else b""
    else:
        head = frame_header(opcode, fin, len(payload), MASK if masked else None)
        if rsv:
            head = bytes((head[0] | rsv << 4,)) + head[1:]
    if not masked:
        return head + payload
    return head + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def _payload(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


@st.composite
def frame_streams(draw):
    """Frames a listener might send (mostly whole messages, some of everything else), as one byte string."""
    lengths = st.sampled_from([0, 1, 5, 125, 126, 127, 999, 1000, 1001, 4095, 4096, 5000, 65535, 65536])
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["text", "binary", "text", "binary", "fragmented", "ping", "pong", "rsv",
                                     "unmasked", "long16", "continuation", "reserved opcode", "close"]))
        payload = _payload(draw(lengths), draw(st.integers(0, 99)))
        if kind in ("text", "binary"):
            parts.append(frame(1 if kind == "text" else 2, payload))
        elif kind == "fragmented":
            parts.append(frame(2, payload[:3], fin=False) + frame(9, b"between") + frame(0, payload[3:]))
        elif kind in ("ping", "pong"):
            parts.append(frame(9 if kind == "ping" else 10, payload[:125]))
        elif kind == "rsv":
            parts.append(frame(1, payload, rsv=draw(st.integers(1, 7))))
        elif kind == "unmasked":
            parts.append(frame(2, payload, masked=False))
        elif kind == "long16":
            parts.append(frame(1, payload[:125], long16=True))
        elif kind == "continuation":
            parts.append(frame(0, payload))
        elif kind == "reserved opcode":
            parts.append(frame(draw(st.sampled_from([3, 7])), payload))
        else:
            parts.append(frame(8, struct.pack("!H", 1000) + b"bye"))
    return b"".join(parts)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(data)]:
        pieces.append(data[last:point])
        last = point
    return [piece for piece in pieces if piece]


def assert_read_alike(data: bytes, cuts: list[int], limit: int) -> None:
    autobahn, quick = opened_leg(limit, False), opened_leg(limit, True)
    for piece in cut(data, cuts):
        autobahn.dataReceived(piece)
        quick.dataReceived(piece)
    assert quick.sink.joined() == autobahn.sink.joined()
    assert quick.transport.value() == autobahn.transport.value()  # Pongs, Close
    assert (quick.state, quick.transport.disconnecting) == (autobahn.state, autobahn.transport.disconnecting)


@given(frame_streams(), st.lists(st.integers(0, 300000), max_size=4), st.sampled_from([0, 1000]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_quick_reading_hands_the_sink_what_autobahn_does(data, cuts, limit):
    assert_read_alike(data, cuts, limit)


@pytest.mark.parametrize("limit", [0, 1000])
def test_whole_messages_in_one_read_skip_autobahn(limit, monkeypatch):
    data = frame(1, b'{"response":{}}') + frame(2, b"x" * 300) + frame(2, b"")
    assert_read_alike(data, [], limit)
    leg = opened_leg(limit, True)
    monkeypatch.setattr(Leg, "processData", lambda *_: pytest.fail("Autobahn was asked"))
    leg.dataReceived(data)
    assert leg.sink.calls == [("begin", False), ("frame", 15, True), ("data", b'{"response":{}}'), ("end",),
                              ("begin", True), ("frame", 300, True), ("data", b"x" * 300), ("end",),
                              ("begin", True), ("frame", 0, True), ("data", b""), ("end",)]


# -- whole messages into a CommandSink ------------------------------------------------------------------------------------

class Handler:
    def __init__(self) -> None:
        self.events: list = []
        self.errors: list[str] = []

    def channel_event(self, event) -> None:
        self.events.append(event)

    def framing_error(self, error) -> None:
        self.errors.append(error.message)


_MESSAGES = st.sampled_from([
    (False, b'{"response":{"requestId":"a","statusCode":200,"body":true}}'),
    (False, b'{"response":{"requestId":"b","statusCode":204,"body":false}}'),
    (False, b'{"renewToken":{"token":"t"}}'),
    (False, b'{"accept":{}}'), (False, b"not json"), (False, b"x" * 65537),
    (True, b""), (True, b"body"), (True, b"b" * 5000),
])


@given(st.lists(_MESSAGES, max_size=8))
@settings(max_examples=200, deadline=None)
def test_a_whole_message_reaches_the_handler_as_its_pieces_do(messages):
    from txhyco._twisted.commandsink import CommandSink
    from txhyco.protocol.channel import ROLE_RELAY, ChannelReader

    pieces, whole = Handler(), Handler()
    streamed, at_once = CommandSink(ChannelReader(ROLE_RELAY), pieces), CommandSink(ChannelReader(ROLE_RELAY), whole)
    for is_binary, payload in messages:
        streamed.message_begin(is_binary)
        streamed.frame_begin(len(payload), True)
        streamed.frame_data(payload)
        streamed.message_end()
        at_once.whole_message(is_binary, payload)
    assert whole.events == pieces.events
    # Pieces of a message after a failure each report one more error; a whole message reports it once.
    assert whole.errors[:1] == pieces.errors[:1] and set(whole.errors) <= set(pieces.errors)


def test_forced_fallback_leaves_the_leg_to_autobahn(monkeypatch):
    from txhyco._twisted import quickframes

    monkeypatch.setattr(quickframes, "ENABLED", False)
    leg = opened_leg(limit=0, quick=True)
    assert "dataReceived" not in vars(leg)  # read_quickly changed nothing: Autobahn reads every frame
    leg.dataReceived(frame(0x1, b"through autobahn"))
    assert ("begin", False) in leg.sink.calls  # and the message still arrives
