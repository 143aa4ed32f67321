"""A listener's control channel, read without Autobahn's per-frame machinery.

Every relayed HTTP request brings two messages back on the listener's
control channel (its ``response`` command and the body), and Autobahn walks
each through about a dozen calls (header checks, a masker, begin, data, end
and message hooks). The relay reads the usual ones itself: a whole data
message in one frame (FIN set, no RSV bits, masked as RFC 6455 section 5.3
asks of a client, its length in the shortest encoding of section 5.2,
within the channel's message limit), whole in the bytes at hand, while
Autobahn is between messages with nothing buffered. It hands the message to
the channel's sink as Autobahn's streaming hooks would (begin, one frame,
its payload, end), or in one call to a sink that takes whole messages
(``whole_message``, as :class:`~txhyco._twisted.commandsink.CommandSink` does).

Everything else, from the first frame that is not such a message, goes to
Autobahn as before: control frames (Ping, Pong, Close), fragments, partial
frames, anything it must refuse, and everything once the channel is closing.
Only the relay's own control channel legs read this way (an instance
attribute set when the channel opens); Autobahn itself is not changed.
"""
from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol

from txhyco._twisted import quickframes
from txhyco._twisted.masking import fast_masker
from txhyco.protocol.frames import simple_data_frame

_OPEN = WebSocketProtocol.STATE_OPEN


def read_whole_messages(proto, data: bytes) -> int:
    """Deliver the whole single-frame data messages at the start of ``data`` to ``proto.sink``.

    Returns how many bytes were read: the rest (from the first frame that
    is not such a message, or once the channel is no longer open) is
    Autobahn's to read.
    """
    limit = proto.maxMessagePayloadSize or 0
    validate = proto.utf8validateIncoming
    pos = 0
    while proto.state == _OPEN:
        frame = simple_data_frame(data, pos, True, limit)  # a listener's frames are masked
        if frame is None:
            break
        is_binary, mask, start, end = frame
        payload = fast_masker(mask, end - start).process(data[start:end]) if end > start else b""
        if not is_binary and validate:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                break  # Autobahn fails the channel (1007)
        sink = proto.sink
        whole = getattr(sink, "whole_message", None)
        if whole is not None:
            whole(is_binary, payload)
        else:
            sink.message_begin(is_binary)
            sink.frame_begin(end - start, True)
            sink.frame_data(payload)
            sink.message_end()
        pos = end
    return pos


def read_quickly(proto) -> None:
    """From now on, ``proto`` (an open control channel leg) reads its whole messages itself.

    Only where Autobahn keeps its receive state as :mod:`txhyco._twisted.quickframes`
    checked at import (and while it is enabled); otherwise Autobahn reads everything.
    """
    if not (quickframes.ENABLED and quickframes.AVAILABLE):
        return
    autobahn_read = type(proto).dataReceived

    def dataReceived(data: bytes) -> None:
        if proto.data or proto.current_frame is not None or proto.inside_message:
            autobahn_read(proto, data)  # Autobahn is inside a frame or message
            return
        done = read_whole_messages(proto, data)
        if done < len(data):
            autobahn_read(proto, data[done:] if done else data)

    proto.dataReceived = dataReceived
