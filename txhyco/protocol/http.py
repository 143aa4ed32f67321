"""HTTP over the relay (Hybrid Connections protocol, "Request message" and
"Responding to requests") as pure logic.

The relay and the listener both use this module: the header rules that turn
a sender's request into ``requestHeaders`` (and a ``response`` back into the
sender's headers), the choice between control channel and rendezvous, the
shared limits and timeouts, and the listener's response buffer. The framing
of the messages on a control channel or rendezvous is
:mod:`txhyco.protocol.channel`'s.

Nothing here does I/O or reads a clock; the caller passes elapsed times in.
"""
from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Union

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .grammar import FORBIDDEN_IN_VALUE, field_text
from .messages import MAX_COMMAND_SIZE, Headers

__all__ = [
    "CONTROL_CHANNEL_BODY_LIMIT",
    "MAX_COMMAND_SIZE",
    "HEADER_METADATA_LIMIT",
    "RESPONSE_DEADLINE",
    "STREAM_IDLE_LIMIT",
    "ACCEPT_TIMEOUT",
    "RESPONSE_FLUSH_DELAY",
    "CONNECTION_HEADERS",
    "AUTH_HEADER",
    "request_headers_for_listener",
    "connect_headers_for_listener",
    "response_headers_for_sender",
    "reason_phrase",
    "REASON_LIMIT",
    "sanitize_reason",
    "response_has_body",
    "inline_request_possible",
    "ResponseBuffer",
]

#: Bytes of body allowed inline on the control channel, each way
#: (Hybrid Connections protocol, "Request message" and "Responding via rendezvous").
CONTROL_CHANNEL_BODY_LIMIT = 65536
#: Limit on HTTP header metadata (Hybrid Connections protocol, "Request message").
HEADER_METADATA_LIMIT = 32768
#: Seconds the listener has to deliver the ``response`` header
#: (Hybrid Connections protocol, "Responding to requests") — else 504.
RESPONSE_DEADLINE = 60.0
#: Seconds a streaming response may stay idle (Hybrid Connections protocol,
#: "Responding to requests") — else 504 / abort.
STREAM_IDLE_LIMIT = 60.0
#: Seconds a WebSocket sender waits for the listener to rendezvous
#: (Hybrid Connections protocol, "Accept message").
ACCEPT_TIMEOUT = 30.0
#: Seconds after the first buffered write before the listener moves a
#: still-unfinished response to a rendezvous (the flush timer of Microsoft's .NET and
#: Java listeners).
RESPONSE_FLUSH_DELAY = 2.0

#: Connection-level (hop-by-hop) headers the relay strips in both directions
#: (the list in Hybrid Connections protocol, "Request message", plus
#: ``Keep-Alive``/``Proxy-Connection``, RFC 7230 §6.1). ``Host`` is deliberately *not*
#: here: the article lists it as stripped, the .NET sources show it present — see
#: ``keep_host``.
CONNECTION_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "close",
        "keep-alive",
        "proxy-connection",
    }
)

#: The relay's own token header, never forwarded to a listener
#: (Hybrid Connections protocol, "Request operation").
AUTH_HEADER = "ServiceBusAuthorization"
_AUTH_LOWER = AUTH_HEADER.lower()

# Canonical casing for the headers Java looks up case-sensitively
# (Azure/azure-relay-java).
_CANONICAL_UPGRADE_NAMES = {
    name.lower(): name
    for name in (
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
    )
}

HeaderPairs = Iterable[tuple[Union[str, bytes], Union[str, bytes]]]


# --------------------------------------------------------------------------
# header rules


def _text(item: str | bytes, what: str) -> str:
    """A header name or value as str; bytes are UTF-8, else Latin-1 (HTTP's legacy)."""
    if isinstance(item, str):
        return item
    if isinstance(item, (bytes, bytearray)):
        return field_text(item)
    raise LocalProtocolError(f"A header {what} must be str or bytes, not {type(item).__name__}.")


def _text_pairs(headers: HeaderPairs) -> list[tuple[str, str]]:
    """Pairs as str (not yet validated)."""
    pairs = []
    try:
        for pair in headers:
            name, value = pair
            if name.__class__ is not str:
                name = _text(name, "name")
            if value.__class__ is not str:
                value = _text(value, "value")
            pairs.append((name, value))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise LocalProtocolError("Headers must be (name, value) pairs.") from None
    return pairs


def _merged(headers: HeaderPairs) -> Headers:
    """A peer's pairs validated and merged in one pass (smuggling → 400)."""
    try:
        return Headers(_text_pairs(headers))
    except LocalProtocolError as exc:  # Headers' own checks; the headers came from a peer
        raise RemoteProtocolError(exc.message, exc.status) from None


def _connection_tokens(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """Header names nominated by ``Connection`` as hop-by-hop (RFC 7230 §6.1)."""
    tokens: set[str] = set()
    for name, value in pairs:
        if name.lower() == "connection":
            tokens.update(token.strip().lower() for token in value.split(","))
    tokens.discard("")
    return tokens


def _with_via(pairs: list[tuple[str, str]], via: str, *, strip: bool = False) -> list[tuple[str, str]]:
    """Append ``via`` to an existing ``Via`` (RFC 7230 §5.7.1) or add one at the end.

    ``strip`` trims spaces/tabs around the resulting value, as :class:`Headers` would.
    """
    if not via or FORBIDDEN_IN_VALUE.search(via):
        raise LocalProtocolError("The Via value must be non-empty and free of control characters.")
    for position, (name, value) in enumerate(pairs):
        if name.lower() == "via":
            value = f"{value}, {via}" if value else via
            pairs[position] = (name, value.strip(" \t") if strip else value)
            return pairs
    pairs.append(("Via", via.strip(" \t") if strip else via))
    return pairs


def request_headers_for_listener(
    headers: HeaderPairs,
    *,
    via: str,
    consume_authorization: bool,
    keep_host: bool = True,
) -> Headers:
    """The ``requestHeaders`` the relay sends for a sender's HTTP request
    (Hybrid Connections protocol, "Request message").

    Repeated headers are joined with ``", "`` under the first-seen casing.
    ``ServiceBusAuthorization`` is always removed; ``Authorization`` only when
    the relay consumed it as the token (``consume_authorization``;
    Hybrid Connections protocol, "Request operation"). Connection-level headers and
    headers named in ``Connection`` are removed; ``Host`` stays unless ``keep_host`` is
    false (Hybrid Connections protocol, "Request message", strips it, but .NET shows it
    present, and listeners doing virtual hosting need it).  ``via`` is appended to an
    existing ``Via`` or added.  Names or values that could smuggle (CR/LF/NUL, non-token
    names) raise :class:`ProtocolError` (400).
    """
    # Validate and merge once; dropping by name commutes with merging by
    # name, so the result equals merging what is kept.
    merged = _merged(headers)
    drop = set(CONNECTION_HEADERS)
    if "connection" in merged:
        drop.update(_connection_tokens(merged.items()))
    drop.add(_AUTH_LOWER)
    if consume_authorization:
        drop.add("authorization")
    if not keep_host:
        drop.add("host")
    kept = [(name, value) for name, value in merged.items() if name.lower() not in drop]
    return Headers._trusted(_with_via(kept, via, strip=True))


def connect_headers_for_listener(headers: HeaderPairs, *, strip_auth: bool = True) -> Headers:
    """The ``accept.connectHeaders`` for a WebSocket sender's upgrade
    (Hybrid Connections protocol, "Accept handshake").

    Every header of the upgrade request, repeats joined with ``", "``, with
    canonical RFC 6455 casing for ``Host``, ``Upgrade``, ``Connection`` and
    ``Sec-WebSocket-Key/-Version/-Protocol/-Extensions`` (Java looks up
    ``Sec-WebSocket-Protocol`` case-sensitively).  ``ServiceBusAuthorization``
    is removed unless ``strip_auth`` is false (our choice; Hybrid Connections protocol,
    "Accept handshake").
    """
    merged = _merged(headers)
    renamed = []
    for name, value in merged.items():
        lower = name.lower()
        if strip_auth and lower == _AUTH_LOWER:
            continue
        renamed.append((_CANONICAL_UPGRADE_NAMES.get(lower, name), value))
    return Headers._trusted(renamed)


def response_headers_for_sender(headers: Headers, *, via: str) -> list[tuple[str, str]]:
    """The headers the relay sends the sender for a listener's response
    (Hybrid Connections protocol, "Responding to requests" and "HTTP request protocol").

    Drops connection-level headers (``Content-Length`` included: the relay
    frames the body itself) and any header named in ``Connection``, then
    appends ``via`` to ``Via`` (or adds it).  Values are not split: a
    comma-joined value stays one header line.
    """
    headers = Headers.from_mapping(headers)
    items = headers.items()
    drop = CONNECTION_HEADERS | _connection_tokens(items) if "connection" in headers else CONNECTION_HEADERS
    kept = [(name, value) for name, value in items if name.lower() not in drop]
    return _with_via(kept, via)


# --------------------------------------------------------------------------
# status line and body rules


def reason_phrase(code: int) -> str:
    """The standard reason phrase for ``code``; ``""`` for unknown codes (as .NET does)."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


#: Characters of a peer's reason phrase kept on a status line: enough for any
#: real phrase (Azure's own, with tracking id and timestamp, are ~200); a 60 KB
#: one would make strict HTTP clients refuse the whole response.
REASON_LIMIT = 512


def sanitize_reason(text: str | None, code: int) -> str:
    """A reason phrase safe for a status line (our choice; Hybrid Connections protocol,
    "Responding to requests" and "HTTP request protocol").

    Control characters (CR, LF, NUL …, not HTAB) are removed and the rest
    cut to :data:`REASON_LIMIT` characters; ``None``, empty or blank text
    becomes the standard phrase for ``code``.
    """
    if text:
        text = FORBIDDEN_IN_VALUE.sub("", text[:4 * REASON_LIMIT])[:REASON_LIMIT]
        if text.strip(" \t"):
            return text
    return reason_phrase(code)


def response_has_body(method: str, status: int) -> bool:
    """Whether the sender's response carries a body (RFC 7230 §3.3.3).

    False for ``HEAD`` (compared exactly, as methods are case-sensitive and
    h11 does the same), 1xx, 204 and 304 — even if the listener said
    ``body: true`` and sent an empty message.
    """
    if method == "HEAD":
        return False
    return not (100 <= status < 200 or status == 204 or status == 304)


def inline_request_possible(content_length: int | None) -> bool:
    """Whether the relay may send a request inline on the control channel (our choice;
    Hybrid Connections protocol, "Request message").

    Only when the body's length is known up front (``Content-Length``; 0 for
    no body; a chunked body has none) and is at most
    :data:`CONTROL_CHANNEL_BODY_LIMIT` bytes. Otherwise: address-only request
    + rendezvous. (That the ``request`` JSON fits :data:`MAX_COMMAND_SIZE` is
    :func:`~txhyco.protocol.messages.serialize_command`'s check.)
    """
    return content_length is not None and 0 <= content_length <= CONTROL_CHANNEL_BODY_LIMIT


class ResponseBuffer:
    """The listener's response buffer that picks control channel vs rendezvous
    (Hybrid Connections protocol, "Responding via rendezvous").

    Writes are kept (by reference, no copying) up to ``limit`` bytes.  When a
    write would overflow, :meth:`write` returns True from then on: the
    response must move to a rendezvous; the buffer keeps collecting until the
    caller :meth:`take`\\ s the bytes to stream them.  The flush timer
    (:data:`RESPONSE_FLUSH_DELAY` after the first write) is the caller's.
    """

    __slots__ = ("limit", "_chunks", "_size", "_overflowed")

    def __init__(self, limit: int = CONTROL_CHANNEL_BODY_LIMIT) -> None:
        self.limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._overflowed = False

    def write(self, data: bytes) -> bool:
        """Buffer ``data``; True once the response must go to a rendezvous."""
        if data:
            if type(data) is not bytes:
                data = bytes(data)
            self._chunks.append(data)
            self._size += len(data)
            if self._size > self.limit:
                self._overflowed = True
        return self._overflowed

    def take(self) -> bytes:
        """All buffered bytes, emptying the buffer."""
        chunks, self._chunks, self._size = self._chunks, [], 0
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)
