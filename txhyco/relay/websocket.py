"""The relay's WebSocket legs: control channels, senders and rendezvous sockets.

Every ``/$hc/`` upgrade becomes a :class:`RelayWebSocketProtocol`, an Autobahn
server protocol. Its role is decided in ``onConnect`` by the relay (see
:mod:`txhyco.relay.core`): a listener's control channel, a sender waiting to
be spliced, a listener's accept rendezvous, or an HTTP request rendezvous.
Data frames never reach ``onMessage``: Autobahn's streaming hooks hand them
to the role's *sink* as they arrive.
"""
from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import Logger

from txhyco._twisted.autobahn_speedups import LeanServerProtocol
from txhyco._twisted.eagerwrite import transport_unsent
from txhyco.protocol.frames import frame_header
from txhyco.protocol.messages import serialize_command


log = Logger()


# Close codes of RFC 6455 §7.4.1 that may appear in a Close frame.
_SENDABLE = WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED


def _reason_bytes(reason: str | None) -> bytes:
    """A close reason cut to the 123 bytes a Close frame allows, on a character boundary."""
    raw = (reason or "").encode("utf-8")[:123]
    return raw.decode("utf-8", "ignore").encode("utf-8")


#: Bytes a sender may send while its upgrade waits for the listener (its
#: first frames, pipelined before the 101). Past this the relay stops
#: reading from it until the listener answers, so a waiting sender cannot
#: make the relay buffer without limit. Reading goes on below the limit so
#: that a sender hanging up while it waits is still noticed at once.
EARLY_DATA_LIMIT = 64 * 1024


#: Bytes waiting to go out to a peer past which its Pings go unanswered: a
#: peer that sends Pings and reads nothing would otherwise make the relay
#: buffer Pongs without limit. RFC 6455 §5.5.3 allows answering only the
#: latest of several Pings; a peer this far behind has older Pongs pending.
#: Above what flow control lets build up toward a relayed stream's reader
#: (about 256 KiB), so keep-alives of slow readers are answered; a control
#: channel's role sets its own, above core.CONTROL_BACKLOG_LIMIT.
PONG_BACKLOG_LIMIT = 2 * 1024 * 1024


def _close_code_valid(code: int | None) -> bool:
    return code is None or code in _SENDABLE or 3000 <= code <= 4999


class _Discard:
    """Sink for messages a leg must not send (e.g. a sender before splicing)."""

    def message_begin(self, is_binary: bool) -> None:
        pass

    def frame_begin(self, length: int, fin: bool) -> None:
        pass

    def frame_data(self, data: bytes) -> None:
        pass

    def message_end(self) -> None:
        pass


DISCARD = _Discard()


class RelayWebSocketProtocol(LeanServerProtocol):
    """One WebSocket leg at the relay. See the module docstring."""

    #: Autobahn's debug and trace messages dump request heads (the
    #: ServiceBusAuthorization header), URLs (sb-hc-token) and payloads, so
    #: relay legs log at info at most, whatever the global txaio level:
    #: tokens never reach the logs (issue 3, "Auth").
    log = txaio.make_logger()
    log.set_log_level("info", keep=True)

    relay: Any = None  # set by the factory
    sink: Any = DISCARD
    #: the role object: ControlChannel, PendingConnect side, RelaySplice, RelayedHttpExchange
    role: Any = None
    #: the other leg once spliced (not ``peer``: Autobahn uses that name for
    #: the remote address string, which made every unspliced leg look spliced)
    partner: RelayWebSocketProtocol | None = None
    #: payload bytes still to be written of a frame forwarded *into* this leg
    frame_in_progress = 0
    #: control frames Autobahn wanted to send while a forwarded frame was open
    held_frames: tuple | list = ()
    #: the other leg sent Close and waits for this leg's answer (half-close, as .NET's
    #: HybridConnectionStream.Shutdown expects)
    owes_close_reply = False
    #: the request head's (name, value) byte pairs, set by the front door before the handshake
    front_headers: Any = None

    # -- handshake -----------------------------------------------------------

    #: reading from the transport was paused while waiting (EARLY_DATA_LIMIT)
    paused_while_waiting = False
    #: bytes the sender sent before its 101, held until the listener's leg is open
    early_data = b""

    def onConnect(self, request):
        result = self.relay.websocket_connect(self, request)
        if isinstance(result, Deferred) and not result.called:
            # Autobahn runs its whole handshake again on every read while
            # onConnect's Deferred is pending: a second request head in the
            # buffer became a second accept offer for the same connection,
            # and all buffered bytes were rescanned per read. The head was
            # parsed once; what follows is kept, unparsed, for after the 101.
            # (An instance attribute for the wait only: established
            # connections keep Autobahn's dataReceived, without a detour.)
            self.dataReceived = self._keep_early_data
            # Added before Autobahn's own callbacks, so reading resumes before
            # the 101 (or the error response) is sent.
            result.addBoth(self._listener_answered)
            # The first read may already hold more than the limit.
            self._bound_early_data()
        return result

    def _keep_early_data(self, data: bytes) -> None:
        self.data += data
        self._bound_early_data()

    def _bound_early_data(self) -> None:
        if len(self.data) > EARLY_DATA_LIMIT and not self.paused_while_waiting:
            self.paused_while_waiting = True
            self.transport.pauseProducing()

    def _listener_answered(self, result):
        self.__dict__.pop("dataReceived", None)  # Autobahn's own again
        if self.paused_while_waiting:
            self.paused_while_waiting = False
            self.transport.resumeProducing()
        if not isinstance(result, Failure):
            # Autobahn parses buffered bytes right after the 101, but the
            # listener's leg opens only just after this one: its frames
            # would be dropped. Hold them until both legs are open.
            self.early_data, self.data = self.data, b""
        return result

    def _replay_early_data(self) -> None:
        partner = self.partner
        if self.state != self.STATE_OPEN or partner is None or partner.state != self.STATE_OPEN:
            return
        self.data, self.early_data = self.early_data + self.data, b""
        self.consumeData()

    def onOpen(self) -> None:
        if self.role is not None:
            self.role.leg_opened(self)
        # Once both legs are open, frames a sender sent before its 101 can go.
        for leg in (self, self.partner):
            if leg is not None and leg.early_data:
                leg._replay_early_data()

    # -- streaming receive hooks -> sink ---------------------------------------

    def onMessageBegin(self, isBinary: bool) -> None:
        self.message_data_total_length = 0
        self.sink.message_begin(isBinary)

    def onMessageFrameBegin(self, length: int) -> None:
        # Autobahn's own bookkeeping enforces maxMessagePayloadSize (close 1009).
        WebSocketServerProtocol.onMessageFrameBegin(self, length)
        if not self.failedByMe:
            self.sink.frame_begin(length, self.current_frame.fin)

    def onMessageFrameData(self, payload: bytes) -> None:
        if not self.failedByMe:
            self.sink.frame_data(payload)

    def onMessageFrameEnd(self) -> None:
        self.frame_data = None

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.sink.message_end()

    # -- sending -------------------------------------------------------------

    def onPing(self, payload: bytes) -> None:
        held = self.held_frames
        for i, frame in enumerate(held):
            if frame[0] == 10:
                # A Pong already waits behind a forwarded frame: it answers
                # this latest Ping instead (RFC 6455 §5.5.3), one held at most.
                held[i] = (10, payload) + frame[2:]
                return
        limit = getattr(self.role, "pong_backlog_limit", PONG_BACKLOG_LIMIT)
        if transport_unsent(self.transport) > limit:
            return
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        # A control channel's answer to the relay's Ping (txhyco.relay.liveness).
        pong_received = getattr(self.role, "pong_received", None)
        if pong_received is not None:
            pong_received()

    def sendFrame(self, opcode, payload=b"", fin=True, rsv=0, mask=None, payload_len=None, chopsize=None, sync=False):
        # A control frame (pong, close) must not land inside a frame that is
        # being forwarded into this leg piece by piece: hold it until the
        # frame is complete (RFC 6455 §5.4 allows control frames between
        # fragments, not inside one).
        if self.frame_in_progress:
            if not self.held_frames:
                self.held_frames = []
            self.held_frames.append((opcode, payload, fin, rsv, mask, payload_len, chopsize, sync))
            return
        super().sendFrame(opcode, payload, fin, rsv, mask, payload_len, chopsize, sync)

    def release_held_frames(self) -> None:
        held, self.held_frames = self.held_frames, ()
        for args in held:
            super().sendFrame(*args)

    def close_with(self, code: int | None = None, reason: str | None = None) -> None:
        """Start a closing handshake with any sendable code.

        Autobahn's ``sendClose`` only lets applications use 1000 and
        3000-4999; a relay must also say 1001, 1008 and 1011
        (Hybrid Connections protocol, "Accepting the socket" and
        "Listener control channel connection") and pass on whatever code a peer used.
        """
        if code is None:
            self.sendCloseFrame(isReply=False)
        else:
            self.sendCloseFrame(code=code, reasonUtf8=_reason_bytes(reason), isReply=False)

    def _may_write_frames(self, size: int) -> bool:
        """Whether a whole message of ``size`` bytes may bypass ``sendMessage``.

        True in the usual case: open, no forwarded frame half-written into
        this leg, no compression or auto-fragmentation, within the leg's
        message limit (else ``sendMessage`` raises as it should).
        """
        return (
            self.state == self.STATE_OPEN
            and not self.frame_in_progress
            and self._perMessageCompress is None
            and not self.autoFragmentSize
            and not 0 < self.maxMessagePayloadSize < size
            and self.transport is not None
        )

    def send_command(self, command, body: bytes | None = None) -> None:
        """Send one control-channel command as a text message, and its body if given.

        Server frames are unmasked, so the frames are written directly: one
        ``transport.write`` for the command and its body (Hybrid Connections protocol,
        "Request message").
        """
        self.send_command_text(serialize_command(command), body)

    def send_command_text(self, text: str, body: bytes | None = None) -> None:
        """:meth:`send_command` for a command serialized already (its JSON, ASCII)."""
        payload = text.encode("ascii")
        if self._may_write_frames(len(payload)) and (body is None or self._may_write_frames(len(body))):
            if body is None:
                self.transport.write(frame_header(1, True, len(payload)) + payload)
            else:
                self.transport.write(b"".join((frame_header(1, True, len(payload)), payload, frame_header(2, True, len(body)), body)))
            return
        self.sendMessage(payload, isBinary=False)
        if body is not None:
            self.sendMessage(body, isBinary=True)

    # -- closing -------------------------------------------------------------

    def onCloseFrame(self, code, reasonRaw):
        peer = self.partner
        if (
            peer is None
            or self.state != self.STATE_OPEN
            or peer.state != self.STATE_OPEN
            or not _close_code_valid(code)
        ):
            result = super().onCloseFrame(code, reasonRaw)
            if peer is not None and peer.owes_close_reply and self.state != self.STATE_OPEN:
                # This was the far end's answer to a Close we forwarded.
                peer.answer_close(self.remoteCloseCode, self.remoteCloseReason)
            return result
        # Half-close (.NET's HybridConnectionStream.Shutdown): pass the Close on, keep
        # relaying the other way, and answer this leg only when the other side answers.
        reason = None
        if reasonRaw:
            try:
                reason = reasonRaw.decode("utf-8")
            except UnicodeDecodeError:
                return super().onCloseFrame(code, reasonRaw)
        self.remoteCloseCode, self.remoteCloseReason = code, reason
        self.owes_close_reply = True
        peer.closeHandshakeTimeout = self.relay.config.limits.stream_idle_timeout
        peer.close_with(code, reason)
        return None

    def answer_close(self, code: int | None, reason: str | None) -> None:
        """Complete a half-closed leg's handshake with the far end's answer."""
        self.owes_close_reply = False
        if self.state != self.STATE_OPEN:
            return
        self.wasClean = True
        if code is None or not _close_code_valid(code):
            self.sendCloseFrame(isReply=True)
        else:
            self.sendCloseFrame(code=code, reasonUtf8=_reason_bytes(reason), isReply=True)
        self.dropConnection(abort=False)

    def dropConnection(self, abort: bool = False) -> None:
        # After a clean closing handshake Autobahn's server side resets the
        # TCP connection; ws 1.x (hyco-ws) then reports 1006 instead of the
        # close code the relay passed on. Close with a FIN instead.
        if abort and self.wasClean:
            abort = False
        super().dropConnection(abort)

    def onClose(self, wasClean, code, reason) -> None:
        role = self.role
        if role is not None:
            role.leg_closed(self, wasClean, code, reason)


class RelayWebSocketFactory(WebSocketServerFactory):
    """Builds :class:`RelayWebSocketProtocol` legs for one relay."""

    protocol = RelayWebSocketProtocol

    def __init__(self, relay) -> None:
        super().__init__()
        self.relay = relay
        limits = relay.config.limits
        self.setProtocolOptions(
            webStatus=False,
            # The front door already timed the request head; this covers the
            # rest of the handshake (connect legs cancel it and wait for the
            # listener under the accept timeout instead).
            openHandshakeTimeout=limits.handshake_timeout,
            closeHandshakeTimeout=5,
            # The endpoints validate text; the relay passes frames through.
            utf8validateIncoming=False,
            maxMessagePayloadSize=limits.max_message_size,
            failByDrop=False,
            # The relay pings control channels itself (txhyco.relay.liveness).
            autoPingInterval=0,
        )
        self.server = "txhyco-relay"

    def buildProtocol(self, addr):
        proto = super().buildProtocol(addr)
        proto.relay = self.relay
        return proto
