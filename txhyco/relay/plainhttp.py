"""The common small HTTP request, read and answered without h11.

Nearly every request a keep-alive sender sends is plain: one read holding
exactly one ``GET``/``HEAD``/``POST``... head over HTTP/1.1, one ``Host``,
at most a ``Content-Length`` body that is all there, nothing that changes
how the connection goes on. :func:`plain_request` reads such a read with
httptools (Node's llhttp, at a fraction of h11's cost) and says None to
anything else, which h11 then reads as before. Only heads that h11 reads
alike are taken (``tests/test_plain_http.py`` fuzzes both readers against
each other): httptools must read the head without complaint, and the bytes
must be of a shape on which both agree (CRLF line ends, no folded lines,
no control characters, the request line exactly as h11 splits it).
The front door's common WebSocket upgrade is judged from the same reading
(:func:`websocket_upgrade_headers`): a connection's first head is read once.

:func:`plain_response` writes the bytes h11 writes for a whole response
with a Content-Length (or none allowed) to such a request, for
:class:`~txhyco.relay.httpsender.HttpSender`, which keeps its h11
connection for everything else.
"""
from __future__ import annotations

import httptools

from txhyco.protocol.grammar import TOKEN_B

#: Methods a plain request may have (CONNECT and the unusual go to h11).
_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"PATCH ", b"OPTIONS ")

#: Bytes a plain head may hold: visible ASCII, space, HTAB and obs-text (RFC
#: 9110 section 5.5), which both readers accept in values, and CR and LF (as
#: CRLF line ends only, checked apart).
_HEAD_BYTES = b"\t\r\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
#: Bytes of a request-target (RFC 9112 section 3.2: visible ASCII).
_TARGET_BYTES = bytes(range(0x21, 0x7F))

#: Header names (lower case) that send a request to h11: they change the
#: framing (Transfer-Encoding) or the course of the connection (Upgrade,
#: Expect, a Connection other than "keep-alive"). (Content-Length and Host
#: are h11's to judge when repeated.)
_NOT_PLAIN = frozenset({b"transfer-encoding", b"upgrade", b"expect", b"connection"})

#: Longest Content-Length taken (h11 allows 20 digits; a plain body is all in one read anyway).
_LENGTH_DIGITS = 18


class PlainRequest:
    """A plain request as h11 would read it: ``headers`` are h11's raw (name, value) pairs (a tuple)."""

    __slots__ = ("method", "target", "headers", "body")

    def __init__(self, method: bytes, target: bytes, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body


class HeadReader:
    """httptools callbacks collecting a request head's target and header lines (here and at the front door)."""

    __slots__ = ("target", "headers")

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, data: bytes) -> None:
        self.target += data

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value.strip(b" \t")))


def plain_head_bytes(head: bytes) -> bool:
    """Whether the bytes of ``head`` are of a shape both readers take alike:
    CRLF line ends only (h11 also takes bare LF), no folded lines, no control bytes."""
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf or b"\n " in head or b"\n\t" in head:
        return False
    return not head.translate(None, _HEAD_BYTES)


class ReadHead:
    """A request head llhttp read without complaint, of a shape h11 reads alike (see :func:`read_head`)."""

    __slots__ = ("method", "target", "headers", "upgrade")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], upgrade: bool) -> None:
        self.method = method
        self.target = target
        #: h11's raw (name, value) pairs
        self.headers = headers
        #: llhttp saw an upgrade (``Connection: upgrade`` with ``Upgrade``)
        self.upgrade = upgrade


def read_head(head: bytes) -> ReadHead | None:
    """``head`` (ending with its blank line) read once with httptools, for
    :func:`plain_request` and :func:`websocket_upgrade_headers` to judge; None
    if its bytes or its request line are of a shape h11 might read otherwise."""
    if not plain_head_bytes(head):  # (older llhttp, httptools 0.6, takes folded lines and more)
        return None
    reader = HeadReader()
    parser = httptools.HttpRequestParser(reader)
    upgrade = False
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        upgrade = True  # the head is complete
    except httptools.HttpParserError:
        return None
    method = parser.get_method()
    target = reader.target
    # The request line exactly as h11 reads it: one space either side of a visible-ASCII target.
    if head[:head.find(b"\r\n")] != b"%s %s HTTP/1.1" % (method, target) or not target or target.translate(None, _TARGET_BYTES):
        return None
    token = TOKEN_B.fullmatch
    for name, _ in reader.headers:
        if token(name) is None:  # older llhttp takes a space in a name
            return None
    return ReadHead(method, target, reader.headers, upgrade)


def plain_request(data: bytes, max_head: int, read: ReadHead | None = None) -> PlainRequest | None:
    """``data`` as one plain request, whole (see the module docstring), or None.

    ``max_head`` bounds the head, as the relay's h11 connections are bounded.
    ``read``: its head as :func:`read_head` read it already (the front door's).
    """
    if not data.startswith(_METHODS):
        return None
    end = data.find(b"\r\n\r\n", 0, max_head)
    if end < 0:
        return None
    head = data[:end + 4]
    known = _plain_heads.get(head)
    if known is None:
        known = _plain_head(read if read is not None else read_head(head))
        if known is None:
            return None
        if len(head) <= _REMEMBERED_HEAD:
            if len(_plain_heads) >= _PLAIN_HEADS_LIMIT:
                _plain_heads.clear()
            _plain_heads[head] = known
    method, target, headers, length = known
    body = data[end + 4:]
    if len(body) != (length or 0):
        return None  # more to come, or a pipelined request behind: h11's
    if len(head) > _REMEMBERED_HEAD:
        headers = list(headers)  # (only the tuple of a remembered head is remembered further on: httprequest)
    return PlainRequest(method, target, headers, body)


# Plain heads read lately, and what they hold: a keep-alive sender (or many)
# sends the same head request after request, and reading one is pure. Heads
# up to _REMEMBERED_HEAD bytes, at most _PLAIN_HEADS_LIMIT of them.
_REMEMBERED_HEAD = 4096
_PLAIN_HEADS_LIMIT = 64
_plain_heads: dict[bytes, tuple] = {}


def _plain_head(read: ReadHead | None) -> tuple | None:
    """(method, target, header pairs as a tuple, Content-Length or None) of a plain head, or None."""
    if read is None or read.upgrade:
        return None  # (an upgrade is no plain request)
    hosts = 0
    length = None
    for name, value in read.headers:
        lower = name.lower()
        if lower == b"host":
            hosts += 1
        elif lower == b"content-length":
            if length is not None or not value.isdigit() or len(value) > _LENGTH_DIGITS:
                return None
            length = int(value)
        elif lower in _NOT_PLAIN and not (lower == b"connection" and value.lower() == b"keep-alive"):
            return None
    if hosts != 1:
        return None
    return read.method, read.target, tuple(read.headers), length


#: Headers whose presence sends an upgrade to h11 (a body on an upgrade, or
#: what h11 judges by its own rules).
_H11_JUDGES = frozenset({b"content-length", b"transfer-encoding"})


def websocket_upgrade_headers(head: bytes, read: ReadHead | None = None) -> list[tuple[bytes, bytes]] | None:
    """The (name, value) pairs of ``head`` (ending with its blank line) if it is a plain WebSocket upgrade.

    Plain: llhttp reads it without complaint as ``GET`` over HTTP/1.1 with
    one ``Host``, an ``Upgrade`` naming websocket and no body headers. None
    otherwise, for h11 to judge (and refuse, or serve as plain HTTP).
    ``read``: ``head`` as :func:`read_head` read it already.
    """
    if not head.startswith(b"GET "):  # llhttp skips empty lines before the request line; h11 does not
        return None
    if read is None:
        read = read_head(head)
        if read is None:
            return None
    hosts = 0
    websocket = False
    for name, value in read.headers:
        lower = name.lower()
        if lower == b"host":
            hosts += 1
        elif lower == b"upgrade":
            websocket = websocket or b"websocket" in value.lower()
        elif lower in _H11_JUDGES:
            return None
    if hosts != 1 or not websocket:
        return None
    return read.headers


def plain_response(status: int, reason: bytes, headers: list[tuple[str, str]], content_length: int | None) -> bytes:
    """The head h11 writes for this response to a plain request (a ``Host`` header first, as h11 puts it).

    ``headers`` are trusted as for ``start_response`` (tokens, no control
    characters, no surrounding whitespace, no framing or connection headers).
    A tuple of them is remembered with the head it made (a listener answers
    alike request after request).
    """
    if headers.__class__ is tuple:
        key = (status, reason, headers, content_length)
        head = _heads.get(key)
        if head is None:
            if len(_heads) >= _HEADS_LIMIT:
                _heads.clear()
            head = _heads[key] = _response_head(status, reason, headers, content_length)
        return head
    return _response_head(status, reason, headers, content_length)


#: Heads written lately, by what they were made of (plain_response); bounded.
_HEADS_LIMIT = 64
_heads: dict[tuple, bytes] = {}


def _response_head(status: int, reason: bytes, headers, content_length: int | None) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    later = []
    for name, value in headers:
        line = b"%s: %s\r\n" % (name.encode("ascii"), value.encode("utf-8"))
        if name.lower() == "host":
            lines.append(line)
        else:
            later.append(line)
    lines += later
    if content_length is not None:
        lines.append(b"Content-Length: %d\r\n" % content_length)
    lines.append(b"\r\n")
    return b"".join(lines)
