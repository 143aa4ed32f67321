"""One plain HTTP sender's connection to the relay, parsed with h11.

:class:`HttpSender` reads the sender's requests one after another
(keep-alive and pipelining included) and hands each to a
:class:`~txhyco.relay.http.RelayedHttpExchange`; the roles around it live
beside it: reading and routing a request head in
:mod:`txhyco.relay.httprequest`, answering the sender in
:mod:`txhyco.relay.httpanswer`, the limits between requests in
:mod:`txhyco.relay.pacing`.

The common request, whole in one read between requests and plain
(:mod:`txhyco.relay.plainhttp`), is read and answered without h11, whose
connection stays between requests meanwhile. Anything else about it (more
bytes arriving, an error answer, a streamed response) first lets h11 read
the same request bytes, so that h11 carries on from where the connection is.
"""
from __future__ import annotations

import h11
from twisted.logger import Logger

from txhyco._twisted.eagerwrite import tcp_wire, unsent_bytes
from txhyco.protocol.messages import RemoteEndpoint

from .http import RelayedHttpExchange
from .httpanswer import SenderAnswers
from .httprequest import RequestRefused, open_exchange
from .pacing import UNREAD_LIMIT, NextHeadDeadline, WhenDrained
from .plainhttp import PlainRequest, plain_request

log = Logger()


class HttpSender(SenderAnswers):
    """One sender's HTTP/1.1 connection to the relay: its requests in, one at a time."""

    def __init__(self, relay, front, conn: h11.Connection) -> None:
        self.relay = relay
        self.front = front
        self.conn = conn
        self.exchange: RelayedHttpExchange | None = None
        #: answers to refused requests end the connection (set by a refusal that asks so)
        self.close_after_error = False
        self._paused = False
        self._driving = False
        self._next_head = NextHeadDeadline(self)
        peer = front.transport.getPeer()
        #: the sender's address, as a listener is told it
        self.remote = RemoteEndpoint(getattr(peer, "host", ""), getattr(peer, "port", 0))
        #: the bytes of the plain request being answered without h11, or None
        self.plain: bytes | None = None
        #: the head limit of the connection's h11 reader, for plain requests too
        self._max_head = relay.config.limits.max_header_size + 4

    @property
    def transport(self):
        return self.front.transport

    # -- input ---------------------------------------------------------------

    def first_event(self, event) -> None:
        self._handle(event)
        self._drive()

    def dataReceived(self, data: bytes) -> None:
        if self.plain is not None:
            self.h11_takes_over()  # a pipelined request, or more: h11's from here
        elif self._between_requests():
            request = plain_request(data, self._max_head)
            if request is not None:
                self.plain_request(data, request)
                return
        self.conn.receive_data(data)
        self._drive()

    def _between_requests(self) -> bool:
        conn = self.conn
        return (
            conn.their_state is h11.IDLE and conn.our_state is h11.IDLE and self.exchange is None
            and not self._paused and not conn.trailing_data[0]
            and self.transport is not None and not self.front.closed
        )

    def plain_request(self, data: bytes, request: PlainRequest) -> None:
        """Handle ``request`` (all of ``data``) as h11's events would be, without h11."""
        self.plain = data
        self._next_head.arrived()
        try:
            exchange = self.exchange = open_exchange(self, request.method, request.target, request.headers)
        except RequestRefused as refused:
            if refused.close_connection:
                self.close_after_error = True
            self.error(refused.status, refused.message, host=refused.host, path=refused.path)
            return
        exchange.start()
        if request.body and self.exchange is exchange:
            exchange.sender_data(request.body)
        if self.exchange is exchange:
            exchange.sender_end()

    def h11_takes_over(self) -> None:
        """Let h11 read the plain request being answered (handled already), and carry on with h11."""
        data, self.plain = self.plain, None
        conn = self.conn
        conn.receive_data(data)
        try:
            event = conn.next_event()
            while event.__class__ is h11.Request or event.__class__ is h11.Data:
                event = conn.next_event()
        except h11.RemoteProtocolError:
            event = None
        if event.__class__ is not h11.EndOfMessage:  # cannot be: h11 reads plain requests alike
            log.error("h11 read a plain request differently ({event!r}); dropping the sender", event=event)
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        self._next_head.cancel()
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.sender_lost()

    def _drive(self) -> None:
        # Not re-entrant: an answer given while handling an event (an error)
        # starts the next cycle, and this loop then reads the next request.
        if self._driving:
            return
        self._driving = True
        try:
            while self.transport is not None and not self.front.closed:
                try:
                    event = self.conn.next_event()
                except h11.RemoteProtocolError as e:
                    self.error(e.error_status_hint, f"Malformed HTTP request: {e}.")
                    return
                if event is h11.NEED_DATA:
                    return
                if event is h11.PAUSED:
                    # A pipelined request waits for the current response;
                    # stop reading meanwhile so h11's buffer stays bounded.
                    self.pause()
                    return
                self._handle(event)
                if event.__class__ is h11.EndOfMessage and not self.conn.trailing_data[0]:
                    return  # nothing buffered: next_event would say NEED_DATA
        finally:
            self._driving = False

    def _handle(self, event) -> None:
        if isinstance(event, h11.Request):
            self._next_head.arrived()
            try:
                exchange = self.exchange = open_exchange(self, event.method, event.target, event.headers.raw_items())
            except RequestRefused as refused:
                if refused.close_connection:
                    self.close_after_error = True
                self.error(refused.status, refused.message, host=refused.host, path=refused.path)
            else:
                exchange.start()
        elif isinstance(event, h11.Data):
            if self.exchange is not None:
                if event.data:
                    # h11 hands out bytearray slices; transports take bytes only.
                    self.exchange.sender_data(bytes(event.data))
            else:  # the rest of an answered request's body, dropped: it must keep coming
                self._next_head.waiting()
        elif isinstance(event, h11.EndOfMessage):
            if self.exchange is not None:
                self.exchange.sender_end()
            self._maybe_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            if self.exchange is not None and not self.exchange.responded:
                self.exchange.sender_lost()
                self.exchange = None

    # -- flow control --------------------------------------------------------

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()

    # -- between requests ----------------------------------------------------

    def _go_on(self) -> None:
        # A pipelined request may already be buffered: go on reading.
        self.resume()
        if self.conn.trailing_data[0]:
            self._drive()

    def _maybe_next_cycle(self) -> None:
        conn = self.conn
        if conn.our_state is h11.MUST_CLOSE or conn.our_state is h11.ERROR:
            # Only once our response is complete: a sender that will close
            # (HTTP/1.0, "Connection: close") still waits for its answer.
            self.transport.loseConnection()
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._next_cycle()
        elif conn.our_state is h11.DONE and conn.their_state is h11.SEND_BODY and self.exchange is None:
            # Answered before the body was sent (an error, or an early
            # response): read and drop the rest so the connection can go on,
            # as long as it does not stall longer than a next head may.
            self._next_head.waiting()
            self.resume()

    def _next_cycle(self, h11_holds_nothing: bool = False) -> None:
        """A request and its answer are complete (h11 between requests): on to the next.

        ``h11_holds_nothing``: the request was plain, so h11 has no bytes of a next one.
        """
        self._next_head.waiting()
        wire = tcp_wire(self.transport)
        if wire is not None and wire.producer is None and unsent_bytes(wire) > UNREAD_LIMIT:
            # The sender is not reading its answers: take no further
            # request (and buffer no further answer) until they have left.
            # (On the TCP connection itself, under TLS too.) Reading stops
            # meanwhile, so no new exchange can want the producer slot.
            self.pause()
            wire.registerProducer(WhenDrained(wire, self._go_on), False)
            return
        if h11_holds_nothing:
            self.resume()
        else:
            self._go_on()
