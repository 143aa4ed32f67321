"""The first protocol on every relay connection: WebSocket upgrade or plain HTTP?

It reads the request head (bounded in size and time), validates it, and
hands the connection either to an Autobahn leg (replaying the head, as
Autobahn's own ``WebSocketResource`` does) or to an :class:`HttpSender`.
It stays the transport's protocol and forwards to whichever it chose, which
also works under TLS where the transport wraps us.

Validation is h11's, except for the common WebSocket upgrade (every sender
and every rendezvous leg opens with one): httptools (Node's llhttp) reads
that one at a fraction of the cost, and only a head it reads without
complaint, of exactly that shape, skips h11. So does a plain HTTP request
(:mod:`txhyco.relay.plainhttp`). Everything else, the heads httptools
refuses included, is h11's to judge as before.
"""
from __future__ import annotations

import h11
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from txhyco._twisted import eagerwrite
from txhyco.protocol.http import reason_phrase

from .httpsender import HttpSender
from .plainhttp import plain_request, read_head, websocket_upgrade_headers

log = Logger()


def _is_websocket_upgrade(request: h11.Request) -> bool:
    if request.method != b"GET":
        return False
    for name, value in request.headers:
        if name == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


READ_SIZE = 120 * 1024

#: The first byte of a TLS handshake record (RFC 8446 §5.1, content type 22):
#: a client speaking TLS to a plain relay starts with it.
TLS_HANDSHAKE_RECORD = b"\x16"


class FrontDoor(Protocol):
    def __init__(self, relay) -> None:
        self.relay = relay
        self._buffer = b""
        self._delegate = None
        self._timer = None
        self.closed = False

    def connectionMade(self) -> None:
        self.relay.connections.add(self)
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:  # not every transport is TCP
            pass
        eagerwrite.install(self.transport)
        wire = eagerwrite.tcp_wire(self.transport)
        if wire is not None:
            wire.bufferSize = READ_SIZE
        timeout = self.relay.config.limits.handshake_timeout
        self._timer = self.relay.reactor.callLater(timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._timer = None
        self._refuse(408, "The request head did not arrive in time.")

    def dataReceived(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.dataReceived(data)
            return
        if not self._buffer and data[:1] == TLS_HANDSHAKE_RECORD and data[1:2] == b"\x03":
            # A TLS ClientHello on a plain port: say so at once rather than
            # wait out the head timeout (the client reports "wrong version number").
            self._refuse(400, "This relay speaks plain HTTP and ws://, not TLS: connect with http:// or ws://.")
            return
        self._buffer += data
        limit = self.relay.config.limits.max_header_size
        end = self._buffer.find(b"\r\n\r\n", 0, limit + 4)
        if end < 0:
            if len(self._buffer) > limit:
                self._refuse(431, f"The request head is larger than {limit} bytes.")
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        head = self._buffer[:end + 4]
        read = read_head(head)  # once, for both judges below
        headers = websocket_upgrade_headers(head, read) if read is not None else None
        if headers is not None:
            buffered, self._buffer = self._buffer, b""
            self._upgrade(headers, buffered)
            return
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limit + 4)
        plain = plain_request(self._buffer, limit + 4, read) if read is not None else None
        if plain is not None:  # a plain HTTP request (txhyco.relay.plainhttp): h11 reads none of it
            buffered, self._buffer = self._buffer, b""
            sender = HttpSender(self.relay, self, conn)
            self._delegate = sender
            sender.plain_request(buffered, plain)
            return
        conn.receive_data(self._buffer)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            self._refuse(e.error_status_hint, f"Malformed HTTP request: {e}.")
            return
        if not isinstance(event, h11.Request):  # cannot happen with a complete head
            self._refuse(400, "Malformed HTTP request.")
            return
        buffered, self._buffer = self._buffer, b""
        if _is_websocket_upgrade(event):
            head = buffered[:end]
            if b"\n " in head or b"\n\t" in head:  # (h11 also takes a bare LF as a line end)
                # Autobahn reads the upgrade head again itself, and its
                # versions disagree on a folded line: refuse it here, always.
                self._refuse(400, "A header line continued on the next (obs-fold) is not accepted in a WebSocket upgrade.")
                return
            self._upgrade(list(event.headers.raw_items()), buffered)
        else:
            sender = HttpSender(self.relay, self, conn)
            self._delegate = sender
            sender.first_event(event)

    def _upgrade(self, headers: list[tuple[bytes, bytes]], buffered: bytes) -> None:
        """Hand the connection to a relay WebSocket leg, which reads the head again (Autobahn's handshake)."""
        leg = self.relay.ws_factory.buildProtocol(self.transport.getPeer())
        leg.front_headers = headers
        self._delegate = leg
        leg.makeConnection(self.transport)
        leg.dataReceived(buffered)

    def _refuse(self, status: int, message: str) -> None:
        body = (message + "\n").encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {reason_phrase(status) or 'Error'}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        self.transport.write(head + body)
        self.transport.loseConnection()
        self.closed = True

    def connectionLost(self, reason) -> None:
        self.closed = True
        self.relay.connections.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._delegate is not None:
            self._delegate.connectionLost(reason)


class FrontDoorFactory(Factory):
    def __init__(self, relay) -> None:
        self.relay = relay

    def buildProtocol(self, addr):
        door = FrontDoor(self.relay)
        door.factory = self
        return door
