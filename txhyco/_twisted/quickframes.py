"""Reading the listener's control channel without Autobahn's per-frame machinery, where nothing is lost.

Once the control channel is open, almost every frame the relay sends is one
whole unfragmented text or binary message (a command, a request's inline
body), and Autobahn spends more on it (frame object, masker, message
assembly, UTF-8 validator, an observable "message" event) than the
listener spends on the command itself. :func:`read_whole_messages` takes
such frames straight from the bytes received and hands each payload to
``onMessage``; the first frame of any other kind (control frames, fragments,
anything a check refuses: RSV bits, a mask, non-minimal lengths, a size
beyond the protocol's limits, invalid UTF-8 in a text message) and every
byte after it go to Autobahn, which then owns the stream until its own
buffer is empty again between messages. So pings, pongs, the closing
handshake and every protocol violation keep Autobahn's handling, to the
byte.

Only for txhyco's own control-channel protocol (``ControlProtocol``), and
only if Autobahn's internals are what this was written against
(:data:`AVAILABLE`, checked at import); otherwise every byte goes to
Autobahn as before.
"""
from __future__ import annotations

from autobahn.websocket import protocol as _protocol

from txhyco.protocol.frames import simple_data_frame

#: Whether the control channel reads whole messages itself (tests turn it off to run the fallback).
ENABLED = True

_OPEN = getattr(_protocol.WebSocketProtocol, "STATE_OPEN", None)


def _internals_as_expected() -> bool:
    """Whether Autobahn keeps its receive state in the attributes this module reads."""
    cls = _protocol.WebSocketProtocol
    process = getattr(cls, "processData", None)
    received = getattr(cls, "_dataReceived", None)
    message_end = getattr(cls, "onMessageEnd", None)
    if _OPEN is None or not all(hasattr(f, "__code__") for f in (process, received, message_end)):
        return False
    return ({"data", "current_frame", "inside_message", "_perMessageCompress"} <= set(process.__code__.co_names)
            and {"data", "trafficStats", "consumeData"} <= set(received.__code__.co_names)
            and {"_onMessage", "failedByMe"} <= set(message_end.__code__.co_names))


#: Whether this Autobahn keeps the receive state this module relies on.
AVAILABLE = _internals_as_expected()


def _quiet_and_plain(proto) -> bool:
    """Whether ``proto`` is open, between frames and messages, with nothing buffered, logged or compressed."""
    return (proto.state == _OPEN and not proto.data and proto.current_frame is None and not proto.inside_message
            and proto._perMessageCompress is None and not proto.logOctets and not proto.logFrames
            and not proto.failedByMe and not proto.trackedTimings)


def read_whole_messages(proto, data: bytes) -> bytes:
    """Deliver the whole simple messages at the start of ``data`` to ``proto.onMessage``; returns the rest.

    The rest (from the first frame not taken on) is for Autobahn's ``dataReceived``.
    """
    if not (ENABLED and AVAILABLE) or not _quiet_and_plain(proto):
        return data
    limit = proto.maxMessagePayloadSize or 0
    frame_limit = proto.maxFramePayloadSize or 0
    if frame_limit and (not limit or frame_limit < limit):
        limit = frame_limit
    validate = proto.utf8validateIncoming
    stats = proto.trafficStats
    position = 0
    while True:
        frame = simple_data_frame(data, position, False, limit)  # the relay's frames are unmasked
        if frame is None:
            break
        is_binary, _, start, end = frame
        payload = data[start:end]
        if not is_binary and validate:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                break  # Autobahn fails the connection (1007)
        stats.incomingOctetsWireLevel += end - position
        position = end
        proto.onMessage(payload, is_binary)
        if not _quiet_and_plain(proto):
            break  # the message changed the channel (closing, say): the rest is Autobahn's
    return data[position:] if position else data
