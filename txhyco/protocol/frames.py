"""WebSocket frame headers and client masking (RFC 6455 section 5) as pure logic.

The relay and the listener mostly let Autobahn frame their messages, but on
their hot paths they write frames themselves: the relay re-emits each frame
it relays with the incoming frame's FIN bit (section 5.4, fragmentation),
and the listener adds the client mask to frames an ordinary server protocol
wrote (section 5.3). Every such frame is built here.

Masking XORs the payload with a 4-byte key. The pure-Python
:class:`XorMasker` is exact but not fast; the Twisted side passes in a faster
one (any ``make_masker(mask, length)`` returning an object with a stateful
``process(data) -> bytes``, as wsaccel's and Autobahn's maskers have).
"""
from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import NamedTuple

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "OP_CONTINUATION",
    "OP_TEXT",
    "OP_BINARY",
    "frame_header",
    "FrameHeader",
    "read_frame_header",
    "simple_data_frame",
    "XorMasker",
    "masked_frame_parts",
    "masked_frame",
    "FrameMasker",
]

#: Data frame opcodes (RFC 6455 section 5.2, section 11.8); control frames are Autobahn's.
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2

# Second header byte: the MASK bit, and the 7-bit length codes that announce
# a 16-bit (126) or 64-bit (127) extended payload length (section 5.2).
_MASK_BIT = 0x80
_LENGTH_16 = 126
_LENGTH_64 = 127

_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")

_getrandbits = random.getrandbits


def frame_header(opcode: int, fin: bool, length: int, mask: bytes | None = None) -> bytes:
    """The header of one frame (RFC 6455 section 5.2): no RSV bits.

    ``length`` is the payload length in bytes; it is written in the shortest
    of the 7-, 16- and 64-bit encodings, as section 5.2 requires. With a
    4-byte ``mask`` the MASK bit is set and the key follows the length
    (a client's frame, section 5.3); without one the frame is unmasked (a
    server's frame).
    """
    b0 = (0x80 if fin else 0) | opcode
    if mask is None:
        if length < _LENGTH_16:
            return bytes((b0, length))
        if length < 0x10000:
            return _SHORT.pack(b0, _LENGTH_16, length)
        return _LONG.pack(b0, _LENGTH_64, length)
    if length < _LENGTH_16:
        return bytes((b0, _MASK_BIT | length)) + mask
    if length < 0x10000:
        return _SHORT.pack(b0, _MASK_BIT | _LENGTH_16, length) + mask
    return _LONG.pack(b0, _MASK_BIT | _LENGTH_64, length) + mask


class FrameHeader(NamedTuple):
    """One frame's header as read off the wire (RFC 6455 section 5.2)."""

    fin: bool
    rsv: int  # the three RSV bits (0x70 of the first byte), 0 without an extension
    opcode: int
    length: int  # payload bytes
    mask: bytes | None  # the 4-byte masking key of a client's frame, None for a server's
    size: int  # header bytes, masking key included


def read_frame_header(data: bytes) -> FrameHeader | None:
    """The header at the start of ``data``, or None while it is incomplete.

    Only reads: whether RSV bits, an opcode or a length are acceptable is the
    caller's to judge (a relay, a listener and an observer judge differently).
    """
    if len(data) < 2:
        return None
    b0, b1 = data[0], data[1]
    code = b1 & 0x7F
    pos = 2 if code < _LENGTH_16 else (4 if code == _LENGTH_16 else 10)
    size = pos + 4 if b1 & _MASK_BIT else pos
    if len(data) < size:
        return None
    length = code if pos == 2 else int.from_bytes(data[2:pos], "big")
    mask = bytes(data[pos:size]) if b1 & _MASK_BIT else None
    return FrameHeader(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, length, mask, size)


def simple_data_frame(data: bytes, pos: int, masked: bool, limit: int = 0) -> tuple[bool, bytes | None, int, int] | None:
    """The frame at ``data[pos:]`` if it is a whole message in one simple frame, else None.

    Simple: FIN set, no RSV bits, text or binary, the MASK bit as ``masked``
    says (a client's frame, or a server's), its length in the shortest
    encoding and below 64 KiB, within ``limit`` (0: no limit), and all of it
    in ``data``. Returns (is_binary, masking key or None, payload start,
    payload end). Anything else -- a control frame, a fragment, a frame
    still arriving, one a peer must be refused for -- is None: the caller
    leaves it to a full WebSocket implementation. The control channels'
    quick readers (relay and listener) take their frames through this.
    """
    size = len(data)
    if size - pos < 2:
        return None
    b0 = data[pos]
    b1 = data[pos + 1]
    if (b0 != 0x81 and b0 != 0x82) or bool(b1 & _MASK_BIT) != masked:
        return None
    code = b1 & 0x7F
    if code < _LENGTH_16:
        length, start = code, pos + 2
    elif code == _LENGTH_16:
        if size - pos < 4:
            return None
        length, start = (data[pos + 2] << 8) | data[pos + 3], pos + 4
        if length < _LENGTH_16:
            return None  # not the shortest encoding (section 5.2)
    else:
        return None
    mask = None
    if masked:
        mask = data[start:start + 4]
        start += 4
    end = start + length
    if end > size or (limit and length > limit):
        return None
    return b0 == 0x82, mask, start, end


class XorMasker:
    """Masks (or unmasks: the same XOR) one frame's payload, in pieces (RFC 6455 section 5.3).

    Byte ``i`` of the payload is XORed with byte ``i % 4`` of the key, counted
    from the start of the payload across calls to :meth:`process`.
    """

    __slots__ = ("_mask", "_offset")

    def __init__(self, mask: bytes, length: int = 0) -> None:
        if len(mask) != 4:
            raise LocalProtocolError(f"A masking key is 4 bytes, not {len(mask)}.")
        self._mask = bytes(mask)
        self._offset = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        offset = self._offset
        key = self._mask[offset:] + self._mask[:offset]
        stream = (key * (n // 4 + 1))[:n]
        self._offset = (offset + n) % 4
        return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


#: ``make_masker(mask, length)``: a masker for a payload of ``length`` bytes.
MaskerFactory = Callable[[bytes, int], object]


def masked_frame_parts(opcode: int, payload: bytes, fin: bool = True,
                       make_masker: MaskerFactory = XorMasker) -> tuple[bytes, bytes]:
    """(header with its fresh mask, masked payload) of one client frame (RFC 6455 section 5.2, 5.3).

    Two parts, so a caller can hand them to ``writeSequence`` without
    joining them.
    """
    length = len(payload)
    # Section 5.3 asks for masks an intermediary cannot predict (the threat is
    # a hostile page steering proxies, section 10.3); Python's generator is
    # what Autobahn uses for its own client frames too.
    mask = _getrandbits(32).to_bytes(4, "big")
    head = frame_header(opcode, fin, length, mask)
    if not length:
        return head, b""
    return head, make_masker(mask, length).process(payload)


def masked_frame(opcode: int, payload: bytes, fin: bool = True,
                 make_masker: MaskerFactory = XorMasker) -> bytes:
    """One client frame (RFC 6455 section 5.2, 5.3) carrying ``payload``, masked, as one string."""
    head, body = masked_frame_parts(opcode, payload, fin, make_masker)
    return head + body if body else head


class FrameMasker:
    """Turns a stream of unmasked frames into the same frames, masked (RFC 6455 section 5.3).

    Feed it the bytes a server-side protocol writes; ``write`` receives them
    with the MASK bit set, a fresh key after each length and each payload
    masked. Headers may arrive split across writes; payloads are masked as
    they pass, never buffered. The usual write -- one whole frame, as
    Autobahn's ``sendMessage`` makes it -- becomes exactly one write. A frame
    that is masked already raises :class:`RemoteProtocolError`: it was not a
    server's frame.
    """

    __slots__ = ("_write", "_make_masker", "_head", "_remaining", "_masker")

    def __init__(self, write: Callable[[bytes], object], make_masker: MaskerFactory = XorMasker) -> None:
        self._write = write
        self._make_masker = make_masker
        self._head = b""
        self._remaining = 0
        self._masker = None

    def feed(self, data: bytes) -> None:
        if not self._remaining and not self._head:
            # Fast path: the write is exactly one frame with a 7- or 16-bit length.
            n = len(data)
            if n >= 2:
                b1 = data[1]
                code = b1 & 0x7F
                if code < _LENGTH_16 and not b1 & _MASK_BIT:
                    if n == 2 + code:
                        mask = _getrandbits(32).to_bytes(4, "big")
                        if code:
                            self._write(b"".join((bytes((data[0], b1 | _MASK_BIT)), mask,
                                                  self._make_masker(mask, code).process(data[2:]))))
                        else:
                            self._write(bytes((data[0], _MASK_BIT)) + mask)
                        return
                elif code == _LENGTH_16 and not b1 & _MASK_BIT and n >= 4:
                    length = (data[2] << 8) | data[3]
                    if n == 4 + length:
                        mask = _getrandbits(32).to_bytes(4, "big")
                        self._write(b"".join((bytes((data[0], _MASK_BIT | _LENGTH_16)), data[2:4], mask,
                                              self._make_masker(mask, length).process(data[4:]))))
                        return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        write = self._write
        while data:
            if self._remaining:
                n = self._remaining
                if len(data) <= n:
                    write(self._masker.process(data))
                    self._remaining = n - len(data)
                    return
                write(self._masker.process(data[:n]))
                self._remaining = 0
                data = data[n:]
                continue
            head = self._head + data if self._head else data
            if len(head) < 2:
                self._head = head
                return
            b1 = head[1]
            if b1 & _MASK_BIT:
                raise RemoteProtocolError("A frame to be masked was masked already.")
            code = b1 & 0x7F
            size = 2 if code < _LENGTH_16 else (4 if code == _LENGTH_16 else 10)
            if len(head) < size:
                self._head = head
                return
            if code < _LENGTH_16:
                length = code
            else:
                length = int.from_bytes(head[2:size], "big")
            mask = _getrandbits(32).to_bytes(4, "big")
            header = bytes((head[0], b1 | _MASK_BIT)) + head[2:size] + mask
            self._head = b""
            rest = head[size:]
            if not length:
                write(header)
                data = rest
                continue
            masker = self._make_masker(mask, length)
            if len(rest) >= length:
                write(header + masker.process(rest[:length]))
                data = rest[length:]
                continue
            self._masker = masker
            self._remaining = length
            write(header)
            data = rest
