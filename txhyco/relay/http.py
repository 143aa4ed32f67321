"""One relayed HTTP request at the relay (Hybrid Connections protocol,
"Request message"): a request in, a listener's response out.

:class:`RelayedHttpExchange` carries one request of an HTTP sender
(:mod:`txhyco.relay.httpsender`) to a listener and its response back, over
the control channel (small bodies; Hybrid Connections protocol, "Request message") or a
request rendezvous (large or chunked bodies), streaming both ways with backpressure.
This module sends the request and handles failures and the rendezvous; the response half
is :mod:`txhyco.relay.httpresponse`.
"""
from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from txhyco.interfaces import IChannelSink
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.channel import BodyData, BodyEnded, CommandReceived
from txhyco.protocol.frames import frame_header
from txhyco.protocol.http import inline_request_possible
from txhyco.protocol.messages import MAX_COMMAND_SIZE, Request, serialize_command, serialize_request

from .httpresponse import ResponseToSender
from .registry import request_id
from .routing import NOT_READING

log = Logger()

#: The most a character can grow when serialized to a command (JSON's \uXXXX).
_JSON_GROWTH = 6


@implementer(IPushProducer)
class SenderBodyPacing:
    """The sender's request body as the producer of the rendezvous it streams to.

    Pausing and resuming go through the sender (so its own paused state stays
    true). Stopping does nothing: Twisted stops a producer when its consumer's
    connection is lost, and a lost rendezvous must not end the sender's
    connection, which still gets the relay's answer and keeps reading.
    """

    def __init__(self, sender) -> None:
        self.sender = sender

    def pauseProducing(self) -> None:
        self.sender.pause()

    def resumeProducing(self) -> None:
        self.sender.resume()

    def stopProducing(self) -> None:
        pass  # the exchange's failure handling answers the sender


class RelayedHttpExchange(ResponseToSender):
    """One relayed HTTP request: sender -> listener -> sender
    (Hybrid Connections protocol, "Request message" and "Responding to requests")."""

    # Where each exchange starts (class attributes, set on the instance when
    # they change: fewer stores for each of many short-lived exchanges).
    finished = False
    responded = False
    rendezvous = None
    _body_done = False
    _body_streaming = False
    _first_fragment = True
    _sent = False
    _response_body: list[bytes] | None = None
    _response = None
    _deadline = None
    _idle = None
    #: while an inline body arrives: its timer, and when it began and last moved
    _body_wait = None
    _body_began = _body_moved = 0.0

    def __init__(self, relay, sender, entity, listener, *, method, request_target, headers, remote, content_length, via_host) -> None:
        self.relay = relay
        self.sender = sender
        self.entity = entity
        self.listener = listener
        self.method = method
        self.request_target = request_target
        self.headers = headers
        self.remote = remote
        self.content_length = content_length
        self.via = f"1.1 {via_host}"
        self.id = request_id()
        self.key = relay.registry.park(self)
        self.address = listener.rendezvous_address("request", self.id, "", "", self.key)
        # A listener on another cluster node gets address-only requests: its
        # response on the control channel would arrive on that node.
        self.inline = listener.takes_inline and inline_request_possible(content_length)
        self._body: list[bytes] = []

    # -- sending the request -------------------------------------------------

    def start(self) -> None:
        # Headers within the head limit can still outgrow the command limit
        # once JSON escapes them (a non-ASCII character becomes \uXXXX, up to
        # 6 bytes): measure exactly when the head is large enough to matter.
        plain = self.sender.plain
        if plain is not None:  # the bytes of a plain request's head hold its target and headers, and bound them
            size = len(plain) - (self.content_length or 0)
        else:
            size = len(self.request_target) + sum(len(n) + len(v) for n, v in self.headers.items())
        if size * _JSON_GROWTH + 1024 > MAX_COMMAND_SIZE:
            try:
                serialize_command(self.full_request(True))
            except ProtocolError:
                self._fail(431, f"The request's headers do not fit in a {MAX_COMMAND_SIZE}-byte request command.")
                return
        self.listener.exchanges[self.id] = self
        if self.inline and plain is None and self.sender.conn.they_are_waiting_for_100_continue:  # (a plain request has no Expect)
            # An inline request needs its body before the listener hears of
            # it, so ask for the body now; a strict client waits forever.
            self.sender.send_continue()
        if not self.inline:
            # Address-only: the listener comes to a rendezvous for the rest
            # (Hybrid Connections protocol, "Request message").
            self.listener.send(Request(address=self.address, id=self.id))
            self._arm_deadline()
        elif self.content_length:
            self._arm_body_wait()

    def full_request(self, body: bool) -> Request:
        return Request(
            address=self.address,
            id=self.id,
            request_target=self.request_target,
            method=self.method,
            request_headers=self.headers,
            body=body,
            remote_endpoint=self.remote,
        )

    def request_text(self, body: bool) -> str:
        """The JSON of :meth:`full_request`, written without the command object (its values are checked already)."""
        return serialize_request(
            self.address,
            self.id,
            request_target=self.request_target,
            method=self.method,
            request_headers=self.headers,
            body=body,
            remote_endpoint=self.remote,
        )

    def sender_data(self, data: bytes) -> None:
        if self.finished:
            return
        if self._body_streaming:
            self._write_fragment(data)
        else:
            self._body.append(data)
            if not self.inline:
                self.sender.pause()
            elif self._body_wait is not None:
                self._body_moved = self.relay.reactor.seconds()

    def sender_end(self) -> None:
        if self.finished:
            return
        self._body_done = True
        self._stop_body_wait()
        if self.inline and not self._sent:
            if self.listener.backlogged:  # it fell behind while the body arrived
                self._fail(503, NOT_READING)
                return
            self._sent = True
            body = b"".join(self._body) if self._body else b""
            self._body = []
            self.listener.send_request(self, body or None)
            self._arm_deadline()
        elif self._body_streaming:
            self._end_fragments()

    # An inline body is sent whole, so the listener hears of the request only once
    # it is complete: until then the relay alone holds the sender to time. Its
    # body may pause no longer than streamIdleTimeout, and must be complete within
    # responseTimeout (no trickle holds a connection for ever).

    def _arm_body_wait(self) -> None:
        self._body_began = self._body_moved = self.relay.reactor.seconds()
        self._body_wait = self.relay.reactor.callLater(self.relay.config.limits.stream_idle_timeout, self._check_body_wait)

    def _stop_body_wait(self) -> None:
        call, self._body_wait = self._body_wait, None
        if call is not None and call.active():
            call.cancel()

    def _check_body_wait(self) -> None:
        limits, now = self.relay.config.limits, self.relay.reactor.seconds()
        due = min(self._body_moved + limits.stream_idle_timeout, self._body_began + limits.response_timeout)
        if now < due:
            self._body_wait = self.relay.reactor.callLater(due - now, self._check_body_wait)
            return
        self._body_wait = None
        self.sender.close_after_error = True  # the rest of the body may still come: no next request
        self._fail(408, "The request body did not arrive in time.")

    def rendezvous_claimed(self, proto) -> None:
        self.rendezvous = proto

    def leg_opened(self, proto) -> None:
        if self._sent:
            # the listener came only to answer here (Hybrid Connections protocol,
            # "Responding to requests")
            return
        self._sent = True
        has_body = bool(self._body) or not self._body_done
        proto.send_command(self.full_request(has_body))
        if not has_body:
            return
        self._body_streaming = True
        body, self._body = self._body, []
        for chunk in body:
            self._write_fragment(chunk)
        if self._body_done:
            self._end_fragments()
        else:
            if self.sender.conn.they_are_waiting_for_100_continue:
                self.sender.send_continue()
            proto.transport.registerProducer(SenderBodyPacing(self.sender), True)
            self.sender.resume()

    def _write_fragment(self, data: bytes) -> None:
        # One binary message, fragments sent as the sender's data arrives
        # (Hybrid Connections protocol, "Request message").
        opcode = 2 if self._first_fragment else 0
        self._first_fragment = False
        self.rendezvous.transport.writeSequence((frame_header(opcode, False, len(data)), data))
        self.relay.metrics.bytes_to_listener[0] += len(data)

    def _end_fragments(self) -> None:
        self._body_streaming = False
        transport = self.rendezvous.transport
        transport.write(frame_header(2 if self._first_fragment else 0, True, 0))
        if transport.producer is not None:
            transport.unregisterProducer()

    # -- failures and cleanup --------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        if self.finished:
            return
        # A response buffered from the control channel has not reached the
        # sender yet, so it can still get a proper error status.
        started = self.responded and self._response_body is None
        self._cleanup(abort_rendezvous=True)
        if started:
            self.sender.abort()
        else:
            self.relay.count_http(self.entity.name, status)
            self.sender.error(status, message, host=self.via.split(" ", 1)[1], path=self.entity.name)

    def listener_lost(self, channel, why: str | None = None) -> None:
        if self.rendezvous is not None and self.rendezvous.state == self.rendezvous.STATE_OPEN and self.responded:
            return  # the response streams on its rendezvous; the control channel is not needed
        if self.rendezvous is not None and not self.responded and self._sent and not self.inline:
            return  # the rendezvous is up and may still answer
        self._fail(502, why or "The listener disconnected before it responded.")

    def sender_lost(self) -> None:
        self._cleanup(abort_rendezvous=True)

    def _cleanup(self, abort_rendezvous: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self.listener.exchanges.pop(self.id, None)
        self.relay.registry.drop(self.key)
        for call in (self._deadline, self._idle, self._body_wait):
            if call is not None and call.active():
                call.cancel()
        proto = self.rendezvous
        if proto is not None and proto.state == proto.STATE_OPEN:
            if abort_rendezvous:
                proto.close_with(1001, "The request was abandoned.")
            else:
                # The relay never routes another request here (our choice;
                # Hybrid Connections protocol, "Responding via rendezvous").
                proto.close_with(1000, "Done.")

    # -- rendezvous role (CommandSink handler + leg events) --------------------

    def channel_event(self, event) -> None:
        if isinstance(event, CommandReceived):
            response = event.command
            if response.request_id != self.id:
                self.framing_error(ProtocolError(f"A response for request {response.request_id!r} arrived on the rendezvous of {self.id!r}."))
                return
            self.response_received(response, self.rendezvous)
        elif isinstance(event, BodyData):
            self.response_body(event.data)
        elif isinstance(event, BodyEnded):
            self.response_body_end()

    def framing_error(self, error: ProtocolError) -> None:
        log.warn("request rendezvous {id}: {why}", id=self.id, why=error.message)
        self._fail(502, f"The listener broke the protocol: {error.message}")

    def leg_closed(self, proto, was_clean, code, reason) -> None:
        sink = proto.sink
        if IChannelSink.providedBy(sink) and not self.finished and was_clean and not proto.failedByMe:
            # The listener's Close may end an unterminated body (as Microsoft's Java
            # listener does); a dropped socket or one the relay failed (say, a framing
            # error) must not make a cut-off body look complete.
            sink.closed()
        if not self.finished:
            if self.responded:
                self._cleanup()
                self.sender.abort()
            elif self._sent and not self.inline:
                self._fail(502, "The listener closed the rendezvous before it responded.")
