"""Reading an application's HTTP/1.1 answer as it writes it, for the relayed ``response``.

:class:`ResponseReader` turns the bytes a listener's application protocol
writes into the head, body pieces and end its exchange relays. Most answers
have the common shape (see below) and are read without h11; any other is
read by an h11 client, from the first byte of the answer on.
"""
from __future__ import annotations

import re

import h11

from txhyco.protocol.grammar import PLAIN_FIELD_VALUE_B, TOKEN_B, plain_fields
from txhyco.protocol.http import CONTROL_CHANNEL_BODY_LIMIT

# The common shape of an application's response head, read without h11: an
# HTTP/1.1 final status line, ASCII header fields, one Content-Length and no
# Transfer-Encoding. Anything else -- chunked, close-delimited, 1xx, obs-fold,
# bare LF, obs-text -- is handed to h11 with every byte seen so far.
_STATUS_B = re.compile(rb"HTTP/1\.1 ([2-9][0-9][0-9])(?: ([\t\x20-\x7e]*))?")
#: h11's limit on an incomplete head (its ``max_incomplete_event_size``).
_MAX_HEAD = 16 * 1024


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
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or TOKEN_B.fullmatch(name) is None:
            return None
        value = value.strip(b" \t")
        if value and PLAIN_FIELD_VALUE_B.fullmatch(value) is None:
            return None
        headers.append((name, value))
    length = _content_length(headers)
    if length is None:
        return None
    return status, match[2] or b"", headers, length


def _content_length(headers) -> int | None:
    """The one Content-Length of a plain head's fields, or None (none, two, unreadable, or a Transfer-Encoding)."""
    length = None
    for name, value in headers:
        size = len(name)
        if size == 14 or size == 17:  # content-length, transfer-encoding: the others are passed over cheaply
            lower = name.lower()
            if lower == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif lower == b"transfer-encoding":
                return None
    return length


_REASON_B = re.compile(rb"[\t\x20-\x7e]*")


def _head_fields_fast(code: bytes, reason: bytes, headers: list):
    """(status, content length) of a head given as fields, if it has the common shape; else None.

    The same judgement as :func:`_response_head_fast` on the bytes those fields would make.
    """
    if len(code) != 3 or not code.isdigit() or code[:1] < b"2" or _REASON_B.fullmatch(reason) is None:
        return None
    status = int(code)
    if status == 204 or status == 304 or not headers:
        return None
    names, values = zip(*headers)
    if not plain_fields(names, values):
        return None
    length = _content_length(headers)
    if length is None:
        return None
    return status, length


def _small_and_known(event: h11.Response) -> bool:
    """Whether a response declares a length that fits the control channel."""
    for name, value in event.headers:
        if name == b"content-length":
            return value.isdigit() and int(value) <= CONTROL_CHANNEL_BODY_LIMIT
    return False


class ResponseReader:
    """One answer's reader: tells ``exchange`` its head, body pieces and end, or why it is malformed.

    ``exchange`` provides ``response_head(status, reason, raw_headers,
    small_and_known)``, ``response_data(bytes)``, ``response_end()``,
    ``answer_error(status, message)`` and ``finished``. ``method`` is the
    request's (a HEAD answer has no body, whatever its Content-Length says).
    """

    __slots__ = ("exchange", "method", "_conn", "_head", "_remaining")

    def __init__(self, exchange, method: str) -> None:
        self.exchange = exchange
        self.method = method
        self._conn: h11.Connection | None = None  # once the answer is not of the common shape
        self._head = b""  # an incomplete response head
        self._remaining: int | None = None  # Content-Length bytes still to come

    def feed(self, data: bytes) -> None:
        """Bytes the application wrote (never empty, never after its response ended)."""
        exchange = self.exchange
        remaining = self._remaining
        if remaining is not None:
            # A Content-Length body: its bytes pass straight through.
            n = len(data)
            if n < remaining:
                self._remaining = remaining - n
                exchange.response_data(data)
                return
            self._remaining = 0
            if remaining:
                exchange.response_data(data if n == remaining else data[:remaining])
            if not exchange.finished:
                exchange.response_end()
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
        if self.method == "HEAD":
            length = 0  # the head describes the body a GET would get; none follows
        self._remaining = length
        exchange.response_head(status, reason, headers, length <= CONTROL_CHANNEL_BODY_LIMIT)
        if exchange.finished:
            return
        rest = head[end + 4:]
        if rest:
            self.feed(rest)
        elif not length:
            self._remaining = 0
            exchange.response_end()

    def head(self, version: bytes, code: bytes, reason: bytes, headers: list) -> bool:
        """The response head as fields (twisted.web's fast path); False: it is to be written as bytes instead.

        Read as :meth:`feed` would read the bytes it makes, if it has the common
        shape and comes first; anything else is left to :meth:`feed`.
        """
        if version != b"HTTP/1.1" or self._remaining is not None or self._conn is not None or self._head:
            return False
        parsed = _head_fields_fast(code, reason, headers)
        if parsed is None:
            return False
        status, length = parsed
        if self.method == "HEAD":
            length = 0  # the head describes the body a GET would get; none follows
        self._remaining = length
        exchange = self.exchange
        exchange.response_head(status, reason, headers, length <= CONTROL_CHANNEL_BODY_LIMIT)
        if not length and not exchange.finished:
            exchange.response_end()
        return True

    def _to_h11(self, data: bytes) -> None:
        """Read the rest of this answer with h11, starting with ``data``."""
        self._head = b""
        conn = h11.Connection(h11.CLIENT)
        # Only the method matters to how h11 reads the answer (HEAD: no body).
        conn.send(h11.Request(method=self.method, target="/", headers=[("Host", "listener")]))
        conn.send(h11.EndOfMessage())
        self._conn = conn
        self._h11_receive(data)

    def _h11_receive(self, data: bytes) -> None:
        """``data`` (``b""``: the application closed) through h11; ``b""`` is end of file."""
        conn, exchange = self._conn, self.exchange
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                exchange.answer_error(502, f"The application sent a malformed HTTP response: {e}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                exchange.response_head(event.status_code, event.reason, event.headers.raw_items(), _small_and_known(event))
                if exchange.finished:
                    return
            elif isinstance(event, h11.Data):
                exchange.response_data(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                exchange.response_end()
                return

    def end_of_file(self) -> None:
        """The application closed its connection after starting a response."""
        if self._conn is not None:
            self._h11_receive(b"")
        elif self._remaining:
            self.exchange.answer_error(
                502, "The application sent a malformed HTTP response: peer closed connection without "
                f"sending complete message body: {self._remaining} bytes missing")
