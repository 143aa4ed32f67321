"""A listener's control channel: register, stay registered, and hand out work
(Hybrid Connections protocol, "Listener protocol"; README, "Staying up").

:class:`HybridConnectionListener` keeps one control channel open to the
relay. It reconnects with backoff (0, 1, 2, 5, 10, 30 s, with jitter; reset
once online) and stops for good only when the relay says the hybrid
connection does not exist (404). It renews its token before expiry with
``renewToken`` (from any token provider, async ones included) and keeps the
channel alive with WebSocket pings. Each ``accept`` and ``request`` goes to
the handlers it was given. Connections already relayed live on their own
sockets and survive a control-channel reconnect.

The roles live apart: :mod:`~txhyco.listener.reconnect` (when to try
again), :mod:`~txhyco.listener.renewal` (the token),
:mod:`~txhyco.listener.commands` (the relay's commands) and
:mod:`~txhyco.listener.status` (who hears of a change); this module keeps
the channel itself and its lifecycle.
"""
from __future__ import annotations

import uuid
from enum import Enum

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from txhyco.errors import RelayError, RelayRefused
from txhyco.interfaces import IResponder
from txhyco.listener.accept import send_messages
from txhyco.listener.commands import CommandDispatcher
from txhyco.listener.drain import RelayedConnections
from txhyco.listener.reconnect import BACKOFF, STABLE_AFTER, ReconnectSchedule
from txhyco.listener.renewal import TokenRenewal
from txhyco.listener.status import CONNECTING, OFFLINE, ONLINE, ListenerStatus, StatusReport
from txhyco._twisted.autobahn_speedups import LeanClientProtocol
from txhyco._twisted.handshake import KEEPALIVE, KEEPALIVE_TIMEOUT
from txhyco._twisted.quickframes import read_whole_messages
from txhyco.protocol.addresses import listen_url
from txhyco.protocol.messages import RenewToken, Response, serialize_command
from txhyco.sender.leg import open_leg

__all__ = [
    "ATTEMPT_TIMEOUT_MAX", "ATTEMPT_TIMEOUT_MIN", "BACKOFF", "CONNECTING", "CONTROL_MESSAGE_LIMIT", "ControlProtocol",
    "HybridConnectionListener", "KEEPALIVE", "ListenerStatus", "OFFLINE", "ONLINE", "STABLE_AFTER", "attempt_timeout",
]

log = Logger()

#: The largest message (and frame) a relay may send on the control channel:
#: a command (64 KiB at most) or an inline body (64 KiB). Larger is a broken
#: or hostile relay: Autobahn closes with 1009 instead of buffering it.
CONTROL_MESSAGE_LIMIT = 256 * 1024

#: Bounds of a connection attempt's set-up time (TCP, TLS, opening handshake).
ATTEMPT_TIMEOUT_MIN = 3.0
ATTEMPT_TIMEOUT_MAX = 30.0


def attempt_timeout(keepalive: float) -> float:
    """Seconds one control-channel connection attempt may take to open.

    As long as the keep-alive interval, within 3-30 s (30 s without
    keep-alive): a listener that notices a dead path within its keep-alive
    does not then wait 30 s per attempt into it, and is back soon after the
    path returns.
    """
    if keepalive <= 0:
        return ATTEMPT_TIMEOUT_MAX
    return min(ATTEMPT_TIMEOUT_MAX, max(ATTEMPT_TIMEOUT_MIN, keepalive))


class Lifecycle(Enum):
    """Whether a listener is to keep its control channel up."""

    #: ``start()`` waits on the first attempt, whose failure fails it (like .NET's OpenAsync) and stops.
    STARTING = "starting"
    #: Online once: every loss is followed by another attempt.
    RUNNING = "running"
    #: Not started, stopped, or told by the relay that the hybrid connection is gone: no more attempts.
    STOPPED = "stopped"


class ControlProtocol(LeanClientProtocol):
    """One connection attempt's control channel; everything it hears goes to its listener."""

    #: Autobahn's debug messages dump the upgrade request, token included:
    #: this leg logs at info at most, whatever the global txaio level.
    log = txaio.make_logger()
    log.set_log_level("info", keep=True)

    def __init__(self, listener: HybridConnectionListener) -> None:
        super().__init__()
        self.listener = listener
        self.commands = listener.commands

    def onOpen(self) -> None:
        self.listener._online(self)

    def dataReceived(self, data: bytes) -> None:
        # Whole simple messages skip Autobahn's per-frame work (txhyco._twisted.quickframes)
        rest = read_whole_messages(self, data)
        if rest:
            super().dataReceived(rest)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.commands.message(self, payload, isBinary)

    def onClose(self, wasClean, code, reason) -> None:
        self.listener._closed(self, code, reason)


@implementer(IResponder)
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
        #: relayed HTTP requests being served: their responses may need the
        #: control channel, so a stopping port lets them finish before it closes
        self.requests = RelayedConnections(reactor)
        self.keepalive = keepalive
        self.tracking_id = tracking_id or str(uuid.uuid4())
        self.commands = CommandDispatcher(self, on_accept, on_request)
        self._report = StatusReport()
        self._reconnect = ReconnectSchedule(reactor, backoff, jitter)
        self._renewal = TokenRenewal(reactor, hc, self._send_renewal)
        self._lifecycle = Lifecycle.STOPPED
        self._proto: ControlProtocol | None = None
        self._connecting: defer.Deferred | None = None
        self._started: defer.Deferred | None = None  # start()'s, while STARTING

    # -- status -----------------------------------------------------------

    @property
    def status(self) -> ListenerStatus:
        """What the control channel is doing: connecting, online or offline."""
        return self._report.status

    @property
    def last_error(self) -> Exception | None:
        """The latest reason the channel went down or an attempt failed."""
        return self._report.last_error

    @property
    def next_retry_at(self) -> float | None:
        """When (reactor time) the next reconnect attempt starts, while one is scheduled."""
        return self._reconnect.next_at

    def add_status_observer(self, observer) -> None:
        """``observer(status, last_error)`` on every change: connecting, online, offline."""
        self._report.add_observer(observer)

    def remove_status_observer(self, observer) -> None:
        self._report.remove_observer(observer)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Connect; fires once online, fails with the first error (no retry, like .NET's OpenAsync).

        Cancelling it stops the listener.
        """
        self._lifecycle = Lifecycle.STARTING
        # Kept here too: a first attempt that fails at once (a bad proxy
        # setting) has fired and dropped self._started before we return.
        started = self._started = defer.Deferred(self._cancel_start)
        self._connect()
        return started

    def _cancel_start(self, started) -> None:
        # The Deferred errbacks with CancelledError itself once we return.
        self._started = None
        self.stop()

    def stop(self) -> defer.Deferred:
        """Close the control channel (1000) and stop reconnecting."""
        self._lifecycle = Lifecycle.STOPPED
        self._reconnect.cancel()
        self._renewal.cancel()
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        proto = self._proto
        if proto is not None and proto.state == proto.STATE_OPEN:
            proto.sendClose(1000)
            return proto.is_closed.addCallback(lambda _: self._report.set(OFFLINE))
        self._report.set(OFFLINE)
        return defer.succeed(None)

    def _attempt_connect(self) -> defer.Deferred:
        timeout = attempt_timeout(self.keepalive)
        factory = WebSocketClientFactory(reactor=self.reactor)
        factory.protocol = lambda: ControlProtocol(self)
        factory.setProtocolOptions(
            openHandshakeTimeout=timeout,
            closeHandshakeTimeout=5,
            autoPingInterval=self.keepalive,
            autoPingTimeout=min(KEEPALIVE_TIMEOUT, self.keepalive),
            maxMessagePayloadSize=CONTROL_MESSAGE_LIMIT,
            maxFramePayloadSize=CONTROL_MESSAGE_LIMIT,
        )

        def connected(proto, token) -> None:
            self._proto = proto
            self._renewal.connected(token)

        url = listen_url(self.hc.namespace, self.hc.path, tracking_id=self.tracking_id)
        # Only the first attempt, whose failure start() reports, names a
        # plain/TLS mix-up (a probe connection); retries are only logged.
        return open_leg(self.reactor, self.hc, factory, lambda _: url, on_connected=connected, connect_timeout=timeout,
                        diagnose=self._lifecycle is Lifecycle.STARTING, large_writes_wait=False)

    def _connect(self) -> None:
        if self._lifecycle is Lifecycle.STOPPED:
            return
        self._report.set(CONNECTING)
        self._connecting = self._attempt_connect()
        self._connecting.addErrback(self._connect_failed)

    def _connect_failed(self, failure) -> None:
        self._proto = None
        if self._lifecycle is Lifecycle.STOPPED:
            self._report.set(OFFLINE)
            return
        error = failure.value
        if not isinstance(error, Exception):
            error = RelayError(str(error))
        if self._lifecycle is Lifecycle.STARTING:
            # The first attempt fails loudly, like .NET's OpenAsync.
            self._lifecycle = Lifecycle.STOPPED
            self._report.set(OFFLINE, error)
            started, self._started = self._started, None
            started.errback(failure)
            return
        self._retry_later(error)

    def _retry_later(self, error: Exception) -> None:
        if isinstance(error, RelayRefused) and error.status == 404:
            log.error("listener for {path} stops: {error}", path=self.hc.path, error=str(error))
            self._lifecycle = Lifecycle.STOPPED
            self._report.set(OFFLINE, error)
            return
        if self._lifecycle is Lifecycle.STOPPED:
            self._report.set(OFFLINE, error)
            return
        delay = self._reconnect.schedule(self._connect)
        log.info("control channel for {path} reconnects in {delay:.1f} s after: {error}", path=self.hc.path, delay=delay, error=str(error))
        self._report.set(CONNECTING, error)

    # -- control protocol callbacks ------------------------------------------

    def _online(self, proto) -> None:
        self._reconnect.online()
        self.commands.reset()
        self._renewal.schedule()
        log.info("control channel for {address} online", address=str(self.hc.address))
        self._report.set(ONLINE)
        if self._lifecycle is Lifecycle.STARTING:
            self._lifecycle = Lifecycle.RUNNING
            started, self._started = self._started, None
            started.callback(self)

    def _closed(self, proto, code, reason) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self._renewal.cancel()
        if not proto.is_open.called:
            return  # a failed handshake: _connect_failed reports it
        if self._lifecycle is Lifecycle.STOPPED:
            self._report.set(OFFLINE)
            return
        self._retry_later(RelayError(f"The control channel closed ({code}{': ' + reason if reason else ''})."))

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

    def _send_renewal(self, token: str) -> bool:
        proto = self._proto
        if proto is None or proto.state != proto.STATE_OPEN:
            return False
        proto.sendMessage(serialize_command(RenewToken(token)).encode("utf-8"), isBinary=False)
        return True
