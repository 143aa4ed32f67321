"""The core's WebSocket frames (txhyco.protocol.frames), read back by Autobahn's own frame parser.

Frames built by the core are fed to real Autobahn protocols over memory
transports, after a real opening handshake between the two: a server
protocol reads the client frames (masked), a client protocol the server
frames (unmasked). Autobahn enforces what RFC 6455 section 5 requires of a
frame (minimal length encoding, masking by direction, control frames short
and unfragmented, continuation only inside a message) and unmasks the
payload; the tests compare what it parsed with what was framed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txhyco._twisted.masking import LARGE_PAYLOAD, fast_masker
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.frames import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_TEXT,
    FrameHeader,
    FrameMasker,
    XorMasker,
    frame_header,
    masked_frame,
    masked_frame_parts,
    read_frame_header,
    simple_data_frame,
)


#: Control frame opcodes (RFC 6455 section 5.5), sent between data frames.
PING, PONG = 0x9, 0xA


@dataclass(frozen=True)
class Parsed:
    opcode: int
    fin: bool
    payload: bytes
    masked: bool


class FrameRecorder:
    """Records each frame Autobahn parsed (header fields and unmasked payload) instead of acting on it."""

    def onOpen(self):
        self.frames = []

    def onFrameBegin(self):
        self._pieces = []

    def onFrameData(self, payload):
        self._pieces.append(payload)

    def onFrameEnd(self):
        frame = self.current_frame
        self.frames.append(Parsed(frame.opcode, frame.fin, b"".join(self._pieces), frame.mask is not None))
        if frame.opcode < 8:
            # what Autobahn's own handlers track, so it can judge the next continuation frame
            self.inside_message = not frame.fin
        self.current_frame = None


class RecordingServer(FrameRecorder, WebSocketServerProtocol):
    pass


class RecordingClient(FrameRecorder, WebSocketClientProtocol):
    pass


class MemoryTransport(StringTransport):
    """A StringTransport that lets Autobahn drop a connection it refuses (it unregisters a producer it never had)."""

    def unregisterProducer(self):
        self.producer = None


def opened_pair():
    """(server, client) Autobahn protocols after a real opening handshake over memory transports."""
    server_factory = WebSocketServerFactory(reactor=Clock())
    server_factory.protocol = RecordingServer
    client_factory = WebSocketClientFactory("ws://localhost:9000/", reactor=Clock())
    client_factory.protocol = RecordingClient
    for factory in (server_factory, client_factory):
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0)
    server, client = server_factory.buildProtocol(None), client_factory.buildProtocol(None)
    to_server, to_client = MemoryTransport(), MemoryTransport()
    server.makeConnection(to_server)
    client.makeConnection(to_client)
    server.dataReceived(to_client.value())
    to_client.clear()
    client.dataReceived(to_server.value())
    to_server.clear()
    assert server.state == server.STATE_OPEN and client.state == client.STATE_OPEN
    return server, client


def feed(protocol, chunks) -> list[Parsed]:
    for chunk in chunks:
        protocol.dataReceived(chunk)
    assert protocol.state == protocol.STATE_OPEN, "Autobahn refused the frames"
    assert not protocol.transport.disconnecting
    return protocol.frames


# -- strategies -------------------------------------------------------------

#: Lengths at the edges of the 7-, 16- and 64-bit length encodings (RFC 6455 section 5.2).
EDGES = [0, 1, 125, 126, 127, 65535, 65536, 70001]


def _sized(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(_sized, st.sampled_from(EDGES + [LARGE_PAYLOAD - 1, LARGE_PAYLOAD]), st.integers(0, 2**32)),
)
control_payloads = st.binary(max_size=125)


@st.composite
def frame_sequences(draw):
    """[(opcode, fin, payload)]: messages, some fragmented, with pings and pongs between frames."""
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        fragments = draw(st.lists(payloads, min_size=1, max_size=3))
        for position, payload in enumerate(fragments):
            if draw(st.booleans()):
                frames.append((draw(st.sampled_from([PING, PONG])), True, draw(control_payloads)))
            last = position == len(fragments) - 1
            frames.append((opcode if position == 0 else OP_CONTINUATION, last, payload))
    return frames


def expected(frames, masked: bool) -> list[Parsed]:
    return [Parsed(opcode, fin, payload, masked) for opcode, fin, payload in frames]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


maskers = st.sampled_from([XorMasker, fast_masker])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- server frames (unmasked) -------------------------------------------------

@SETTINGS
@given(frame_sequences())
def test_autobahn_reads_server_frames_built_by_frame_header(frames):
    _, client = opened_pair()
    wire = [frame_header(opcode, fin, len(payload)) + payload for opcode, fin, payload in frames]
    assert feed(client, wire) == expected(frames, masked=False)


@pytest.mark.parametrize("length", EDGES)
def test_frame_header_uses_the_shortest_length_encoding(length):
    header = frame_header(OP_BINARY, True, length)
    assert len(header) == (2 if length < 126 else 4 if length < 65536 else 10)
    assert len(frame_header(OP_BINARY, True, length, b"abcd")) == len(header) + 4


# -- client frames (masked) ---------------------------------------------------

@SETTINGS
@given(frame_sequences(), maskers)
def test_autobahn_unmasks_client_frames_built_by_masked_frame(frames, make_masker):
    server, _ = opened_pair()
    wire = [masked_frame(opcode, payload, fin, make_masker) for opcode, fin, payload in frames]
    assert feed(server, wire) == expected(frames, masked=True)


@SETTINGS
@given(frame_sequences(), maskers)
def test_masked_frame_parts_are_a_header_and_its_masked_payload(frames, make_masker):
    server, _ = opened_pair()
    wire = []
    for opcode, fin, payload in frames:
        head, body = masked_frame_parts(opcode, payload, fin, make_masker)
        assert len(body) == len(payload)
        wire += [head, body]
    assert feed(server, wire) == expected(frames, masked=True)


def test_each_frame_gets_its_own_mask():
    heads = {masked_frame_parts(OP_BINARY, b"x" * 10)[0] for _ in range(50)}
    assert len(heads) > 1


# -- FrameMasker: a stream of server frames turned into client frames ----------

@SETTINGS
@given(frame_sequences(), st.lists(st.integers(0, 2**20), max_size=8), maskers)
def test_frame_masker_masks_a_stream_cut_anywhere(frames, cuts, make_masker):
    server, _ = opened_pair()
    stream = b"".join(frame_header(opcode, fin, len(payload)) + payload for opcode, fin, payload in frames)
    out = []
    masker = FrameMasker(out.append, make_masker)
    for chunk in split(stream, cuts):
        masker.feed(chunk)
    assert feed(server, [b"".join(out)]) == expected(frames, masked=True)


@SETTINGS
@given(frame_sequences(), maskers)
def test_frame_masker_turns_one_written_frame_into_one_write(frames, make_masker):
    server, _ = opened_pair()
    out = []
    masker = FrameMasker(out.append, make_masker)
    for opcode, fin, payload in frames:
        before = len(out)
        masker.feed(frame_header(opcode, fin, len(payload)) + payload)
        assert len(out) == before + 1
    assert feed(server, out) == expected(frames, masked=True)


def test_frame_masker_refuses_a_frame_masked_already():
    out = []
    with pytest.raises(ProtocolError, match="masked already"):
        FrameMasker(out.append).feed(masked_frame(OP_BINARY, b"xyz"))
    assert out == []


# -- the maskers themselves ---------------------------------------------------

@SETTINGS
@given(st.binary(min_size=4, max_size=4), st.binary(max_size=9000), st.lists(st.integers(0, 9000), max_size=6))
def test_xor_masker_in_pieces_equals_autobahns_masker_at_once(mask, payload, cuts):
    reference = create_xor_masker(mask, len(payload)).process(payload) if payload else b""
    ours = XorMasker(mask)
    assert b"".join(ours.process(piece) for piece in split(payload, cuts)) == reference
    fast = fast_masker(mask, len(payload))
    assert b"".join(fast.process(piece) for piece in split(payload, cuts) if piece) == reference


def test_xor_masker_refuses_a_key_that_is_not_four_bytes():
    with pytest.raises(ProtocolError, match="4 bytes"):
        XorMasker(b"abc")


# -- reading a header back ---------------------------------------------------------------

@given(opcode=st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]), fin=st.booleans(),
       length=st.sampled_from([0, 1, 125, 126, 65535, 65536, 2**40]),
       mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
def test_read_frame_header_reads_back_what_frame_header_writes(opcode, fin, length, mask):
    header = frame_header(opcode, fin, length, mask)
    for cut in range(len(header)):
        assert read_frame_header(header[:cut]) is None  # incomplete: wait for more
    read = read_frame_header(header + b"payload")
    assert read == FrameHeader(fin, 0, opcode, length, mask, len(header))


@given(st.binary(max_size=20))
def test_read_frame_header_takes_any_bytes(data):
    read = read_frame_header(data)
    if read is not None:
        assert read.size <= len(data)
        assert 0 <= read.opcode <= 0xF and read.rsv & ~0x70 == 0
        assert (read.mask is None) == (not data[1] & 0x80)


@given(opcode=st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]), fin=st.booleans(),
       length=st.sampled_from([0, 1, 125, 126, 65535, 65536]),
       mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)), masked=st.booleans(), extra=st.binary(max_size=3))
def test_simple_data_frame_takes_only_whole_unfragmented_data_frames(opcode, fin, length, mask, masked, extra):
    frame = frame_header(opcode, fin, length, mask) + b"\x00" * length
    read = simple_data_frame(b"xx" + frame + extra, 2, masked)
    simple = fin and opcode in (0x1, 0x2) and length < 65536 and (mask is not None) == masked
    if not simple:
        assert read is None
        return
    is_binary, key, start, end = read
    assert (is_binary, key, end - start, end) == (opcode == 0x2, mask, length, 2 + len(frame))
    assert simple_data_frame(b"xx" + frame[:-1], 2, masked) is None or length == 0  # not all there yet
    if length > 1:  # (a limit of 0 is none)
        assert simple_data_frame(b"xx" + frame, 2, masked, limit=length - 1) is None  # over the limit


@given(st.binary(max_size=24), st.booleans())
def test_simple_data_frame_takes_any_bytes(data, masked):
    read = simple_data_frame(data, 0, masked)
    if read is not None:
        assert read[3] <= len(data)
