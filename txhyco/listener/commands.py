"""A listener's control-channel commands: each ``accept`` and ``request`` to its handler
(Hybrid Connections protocol, "Accept handshake" and "Request message").

The relay's messages are read with the core's :class:`ChannelReader`: an
``accept`` goes to the listener's ``on_accept``, a ``request`` (once its
inline body, if any, is complete) to its ``on_request``. This is the control
channel's hot path: one method call per message, no Deferreds.
"""
from __future__ import annotations

import json

from twisted.logger import Logger

from txhyco.errors import RelayError
from txhyco._twisted.handshake import split_ws_url
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.channel import ROLE_LISTENER, BodyData, BodyEnded, ChannelReader, CommandReceived
from txhyco.protocol.messages import Accept, Request, Response

log = Logger()


class CommandDispatcher:
    """Reads one listener's control channel and hands out the work it brings.

    :param listener: the :class:`~txhyco.listener.control.HybridConnectionListener`
        (its ``reactor`` and ``hc``; as :class:`~txhyco.interfaces.IResponder`
        it answers requests on the control channel).
    :param on_accept: an :class:`~txhyco.interfaces.AcceptHandler`.
    :param on_request: a :class:`~txhyco.interfaces.RequestHandler`, or None
        to answer 501 (a listener with only WebSocket connections to offer).
    """

    def __init__(self, listener, on_accept, on_request=None) -> None:
        self.listener = listener
        self.on_accept = on_accept
        self.on_request = on_request
        self._reader = ChannelReader(ROLE_LISTENER)
        self._request: Request | None = None  # a request whose inline body is coming
        self._body: list[bytes] = []
        self._discard_body = False
        self._usable_origin: str | None = None  # see _usable_address

    def reset(self) -> None:
        """A new control channel: nothing of the last one's messages carries over."""
        self._reader = ChannelReader(ROLE_LISTENER)
        self._request, self._body = None, []

    def message(self, proto, payload: bytes, is_binary: bool) -> None:
        """One message from the relay on ``proto``, the control channel."""
        if is_binary and self._discard_body:
            self._discard_body = False
            return
        reader = self._reader
        try:
            events = reader.binary(payload) if is_binary else reader.text(payload)
        except ProtocolError as e:
            if not is_binary and self._request is None:
                # An unknown or malformed command: skip it, as .NET does,
                # answering 400 if it was a request we can still name.
                log.warn("ignored a control-channel command: {why}", why=e.message)
                self._reader = ChannelReader(ROLE_LISTENER)
                self.refuse_malformed_request(payload, e)
                return
            log.warn("relay broke the framing rules ({why}); reconnecting", why=e.message)
            proto.sendClose(1000)
            return
        for event in events:
            if isinstance(event, CommandReceived):
                command = event.command
                if isinstance(command, Accept):
                    self.dispatch_accept(command)
                elif isinstance(command, Request):
                    if command.body:
                        self._request, self._body = command, []
                    else:
                        self.dispatch_request(command, None if command.address_only else b"")
            elif isinstance(event, BodyData):
                self._body.append(event.data)
            elif isinstance(event, BodyEnded) and self._request is not None:
                request, self._request = self._request, None
                body, self._body = b"".join(self._body), []
                self.dispatch_request(request, body)

    def refuse_malformed_request(self, payload: bytes, error: ProtocolError) -> None:
        """A ``request`` whose headers could smuggle bytes gets 400, never the application."""
        try:  # (Autobahn already held the payload to CONTROL_MESSAGE_LIMIT)
            raw = json.loads(payload)["request"]
            request_id = raw["id"]
        except (ValueError, KeyError, TypeError, RecursionError):  # nesting too deep for json
            return
        if not isinstance(request_id, str):
            return
        self._discard_body = raw.get("body") is True
        self.listener.respond(Response(request_id, 400, "Bad Request", body=False))

    def dispatch_accept(self, accept: Accept) -> None:
        if not self._usable_address(accept, "an accept"):
            return
        try:
            self.on_accept(accept)
        except Exception:
            log.failure("accept handler failed for {id}", id=accept.id)

    def dispatch_request(self, request: Request, body: bytes | None) -> None:
        if not self._usable_address(request, "a request"):
            return
        listener = self.listener
        if self.on_request is None or listener.requests.closing:
            # No HTTP application: 501. A stopping listener (draining the
            # requests it is serving) takes no new one: 503 at once, so the
            # sender can try again (another listener, or this one back),
            # instead of being served by an application on its way out.
            # Answered on a rendezvous for address-only requests.
            from txhyco.listener.http import serve_request, stopping_site, websocket_only_site

            site = websocket_only_site() if self.on_request is None else stopping_site()
            serve_request(listener.reactor, listener.hc, site, request, body, listener)
            return
        try:
            self.on_request(request, body, listener)
        except Exception:
            log.failure("request handler failed for {id}", id=request.id)

    def _usable_address(self, command, kind: str) -> bool:
        """Whether ``command``'s rendezvous address can be connected to; a warning if not.

        An accept or request with an address that is not a ws(s) URL has
        nowhere to go, not even to be rejected: it is skipped rather than left
        to fail later inside a bridge. Only the scheme and authority decide,
        and a relay sends the same ones every time: once an address passed,
        any address beginning with the same ``scheme://authority/`` passes
        without being parsed again (per request, parsing cost the listener
        about 5 % of its CPU).
        """
        address = command.address
        known = self._usable_origin
        if known is not None and address.startswith(known):
            return True
        try:
            split_ws_url(address)
        except RelayError as e:
            log.warn("ignored {kind} for {id}: {why}", kind=kind, id=command.id, why=str(e))
            return False
        # The authority ends at the first "/" after "//" (or earlier, at "?"
        # or "#"); whatever follows the same prefix cannot change it.
        slash = address.find("/", address.find("//") + 2)
        if slash > 0:
            self._usable_origin = address[:slash + 1]
        return True
