"""Serving relayed HTTP requests with an ordinary HTTP/1.1 server factory (§4.3, §4.4, §5).

Each ``request`` gets a fresh protocol from the factory (a twisted.web
``Site``, Klein...) over a :class:`~txhyco.listener.accept.RelayedTransport`, fed a real
HTTP/1.1 request built with h11; its answer is parsed back with h11 and sent
as a ``response``. The request target is shown relative to the hybrid
connection (``/myhc/index.html`` → ``/index.html``) with the prefix in
``X-Forwarded-Prefix``, so ``twistd web --path DIR`` serves DIR at the hybrid
connection's root.

Where the response goes (§5.4): up to 64 KiB, complete within 2 s, on the
control channel; otherwise on a rendezvous to the request's ``address``,
streamed as one fragmented binary message with backpressure from that socket
to the application's producer. Requests that arrive address-only are read
from, and answered on, their rendezvous.
"""
from __future__ import annotations

import re

import h11
from txhyco._twisted.autobahn_speedups import LeanClientProtocol as WebSocketClientProtocol  # Autobahn's, lean (see there)
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txhyco.address import HybridConnectionAddress, peer_address
from txhyco.interfaces import IBridge, IChannelHandler
from txhyco.listener.accept import RelayedTransport
from txhyco._twisted.commandsink import CommandSink
from txhyco._twisted.handshake import open_websocket
from txhyco._twisted.masking import fast_masker
from txhyco.protocol.addresses import relative_target
from txhyco.protocol.channel import BodyData, BodyEnded, ChannelReader, CommandReceived
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.frames import OP_BINARY, OP_CONTINUATION, masked_frame, masked_frame_parts
from txhyco.protocol.grammar import PLAIN_FIELD_VALUE, PLAIN_FIELD_VALUE_B, PLAIN_TARGET, TOKEN, TOKEN_B
from txhyco.protocol.http import (
    CONNECTION_HEADERS,
    CONTROL_CHANNEL_BODY_LIMIT,
    RESPONSE_DEADLINE,
    RESPONSE_FLUSH_DELAY,
    ResponseBuffer,
    reason_phrase,
)
from txhyco.protocol.messages import Headers, Request, Response, serialize_command

log = Logger()

# Response headers that describe the synthetic connection, not the response.
_HOP = CONNECTION_HEADERS - {"content-length"}

# The common shape of an application's response head, read without h11: an
# HTTP/1.1 final status line, ASCII header fields, one Content-Length and no
# Transfer-Encoding. Anything else -- chunked, close-delimited, 1xx, obs-fold,
# bare LF, obs-text -- is handed to h11 with every byte seen so far.
_STATUS_B = re.compile(rb"HTTP/1\.1 ([2-9][0-9][0-9])(?: ([\t\x20-\x7e]*))?")
#: h11's limit on an incomplete head (its ``max_incomplete_event_size``).
_MAX_HEAD = 16 * 1024


def _request_head(method: str, target: str, headers: list) -> bytes | None:
    """The request head h11 would write, or None where h11 must judge (§5.2)."""
    # What h11 would accept as is (ASCII only: h11 encodes str as ASCII);
    # anything else goes through h11 itself, which then raises exactly as it
    # always did.
    if not (TOKEN.fullmatch(method) and PLAIN_TARGET.fullmatch(target)):
        return None
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        if not TOKEN.fullmatch(name) or (value and not PLAIN_FIELD_VALUE.fullmatch(value)):
            return None
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("ascii")


def _response_head_fast(head: bytes):
    """(status, reason, raw headers, content length) of a plain head, else None (see above)."""
    lines = head.split(b"\r\n")
    match = _STATUS_B.fullmatch(lines[0])
    if match is None:
        return None
    status = int(match[1])
    if status == 204 or status == 304:
        return None
    headers = []
    length = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or TOKEN_B.fullmatch(name) is None:
            return None
        value = value.strip(b" \t")
        if value and PLAIN_FIELD_VALUE_B.fullmatch(value) is None:
            return None
        lower = name.lower()
        if lower == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif lower == b"transfer-encoding":
            return None
        headers.append((name, value))
    if length is None:
        return None
    return status, match[2] or b"", headers, length


#: Seconds an address-only request's rendezvous waits for the request itself:
#: as long as the relay waits for the response (it gives up on the request then).
REQUEST_WAIT = RESPONSE_DEADLINE


class RendezvousLeg(WebSocketClientProtocol):
    """A request rendezvous at the listener: reads a request, carries one response."""

    def __init__(self, exchange: HttpExchange) -> None:
        super().__init__()
        #: the exchange this leg serves; None once its response is sent
        self.exchange: HttpExchange | None = exchange

    def onOpen(self) -> None:
        self.sink = CommandSink(ChannelReader(accept=[Request]), self.exchange)
        self.exchange.rendezvous_open(self)

    # Autobahn's streaming hooks: the request body streams into the application.
    def onMessageBegin(self, isBinary):
        self.sink.message_begin(isBinary)

    def onMessageFrameBegin(self, length):
        pass

    def onMessageFrameData(self, payload):
        self.sink.frame_data(payload)

    def onMessageFrameEnd(self):
        pass

    def onMessageEnd(self):
        self.sink.message_end()

    def onClose(self, wasClean, code, reason):
        if self.exchange is not None:
            self.exchange.rendezvous_closed(self)


@implementer(IBridge, IChannelHandler)
class HttpExchange:
    """One relayed request served by one fresh application protocol."""

    def __init__(self, reactor, hc, factory, listener, request: Request) -> None:
        self.reactor = reactor
        self.hc = hc
        self.factory = factory
        self.listener = listener
        self.request = request
        self.rendezvous: RendezvousLeg | None = None
        self.app = None
        self.transport: RelayedTransport | None = None
        # The answer is read without h11 while it has the common shape
        # (_response_head_fast); otherwise an h11 client reads it.
        self._conn: h11.Connection | None = None
        self._head = b""  # an incomplete response head
        self._remaining: int | None = None  # Content-Length bytes still to come
        self._chunked = False  # the synthetic request body is chunked
        self._response: Response | None = None
        self._buffer = ResponseBuffer()
        self._flush_call = None
        self._streaming = False  # response body goes out as rendezvous fragments
        self._message_started = False
        self._finished = False
        self._closed = False
        self._via_rendezvous = request.address_only
        self._request_wait = None  # the timer for an address-only request's arrival

    # -- starting ------------------------------------------------------------

    def start(self, body: bytes | None) -> None:
        """Serve a request that arrived in full (``body`` complete) or address-only (None)."""
        if self.request.address_only:
            d = open_websocket(self.reactor, self.request.address, self._new_leg, ca_file=self.hc.ca_file, maxMessagePayloadSize=0)
            d.addErrback(self._rendezvous_failed)
            return
        self._serve(self.request, body)

    def _new_leg(self) -> RendezvousLeg:
        return RendezvousLeg(self)

    def _serve(self, request: Request, body: bytes | None) -> None:
        """Hand ``request`` to a fresh application protocol; ``body`` None means it streams in."""
        self.request = request
        peer = peer_address(request.remote_endpoint)
        self.app = self.factory.buildProtocol(peer)
        if self.app is None:
            self._answer_error(503, "The listener declined the request.")
            return
        try:
            head = self._synthetic_head(request, body)
        except (ProtocolError, h11.LocalProtocolError, UnicodeError) as e:
            # Before any transport: the application never hears of it.
            self._answer_error(400, f"The request cannot be passed on: {e}")
            return
        self.transport = RelayedTransport(self, peer, HybridConnectionAddress(self.hc.namespace, self.hc.path))
        self.transport.protocol = self.app
        self.app.makeConnection(self.transport)
        if body:
            # Head and body in one read, as a socket would often deliver them.
            self._feed(head + body)
        else:
            self._feed(head)

    def _synthetic_head(self, request: Request, body: bytes | None) -> bytes:
        target, prefix = relative_target(request.request_target or "/", self.hc.path)
        headers = []
        host = None
        for name, value in request.request_headers.items():
            lower = name.lower()
            if lower in ("content-length", "transfer-encoding", "connection", "x-forwarded-prefix"):
                continue
            if lower == "host":
                host = value
                continue
            headers.append((name, value))
        ns = self.hc.namespace
        headers.insert(0, ("Host", host or ns.authority))
        headers.append(("X-Forwarded-Prefix", prefix))
        headers.append(("X-Forwarded-Proto", "https" if ns.secure else "http"))
        headers.append(("X-Forwarded-Host", ns.authority))
        if request.remote_endpoint is not None:
            headers.append(("X-Forwarded-For", request.remote_endpoint.address))
        if body is None:
            headers.append(("Transfer-Encoding", "chunked"))
            self._chunked = True
        elif body or request.body:
            headers.append(("Content-Length", str(len(body))))
        head = _request_head(request.method, target, headers)
        if head is None:
            # h11 writes the same bytes, or raises for what cannot be written.
            head = h11.Connection(h11.CLIENT).send(h11.Request(method=request.method, target=target, headers=headers))
        return head

    def _feed(self, data: bytes) -> None:
        if data and not self._closed and self.transport.protocol is not None:
            self.transport.protocol.dataReceived(data)

    # -- rendezvous --------------------------------------------------------------

    def _rendezvous_failed(self, failure) -> None:
        log.warn("request rendezvous for {id} failed: {why}", id=self.request.id, why=failure.getErrorMessage())
        self._abandon(failure)

    def rendezvous_open(self, leg: RendezvousLeg) -> None:
        self.rendezvous = leg
        self._via_rendezvous = True
        if self.app is not None:
            # Opened to carry a response that outgrew the control channel.
            self._start_streaming()
        else:
            # Opened to fetch the request (address-only): a relay that never
            # sends it must not hold the connection for ever.
            self._request_wait = self.reactor.callLater(REQUEST_WAIT, self._request_overdue, leg)

    def _stop_request_wait(self) -> None:
        call, self._request_wait = self._request_wait, None
        if call is not None and call.active():
            call.cancel()

    def _request_overdue(self, leg) -> None:
        self._request_wait = None
        if self.app is None and not self._finished and leg.state != leg.STATE_CLOSED:
            log.warn("request rendezvous {id}: no request within {s:g} s; closing", id=self.request.id, s=REQUEST_WAIT)
            leg.dropConnection(abort=True)

    def framing_error(self, error: ProtocolError) -> None:
        log.warn("request rendezvous {id}: {why}", id=self.request.id, why=error.message)
        if self.rendezvous is not None:
            self.rendezvous.dropConnection(abort=True)

    def channel_event(self, event) -> None:
        if isinstance(event, CommandReceived):
            self._stop_request_wait()
            request = event.command
            self._serve(request, None if request.body else b"")
        elif isinstance(event, BodyData):
            # (h11's chunked framing, written directly)
            if event.data and self._chunked:
                self._feed(b"%x\r\n%s\r\n" % (len(event.data), event.data))
        elif isinstance(event, BodyEnded):
            if self._chunked:
                self._feed(b"0\r\n\r\n")

    def rendezvous_closed(self, leg) -> None:
        self._stop_request_wait()
        if not self._finished:
            self._abandon(Failure(ConnectionDone("the relay closed the request rendezvous")))

    # -- the application's answer (RelayedTransport bridge interface) -----------

    def outbound(self, data: bytes) -> None:
        if self._finished or not data:
            return
        remaining = self._remaining
        if remaining is not None:
            # A Content-Length body: its bytes pass straight through.
            n = len(data)
            if n < remaining:
                self._remaining = remaining - n
                self._response_data(data)
                return
            self._remaining = 0
            if remaining:
                self._response_data(data if n == remaining else data[:remaining])
            if not self._finished:
                self._response_end()
            return  # anything after the body is not part of this response
        if self._conn is not None:
            self._h11_receive(data)
            return
        head = self._head + data if self._head else data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > _MAX_HEAD or b"\n\n" in head or b"\n\r\n" in head:
                self._to_h11(head)
            else:
                self._head = head
            return
        parsed = _response_head_fast(head[:end])
        if parsed is None:
            self._to_h11(head)
            return
        self._head = b""
        status, reason, headers, length = parsed
        if self.request.method == "HEAD":
            length = 0  # the head describes the body a GET would get; none follows
        self._remaining = length
        self._response_head(status, reason, headers, length <= CONTROL_CHANNEL_BODY_LIMIT)
        if self._finished:
            return
        rest = head[end + 4:]
        if rest:
            self.outbound(rest)
        elif not length:
            self._remaining = 0
            self._response_end()

    def _to_h11(self, data: bytes) -> None:
        """Read the rest of this answer with h11, starting with ``data``."""
        self._head = b""
        conn = h11.Connection(h11.CLIENT)
        # Only the method matters to how h11 reads the answer (HEAD: no body).
        conn.send(h11.Request(method=self.request.method, target="/", headers=[("Host", "listener")]))
        conn.send(h11.EndOfMessage())
        self._conn = conn
        self._h11_receive(data)

    def _h11_receive(self, data: bytes) -> None:
        """``data`` (``b""``: the application closed) through h11; ``b""`` is end of file."""
        conn = self._conn
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                self._answer_error(502, f"The application sent a malformed HTTP response: {e}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                self._response_head(event.status_code, event.reason, event.headers.raw_items(), _small_and_known(event))
                if self._finished:
                    return
            elif isinstance(event, h11.Data):
                self._response_data(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._response_end()
                return

    def _end_of_file(self) -> None:
        """The application closed its connection after starting a response."""
        if self._conn is not None:
            self._h11_receive(b"")
        elif self._remaining:
            self._answer_error(
                502, "The application sent a malformed HTTP response: peer closed connection without "
                f"sending complete message body: {self._remaining} bytes missing")

    def _response_head(self, status_code: int, reason: bytes, raw_headers, small_and_known: bool) -> None:
        headers = []
        seen = set()
        for name, value in raw_headers:
            lower = name.lower().decode("ascii")
            if lower in _HOP:
                continue
            seen.add(lower)
            headers.append((name.decode("ascii"), value.decode("utf-8", "replace")))
        try:
            self._response = Response(
                request_id=self.request.id,
                status_code=status_code,
                status_description=reason.decode("utf-8", "replace") or reason_phrase(status_code),
                # The head parsers (ours and h11) admit only token names and
                # stripped values without control characters: unless a name
                # repeats (and needs joining), nothing is left to check.
                response_headers=Headers._trusted(headers) if len(seen) == len(headers) else Headers(headers),
                body=True,
            )
        except ProtocolError as e:
            self._answer_error(502, f"The application's response cannot be relayed: {e.message}")
            return
        if self._via_rendezvous:
            self._start_streaming()
        elif not small_and_known:
            # Chunked, server-sent events or large: stream it as it is written.
            self._flush_to_rendezvous()
        else:
            self._flush_call = self.reactor.callLater(RESPONSE_FLUSH_DELAY, self._flush_to_rendezvous)

    def _response_data(self, data: bytes) -> None:
        if self._streaming:
            self._send_fragment(data)
        elif self._buffer.write(data) and not self._via_rendezvous:
            self._flush_to_rendezvous()

    def _response_end(self) -> None:
        self._finished = True
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        if self._streaming:
            self._end_fragments()
        elif not self._via_rendezvous:
            body = self._buffer.take()
            response = self._response if body else _with_body(self._response, False)
            if not self.listener.respond(response, body):
                log.warn("control channel gone; response to {id} lost", id=self.request.id)
        # else: the rendezvous is still opening and will send everything
        self._close_app()

    # -- rendezvous streaming (§5.5) -------------------------------------------

    def _flush_to_rendezvous(self) -> None:
        """The response outgrew the control channel (size or time): move it to a rendezvous."""
        self._flush_call = None
        if self._via_rendezvous:
            return
        self._via_rendezvous = True
        # Hold the application back until the rendezvous is there to pace it.
        self.transport_pause_app()
        d = open_websocket(self.reactor, self.request.address, self._new_leg, ca_file=self.hc.ca_file, maxMessagePayloadSize=0)
        d.addErrback(self._rendezvous_failed)

    def transport_pause_app(self) -> None:
        producer = self.transport.producer if self.transport else None
        if producer is not None:
            producer.pauseProducing()

    def _start_streaming(self) -> None:
        leg = self.rendezvous
        if self._response is None or self._streaming or leg is None:
            return
        self._streaming = True
        leg.sendMessage(serialize_command(self._response).encode("utf-8"), isBinary=False)
        self.producer_changed()
        buffered = self._buffer.take()
        if buffered:
            self._send_fragment(buffered)
        producer = self.transport.producer if self.transport else None
        if producer is not None:
            producer.resumeProducing()
        if self._finished:
            self._end_fragments()

    # The body's fragments are written here rather than with Autobahn's
    # streaming API: header and masked payload leave in one writeSequence
    # (one segment, no copy), and nothing else sends data messages on a
    # response rendezvous. Autobahn's control frames (its Close, pings) may
    # come between fragments, which RFC 6455 §5.4 allows.

    def _send_fragment(self, data: bytes) -> None:
        leg = self.rendezvous
        if leg.state != leg.STATE_OPEN:
            return  # closing: no data frames after a Close (the relay gave up on the request)
        opcode = OP_CONTINUATION if self._message_started else OP_BINARY
        self._message_started = True
        leg.transport.writeSequence(masked_frame_parts(opcode, data, False, fast_masker))

    def _end_fragments(self) -> None:
        leg = self.rendezvous
        if leg.state == leg.STATE_OPEN:
            # the empty FIN frame ends the body (§5.5)
            leg.transport.write(masked_frame(OP_CONTINUATION if self._message_started else OP_BINARY, b"", True, fast_masker))
        leg.exchange = None
        leg.sendClose(1000)  # one response per rendezvous, like .NET

    # -- errors and endings ------------------------------------------------------

    def _answer_error(self, status: int, message: str) -> None:
        """Answer a request the application never saw (or broke) with ``status``."""
        log.warn("request {id}: {message}", id=self.request.id, message=message)
        self._finished = True
        body = (message + "\n").encode("utf-8")
        response = Response(self.request.id, status, reason_phrase(status), {"Content-Type": "text/plain; charset=utf-8"}, body=True)
        if self.rendezvous is not None and not self._streaming:
            self.rendezvous.sendMessage(serialize_command(response).encode("utf-8"), isBinary=False)
            self.rendezvous.sendMessage(body, isBinary=True)
            self.rendezvous.sendClose(1000)
        elif not self._streaming and not self.request.address_only:
            self.listener.respond(response, body)
        elif self.rendezvous is not None:
            self.rendezvous.dropConnection(abort=True)
        self._close_app()

    def _abandon(self, reason) -> None:
        self._finished = True
        self._close_app(reason)

    def _close_app(self, reason=None) -> None:
        if self._closed:
            return
        self._closed = True
        if self.transport is not None:
            self.producer_changed(release=True)
            # Usually called from inside the application's own write (the end
            # of its response): let that call return before the connection
            # goes, as a socket's loss would also come later.
            self.reactor.callLater(0, self._app_lost, reason or Failure(ConnectionDone("response complete")))

    def _app_lost(self, reason) -> None:
        self.transport.disconnected = True
        protocol = self.transport.protocol
        if protocol is not None:
            protocol.connectionLost(reason)

    # RelayedTransport bridge interface
    def close(self, abort: bool) -> None:
        if not self._finished and not abort and self._response is not None:
            # End of file ends a response framed by the connection's close
            # (no Content-Length, not chunked), as it would on a socket.
            self._end_of_file()
        if not self._finished:
            if self._response is None:
                self._answer_error(502, "The application closed the connection without a response.")
            elif self._streaming and self.rendezvous is not None:
                self.rendezvous.dropConnection(abort=True)
            self._finished = True
        self._close_app()

    def producer_changed(self, release: bool = False) -> None:
        leg = self.rendezvous
        if leg is None or leg.transport is None:
            return
        transport = leg.transport
        producer = None if release or self.transport is None else self.transport.producer
        if producer is not None and transport.producer is None and self._streaming:
            transport.registerProducer(producer, self.transport.streaming_producer)
        elif producer is None and transport.producer is not None:
            transport.unregisterProducer()

    def pause_inbound(self) -> None:
        if self.rendezvous is not None and self.rendezvous.transport is not None:
            self.rendezvous.transport.pauseProducing()

    def resume_inbound(self) -> None:
        if self.rendezvous is not None and self.rendezvous.transport is not None:
            self.rendezvous.transport.resumeProducing()


def _small_and_known(event: h11.Response) -> bool:
    """Whether a response declares a length that fits the control channel (§5.4)."""
    for name, value in event.headers:
        if name == b"content-length":
            return value.isdigit() and int(value) <= CONTROL_CHANNEL_BODY_LIMIT
    return False


def _with_body(response: Response, body: bool) -> Response:
    return Response(response.request_id, response.status_code, response.status_description, response.response_headers, body=body)


def websocket_only_site():
    """The HTTP answer of a listener that has only WebSocket connections to offer: 501."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class WebSocketOnly(Resource):
        isLeaf = True

        def render(self, request):
            request.setResponseCode(501, b"Not Implemented")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"This listener serves WebSocket connections only.\n"

    site = Site(WebSocketOnly())
    site.log = lambda request: None  # no access log for these refusals
    return site


def serve_request(reactor, hc, factory, request: Request, body: bytes | None, listener) -> None:
    """The listener's ``on_request`` handler for an HTTP/1.1 factory."""
    HttpExchange(reactor, hc, factory, listener, request).start(body)
