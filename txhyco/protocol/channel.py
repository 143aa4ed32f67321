"""The framing of a control channel or rendezvous (Hybrid Connections protocol,
"Request message" and "Responding via rendezvous"; Azure/azure-relay-dotnet, azure-relay-node
and azure-relay-java) as pure logic.

:class:`ChannelReader` is the state machine both ends run over the WebSocket
messages of a control channel or a rendezvous socket: it turns them into
commands and the bodies that follow them, and refuses what breaks the rules.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from .errors import ProtocolError, RemoteProtocolError
from .messages import Accept, Command, RenewToken, Request, Response, parse_command

__all__ = [
    "ROLE_LISTENER",
    "ROLE_RELAY",
    "ChannelEvent",
    "CommandReceived",
    "BodyStarted",
    "BodyData",
    "BodyEnded",
    "ChannelReader",
]

ROLE_LISTENER = "listener"
ROLE_RELAY = "relay"
_ROLE_COMMANDS: dict[str, tuple[type, ...]] = {
    ROLE_LISTENER: (Accept, Request),
    ROLE_RELAY: (Response, RenewToken),
}


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A command arrived (its body, if any, follows as Body* events)."""

    command: Command


@dataclass(frozen=True, slots=True)
class BodyStarted:
    """The body message of ``for_command`` began."""

    for_command: Union[Request, Response]


@dataclass(frozen=True, slots=True)
class BodyData:
    """A piece of the current body (never empty; the caller's object, not a copy)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BodyEnded:
    """The current body is complete.

    ``by_close`` is True when a Close ended an unterminated response body
    (Microsoft's Java listener never FIN-terminates rendezvous bodies) — normal, not an
    error.
    """

    by_close: bool = False


ChannelEvent = Union[CommandReceived, BodyStarted, BodyData, BodyEnded]

#: Every body's end but one cut by a close: one immutable event, made once.
_BODY_ENDED = BodyEnded()

_IDLE, _AWAIT_BODY, _IN_BODY, _STRAY, _CLOSED, _FAILED = range(6)


class ChannelReader:
    """Framing rules for a control channel or rendezvous (Hybrid Connections protocol,
    "Request message" and "Responding via rendezvous"; Azure/azure-relay-dotnet,
    azure-relay-node and azure-relay-java).

    Feed it WebSocket messages as they arrive — :meth:`text`, binary messages
    as :meth:`binary_begin` / :meth:`binary_data` … / :meth:`binary_end` (or
    whole via :meth:`binary`), and :meth:`closed` — and it returns the
    high-level events.  Rules:

    * a ``request``/``response`` with ``body: true`` must be followed by one
      binary message (possibly fragmented, possibly empty): its body; a text
      message there is a :class:`ProtocolError`;
    * a zero-length binary message when no body is expected is dropped (Node
      sends one after every response, even ``body: false``); a non-empty one
      is a :class:`ProtocolError`;
    * a close during a *response* body (or before it began) ends the body
      normally (as Microsoft's Java listener ends them); a close during a *request* body
      is a :class:`ProtocolError` (the sender's request was cut short);
    * only the commands of the reading side are allowed: ``accept``/``request``
      for the listener (``role="listener"``), ``response``/``renewToken`` for
      the relay (``role="relay"``); ``accept`` narrows or replaces that set
      (e.g. only :class:`Request` on a listener's rendezvous).

    After a :class:`ProtocolError` the reader stays failed (a later
    :meth:`closed` returns nothing).
    """

    __slots__ = ("_allowed", "_state", "_pending")

    def __init__(self, role: str = ROLE_LISTENER, *, accept: Iterable[type] | None = None) -> None:
        if accept is not None:
            allowed = tuple(accept)
        elif role in _ROLE_COMMANDS:
            allowed = _ROLE_COMMANDS[role]
        else:
            raise ValueError(f"role must be {ROLE_LISTENER!r} or {ROLE_RELAY!r}, not {role!r}")
        self._allowed = allowed
        self._state = _IDLE
        self._pending: Request | Response | None = None

    # -- events in

    def _fail(self, message: str) -> RemoteProtocolError:
        self._state = _FAILED
        self._pending = None
        return RemoteProtocolError(message)

    def _check_open(self) -> None:
        if self._state == _FAILED:
            raise RemoteProtocolError("The channel already broke the framing rules.")
        if self._state == _CLOSED:
            raise RemoteProtocolError("A message arrived after the channel closed.")

    def text(self, message: str | bytes) -> list[ChannelEvent]:
        """A complete text message: one command."""
        state = self._state
        if state != _IDLE:
            self._check_open()
            if state == _STRAY:
                raise self._fail("A text message arrived inside a binary message.")
            raise self._fail(
                "A text message arrived where the body (a binary message) of the "
                "previous command was expected."
            )
        try:
            command = parse_command(message)
        except ProtocolError:
            self._state = _FAILED
            raise
        if not isinstance(command, self._allowed):
            raise self._fail(
                f"A {type(command).__name__.lower()} command is not valid in this direction."
            )
        if command.__class__ in (Request, Response) and command.body:  # type: ignore[union-attr]
            self._pending = command  # type: ignore[assignment]
            self._state = _AWAIT_BODY
        return [CommandReceived(command)]

    def binary_begin(self) -> list[ChannelEvent]:
        """A binary message begins (its first frame)."""
        state = self._state
        if state == _AWAIT_BODY:
            self._state = _IN_BODY
            return [BodyStarted(self._pending)]  # type: ignore[arg-type]
        if state == _IDLE:
            self._state = _STRAY
            return []
        self._check_open()
        raise self._fail("A binary message began inside another binary message.")

    def binary_data(self, data: bytes) -> list[ChannelEvent]:
        """Payload of the current binary message (one or more calls)."""
        state = self._state
        if state == _IN_BODY:
            return [BodyData(data)] if data else []
        if state == _STRAY:
            if data:
                raise self._fail(
                    "A non-empty binary message arrived where no body was expected."
                )
            return []
        self._check_open()
        raise self._fail("Binary data arrived outside a binary message.")

    def binary_end(self) -> list[ChannelEvent]:
        """The current binary message ended (FIN)."""
        state = self._state
        if state == _IN_BODY:
            self._state = _IDLE
            self._pending = None
            return [_BODY_ENDED]
        if state == _STRAY:
            self._state = _IDLE
            return []
        self._check_open()
        raise self._fail("A binary message ended that never began.")

    def binary(self, data: bytes) -> list[ChannelEvent]:
        """A complete binary message, for WebSocket APIs that deliver whole messages."""
        state = self._state
        if state == _AWAIT_BODY:
            pending = self._pending
            self._state = _IDLE
            self._pending = None
            if data:
                return [BodyStarted(pending), BodyData(data), _BODY_ENDED]  # type: ignore[arg-type]
            return [BodyStarted(pending), _BODY_ENDED]  # type: ignore[arg-type]
        if state == _IDLE:
            if data:
                raise self._fail(
                    "A non-empty binary message arrived where no body was expected."
                )
            return []
        self._check_open()
        raise self._fail("A binary message began inside another binary message.")

    def closed(self) -> list[ChannelEvent]:
        """The socket closed (any close code).  Idempotent."""
        state = self._state
        pending = self._pending
        self._pending = None
        if state in (_AWAIT_BODY, _IN_BODY):
            if isinstance(pending, Response):
                self._state = _CLOSED
                if state == _AWAIT_BODY:
                    return [BodyStarted(pending), BodyEnded(by_close=True)]
                return [BodyEnded(by_close=True)]
            self._state = _FAILED
            raise RemoteProtocolError("The channel closed before the request body was complete.")
        if state != _FAILED:
            self._state = _CLOSED
        return []
