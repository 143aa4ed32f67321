"""Serving relayed HTTP requests with an ordinary HTTP/1.1 server factory
(Hybrid Connections protocol, "Request message" and "Responding to requests").

Each ``request`` gets a fresh protocol from the factory (a twisted.web
``Site``, Klein...) over a :class:`~txhyco.listener.accept.RelayedTransport`,
fed a real HTTP/1.1 request (:mod:`txhyco.listener.httprequest`); its answer
is read back (:mod:`txhyco.listener.httpresponse`) and sent as a
``response``. :class:`HttpExchange` here decides where that response goes
and carries it there.

Where the response goes (Hybrid Connections protocol, "Responding via rendezvous"): up
to 64 KiB, complete within 2 s, on the control channel; otherwise on a rendezvous to the
request's ``address``, streamed as one fragmented binary message with backpressure from
that socket to the application's producer. Requests that arrive address-only are read
from, and answered on, their rendezvous.
"""
from __future__ import annotations

import functools

import h11
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txhyco._twisted.autobahn_speedups import LeanClientProtocol
from txhyco._twisted.commandsink import CommandSink
from txhyco._twisted.handshake import open_websocket
from txhyco._twisted.masking import fast_masker
from txhyco.address import peer_address
from txhyco.interfaces import IBridge, IChannelHandler
from txhyco.listener.accept import RelayedTransport
from txhyco.listener.httplinks import REWRITTEN as LINK_BEARING
from txhyco.listener.httplinks import LinkRewriter
from txhyco.listener.httprequest import synthetic_request_fields, write_request_head
from txhyco.listener.siterequest import direct_fields, serve_directly, site_channel
from txhyco.listener.httpresponse import ResponseReader
from txhyco.protocol.channel import BodyData, BodyEnded, ChannelReader, CommandReceived
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.frames import OP_BINARY, OP_CONTINUATION, masked_frame, masked_frame_parts
from txhyco.protocol.http import CONNECTION_HEADERS, RESPONSE_DEADLINE, RESPONSE_FLUSH_DELAY, ResponseBuffer, reason_phrase
from txhyco.protocol.messages import Headers, Request, Response, serialize_command

log = Logger()

# Response headers that describe the synthetic connection, not the response.
_HOP = CONNECTION_HEADERS - {"content-length"}

#: Why an application's connection ends once its response is complete: one
#: Failure for all (as Twisted's own ``connectionDone``), not one per request.
_RESPONSE_COMPLETE = Failure(ConnectionDone("response complete"))

#: Seconds an address-only request's rendezvous waits for the request itself:
#: as long as the relay waits for the response (it gives up on the request then).
REQUEST_WAIT = RESPONSE_DEADLINE


class RendezvousLeg(LeanClientProtocol):
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

    #: an inspector's observer of this exchange (txhyco.inspector.capture.HttpCapture), or None
    observer = None

    def __init__(self, reactor, hc, factory, listener, request: Request) -> None:
        self.reactor = reactor
        self.hc = hc
        self.factory = factory
        self.listener = listener
        self.request = request
        self.rendezvous: RendezvousLeg | None = None
        self.app = None
        self.transport: RelayedTransport | None = None
        self._reader: ResponseReader | None = None  # reads the application's answer
        self._chunked = False  # the synthetic request body is chunked
        self._response: Response | None = None
        self._buffer = ResponseBuffer()
        self._flush_call = None
        # While the application runs inside _serve, a small response's flush
        # timer waits: most answers are complete before _serve returns, and
        # then no timer is made at all.
        self._inside_serve = False
        self._flush_pending = False
        self._lost_after_serve = None  # the application's connectionLost reason, due when _serve returns
        self._streaming = False  # response body goes out as rendezvous fragments
        self._message_started = False
        self.finished = False  # the response is complete, or answered for the application
        self._closed = False
        self._rendezvous_gone = False  # a rendezvous was needed and could not be opened
        self._awaiting_rendezvous_close = False  # answered, its rendezvous still opening
        self._is_over = False  # answered, and its rendezvous (if any) closed
        self._done: defer.Deferred | None = None
        self._on_over = None  # when_over's callback
        self._via_rendezvous = request.address_only
        self._request_wait = None  # the timer for an address-only request's arrival

    # -- starting ------------------------------------------------------------

    def start(self, body: bytes | None) -> None:
        """Serve a request that arrived in full (``body`` complete) or address-only (None)."""
        if self.request.address_only:
            d = open_websocket(self.reactor, self.request.address, self._new_leg, ca_file=self.hc.ca_file, proxy=self.hc.proxy, maxMessagePayloadSize=0)
            d.addErrback(self._rendezvous_failed)
            return
        self._serve(self.request, body)

    def _new_leg(self) -> RendezvousLeg:
        return RendezvousLeg(self)

    def _serve(self, request: Request, body: bytes | None) -> None:
        """Hand ``request`` to a fresh application protocol; ``body`` None means it streams in."""
        self.request = request
        if self.observer is not None:
            self.observer.request_started(request, body)
        peer = peer_address(request.remote_endpoint)
        self.app = self.factory.buildProtocol(peer)
        if self.app is None:
            self.answer_error(503, "The listener declined the request.")
            return
        fields = None
        try:
            target, headers = synthetic_request_fields(request, self.hc, body)
            channel = site_channel(self.app) if body is not None else None
            if channel is not None:
                fields = direct_fields(channel, request.method, target, headers)
            if fields is None:
                head = write_request_head(request.method, target, headers)
        except (ProtocolError, h11.LocalProtocolError, UnicodeError) as e:
            # Before any transport: the application never hears of it.
            self.answer_error(400, f"The request cannot be passed on: {e}")
            return
        self._chunked = body is None
        self._reader = ResponseReader(self, request.method)
        self.transport = RelayedTransport(self, peer, self.hc.address)
        self.transport.protocol = self.app
        self._inside_serve = True
        returned = False
        try:
            if fields is not None:
                # twisted.web's own channel: its Request without the bytes (txhyco.listener.siterequest)
                serve_directly(self.app, channel, self.transport, request.method, target, fields, body, self._reader.head)
            else:
                self.app.makeConnection(self.transport)
                if body:
                    # Head and body in one read, as a socket would often deliver them.
                    self._feed(head + body)
                else:
                    self._feed(head)
            returned = True
        except Exception:
            if self._response is not None or self.finished:
                raise  # a response under way: the command dispatcher logs it
            # Failed before it answered (twisted.web answers its own render
            # errors; a raw protocol may raise): 500 now, not the relay's
            # response timeout for the sender.
            log.failure("request {id}: the application failed before it answered", id=request.id)
            self.answer_error(500, "The listener application failed before it answered.")
        finally:
            self._inside_serve = False
            if self._flush_pending:
                self._flush_pending = False
                if not self.finished and not self._via_rendezvous:
                    self._flush_call = self.reactor.callLater(RESPONSE_FLUSH_DELAY, self._flush_to_rendezvous)
            lost, self._lost_after_serve = self._lost_after_serve, None
            if lost is not None:
                if returned:
                    self._app_lost(lost)  # every call into the application has returned
                else:
                    self.reactor.callLater(0, self._app_lost, lost)

    def _feed(self, data: bytes) -> None:
        if data and not self._closed and self.transport.protocol is not None:
            self.transport.protocol.dataReceived(data)

    # -- rendezvous --------------------------------------------------------------

    def _rendezvous_failed(self, failure) -> None:
        self._rendezvous_gone = True
        log.warn("request rendezvous for {id} failed: {why}", id=self.request.id, why=failure.getErrorMessage())
        self._abandon(failure)
        self._over()

    def rendezvous_open(self, leg: RendezvousLeg) -> None:
        self.rendezvous = leg
        if self._awaiting_rendezvous_close:
            leg.is_closed.addBoth(self._over)
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
        if self.app is None and not self.finished and leg.state != leg.STATE_CLOSED:
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
                if self.observer is not None:
                    self.observer.request_data(event.data)
                self._feed(b"%x\r\n%s\r\n" % (len(event.data), event.data))
        elif isinstance(event, BodyEnded):
            if self._chunked:
                self._feed(b"0\r\n\r\n")

    def rendezvous_closed(self, leg) -> None:
        self._stop_request_wait()
        if not self.finished:
            self._abandon(Failure(ConnectionDone("the relay closed the request rendezvous")))

    # -- the application's answer (RelayedTransport bridge interface) -----------

    def outbound(self, data: bytes) -> None:
        if not self.finished and data:
            self._reader.feed(data)

    def response_head(self, status_code: int, reason: bytes, raw_headers, small_and_known: bool) -> None:
        headers = []
        seen = set()
        links = None
        for name, value in raw_headers:
            lower = name.lower().decode("ascii")
            if lower in _HOP:
                continue
            seen.add(lower)
            text = value.decode("utf-8", "replace")
            if lower in LINK_BEARING:  # a redirect, a cookie: kept inside the hybrid connection
                links = links or LinkRewriter.for_request(self.hc, self.request)
                text = links.header(lower, text)
            headers.append((name.decode("ascii"), text))
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
            self.answer_error(502, f"The application's response cannot be relayed: {e.message}")
            return
        if self.observer is not None:
            self.observer.response_head(status_code, self._response.status_description, headers)
        if self._via_rendezvous:
            self._start_streaming()
        elif not small_and_known:
            # Chunked, server-sent events or large: stream it as it is written.
            self._flush_to_rendezvous()
        elif self._inside_serve:
            self._flush_pending = True  # armed when _serve returns, if still needed
        else:
            self._flush_call = self.reactor.callLater(RESPONSE_FLUSH_DELAY, self._flush_to_rendezvous)

    def response_data(self, data: bytes) -> None:
        if self.observer is not None:
            self.observer.response_data(data)
        if self._streaming:
            self._send_fragment(data)
        elif self._buffer.write(data) and not self._via_rendezvous:
            self._flush_to_rendezvous()

    def response_end(self) -> None:
        self.finished = True
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

    # -- rendezvous streaming (Hybrid Connections protocol, "Responding via rendezvous")

    def _flush_to_rendezvous(self) -> None:
        """The response outgrew the control channel (size or time): move it to a rendezvous."""
        self._flush_call = None
        if self._via_rendezvous:
            return
        self._via_rendezvous = True
        # Hold the application back until the rendezvous is there to pace it.
        self.transport_pause_app()
        d = open_websocket(self.reactor, self.request.address, self._new_leg, ca_file=self.hc.ca_file, proxy=self.hc.proxy, maxMessagePayloadSize=0)
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
        if self.finished:
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
            # the empty FIN frame ends the body (Hybrid Connections protocol,
            # "Responding via rendezvous")
            leg.transport.write(masked_frame(OP_CONTINUATION if self._message_started else OP_BINARY, b"", True, fast_masker))
        leg.exchange = None
        leg.sendClose(1000)  # one response per rendezvous, like .NET

    # -- errors and endings ------------------------------------------------------

    def answer_error(self, status: int, message: str) -> None:
        """Answer a request the application never saw (or broke) with ``status``."""
        log.warn("request {id}: {message}", id=self.request.id, message=message)
        self.finished = True
        body = (message + "\n").encode("utf-8")
        response = Response(self.request.id, status, reason_phrase(status), {"Content-Type": "text/plain; charset=utf-8"}, body=True)
        if self.observer is not None:
            self.observer.answered_for_application(status, reason_phrase(status), body)
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
        self.finished = True
        self._close_app(reason)

    def _close_app(self, reason=None) -> None:
        if self._closed:
            return
        self._closed = True
        if self.observer is not None:
            self.observer.exchange_ended(None if reason is None else reason.getErrorMessage())
        self._when_answered()
        if self.transport is not None:
            self.producer_changed(release=True)
            # Usually called from inside the application's own write (the end
            # of its response): let that call return before the connection
            # goes, as a socket's loss would also come later. Inside _serve
            # that is as soon as _serve's call into the application returns
            # (most answers: no timer); otherwise on the next reactor turn.
            if self._inside_serve:
                self._lost_after_serve = reason or _RESPONSE_COMPLETE
            else:
                self.reactor.callLater(0, self._app_lost, reason or _RESPONSE_COMPLETE)

    def _when_answered(self) -> None:
        """Fire ``done`` once the answer has left: at once, or when its rendezvous closes."""
        leg = self.rendezvous
        if leg is not None and leg.state != leg.STATE_CLOSED:
            leg.is_closed.addBoth(self._over)
        elif leg is None and self._via_rendezvous and not self._rendezvous_gone and self.finished:
            # The answer waits for a rendezvous still opening; it is over when that closes.
            self._awaiting_rendezvous_close = True
        else:
            self._over()

    @property
    def done(self) -> defer.Deferred:
        """Fires when the exchange is over: answered, and its rendezvous (if any) closed."""
        if self._done is None:
            self._done = defer.succeed(None) if self._is_over else defer.Deferred()
        return self._done

    def when_over(self, callback) -> None:
        """Call ``callback(self)`` once the exchange is over (as ``done`` fires; without a
        Deferred per request, for the drain of :mod:`txhyco.listener.drain`)."""
        if self._is_over:
            callback(self)
        else:
            self._on_over = callback

    def _over(self, result=None):
        if not self._is_over:
            self._is_over = True
            callback, self._on_over = self._on_over, None
            if callback is not None:
                callback(self)
            if self._done is not None:
                self._done.callback(None)
        return result

    # -- a stopping listener (txhyco.listener.drain) -------------------------------

    def going_away(self, reason: str) -> None:
        """The listener is stopping: this request is still answered (the drain waits for it)."""

    def abort(self) -> None:
        """The drain time is up: answer 503 if nothing was answered yet, and let go."""
        if not self.finished:
            self.answer_error(503, "The listener stopped before it answered.")
        if self.rendezvous is not None:
            self.rendezvous.dropConnection(abort=True)
        self._over()

    def _app_lost(self, reason) -> None:
        self.transport.disconnected = True
        protocol = self.transport.protocol
        if protocol is not None:
            protocol.connectionLost(reason)

    # RelayedTransport bridge interface
    def close(self, abort: bool) -> None:
        if not self.finished and not abort and self._response is not None:
            # End of file ends a response framed by the connection's close
            # (no Content-Length, not chunked), as it would on a socket.
            self._reader.end_of_file()
        if not self.finished:
            if self._response is None:
                self.answer_error(502, "The application closed the connection without a response.")
            elif self._streaming and self.rendezvous is not None:
                self.rendezvous.dropConnection(abort=True)
            self.finished = True
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


def _with_body(response: Response, body: bool) -> Response:
    return Response(response.request_id, response.status_code, response.status_description, response.response_headers, body=body)


def refusing_site(status: int, reason: bytes, text: bytes, headers: tuple = ()):
    """A Site answering every request with ``status`` and ``text``, unlogged (the listener's own refusals)."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Refusal(Resource):
        isLeaf = True

        def render(self, request):
            request.setResponseCode(status, reason)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            for name, value in headers:
                request.setHeader(name, value)
            return text

    site = Site(Refusal())
    site.log = lambda request: None  # no access log for these refusals
    return site


@functools.cache
def websocket_only_site():
    """The HTTP answer of a listener that has only WebSocket connections to offer: 501."""
    return refusing_site(501, b"Not Implemented", b"This listener serves WebSocket connections only.\n")


@functools.cache
def stopping_site():
    """The HTTP answer of a listener that is stopping to a request that arrives meanwhile: 503."""
    return refusing_site(503, b"Service Unavailable", b"This listener is stopping.\n", ((b"retry-after", b"1"),))


def serve_request(reactor, hc, factory, request: Request, body: bytes | None, listener, *, inspector=None) -> None:
    """The listener's ``on_request`` handler for an HTTP/1.1 factory (``inspector``: a
    :class:`txhyco.inspector.capture.Inspector` that sees the exchange, or None)."""
    exchange = HttpExchange(reactor, hc, factory, listener, request)
    if inspector is not None:
        exchange.observer = inspector.http_observer()
    listener.requests.add(exchange)  # a stopping listener waits for its answer
    exchange.start(body)
