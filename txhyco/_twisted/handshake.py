"""Client-side WebSocket handshakes: Autobahn legs' outcomes, and raw upgrades for rendezvous.

The rendezvous leg of an accepted connection is not an Autobahn client: once
upgraded, its bytes flow straight to (and, masked, from) the application's
own server protocol. So its upgrade is done here with h11, and the socket is
then handed to whoever owns it.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from urllib.parse import urlsplit

import h11
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol

from txhyco._twisted.clienttls import tls_failure
from txhyco._twisted.connector import connect, relay_endpoint
from txhyco.errors import RelayError, RelayProtocolError, RelayRefused, RelayUnreachable

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Seconds a client leg waits for the close handshake. Data may still be
#: draining through the relay (paced by a slow reader) when this side closes;
#: Autobahn's default of one second would then reset the connection and lose it.
CLOSE_HANDSHAKE_TIMEOUT = 60
#: Keep-alive ping interval of long-lived client legs (control channels,
#: tunnels): below the ~4 minute idle cut of Azure's load balancers.
KEEPALIVE = 180.0
#: Seconds a keep-alive ping waits for its pong before the leg counts as dead.
KEEPALIVE_TIMEOUT = 30.0


def accept_value(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def handshake_error(proto, url: str = "") -> RelayError:
    """Why an Autobahn client leg closed before it opened."""
    line = getattr(proto, "http_status_line", None)
    if line:
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1].isdigit() and parts[1] != "101":
            return RelayRefused(int(parts[1]), parts[2] if len(parts) > 2 else "", url)
        if len(parts) >= 2 and parts[1] == "101":
            why = getattr(proto, "wasNotCleanReason", None) or "the 101 answer was not acceptable"
            return RelayProtocolError(f"The WebSocket to {url} was refused by this side after the relay's 101: {why}.")
    if getattr(proto, "txhyco_bad_answer", False):
        return RelayProtocolError(f"The WebSocket to {url} failed: {proto.wasNotCleanReason}.")
    why = tls_failure(getattr(proto, "txhyco_lost", None))
    if why is not None and "wrong version number" in why:
        # What OpenSSL says when the answer to its ClientHello is plain text.
        return RelayUnreachable(f"No WebSocket to {url}: {speaks_plain(url)}.")
    why = why or getattr(proto, "wasNotCleanReason", None) or "the connection closed during the WebSocket handshake"
    return RelayUnreachable(f"No WebSocket to {url}: {why}.")


def _where(url: str) -> str:
    try:
        return urlsplit(url).netloc.rsplit("@", 1)[-1] or url
    except ValueError:
        return url


def speaks_plain(url: str) -> str:
    """The plain/TLS mix-up, named: a wss:// leg to a relay without TLS."""
    return (f"the relay at {_where(url)} speaks plain ws://, not TLS; add UseDevelopmentEmulator=true "
            "to the connection string or drop tls (tls=no in a hyco: string)")


def speaks_tls(url: str) -> str:
    """The plain/TLS mix-up, named: a ws:// leg to a relay that serves TLS."""
    return (f"the relay at {_where(url)} speaks TLS (wss://), not plain ws://; remove UseDevelopmentEmulator=true "
            "from the connection string or use tls=yes in a hyco: string (and --ca-file / caFile= for a "
            "self-signed certificate)")


#: Seconds the check for a TLS server behind a silent close may take.
TLS_PROBE_TIMEOUT = 2.0


def _client_hello() -> bytes:
    """The bytes of a TLS ClientHello, made by OpenSSL itself (nothing is verified: it is a probe)."""
    from OpenSSL import SSL

    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


class _TlsProbe(Protocol):
    """Sends a ClientHello; ``answer`` fires True if a TLS handshake record comes back."""

    def __init__(self) -> None:
        self.answer: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(_client_hello())

    def dataReceived(self, data: bytes) -> None:
        if not self.answer.called:
            self.answer.callback(data[:1] == b"\x16" and data[1:2] == b"\x03")
        self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        if not self.answer.called:
            self.answer.callback(False)


def serves_tls(reactor, host: str, port: int, timeout: float = TLS_PROBE_TIMEOUT, *, proxy=None) -> defer.Deferred:
    """Fires True if ``host:port`` answers a TLS ClientHello like a TLS server (never fails).

    The probe goes the way the leg went: through ``proxy`` when one applies.
    """
    probe = _TlsProbe()
    try:
        endpoint = relay_endpoint(reactor, host, port, secure=False, timeout=timeout, proxy=proxy)
    except RelayError:
        return defer.succeed(False)
    connecting = endpoint.connect(Factory.forProtocol(lambda: probe))
    connecting.addErrback(lambda _: probe.answer.called or probe.answer.callback(False))
    timer = reactor.callLater(timeout, lambda: probe.answer.called or probe.answer.callback(False))

    def done(result):
        if timer.active():
            timer.cancel()
        if probe.transport is not None:
            probe.transport.abortConnection()
        return result

    return probe.answer.addBoth(done)


#: Bytes a relay's answer to an upgrade may take before its head ends. Azure's
#: are a few hundred; Autobahn itself would buffer an endless one until its
#: opening handshake timeout (70 s for a sender), searching it all on every read.
MAX_RESPONSE_HEAD = 64 * 1024


def guard_response_head(proto) -> None:
    """Fail ``proto``'s handshake in words if the relay's answer head is too big or unparseable.

    Autobahn raises out of ``dataReceived`` on some heads (one that is not
    UTF-8, say): Twisted would log that as a traceback and the caller would
    only learn that the connection closed.
    """
    received = proto.dataReceived

    def fail(why: str) -> None:
        proto.txhyco_bad_answer = True  # reached, but unusable: not RelayUnreachable
        proto.failHandshake(why)

    def data_received(data: bytes) -> None:
        if proto.state != proto.STATE_CONNECTING:
            received(data)
        elif len(proto.data) + len(data) > MAX_RESPONSE_HEAD and b"\r\n\r\n" not in (proto.data + data)[:MAX_RESPONSE_HEAD + 4]:
            # (Frames may follow a head that ended in time, in the same read.)
            fail(f"the relay's answer to the upgrade has a head over {MAX_RESPONSE_HEAD // 1024} KiB")
        else:
            try:
                received(data)
            except Exception as e:
                if proto.state != proto.STATE_CONNECTING:
                    raise  # the head was fine: the connection opened, and something after failed
                fail(f"the relay's answer to the upgrade could not be parsed ({e.__class__.__name__}: {e})")

    def opened(result):
        # Once open, the class's own method again: no cost per read.
        proto.__dict__.pop("dataReceived", None)
        return result

    proto.dataReceived = data_received
    proto.is_open.addCallback(opened)


def drop_after_answering_close(proto) -> None:
    """Drop ``proto``'s TCP if the relay sends a Close, gets our answer, and keeps the connection.

    The server drops the TCP after the close handshake (RFC 6455 §7.1.1).
    Autobahn's client times that wait only when it sent the first Close; when
    the relay did, a relay that never drops would hold the sender forever. Our
    own Close may still queue behind data draining to a slow reader, so the
    wait is the close handshake timeout, not Autobahn's one second.
    """
    on_close_frame = proto.onCloseFrame

    def close_frame(code, reason_raw):
        answering = proto.state == proto.STATE_OPEN
        result = on_close_frame(code, reason_raw)
        if answering and proto.state == proto.STATE_CLOSING and proto.serverConnectionDropTimeoutCall is None:
            timeout = max(proto.closeHandshakeTimeout or 0, proto.serverConnectionDropTimeout or 0) or CLOSE_HANDSHAKE_TIMEOUT
            proto.serverConnectionDropTimeoutCall = proto.factory.reactor.callLater(timeout, proto.onServerConnectionDropTimeout)
        return result

    proto.onCloseFrame = close_frame


def wait_open(proto, url: str = "", *, diagnose: bool = True, proxy=None) -> defer.Deferred:
    """Fires with ``proto`` once its handshake succeeds, or fails with why it did not.

    Every Autobahn client leg to a relay comes here right after connecting,
    so this is also where the leg is guarded against what a relay may send.
    ``diagnose=False`` skips the TLS probe after a silent close (a second
    connection): a listener's background retries do without it, so that a
    relay behind a balancer whose backend is down sees one connection per
    attempt.
    """
    guard_response_head(proto)
    drop_after_answering_close(proto)
    result: defer.Deferred = defer.Deferred()

    def opened(_):
        if not result.called:
            result.callback(proto)
        return _

    def closed(_):
        if result.called:
            return _
        error = handshake_error(proto, url)
        if diagnose and _silent_plain_close(proto, url):
            # Nothing at all came back on ws://: a TLS server drops a plain
            # request so. Ask it (bounded) before blaming the connection.
            _, host, port, _, _ = split_ws_url(url)
            checking = serves_tls(proto.factory.reactor, host, port, proxy=proxy)
            checking.addCallback(
                lambda tls: result.errback(RelayUnreachable(f"No WebSocket to {url}: {speaks_tls(url)}.") if tls else error)
            )
        else:
            result.errback(error)
        return _

    proto.is_open.addCallback(opened)
    proto.is_closed.addCallback(closed)
    return result


def _silent_plain_close(proto, url: str) -> bool:
    return (
        url.startswith("ws://")
        and not getattr(proto, "http_status_line", None)
        and not getattr(proto, "txhyco_bad_answer", False)
        and not getattr(proto, "data", b"")
    )


def split_ws_url(url: str) -> tuple[bool, str, int, str, str]:
    """(secure, host, port, host header, request target) of a ws/wss URL, used verbatim."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port out of range or not a number
    except (ValueError, TypeError, AttributeError):
        raise RelayProtocolError(f"Not a WebSocket URL: {url!r}.") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise RelayProtocolError(f"Not a WebSocket URL: {url!r}.")
    secure = parts.scheme == "wss"
    port = port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = parts.netloc.rsplit("@", 1)[-1]
    if _NOT_URL_TEXT.search(host_header) or _NOT_URL_TEXT.search(target):
        # (urlsplit drops CR, LF and tab, but keeps NUL, spaces and the like,
        # which would break, or smuggle into, the upgrade request.)
        raise RelayProtocolError(f"Not a WebSocket URL: {url!r} holds spaces, control or non-ASCII characters.")
    return secure, parts.hostname, port, host_header, target


#: What a URL may not hold once split: anything but printable ASCII (RFC 3986 §2).
_NOT_URL_TEXT = re.compile(r"[^\x21-\x7e]")


class RawUpgrade(Protocol):
    """Upgrades a fresh connection to WebSocket, then forwards everything to ``handler``.

    ``done`` fires with ``(self, chosen_protocol, leftover_bytes)`` after a 101,
    or fails with :class:`RelayRefused` carrying the status (a reject's
    expected 410 included).
    """

    def __init__(self, host_header: str, target: str, protocol: str | None, timeout: float, reactor) -> None:
        self.host_header = host_header
        self.target = target
        self.protocol = protocol
        self.key = base64.b64encode(os.urandom(16))
        self.conn = h11.Connection(h11.CLIENT)
        self.done: defer.Deferred = defer.Deferred()
        #: the :class:`~txhyco.interfaces.IRendezvousHandler` that owns the socket after the 101
        self.handler = None
        self._timeout = timeout
        self._reactor = reactor
        self._timer = None

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass
        headers = [
            ("Host", self.host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key.decode("ascii")),
            ("Sec-WebSocket-Version", "13"),
        ]
        if self.protocol:
            headers.append(("Sec-WebSocket-Protocol", self.protocol))
        data = self.conn.send(h11.Request(method="GET", target=self.target, headers=headers))
        data += self.conn.send(h11.EndOfMessage())
        self.transport.write(data)
        self._timer = self._reactor.callLater(self._timeout, self._timed_out)

    def _offered(self, chosen: bytes) -> bool:
        offered = {p.strip() for p in self.protocol.split(",")} if self.protocol else set()
        return chosen.isascii() and chosen.decode("ascii") in offered

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(RelayUnreachable(f"The rendezvous upgrade did not complete within {self._timeout:g} seconds."))
        self.transport.abortConnection()

    def _fail(self, error: Exception) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if not self.done.called:
            self.done.errback(error)

    def dataReceived(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.dataReceived(data)
            return
        if self.done.called:
            return
        self.conn.receive_data(data)
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError as e:
            self._fail(RelayProtocolError(f"The relay sent a malformed handshake response: {e}."))
            self.transport.abortConnection()
            return
        if event is h11.NEED_DATA:
            return
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            headers = {k.lower(): v for k, v in event.headers}
            if headers.get(b"sec-websocket-accept") != accept_value(self.key):
                self._fail(RelayProtocolError("The relay's 101 answer has a wrong Sec-WebSocket-Accept."))
                self.transport.abortConnection()
                return
            chosen = headers.get(b"sec-websocket-protocol")
            if chosen is not None and not self._offered(chosen):
                # RFC 6455 §4.1: a subprotocol the client did not offer fails the connection.
                self._fail(RelayProtocolError(f"The relay's 101 answer names a subprotocol that was not offered: {chosen!r}."))
                self.transport.abortConnection()
                return
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            leftover = self.conn.trailing_data[0]
            self.done.callback((self, chosen.decode("ascii") if chosen else None, bytes(leftover)))
            return
        status = getattr(event, "status_code", 0)
        reason = getattr(event, "reason", b"").decode("utf-8", "replace")
        self._fail(RelayRefused(status, reason))
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        if self.handler is not None:
            self.handler.connectionLost(reason)
        else:
            why = tls_failure(reason) or "the relay closed the rendezvous connection during the handshake"
            self._fail(RelayUnreachable(why[0].upper() + why[1:] + "."))


def open_raw_websocket(reactor, url: str, *, protocol: str | None = None, ca_file: str | None = None, timeout: float = 20.0,
                       proxy=None) -> defer.Deferred:
    """Connect (through ``proxy`` if one applies) and upgrade to ``url`` used verbatim; fires with (RawUpgrade, chosen, leftover)."""
    secure, host, port, host_header, target = split_ws_url(url)
    proto = RawUpgrade(host_header, target, protocol, timeout, reactor)
    factory = Factory.forProtocol(lambda: proto)
    factory.noisy = False  # one per leg: no "Starting factory" line per relayed connection
    d = connect(reactor, host, port, factory, secure=secure, ca_file=ca_file, timeout=timeout, proxy=proxy)
    d.addCallback(lambda _: proto.done)
    return d


def open_websocket(reactor, url: str, protocol_class, *, ca_file: str | None = None, proxy=None, **options) -> defer.Deferred:
    """An Autobahn client leg to ``url`` (used verbatim, through ``proxy`` if one applies); fires with the protocol once open."""
    from autobahn.twisted.websocket import WebSocketClientFactory

    secure, host, port, _, _ = split_ws_url(url)
    factory = WebSocketClientFactory(url, reactor=reactor)
    factory.noisy = False  # one per leg: no "Starting factory" line per relayed connection
    factory.protocol = protocol_class
    options.setdefault("openHandshakeTimeout", 20)
    options.setdefault("closeHandshakeTimeout", CLOSE_HANDSHAKE_TIMEOUT)
    factory.setProtocolOptions(**options)
    d = connect(reactor, host, port, factory, secure=secure, ca_file=ca_file, proxy=proxy)
    d.addCallback(lambda proto: wait_open(proto, url.split("?", 1)[0], proxy=proxy))
    return d
