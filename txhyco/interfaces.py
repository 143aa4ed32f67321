"""The roles txhyco's own objects play for each other, declared.

Twisted-style :mod:`zope.interface` interfaces for the objects that hand
work to each other inside txhyco (``verifyObject`` checks an implementer),
and :class:`typing.Protocol` types for the callables a caller passes in.
Nothing here is needed to *use* txhyco; it says what an object must offer
to stand in one of these places.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from zope.interface import Interface

if TYPE_CHECKING:  # pragma: no cover
    from txhyco.listener.status import ListenerStatus
    from txhyco.protocol.messages import Accept, Request

__all__ = [
    "AcceptHandler", "IBridge", "IChannelHandler", "IChannelSink", "IFrameSink", "IRendezvousHandler", "IResponder",
    "RequestHandler", "StatusObserver",
]


class IFrameSink(Interface):
    """Takes one WebSocket leg's incoming messages piece by piece, as Autobahn's streaming hooks give them."""

    def message_begin(is_binary):
        """A message begins; ``is_binary`` tells a binary message from a text one."""

    def frame_begin(length, fin):
        """A frame of ``length`` payload bytes begins; ``fin`` marks the message's last frame."""

    def frame_data(data):
        """The next piece of the current frame's payload."""

    def message_end():
        """The current message is complete."""


class IChannelSink(IFrameSink):
    """A frame sink that reads a channel of commands and bodies, and must hear when the leg closed.

    A peer's Close may end a body it never terminated (Hybrid Connections protocol,
    "Responding via rendezvous"), so a leg that closed cleanly tells its channel sink;
    other sinks (a splice's forwarder) do not need to hear it.
    """

    def closed():
        """The leg closed cleanly: whatever a Close ends, ends."""


class IChannelHandler(Interface):
    """Hears what a :class:`~txhyco.protocol.channel.ChannelReader` read from a leg (through a CommandSink)."""

    def channel_event(event):
        """One event: a command received, a piece of a body, a body's end."""

    def framing_error(error):
        """The peer broke the channel's framing rules (a
        :class:`~txhyco.protocol.errors.RemoteProtocolError`); nothing more will be read."""


class IBridge(Interface):
    """The far side of a :class:`~txhyco.listener.accept.RelayedTransport`: where an application's bytes go.

    Implemented by the accept bridge (a relayed WebSocket) and the HTTP
    bridge (a relayed request).
    """

    def outbound(data):
        """The application wrote ``data``."""

    def close(abort):
        """The application closed its transport (``abort``: at once, dropping what is unsent)."""

    def producer_changed():
        """The application registered or unregistered a producer on its transport."""

    def pause_inbound():
        """The application asked its transport to stop delivering data for now."""

    def resume_inbound():
        """The application asked its transport to deliver data again."""


class IRendezvousHandler(Interface):
    """Owns a rendezvous socket once its WebSocket upgrade succeeded (see ``RawUpgrade``)."""

    def dataReceived(data):
        """Bytes from the relay, after the 101 answer."""

    def connectionLost(reason):
        """The rendezvous socket closed."""


class IResponder(Interface):
    """Carries a listener's ``response`` (and a small body) back on its control channel."""

    def respond(response, body=None):
        """Send ``response`` and, when it has one, ``body`` (at most 64 KiB).

        :return: False if the control channel is down and nothing was sent.
        """


class AcceptHandler(Protocol):
    """A listener's ``on_accept``: serves one relayed WebSocket connection."""

    def __call__(self, accept: Accept) -> None: ...


class RequestHandler(Protocol):
    """A listener's ``on_request``: serves one relayed HTTP request.

    ``body`` is the whole body when the request came in full on the control
    channel, None when only its rendezvous address came (the request is read
    there); ``responder`` takes a response small enough for the control channel.
    """

    def __call__(self, request: Request, body: bytes | None, responder: IResponder) -> None: ...


class StatusObserver(Protocol):
    """Hears every change of a listener's status, with the last error seen (or None)."""

    def __call__(self, status: ListenerStatus, last_error: Exception | None) -> None: ...

