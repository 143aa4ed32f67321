"""Reading the messages of a relayed WebSocket from its raw frames, for the inspector.

A relayed connection's frames pass the listener untouched (see
:mod:`txhyco.listener.accept`); the inspector reads a copy of them here,
one direction per :class:`MessageReader`, keeping at most ``cap`` bytes of
each message. It never raises: frames it cannot read (garbage, a reserved
opcode) stop it for that direction, and the connection goes on regardless.
"""
from __future__ import annotations

OPCODES = {0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping", 0xA: "pong"}


def _unmask(data: bytes, key: bytes, offset: int) -> bytes:
    """``data`` XORed with the 4-byte ``key``, starting ``offset`` bytes into the payload."""
    if not data:
        return data
    rotated = key[offset % 4:] + key[:offset % 4]
    stream = (rotated * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


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
        self._key: bytes | None = None
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
        if len(header) < 2:
            self._header = header
            return None
        b0, b1 = header[0], header[1]
        length = b1 & 0x7F
        need = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
        if len(header) < need:
            self._header = header
            return None
        used = need - len(self._header)
        self._header = b""
        opcode = b0 & 0x0F
        if b0 & 0x70 or opcode not in OPCODES and opcode != 0:
            self.broken = "a frame with reserved bits or opcode"
            return None
        pos = 2
        if length == 126:
            length = int.from_bytes(header[2:4], "big")
            pos = 4
        elif length == 127:
            length = int.from_bytes(header[2:10], "big")
            pos = 10
        self._key = header[pos:pos + 4] if b1 & 0x80 else None
        self._opcode, self._fin, self._control = opcode, bool(b0 & 0x80), opcode >= 0x8
        if not self._control:
            if opcode and self._message_kind is None:
                self._message_kind = OPCODES[opcode]
            elif not opcode and self._message_kind is None:
                self.broken = "a continuation frame outside a message"
                return None
        self._control_kept = b""
        self._offset = 0
        self._remaining = length
        self._in_frame = True
        rest = view[used:]
        if not length:
            self._frame_end()
        return rest

    def _payload(self, chunk) -> None:
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
        return data if self._key is None else _unmask(data, self._key, self._offset)

    def _frame_end(self) -> None:
        self._in_frame = False
        if self._control:
            self.on_message(OPCODES[self._opcode], self._offset, self._control_kept)
        elif self._fin:
            kind, size, kept = self._message_kind, self._message_size, b"".join(self._message_kept)
            self._message_kind, self._message_size, self._message_kept, self._message_kept_size = None, 0, [], 0
            self.on_message(kind, size, kept)
