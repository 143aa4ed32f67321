"""Answering an HTTP sender: response heads, bodies, whole responses and the relay's own errors.

:class:`SenderAnswers` is the answering half of an
:class:`~txhyco.relay.httpsender.HttpSender`; a
:class:`~txhyco.relay.http.RelayedHttpExchange` writes the listener's
response through it, and the relay answers refusals with it. Every answer
goes through the connection's h11 state machine, which holds a response to
its declared length.
"""
from __future__ import annotations

import h11
from twisted.logger import Logger

from .auth import azure_reason
from .plainhttp import plain_response

log = Logger()


class SenderAnswers:
    """Writes the answers on one sender's connection (a base of :class:`~txhyco.relay.httpsender.HttpSender`).

    The connection provides ``relay``, ``conn`` (its h11 connection),
    ``transport``, ``exchange`` (the request being answered, if any),
    ``close_after_error``, ``_maybe_next_cycle`` (what follows a complete
    answer: the next request, or the end of the connection), and for a plain
    request answered without h11 (:mod:`txhyco.relay.plainhttp`) ``plain``
    (its bytes, or None), ``h11_takes_over`` and ``_next_cycle``.
    """

    def send_continue(self) -> None:
        """Ask for the request body now (``100 Continue``), to a sender that waits for it."""
        self._send(h11.InformationalResponse(status_code=100, headers=[]))

    def _send(self, event) -> None:
        if self.plain is not None:
            self.h11_takes_over()
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
        if self.plain is not None:
            if (body is not None or content_length is not None or status == 204 or status == 304) and status < 600:
                # What h11 would write, and its state stays between requests.
                data = plain_response(status, reason.encode("utf-8"), headers, content_length if body is None else len(body))
                self.plain = None
                self.exchange = None
                self.transport.write(data + body if body else data)
                self._next_cycle(h11_holds_nothing=True)
                return
            # HEAD without a length (h11 adds its Transfer-Encoding), or a
            # status from 600 (which h11 before 0.13 refuses): h11 writes it.
            self.h11_takes_over()
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
        if self.plain is not None:
            self.h11_takes_over()
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
        if self.close_after_error:
            headers.append(("Connection", "close"))
        try:
            self.start_response(status, reason, headers, len(body))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.transport.abortConnection()
            return
        self._maybe_next_cycle()


def _h11_response(status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> h11.Response:
    return h11.Response(status_code=status, headers=headers, reason=reason)
