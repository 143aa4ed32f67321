"""A listener's control channel: register, stay registered, and hand out work (§4, §7).

:class:`HybridConnectionListener` keeps one control channel open to the
relay. It reconnects with backoff (0, 1, 2, 5, 10, 30 s, with jitter; reset
once online) and stops for good only when the relay says the hybrid
connection does not exist (404). It renews its token before expiry with
``renewToken`` (from any token provider, async ones included) and keeps the
channel alive with WebSocket pings. Each ``accept`` and ``request`` goes to
the handlers it was given. Connections already relayed live on their own
sockets and survive a control-channel reconnect.
"""
from __future__ import annotations

import json
import random
import uuid

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import defer
from twisted.logger import Logger

from txhyco.listener.accept import send_messages
from txhyco.errors import RelayError, RelayHandshakeError
from txhyco._twisted.autobahn_speedups import LeanClientProtocol
from txhyco._twisted.handshake import KEEPALIVE, KEEPALIVE_TIMEOUT, split_ws_url
from txhyco.protocol.addresses import listen_url
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.http import ROLE_LISTENER, BodyData, BodyEnded, ChannelReader, CommandReceived
from txhyco.protocol.messages import Accept, RenewToken, Request, Response, serialize_command
from txhyco.protocol.tokens import renewal_time
from txhyco.sender.leg import open_leg

log = Logger()

#: Reconnect delays in seconds (protocol.md §7.2), the last one repeating.
BACKOFF = (0, 1, 2, 5, 10, 30)
#: A control channel online this long counts as stable: the next loss starts
#: the backoff over. One that a relay drops sooner keeps backing off (a relay
#: that accepts and closes at once must not get a reconnect storm).
STABLE_AFTER = 30.0
#: The largest message (and frame) a relay may send on the control channel:
#: a command (64 KiB at most) or an inline body (64 KiB). Larger is a broken
#: or hostile relay: Autobahn closes with 1009 instead of buffering it.
CONTROL_MESSAGE_LIMIT = 256 * 1024

CONNECTING, ONLINE, OFFLINE = "connecting", "online", "offline"


class ControlProtocol(LeanClientProtocol):
    """One connection attempt's control channel; everything it hears goes to its listener."""

    #: Autobahn's debug messages dump the upgrade request, token included:
    #: this leg logs at info at most, whatever the global txaio level.
    log = txaio.make_logger()
    log.set_log_level("info", keep=True)

    def __init__(self, listener: HybridConnectionListener) -> None:
        super().__init__()
        self.listener = listener

    def onOpen(self) -> None:
        self.listener._online(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.listener._message(self, payload, isBinary)

    def onClose(self, wasClean, code, reason) -> None:
        self.listener._closed(self, code, reason)


class HybridConnectionListener:
    """Keeps a control channel open and dispatches ``accept`` and ``request`` commands.

    :param on_accept: called with each :class:`Accept`.
    :param on_request: called with (:class:`Request`, body bytes or None,
        this listener) for requests that arrive in full on the control
        channel, and with (:class:`Request`, None, listener) for address-only
        ones; None answers 501.
    """

    def __init__(self, reactor, hc, *, on_accept, on_request=None, keepalive: float = KEEPALIVE,
                 tracking_id: str | None = None, backoff=BACKOFF, jitter: float = 0.25) -> None:
        self.reactor = reactor
        self.hc = hc
        self.on_accept = on_accept
        self.on_request = on_request
        self.keepalive = keepalive
        self.tracking_id = tracking_id or str(uuid.uuid4())
        self.backoff = tuple(backoff)
        self.jitter = jitter
        self.status = OFFLINE
        self.last_error: Exception | None = None
        self._observers: list = []
        self._proto: ControlProtocol | None = None
        self._attempt = 0
        self._online_since: float | None = None
        self._stopping = False
        self._retry_call = None
        self._renew_call = None
        self._connecting: defer.Deferred | None = None
        self._started: defer.Deferred | None = None
        self._reader: ChannelReader | None = None
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._token: str | None = None
        self._token_time = 0.0
        self._discard_body = False
        self._usable_origin: str | None = None  # see _usable_address

    # -- status -----------------------------------------------------------

    @property
    def next_retry_at(self) -> float | None:
        """When (reactor time) the next reconnect attempt starts, while one is scheduled."""
        call = self._retry_call
        return call.getTime() if call is not None and call.active() else None

    def add_status_observer(self, observer) -> None:
        """``observer(status, last_error)`` on every change: connecting, online, offline."""
        self._observers.append(observer)

    def remove_status_observer(self, observer) -> None:
        self._observers.remove(observer)

    def _set_status(self, status: str, error: Exception | None = None) -> None:
        if status == self.status and error is None:
            return  # not a change (stopping reports OFFLINE from two places)
        if error is not None:
            self.last_error = error
        self.status = status
        for observer in list(self._observers):
            try:
                observer(status, self.last_error)
            except Exception:
                log.failure("status observer failed")

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Connect; fires once online, fails with the first error (no retry, like .NET's OpenAsync).

        Cancelling it stops the listener.
        """
        self._stopping = False
        self._started = defer.Deferred(self._cancel_start)
        self._connect()
        return self._started

    def _cancel_start(self, started) -> None:
        # The Deferred errbacks with CancelledError itself once we return.
        self._started = None
        self.stop()

    def stop(self) -> defer.Deferred:
        """Close the control channel (1000) and stop reconnecting."""
        self._stopping = True
        for call in (self._retry_call, self._renew_call):
            if call is not None and call.active():
                call.cancel()
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        proto = self._proto
        if proto is not None and proto.state == proto.STATE_OPEN:
            proto.sendClose(1000)
            return proto.is_closed.addCallback(lambda _: self._set_status(OFFLINE))
        if self.status != OFFLINE:
            self._set_status(OFFLINE)
        return defer.succeed(None)

    def _attempt_connect(self) -> defer.Deferred:
        factory = WebSocketClientFactory(reactor=self.reactor)
        factory.protocol = lambda: ControlProtocol(self)
        factory.setProtocolOptions(
            openHandshakeTimeout=30,
            closeHandshakeTimeout=5,
            autoPingInterval=self.keepalive,
            autoPingTimeout=min(KEEPALIVE_TIMEOUT, self.keepalive),
            maxMessagePayloadSize=CONTROL_MESSAGE_LIMIT,
            maxFramePayloadSize=CONTROL_MESSAGE_LIMIT,
        )

        def connected(proto, token) -> None:
            self._proto = proto
            self._token, self._token_time = token, self.reactor.seconds()

        url = listen_url(self.hc.namespace, self.hc.path, tracking_id=self.tracking_id)
        return open_leg(self.reactor, self.hc, factory, lambda _: url, on_connected=connected)

    def _connect(self) -> None:
        self._retry_call = None
        if self._stopping:
            return
        self._set_status(CONNECTING)
        self._connecting = self._attempt_connect()
        self._connecting.addErrback(self._connect_failed)

    def _connect_failed(self, failure) -> None:
        if self._stopping:
            self._proto = None
            self._set_status(OFFLINE)
            return
        error = failure.value
        if not isinstance(error, Exception):
            error = RelayError(str(error))
        self._proto = None
        if self._started is not None and not self._started.called:
            # The first attempt fails loudly, like .NET's OpenAsync.
            self._stopping = True
            self._set_status(OFFLINE, error)
            started, self._started = self._started, None
            started.errback(failure)
            return
        self._retry_later(error)

    def _retry_later(self, error: Exception) -> None:
        if isinstance(error, RelayHandshakeError) and error.status == 404:
            log.error("listener for {path} stops: {error}", path=self.hc.path, error=str(error))
            self._stopping = True
            self._set_status(OFFLINE, error)
            return
        if self._stopping:
            self._set_status(OFFLINE, error)
            return
        since, self._online_since = self._online_since, None
        if since is not None and self.reactor.seconds() - since >= STABLE_AFTER:
            self._attempt = 0  # it was up long enough: start the backoff over
        delay = self.backoff[min(self._attempt, len(self.backoff) - 1)]
        self._attempt += 1
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        log.info("control channel for {path} reconnects in {delay:.1f} s after: {error}", path=self.hc.path, delay=delay, error=str(error))
        self._set_status(CONNECTING, error)
        self._retry_call = self.reactor.callLater(max(0.0, delay), self._connect)

    # -- control protocol callbacks ------------------------------------------

    def _online(self, proto) -> None:
        self._online_since = self.reactor.seconds()
        self._reader = ChannelReader(ROLE_LISTENER)
        self._request, self._body = None, []
        self._schedule_renewal()
        log.info("control channel for {address} online", address=str(self.hc.address))
        self._set_status(ONLINE)
        if self._started is not None and not self._started.called:
            started, self._started = self._started, None
            started.callback(self)

    def _closed(self, proto, code, reason) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        if self._renew_call is not None and self._renew_call.active():
            self._renew_call.cancel()
        if not proto.is_open.called:
            return  # a failed handshake: _connect_failed reports it
        if self._stopping:
            self._set_status(OFFLINE)
            return
        self._retry_later(RelayError(f"The control channel closed ({code}{': ' + reason if reason else ''})."))

    def _message(self, proto, payload: bytes, is_binary: bool) -> None:
        if is_binary and self._discard_body:
            self._discard_body = False
            return
        reader = self._reader
        try:
            events = reader.binary(payload) if is_binary else reader.text(payload)
        except ProtocolError as e:
            if not is_binary and self._request is None:
                # An unknown or malformed command: skip it, as .NET does (§11),
                # answering 400 if it was a request we can still name.
                log.warn("ignored a control-channel command: {why}", why=e.message)
                self._reader = ChannelReader(ROLE_LISTENER)
                self._refuse_malformed_request(payload, e)
                return
            log.warn("relay broke the framing rules ({why}); reconnecting", why=e.message)
            proto.sendClose(1000)
            return
        for event in events:
            if isinstance(event, CommandReceived):
                command = event.command
                if isinstance(command, Accept):
                    self._dispatch_accept(command)
                elif isinstance(command, Request):
                    if command.body:
                        self._request, self._body = command, []
                    else:
                        self._dispatch_request(command, None if command.address_only else b"")
            elif isinstance(event, BodyData):
                self._body.append(event.data)
            elif isinstance(event, BodyEnded) and self._request is not None:
                request, self._request = self._request, None
                body, self._body = b"".join(self._body), []
                self._dispatch_request(request, body)

    def _refuse_malformed_request(self, payload: bytes, error: ProtocolError) -> None:
        """A ``request`` whose headers could smuggle bytes gets 400, never the application."""
        try:  # (Autobahn already held the payload to CONTROL_MESSAGE_LIMIT)
            raw = json.loads(payload)["request"]
            request_id = raw["id"]
        except (ValueError, KeyError, TypeError, RecursionError):  # nesting too deep for json
            return
        if not isinstance(request_id, str):
            return
        self._discard_body = raw.get("body") is True
        self.respond(Response(request_id, 400, "Bad Request", body=False))

    def _dispatch_accept(self, accept: Accept) -> None:
        if not self._usable_address(accept, "an accept"):
            return
        try:
            self.on_accept(accept)
        except Exception:
            log.failure("accept handler failed for {id}", id=accept.id)

    def _dispatch_request(self, request: Request, body: bytes | None) -> None:
        if not self._usable_address(request, "a request"):
            return
        if self.on_request is None:
            # No HTTP application: answer 501, on a rendezvous for address-only requests.
            from txhyco.listener.http import serve_request, websocket_only_site

            serve_request(self.reactor, self.hc, websocket_only_site(), request, body, self)
            return
        try:
            self.on_request(request, body, self)
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

    # -- sending ------------------------------------------------------------

    def respond(self, response: Response, body: bytes | None = None) -> bool:
        """Send a response (and its body, ≤ 64 KiB) on the control channel; False if it is down."""
        proto = self._proto
        if proto is None or proto.state != proto.STATE_OPEN:
            return False
        command = serialize_command(response).encode("utf-8")
        if response.body:
            # The command and its body in one write: one segment to the relay.
            send_messages(proto, ((command, False), (body or b"", True)))
        else:
            proto.sendMessage(command, isBinary=False)
        return True

    # -- token renewal (§4.5, §7.3, §11) ---------------------------------------

    def _schedule_renewal(self) -> None:
        if self._renew_call is not None and self._renew_call.active():
            self._renew_call.cancel()
        when = renewal_time(self._token, self._token_time) if self._token else None
        if when is None:
            return
        self._renew_call = self.reactor.callLater(max(1.0, when - self.reactor.seconds()), self._renew)

    @defer.inlineCallbacks
    def _renew(self):
        self._renew_call = None
        try:
            token = yield self.hc.get_token(self.reactor)
        except Exception as e:
            log.warn("token renewal failed: {error}; retrying in 30 s", error=str(e))
            self._renew_call = self.reactor.callLater(30, self._renew)
            return
        proto = self._proto
        if proto is None or proto.state != proto.STATE_OPEN or not token:
            return
        self._token, self._token_time = token, self.reactor.seconds()
        proto.sendMessage(serialize_command(RenewToken(token)).encode("utf-8"), isBinary=False)
        self._schedule_renewal()
