"""Reading the messages of a relayed WebSocket from its raw frames, for the inspector.

A relayed connection's frames pass the listener untouched (see
:mod:`txhyco.listener.accept`); the inspector reads a copy of them here,
one direction per :class:`MessageReader`, keeping at most ``cap`` bytes of
each message. It never raises: frames it cannot read (garbage, a reserved
opcode) stop it for that direction, and the connection goes on regardless.
"""
from __future__ import annotations

from txhyco.protocol.frames import XorMasker, read_frame_header

OPCODES = {0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping", 0xA: "pong"}


class MessageReader:
    """Frames in (any chunking), finished messages out through ``on_message``.

    ``on_message(kind, size, kept)``: ``kind`` is text, binary, close, ping
    or pong; ``size`` the whole payload's length; ``kept`` its first ``cap``
    bytes, unmasked.
    """

    def __init__(self, on_message, cap: int) -> None:
        self.on_message = on_message
        self.cap = cap
        self.broken: str | None = None  # why reading stopped
        self._header = b""
        self._remaining = 0  # payload bytes of the current frame still to come
        self._in_frame = False
        self._masker: XorMasker | None = None  # the current frame's, if it is masked
        self._offset = 0  # payload bytes of the current frame seen
        self._opcode = 0
        self._fin = False
        self._control = False
        # the message being assembled (data frames; control frames have their own)
        self._message_kind: str | None = None
        self._message_size = 0
        self._message_kept: list[bytes] = []
        self._message_kept_size = 0
        self._control_kept = b""

    def feed(self, data: bytes) -> None:
        if self.broken is not None:
            return
        try:
            self._feed(data)
        except Exception as e:  # a bug here must not touch the connection
            self.broken = f"unreadable frames ({e.__class__.__name__})"

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self._in_frame:
                view = self._read_header(view)
                if view is None:
                    return
                continue
            take = min(len(view), self._remaining)
            self._payload(view[:take])
            view = view[take:]
            self._remaining -= take
            if not self._remaining:
                self._frame_end()

    def _read_header(self, view):
        header = self._header + bytes(view[:14])
        read = read_frame_header(header)
        if read is None:
            self._header = header
            return None
        used = read.size - len(self._header)
        self._header = b""
        opcode = read.opcode
        if read.rsv or opcode not in OPCODES and opcode != 0:
            self.broken = "a frame with reserved bits or opcode"
            return None
        self._masker = XorMasker(read.mask) if read.mask is not None else None
        self._opcode, self._fin, self._control = opcode, read.fin, opcode >= 0x8
        if not self._control:
            if opcode and self._message_kind is None:
                self._message_kind = OPCODES[opcode]
            elif not opcode and self._message_kind is None:
                self.broken = "a continuation frame outside a message"
                return None
        self._control_kept = b""
        self._offset = 0
        self._remaining = read.length
        self._in_frame = True
        rest = view[used:]
        if not read.length:
            self._frame_end()
        return rest

    def _payload(self, chunk) -> None:
        # Only a kept prefix is unmasked: a payload's first bytes are its
        # first kept ones, so the masker's own offset stays in step.
        n = len(chunk)
        if self._control:
            keep = chunk[:max(0, 125 - len(self._control_kept))]
            if keep:
                self._control_kept += self._unmasked(bytes(keep))
        else:
            self._message_size += n
            room = self.cap - self._message_kept_size
            if room > 0:
                keep = bytes(chunk[:room])
                self._message_kept.append(self._unmasked(keep))
                self._message_kept_size += len(keep)
        self._offset += n

    def _unmasked(self, data: bytes) -> bytes:
        return data if self._masker is None else self._masker.process(data)

    def _frame_end(self) -> None:
        self._in_frame = False
        if self._control:
            self.on_message(OPCODES[self._opcode], self._offset, self._control_kept)
        elif self._fin:
            kind, size, kept = self._message_kind, self._message_size, b"".join(self._message_kept)
            self._message_kind, self._message_size, self._message_kept, self._message_kept_size = None, 0, [], 0
            self.on_message(kind, size, kept)
