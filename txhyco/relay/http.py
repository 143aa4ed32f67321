"""Plain HTTP senders at the relay (§5): a request in, a listener's response out.

:class:`HttpSender` drives h11 for one sender connection (keep-alive and
pipelining included); :class:`RelayedHttpExchange` carries one request to a listener
and its response back, over the control channel (small bodies, §5.3) or a
request rendezvous (large or chunked bodies), streaming both ways with
backpressure.
"""
from __future__ import annotations

import functools
import uuid

import h11
from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from zope.interface import implementer

from txhyco._twisted.eagerwrite import tcp_wire, unsent_bytes
from txhyco.protocol.addresses import RelayTarget, parse_relay_target
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.http import (
    BodyData,
    BodyEnded,
    CONTROL_CHANNEL_BODY_LIMIT,
    CommandReceived,
    request_headers_for_listener,
    response_has_body,
    response_headers_for_sender,
    sanitize_reason,
)
from txhyco.protocol.messages import MAX_COMMAND_SIZE, RemoteEndpoint, Request, serialize_command
from txhyco.protocol.sas import Rights

from .auth import azure_reason, find_token, host_only
from .routing import NOT_READING, choose_listener
from .splice import frame_header

log = Logger()

#: The most a character can grow when serialized to a command (JSON's \uXXXX).
_JSON_GROWTH = 6

# Headers that instruct the relay and are not forwarded to the listener.
_RELAY_HEADERS = frozenset({"microsoft-relay-allowedlisteners", "microsoft-relay-disallowedlisteners"})


class HttpSender:
    """One sender's HTTP/1.1 connection to the relay, parsed with h11."""

    def __init__(self, relay, front, conn: h11.Connection) -> None:
        self.relay = relay
        self.front = front
        self.conn = conn
        self.exchange: RelayedHttpExchange | None = None
        self._paused = False
        self._driving = False
        self._remote: RemoteEndpoint | None = None
        self._close_after_error = False
        self._next_head_deadline = None
        self._awaiting_head_since: float | None = None

    @property
    def transport(self):
        return self.front.transport

    # -- input ---------------------------------------------------------------

    def first_event(self, event) -> None:
        self._handle(event)
        self._drive()

    def dataReceived(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._drive()

    def connectionLost(self, reason) -> None:
        call, self._next_head_deadline = self._next_head_deadline, None
        if call is not None and call.active():
            call.cancel()
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
            self._next_head_arrived()
            self._start(event)
        elif isinstance(event, h11.Data):
            if self.exchange is not None and event.data:
                # h11 hands out bytearray slices; transports take bytes only.
                self.exchange.sender_data(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            if self.exchange is not None:
                self.exchange.sender_end()
            self._maybe_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            if self.exchange is not None and not self.exchange.responded:
                self.exchange.sender_lost()
                self.exchange = None

    def _start(self, request: h11.Request) -> None:
        # One pass over h11's headers collects all the request needs: the
        # pairs to forward (validated again by request_headers_for_listener,
        # which is stricter than h11 about control characters), a lower-case
        # map, and the few names the relay itself looks at.
        forward = []
        lower = {}
        watched = {}  # the first value of each name in _WATCHED
        for raw_name, value in request.headers.raw_items():
            lname = raw_name.lower()
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                text = value.decode("latin-1")
            name = raw_name.decode("ascii")
            lower[name.lower()] = text
            if lname in _WATCHED:
                if lname in _RELAY_HEADERS_RAW:
                    continue  # a relay instruction: not forwarded
                watched.setdefault(lname, value)
            forward.append((name, text))
        host_raw = watched.get(b"host")
        upgrade = watched.get(b"upgrade")
        content_length = watched.get(b"content-length")
        transfer_encoding = watched.get(b"transfer-encoding")
        host = host_only(host_raw.decode("latin-1")) if host_raw else ""
        path = ""
        try:
            target = _relay_target(request.target)
            path = target.path
            if target.hybrid:
                raise ProtocolError("/$hc/ addresses take WebSocket upgrades; send HTTP requests to /{hybrid connection}/...", 400)
            if request.method == b"CONNECT" or upgrade:
                raise ProtocolError("The relay does not relay CONNECT or protocol upgrades over HTTP.", 405)
            if content_length is not None and transfer_encoding is not None:
                # Two framings for one body: a classic request-smuggling shape
                # (RFC 9112 §6.3). Refused, and the connection closed after.
                self._close_after_error = True
                raise ProtocolError("A request may not carry both Content-Length and Transfer-Encoding.", 400)
            relay = self.relay
            entity, _ = relay.registry.resolve(target.path)
            if entity is None:
                raise ProtocolError("Endpoint does not exist.", 404)
            auth_required = entity.config.requires_client_authorization
            consume = auth_required and not lower.get("servicebusauthorization") and not target.token
            if auth_required:
                token = find_token(lower, target.token, http=True, consume_authorization=True)
                self.relay.tokens.check(entity, token, host=host, required=Rights.SEND, now=self.relay.now())
            listener = choose_listener(relay.registry, entity, lower, no_listener_status=relay.config.limits.no_listener_status)
            via_host = host or "relay"
            headers = request_headers_for_listener(forward, via="1.1 " + via_host, consume_authorization=consume)
        except ProtocolError as e:
            self.error(e.status, e.message, host=host, path=path)
            return
        request_target = target.raw_path + ("?" + target.app_query if target.app_query else "")
        if content_length is not None:
            length = int(content_length)
        else:
            length = None if transfer_encoding is not None and b"chunked" in transfer_encoding.lower() else 0
        remote = self._remote
        if remote is None:
            peer = self.transport.getPeer()
            remote = self._remote = RemoteEndpoint(getattr(peer, "host", ""), getattr(peer, "port", 0))
        self.exchange = RelayedHttpExchange(
            self.relay,
            self,
            entity,
            listener,
            method=request.method.decode("ascii"),
            request_target=request_target,
            headers=headers,
            remote=remote,
            content_length=length,
            via_host=via_host,
        )
        self.exchange.start()

    # -- flow control --------------------------------------------------------

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()

    # -- output --------------------------------------------------------------

    def _send(self, event) -> None:
        data = self.conn.send(event)
        if data:
            self.transport.write(data)

    def _response_event(self, status: int, reason: str, headers: list[tuple[str, str]], content_length: int | None):
        raw = [(n.encode("ascii"), v.encode("utf-8")) for n, v in headers]
        if content_length is not None:
            raw.append((b"Content-Length", str(content_length).encode("ascii")))
        return _h11_response(status, raw, reason.encode("utf-8"))

    def start_response(self, status: int, reason: str, headers: list[tuple[str, str]], content_length: int | None) -> None:
        """Send the response head.

        ``headers`` are trusted: the relay's own, or a listener's that
        :class:`~txhyco.protocol.messages.Headers` validated (token names,
        no control characters); ``reason`` went through ``sanitize_reason``.
        """
        self._send(self._response_event(status, reason, headers, content_length))

    def write_body(self, data: bytes) -> None:
        try:
            self._send(h11.Data(data=data))
        except h11.LocalProtocolError:  # more than the declared Content-Length
            log.warn("a listener's response ran past its Content-Length; cutting the sender off")
            if self.exchange is not None:
                self.exchange.sender_lost()
            self.abort()

    def end_response(self) -> None:
        try:
            self._send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # less than the declared Content-Length
            log.warn("a listener's response ended short of its Content-Length; cutting the sender off")
            self.abort()
            return
        self.exchange = None
        self._maybe_next_cycle()

    def send_response(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes | None,
                      content_length: int | None = None) -> None:
        """A whole response (head, ``body``, end) in one write.

        The Content-Length is the body's; without a body, ``content_length`` if given.
        """
        conn = self.conn
        data = conn.send(self._response_event(status, reason, headers, content_length if body is None else len(body)))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self.transport.write(data)
        self.exchange = None
        self._maybe_next_cycle()

    def abort(self) -> None:
        """Cut the connection: a response that cannot be completed must not look complete."""
        self.exchange = None
        self.transport.abortConnection()

    def error(self, status: int, message: str, *, host: str = "", path: str = "") -> None:
        """Answer with a relay error (no Via: the listener never saw it), then go on or close."""
        self.exchange = None
        metrics = self.relay.metrics
        if status in (401, 403):
            metrics.auth_failures.labels(str(status)).inc()
        metrics.rejects.labels(str(status)).inc()
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.abortConnection()
            return
        reason = azure_reason(message, host=host or "relay", path=path, now=self.relay.now())
        body = (message + "\n").encode("utf-8")
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if self._close_after_error:
            headers.append(("Connection", "close"))
        try:
            self.start_response(status, reason, headers, len(body))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.transport.abortConnection()
            return
        self._maybe_next_cycle()

    def _go_on(self) -> None:
        # A pipelined request may already be buffered: go on reading.
        self.resume()
        if self.conn.trailing_data[0]:
            self._drive()

    # The front door times the first head; each later one on a kept-alive
    # connection must also arrive, whole, within streamIdleTimeout (no idle or
    # trickling connection is held for ever). One timer per connection checks
    # lazily, so a request costs a clock reading, not a timer.

    def _arm_next_head_deadline(self) -> None:
        self._awaiting_head_since = self.relay.reactor.seconds()
        if self._next_head_deadline is None:
            timeout = self.relay.config.limits.stream_idle_timeout
            self._next_head_deadline = self.relay.reactor.callLater(timeout, self._next_head_check)

    def _next_head_arrived(self) -> None:
        self._awaiting_head_since = None

    def _next_head_check(self) -> None:
        self._next_head_deadline = None
        since = self._awaiting_head_since
        if since is None or self.transport is None:
            return  # a request is in progress; the next cycle arms the check again
        timeout = self.relay.config.limits.stream_idle_timeout
        waited = self.relay.reactor.seconds() - since
        if waited >= timeout:
            # Nothing is in flight, and a sender that does not read would keep
            # a graceful close (which waits for the send buffer) open for ever.
            self.transport.abortConnection()
        else:
            self._next_head_deadline = self.relay.reactor.callLater(timeout - waited, self._next_head_check)

    def _maybe_next_cycle(self) -> None:
        conn = self.conn
        if conn.our_state is h11.MUST_CLOSE or conn.our_state is h11.ERROR:
            # Only once our response is complete: a sender that will close
            # (HTTP/1.0, "Connection: close") still waits for its answer.
            self.transport.loseConnection()
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._arm_next_head_deadline()
            wire = tcp_wire(self.transport)
            if wire is not None and wire.producer is None and unsent_bytes(wire) > _UNREAD_LIMIT:
                # The sender is not reading its answers: take no further
                # request (and buffer no further answer) until they have left.
                # (On the TCP connection itself, under TLS too.) Reading stops
                # meanwhile, so no new exchange can want the producer slot.
                self.pause()
                wire.registerProducer(_WhenDrained(wire, self._go_on), False)
                return
            self._go_on()
        elif conn.our_state is h11.DONE and conn.their_state is h11.SEND_BODY and self.exchange is None:
            # Answered before the body was sent (an error, or an early
            # response): read and drop the rest so the connection can go on.
            self.resume()


#: Unsent answer bytes past which a sender's next request waits for them to leave.
_UNREAD_LIMIT = 256 * 1024


@implementer(IPullProducer)
class _WhenDrained:
    """Waits on a TCP connection as a pull producer (Twisted asks one for more
    once its buffer is empty), then steps aside and calls ``then``."""

    def __init__(self, transport, then) -> None:
        self.transport = transport
        self.then = then
        self.asked = False

    def resumeProducing(self) -> None:
        if not self.asked or unsent_bytes(self.transport):  # registerProducer asks at once
            self.asked = True
            return
        then, self.then = self.then, None
        if then is not None:
            self.transport.unregisterProducer()
            then()

    def stopProducing(self) -> None:
        self.then = None


def declared_length(headers) -> int | None:
    """The listener's ``Content-Length`` for its response, if it declared one sound value."""
    value = headers.get("content-length")
    if value is None or not value.isdigit() or not value.isascii() or len(value) > 18:
        return None
    return int(value)


def _h11_response(status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> h11.Response:
    return h11.Response(status_code=status, headers=headers, reason=reason)

# h11 header names (lower case) that _start looks at or holds back.
_RELAY_HEADERS_RAW = frozenset(n.encode("ascii") for n in _RELAY_HEADERS)
_WATCHED = frozenset({b"host", b"content-length", b"transfer-encoding", b"upgrade"}) | _RELAY_HEADERS_RAW

# Parsed request targets, by raw target: a keep-alive sender (or many) asks
# for the same few paths, and parse_relay_target is pure. Long targets are
# parsed each time rather than kept.
_TARGET_CACHEABLE = 2048


@functools.lru_cache(maxsize=512)
def _cached_relay_target(raw: bytes) -> RelayTarget:
    return parse_relay_target(raw.decode("ascii"))  # h11 admits only visible ASCII


def _relay_target(raw: bytes) -> RelayTarget:
    if len(raw) <= _TARGET_CACHEABLE:
        return _cached_relay_target(raw)
    return parse_relay_target(raw.decode("ascii"))


class RelayedHttpExchange:
    """One relayed HTTP request: sender -> listener -> sender (§4.3, §4.4, §5)."""

    def __init__(self, relay, sender: HttpSender, entity, listener, *, method, request_target, headers, remote, content_length, via_host) -> None:
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
        self.id = str(uuid.uuid4())
        self.key = relay.registry.park(self)
        self.address = listener.rendezvous_address("request", self.id, "", "", self.key)
        self.inline = content_length is not None and content_length <= CONTROL_CHANNEL_BODY_LIMIT
        self.finished = False
        self.responded = False
        self.rendezvous = None
        self._body: list[bytes] = []
        self._body_done = False
        self._body_streaming = False
        self._first_fragment = True
        self._sent = False
        self._response_body: list[bytes] | None = None
        self._response = None
        self._deadline = None
        self._idle = None

    # -- sending the request -------------------------------------------------

    def start(self) -> None:
        # Headers within the head limit can still outgrow the command limit
        # once JSON escapes them (a non-ASCII character becomes \uXXXX, up to
        # 6 bytes): measure exactly when the head is large enough to matter.
        size = len(self.request_target) + sum(len(n) + len(v) for n, v in self.headers.items())
        if size * _JSON_GROWTH + 1024 > MAX_COMMAND_SIZE:
            try:
                serialize_command(self._full_request(True))
            except ProtocolError:
                self._fail(431, f"The request's headers do not fit in a {MAX_COMMAND_SIZE}-byte request command.")
                return
        self.listener.exchanges[self.id] = self
        if self.inline and self.sender.conn.they_are_waiting_for_100_continue:
            # An inline request needs its body before the listener hears of
            # it, so ask for the body now; a strict client waits forever.
            self.sender._send(h11.InformationalResponse(status_code=100, headers=[]))
        if not self.inline:
            # Address-only: the listener comes to a rendezvous for the rest (§4.3).
            self.listener.send(Request(address=self.address, id=self.id))
            self._arm_deadline()

    def _full_request(self, body: bool) -> Request:
        return Request(
            address=self.address,
            id=self.id,
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

    def sender_end(self) -> None:
        if self.finished:
            return
        self._body_done = True
        if self.inline and not self._sent:
            if self.listener.backlogged:  # it fell behind while the body arrived
                self._fail(503, NOT_READING)
                return
            self._sent = True
            body = b"".join(self._body)
            self._body = []
            self.listener.send(self._full_request(bool(body)), body or None)
            self._arm_deadline()
        elif self._body_streaming:
            self._end_fragments()

    def rendezvous_claimed(self, proto) -> None:
        self.rendezvous = proto

    def leg_opened(self, proto) -> None:
        if self._sent:
            return  # the listener came only to answer here (§4.4)
        self._sent = True
        has_body = bool(self._body) or not self._body_done
        proto.send_command(self._full_request(has_body))
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
                self.sender._send(h11.InformationalResponse(status_code=100, headers=[]))
            proto.transport.registerProducer(self.sender.transport, True)
            self.sender.resume()

    def _write_fragment(self, data: bytes) -> None:
        # One binary message, fragments sent as the sender's data arrives (§5.3).
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

    # -- the response --------------------------------------------------------

    def _arm_deadline(self) -> None:
        timeout = self.relay.config.limits.response_timeout
        self._deadline = self.relay.reactor.callLater(timeout, self._deadline_passed, timeout)

    def _stop_deadline(self) -> None:
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()

    def _deadline_passed(self, timeout: float) -> None:
        self._deadline = None
        if self.responded:
            self._fail(504, f"The listener's response stalled: its body did not come within {timeout:g} seconds.")
        else:
            self._fail(504, f"The listener did not respond within {timeout:g} seconds.")

    def response_received(self, response, channel) -> None:
        if self.responded or self.finished:
            return
        status = response.status_code
        if status < 200:
            # Interim answers (100 Continue, 101, 103) are the relay's business,
            # never a listener's final response.
            self._fail(502, f"The listener answered with the interim status {status} instead of a response.")
            return
        self.responded = True
        if channel is self.rendezvous or not response.body:
            self._stop_deadline()
        # (else its body follows on the control channel: the deadline, still
        # running, also covers a body that never comes or stops halfway)
        self._response = response
        self._has_body = response_has_body(self.method, status)
        self._status_reason = sanitize_reason(response.status_description, status)
        try:
            self._headers = response_headers_for_sender(response.response_headers, via=self.via)
        except ProtocolError as e:
            self._fail(502, f"The listener sent unusable response headers: {e.message}")
            return
        if not response.body:
            self._finish_whole(b"" if self._has_body else None)
        elif channel is self.rendezvous:
            # Streamed, paced by the sender's reading: with the listener's
            # Content-Length when it declared one (h11 holds the body to it;
            # a body that runs short or long cuts the sender off), else chunked.
            self._start(declared_length(response.response_headers))
            self.sender.transport.registerProducer(self.rendezvous.transport, True)
            self._arm_idle()
        else:
            self._response_body = []  # small: sent with a Content-Length when complete

    def _bodiless_length(self) -> int | None:
        """The Content-Length of an answer without a body: a HEAD answer keeps the
        listener's, the length a GET would get (RFC 9110 §9.3.2); h11 knows no body follows."""
        return declared_length(self._response.response_headers) if self.method == "HEAD" else None

    def _start(self, content_length: int | None) -> None:
        if not self._has_body:
            content_length = self._bodiless_length()
        # Counted when its head goes out (a buffered response may still fail).
        self.relay.count_http(self.entity.name, self._response.status_code)
        self.sender.start_response(self._response.status_code, self._status_reason, self._headers, content_length)

    def response_body(self, data: bytes) -> None:
        if self.finished:
            return
        if self._response_body is not None:
            self._response_body.append(data)
            return
        self.relay.metrics.bytes_to_sender[0] += len(data)
        if self._has_body:
            self.sender.write_body(data)
        self._arm_idle()

    def response_body_end(self) -> None:
        if self.finished:
            return
        if self._response_body is not None:
            body = b"".join(self._response_body) if self._has_body else b""
            self._response_body = None
            self.relay.metrics.bytes_to_sender[0] += len(body)
            self._finish_whole(body if self._has_body else None)
            return
        self._finish_response()

    def _finish_whole(self, body: bytes | None) -> None:
        """Answer the sender in one write: head, ``body`` (None: no body allowed), end."""
        sender = self.sender
        if sender.transport is not None and sender.transport.producer is not None:
            sender.transport.unregisterProducer()
        self._cleanup()
        self.relay.count_http(self.entity.name, self._response.status_code)
        sender.send_response(self._response.status_code, self._status_reason, self._headers, body, self._bodiless_length())

    def _finish_response(self) -> None:
        sender = self.sender
        if sender.transport is not None and sender.transport.producer is not None:
            sender.transport.unregisterProducer()
        self._cleanup()
        sender.end_response()

    def _arm_idle(self) -> None:
        timeout = self.relay.config.limits.stream_idle_timeout
        if self._idle is not None and self._idle.active():
            self._idle.reset(timeout)
        else:
            self._idle = self.relay.reactor.callLater(timeout, self._idle_passed)

    def _idle_passed(self) -> None:
        self._idle = None
        log.warn("response for {id} idle too long; cutting the sender off", id=self.id)
        self._fail(504, "The listener's response stalled.")

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
        for call in (self._deadline, self._idle):
            if call is not None and call.active():
                call.cancel()
        proto = self.rendezvous
        if proto is not None and proto.state == proto.STATE_OPEN:
            if abort_rendezvous:
                proto.close_with(1001, "The request was abandoned.")
            else:
                # The relay never routes another request here (§5.6 [REC]).
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
        if hasattr(sink, "closed") and not self.finished and was_clean and not proto.failedByMe:
            # The listener's Close may end an unterminated body (Java, §5.5);
            # a dropped socket or one the relay failed (say, a framing error)
            # must not make a cut-off body look complete.
            sink.closed()
        if not self.finished:
            if self.responded:
                self._cleanup()
                self.sender.abort()
            elif self._sent and not self.inline:
                self._fail(502, "The listener closed the rendezvous before it responded.")
