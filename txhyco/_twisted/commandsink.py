"""Autobahn's streaming receive hooks feeding the core's :class:`ChannelReader`.

Both roles use it: the relay on control channels and request rendezvous,
the listener on request rendezvous. Commands (text) are joined and capped at
64 KiB (.NET's and Java's limit); bodies (binary) stream through piece by piece.
"""
from __future__ import annotations

from zope.interface import implementer

from txhyco.interfaces import IChannelHandler, IChannelSink
from txhyco.protocol.channel import ChannelReader
from txhyco.protocol.errors import ProtocolError, RemoteProtocolError
from txhyco.protocol.messages import MAX_COMMAND_SIZE


@implementer(IChannelSink)
class CommandSink:
    """Turns a leg's messages into :class:`ChannelReader` events for an :class:`IChannelHandler`.

    Text messages (commands, at most a few KiB) are joined; binary messages
    (bodies) stream through piece by piece.
    """

    __slots__ = ("reader", "handler", "_text", "_text_size", "_binary")

    def __init__(self, reader: ChannelReader, handler: IChannelHandler) -> None:
        self.reader = reader
        self.handler = handler
        self._text: list[bytes] | None = None
        self._text_size = 0
        self._binary = False

    def _deliver(self, call, *args) -> None:
        try:
            events = call(*args)
        except ProtocolError as e:
            self.handler.framing_error(e)
            return
        for event in events:
            self.handler.channel_event(event)

    def message_begin(self, is_binary: bool) -> None:
        self._binary = is_binary
        if is_binary:
            self._deliver(self.reader.binary_begin)
        else:
            self._text = []
            self._text_size = 0

    def whole_message(self, is_binary: bool, payload: bytes) -> None:
        """A whole message at once: what ``message_begin``, one frame and ``message_end`` do, in one call
        (a failing body reports its framing error once, not for each piece)."""
        self._binary = is_binary
        self._text = None
        if is_binary:
            self._deliver(self.reader.binary, payload)
        elif len(payload) > MAX_COMMAND_SIZE:
            self.handler.framing_error(RemoteProtocolError(f"A command is longer than {MAX_COMMAND_SIZE} bytes."))
        else:
            self._deliver(self.reader.text, payload)

    def frame_begin(self, length: int, fin: bool) -> None:
        pass

    def frame_data(self, data: bytes) -> None:
        if self._binary:
            if data:
                self._deliver(self.reader.binary_data, data)
        elif self._text is not None:
            # Legs whose bodies may be any size (request rendezvous) have no
            # Autobahn message cap, so commands are capped here (64 KiB, .NET's and
            # Java's limit).
            self._text_size += len(data)
            if self._text_size > MAX_COMMAND_SIZE:
                self._text = None
                self.handler.framing_error(RemoteProtocolError(f"A command is longer than {MAX_COMMAND_SIZE} bytes."))
                return
            self._text.append(data)

    def message_end(self) -> None:
        if self._binary:
            self._deliver(self.reader.binary_end)
        elif self._text is not None:
            text, self._text = b"".join(self._text), None
            self._deliver(self.reader.text, text)

    def closed(self) -> None:
        self._deliver(self.reader.closed)


