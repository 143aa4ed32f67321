"""Serving an accepted relayed WebSocket with an ordinary server protocol.

The application's protocol (an Autobahn ``WebSocketServerProtocol``, or a
twisted.web ``Site`` with a ``WebSocketResource``) gets a transport of ours
and, through it, exactly what a direct client would have sent: an HTTP/1.1
Upgrade request built from the ``accept`` message, then the
sender's frames. Its answer decides the rendezvous: a 101 opens it (with the
chosen sub-protocol), anything else rejects the connection with that status
and reason (Hybrid Connections protocol, "Accepting the socket", "Rejecting the socket"
and "Accept handshake").

After that, frames are not parsed into messages: the relay's frames go into
the protocol as they come, and the protocol's frames go out as they are
written, with the client mask RFC 6455 requires on the rendezvous leg added
on the way. Control frames, close handshakes and fragmentation stay the
application's and the sender's business, end to end.
"""
from __future__ import annotations

from enum import Enum
from urllib.parse import urlsplit

import h11
import httptools

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone, ConnectionLost
from zope.interface import implementer

from txhyco._twisted.transport import TransportBase
from txhyco.address import HybridConnectionAddress, peer_address
from txhyco.errors import RelayRefused
from txhyco.interfaces import IBridge, IRendezvousHandler
from txhyco._twisted.handshake import open_raw_websocket
from txhyco._twisted.masking import fast_masker
from txhyco.listener.httprequest import plain_request_head
from txhyco.protocol.addresses import relative_target, reject_url, strip_reserved_query
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.frames import OP_BINARY, OP_TEXT, FrameMasker, masked_frame
from txhyco.protocol.grammar import FORBIDDEN_IN_VALUE_B, TOKEN_B
from txhyco.protocol.http import reason_phrase
from txhyco.protocol.messages import Accept

log = Logger()

# Headers of the sender's upgrade that do not carry over to the synthetic one:
# hop-by-hop and handshake mechanics (rebuilt), extensions (never negotiated
# on the synthetic hop: the relay does not negotiate them either), and auth.
_SKIP = frozenset({
    "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "servicebusauthorization", "content-length",
    "transfer-encoding", "te", "trailer", "keep-alive", "proxy-connection",
})


def send_messages(proto, messages) -> None:
    """Send ``[(payload, is_binary), ...]`` on an Autobahn client leg in one write.

    Each message is one frame, exactly what ``sendMessage`` would produce,
    but built and written together (a ``response`` command and its small
    body reach the relay as one segment). Falls back to ``sendMessage``
    whenever Autobahn's own machinery matters: compression, automatic
    fragmentation, queued synchronous writes or a message already being sent.
    """
    if (proto.state != proto.STATE_OPEN or proto.send_state != proto.SEND_STATE_GROUND
            or proto.send_queue or proto._perMessageCompress is not None
            or getattr(proto, "autoFragmentSize", 0) or not getattr(proto, "maskClientFrames", True)
            or proto.logFrames or proto.logOctets):
        for payload, is_binary in messages:
            proto.sendMessage(payload, isBinary=is_binary)
        return
    proto.transport.write(b"".join([masked_frame(OP_BINARY if is_binary else OP_TEXT, payload, True, fast_masker)
                                     for payload, is_binary in messages]))


def synthetic_target(accept: Accept, entity_path: str) -> tuple[str, str]:
    """(request target, prefix) the application sees for an accepted connection.

    The sender's address relative to the hybrid connection, without the
    ``sb-hc-*`` parameters (Hybrid Connections protocol, "Request message"); see
    :func:`~txhyco.protocol.addresses.relative_target`.
    """
    parts = urlsplit(accept.address)
    query = strip_reserved_query(parts.query)
    # Node listeners' un-prefixed reject parameters are the relay's business;
    # nothing else of ours is in the query.
    return relative_target(parts.path + ("?" + query if query else ""), entity_path)


def synthetic_upgrade(accept: Accept, entity_path: str, host: str) -> bytes:
    """The Upgrade request a direct client would have sent."""
    target, prefix = synthetic_target(accept, entity_path)
    headers = accept.connect_headers
    key = headers.get("Sec-WebSocket-Key") or "dGhlIHNhbXBsZSBub25jZQ=="
    out = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    for name, value in headers.items():
        if name.lower() not in _SKIP and name.lower() != "x-forwarded-prefix":
            out.append((name, value))
    out.append(("X-Forwarded-Prefix", prefix))
    data = plain_request_head("GET", target, out)
    if data is not None:
        return data  # the bytes h11 would write
    # h11 encodes str values as ASCII, so a sender's "X-Name: café" failed
    # here. The accept's JSON carries the value as the relay decoded it
    # (UTF-8): pass those bytes on, as a direct client's would arrive
    # (obs-text, RFC 9110 §5.5).
    out = [(name, value.encode("utf-8")) for name, value in out]
    return h11.Connection(h11.CLIENT).send(h11.Request(method="GET", target=target, headers=out))


class HandshakeAnswer:
    """The application's answer to the synthetic Upgrade, read with httptools (Node's llhttp).

    :meth:`feed` returns True once the head is complete: then ``status``,
    ``reason``, ``protocol`` (the chosen sub-protocol) and, after a 101,
    ``leftover`` (the application's first frames, if it wrote them along)
    are known. Raises ``httptools.HttpParserError`` for a malformed answer.
    """

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.protocol: str | None = None
        self.leftover = b""
        self._complete = False
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> bool:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.leftover = data[upgrade.args[0]:]
        self.status = self._parser.get_status_code()
        return self._complete

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # Older httptools (0.6) takes a name with a space in it, or a folded
        # line: refused here as h11 refuses them (httptools reports a
        # callback's exception as an HttpParserCallbackError).
        if not TOKEN_B.fullmatch(name) or FORBIDDEN_IN_VALUE_B.search(value):
            raise ValueError("a malformed header field in the handshake answer")
        if name.lower() == b"sec-websocket-protocol":
            self.protocol = value.strip(b" \t").decode("ascii")

    def on_headers_complete(self) -> None:
        self._complete = True


class RelayedTransport(TransportBase):
    """The transport of a bridged connection (this module, :mod:`txhyco.listener.http`).

    Writes go to the bridge; producers and flow control map onto the
    rendezvous socket once it exists.
    """

    def __init__(self, bridge: IBridge, peer, host) -> None:
        super().__init__(peer, host)
        self.bridge = bridge
        self.producer = None
        self.streaming_producer = False

    def write(self, data: bytes) -> None:
        if not self.disconnected:
            self.bridge.outbound(data)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.bridge.close(abort=False)

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.bridge.close(abort=True)

    # IConsumer: the application's producer is paced by the rendezvous socket
    def registerProducer(self, producer, streaming) -> None:
        if self.producer is not None:
            raise RuntimeError("A producer is already registered.")
        self.producer, self.streaming_producer = producer, streaming
        self.bridge.producer_changed()

    def unregisterProducer(self) -> None:
        self.producer = None
        self.bridge.producer_changed()

    # IPushProducer: the application may pause its input
    def pauseProducing(self) -> None:
        self.bridge.pause_inbound()

    def resumeProducing(self) -> None:
        self.bridge.resume_inbound()


class BridgeState(Enum):
    """Where an accepted connection is, from ``accept`` to the end of its rendezvous."""

    #: The application reads the synthetic upgrade; its answer is awaited.
    HANDSHAKE = "handshake"
    #: The application answered 101; the rendezvous is opening (its output waits).
    CONNECTING = "connecting"
    #: Bytes flow between the application and the rendezvous.
    OPEN = "open"
    #: Rejected, failed or closed.
    CLOSED = "closed"


@implementer(IBridge, IRendezvousHandler)
class AcceptBridge:
    """One accepted connection, from ``accept`` to the end of the rendezvous (see module doc)."""

    HANDSHAKE, CONNECTING, OPEN, CLOSED = BridgeState

    #: an inspector's observer of this connection (txhyco.inspector.capture.WebSocketCapture), or None
    observer = None

    def __init__(self, reactor, accept: Accept, hc, protocol, *, mask_inbound: bool = True, mask_outbound: bool = True) -> None:
        self.reactor = reactor
        self.accept = accept
        self.hc = hc
        self.app = protocol
        self.mask_inbound = mask_inbound
        self.mask_outbound = mask_outbound
        self.state = self.HANDSHAKE
        self.rendezvous = None
        self._pending: list[bytes] = []
        self._close_requested: bool | None = None
        self._lost = False
        self._answer: HandshakeAnswer | None = None
        self.transport = RelayedTransport(self, peer_address(accept.remote_endpoint), HybridConnectionAddress(hc.namespace, hc.path))
        self._out = None
        self._in = None
        self.done: defer.Deferred = defer.Deferred()  # fires when the connection is over

    def start(self) -> None:
        transport = self.transport
        try:
            request = synthetic_upgrade(self.accept, self.hc.path, self.hc.namespace.host)
        except (h11.LocalProtocolError, UnicodeError):
            # A header name, value or path HTTP cannot carry (e.g. a line
            # break in a value): tell the sender now rather than letting it
            # wait out the accept timeout. The application never saw it.
            self._reject(400, "The connection request has a header or path that cannot be passed to the listener application.")
            return
        self._answer = HandshakeAnswer()
        transport.protocol = self.app
        self.app.makeConnection(transport)
        transport.protocol.dataReceived(request)

    # -- application output ----------------------------------------------------

    def outbound(self, data: bytes) -> None:
        state = self.state
        if state == self.OPEN:
            self._out(data)
        elif state == self.CONNECTING:
            self._pending.append(data)
        elif state == self.HANDSHAKE:
            self._read_answer(data)

    def _read_answer(self, data: bytes) -> None:
        answer = self._answer
        try:
            complete = answer.feed(data)
        except (httptools.HttpParserError, UnicodeError) as e:
            self._reject(502, f"The listener application sent a malformed handshake answer: {e}")
            return
        if not complete:
            return
        if answer.status == 101:
            chosen = answer.protocol
            if answer.leftover:
                self._pending.append(answer.leftover)
            self.state = self.CONNECTING
            self._open_rendezvous(chosen)
            return
        status = answer.status or 500
        self._reject(status, answer.reason.decode("utf-8", "replace") or reason_phrase(status))

    # -- rendezvous ---------------------------------------------------------------

    def _open_rendezvous(self, chosen: str | None) -> None:
        d = open_raw_websocket(self.reactor, self.accept.address, protocol=chosen, ca_file=self.hc.ca_file, proxy=self.hc.proxy)
        d.addCallbacks(self._rendezvous_open, self._rendezvous_failed)

    def _rendezvous_open(self, result) -> None:
        proto, _chosen, leftover = result
        if self.state == self.CLOSED:
            proto.transport.loseConnection()
            return
        self.rendezvous = proto
        proto.handler = self
        write = proto.transport.write
        # An application that masks its own frames (see accept_with_factory)
        # writes straight to the socket; others get the client mask added.
        self._out = FrameMasker(write, fast_masker).feed if self.mask_outbound else write
        observer = self.observer
        if observer is not None:
            out = self._out
            self._out = lambda data: (observer.sent(data), out(data))
            observer.opened()
        if self.mask_inbound:
            self._in = FrameMasker(self._deliver, fast_masker)
        self.state = self.OPEN
        pending, self._pending = self._pending, []
        for chunk in pending:
            self._out(chunk)
        self.producer_changed()
        if leftover:
            self.dataReceived(leftover)
        if self._close_requested is not None:
            self.close(self._close_requested)

    def _rendezvous_failed(self, failure: Failure) -> None:
        log.warn("rendezvous for {id} failed: {why}", id=self.accept.id, why=failure.getErrorMessage())
        self._end(failure)

    # rendezvous socket handler interface (see RawUpgrade)
    def dataReceived(self, data: bytes) -> None:
        if self.observer is not None:
            self.observer.received(data)
        if self._in is not None:
            try:
                self._in.feed(data)
            except ProtocolError as e:  # the relay sent a masked frame: not a server's
                log.warn("closing rendezvous {id}: {why}", id=self.accept.id, why=str(e))
                self.rendezvous.transport.abortConnection()
        else:
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        protocol = self.transport.protocol
        if protocol is not None and not self._lost:
            protocol.dataReceived(data)

    def connectionLost(self, reason) -> None:
        self._end(reason)

    # -- flow control ---------------------------------------------------------

    def producer_changed(self) -> None:
        if self.rendezvous is None:
            return
        transport = self.rendezvous.transport
        producer = self.transport.producer
        if producer is not None and transport.producer is None:
            transport.registerProducer(producer, self.transport.streaming_producer)
        elif producer is None and transport.producer is not None:
            transport.unregisterProducer()

    def pause_inbound(self) -> None:
        if self.rendezvous is not None:
            self.rendezvous.transport.pauseProducing()

    def resume_inbound(self) -> None:
        if self.rendezvous is not None:
            self.rendezvous.transport.resumeProducing()

    # -- ending ---------------------------------------------------------------

    def going_away(self, reason: str) -> None:
        """The listener stops: close with 1001 after what the application already sent (:mod:`txhyco.listener.drain`)."""
        protocol = self.transport.protocol
        if self.state == self.HANDSHAKE:
            self._reject(503, reason)
        elif isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN:
            # Through the application's own protocol, so that its Close
            # follows its last frame and it sees the closing handshake.
            # (Its sendClose allows only 1000 and 3000-4999.)
            protocol.sendCloseFrame(code=1001, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)
        elif self.state != self.CLOSED:
            self.close(abort=False)

    def abort(self) -> None:
        """Drop the connection now (a stopping listener's drain time is over)."""
        if self.state == self.HANDSHAKE:
            self._reject(503, "The listener stopped.")
        elif self.state != self.CLOSED:
            self.close(abort=True)

    def close(self, abort: bool) -> None:
        if self.state == self.OPEN:
            transport = self.rendezvous.transport
            transport.abortConnection() if abort else transport.loseConnection()
        elif self.state == self.CONNECTING:
            self._close_requested = abort  # after the rendezvous opens
            if abort:
                self.state = self.CLOSED
                self._end(Failure(ConnectionLost("aborted by the application")))
        elif self.state == self.HANDSHAKE:
            # Closed without a 101 (after an error answer, or silently).
            self._reject(503, "The listener application closed the connection during the handshake.")

    def _reject(self, status: int, reason: str) -> None:
        if self.state == self.CLOSED:
            return
        self.state = self.CLOSED
        if self.observer is not None:
            self.observer.closed(reason, status)
        url = reject_url(self.accept.address, status, reason)
        d = open_raw_websocket(self.reactor, url, ca_file=self.hc.ca_file, proxy=self.hc.proxy)
        d.addCallbacks(self._rejected_oddly, self._reject_answered)
        self._end(Failure(ConnectionDone(f"rejected with {status} {reason}")))

    def _rejected_oddly(self, result) -> None:
        # A relay that upgrades a reject URL: close it (Java does the same).
        proto = result[0]
        proto.transport.loseConnection()
        log.warn("the relay accepted the reject of {id} as a connection", id=self.accept.id)

    def _reject_answered(self, failure) -> None:
        # 410 Gone is the success answer to a reject (Hybrid Connections protocol,
        # "Rejecting the socket"); anything else is worth a line.
        error = failure.value
        if not (isinstance(error, RelayRefused) and error.status == 410):
            log.warn("rejecting {id} failed: {why}", id=self.accept.id, why=failure.getErrorMessage())

    def _end(self, reason) -> None:
        self.state = self.CLOSED
        if self._lost:
            return
        self._lost = True
        if self.observer is not None:
            self.observer.closed(None if isinstance(reason, Failure) and reason.check(ConnectionDone) else _why(reason))
        self.transport.disconnected = True
        protocol = self.transport.protocol
        if protocol is not None:
            protocol.connectionLost(reason if isinstance(reason, Failure) else Failure(reason))
        if not self.done.called:
            self.done.callback(None)


def _why(reason) -> str:
    """A connection's end in words (for an inspector)."""
    return reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
