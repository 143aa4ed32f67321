"""A listener's response on its way to an HTTP sender, with its deadlines.

:class:`ResponseToSender` is the response half of a
:class:`~txhyco.relay.http.RelayedHttpExchange`: it checks the listener's
response head, forwards a small body whole (with its Content-Length) or
streams a large one paced by the sender's reading, and times the listener
(its response must start within responseTimeout, and a streamed body may
not stall for longer than streamIdleTimeout).
"""
from __future__ import annotations

from twisted.logger import Logger

from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.http import response_has_body, response_headers_for_sender, sanitize_reason

log = Logger()


def declared_length(headers) -> int | None:
    """The listener's ``Content-Length`` for its response, if it declared one sound value."""
    value = headers.get("content-length")
    if value is None or not value.isdigit() or not value.isascii() or len(value) > 18:
        return None
    return int(value)


# The reason phrase and headers the sender gets for a listener's response,
# by what they are made of: the listener's headers (Headers are immutable,
# and parsing reuses the object for the same headers), the Via, the status
# and its description. A listener answers request after request alike; this
# skips sifting its headers and sanitizing its phrase again. Bounded.
_SENDER_HEADS_LIMIT = 64
_sender_heads: dict[tuple, tuple[str, tuple[tuple[str, str], ...]]] = {}


class ResponseToSender:
    """The response half of a :class:`~txhyco.relay.http.RelayedHttpExchange` (one of its bases).

    The exchange provides ``relay``, ``sender`` (the HttpSender it answers),
    ``entity``, ``method``, ``via``, ``id``, ``rendezvous``, the state flags
    ``responded`` and ``finished``, the timers ``_deadline`` and ``_idle``,
    ``_response_body`` (the buffer of a body that comes on the control
    channel), and ``_fail`` and ``_cleanup``.
    """

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
        # (By the pairs in order: Headers compare equal whatever their order.)
        key = (response.response_headers.items(), self.via, status, response.status_description)
        known = _sender_heads.get(key)
        if known is None:
            try:
                headers = tuple(response_headers_for_sender(response.response_headers, via=self.via))
            except ProtocolError as e:
                self._fail(502, f"The listener sent unusable response headers: {e.message}")
                return
            if len(_sender_heads) >= _SENDER_HEADS_LIMIT:
                _sender_heads.clear()
            known = _sender_heads[key] = (sanitize_reason(response.status_description, status), headers)
        self._status_reason, self._headers = known
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
