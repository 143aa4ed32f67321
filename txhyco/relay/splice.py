"""Relaying WebSocket frames between a sender and a listener's rendezvous
(Hybrid Connections protocol, "Accept message").

The relay terminates both WebSocket legs with Autobahn (handshakes, masking,
control frames, limits) but never reassembles data messages: each data frame
is re-emitted on the other leg as it arrives, with its opcode and FIN bit, so
message boundaries, types and fragmentation survive, memory stays flat for
messages of any size, and there is no copy beyond Autobahn's unmasking.

Re-emitting a frame whose payload arrives over several reads needs its
header written first with the FIN bit of the incoming frame, which Autobahn's
streaming send API cannot express (it always writes FIN=0 and ends messages
with an extra empty frame). So this module writes the header itself (built
by :func:`txhyco.protocol.frames.frame_header`): an unmasked server-to-client
frame header, RFC 6455 §5.2.
"""
from __future__ import annotations

from txhyco.protocol.frames import OP_BINARY, OP_TEXT, frame_header


class Forwarder:
    """Receives one leg's data frames (Autobahn's streaming hooks) and writes them to the other.

    A frame's header waits for the first piece of its payload so both leave
    in one write (one segment, one wake-up of the peer, not two).

    ``counter`` is a one-element list that accumulates payload bytes, read by
    the metrics collector; cheaper than a metric object on the hot path.
    """

    __slots__ = ("source", "target", "_opcode", "_counter", "_header")

    def __init__(self, source, target, counter: list[int]) -> None:
        self.source = source
        self.target = target
        self._opcode = 0
        self._counter = counter
        self._header = None

    def message_begin(self, is_binary: bool) -> None:
        self._opcode = OP_BINARY if is_binary else OP_TEXT

    def frame_begin(self, length: int, fin: bool) -> None:
        target = self.target
        self._counter[0] += length
        if target.state != target.STATE_OPEN:
            return
        header = frame_header(self._opcode, fin, length)
        self._opcode = 0
        if length:
            self._header = header
            target.frame_in_progress = length
        else:
            target.transport.write(header)

    def frame_data(self, data: bytes) -> None:
        target = self.target
        # A frame already begun is finished even if the target started
        # closing meanwhile: its Close waits in held_frames until then.
        if not target.frame_in_progress:
            return
        header = self._header
        if header is not None:
            self._header = None
            target.transport.writeSequence((header, data))
        else:
            target.transport.write(data)
        target.frame_in_progress -= len(data)
        if not target.frame_in_progress and target.held_frames:
            target.release_held_frames()

    def frame_end(self) -> None:
        pass

    def message_end(self) -> None:
        pass
