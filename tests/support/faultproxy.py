"""A TCP proxy of the tests' own that cuts, resets, stalls or slows the connections it carries.

    proxy = yield FaultProxy("127.0.0.1", relay_port).start()
    # point a party at 127.0.0.1:proxy.port instead of the relay
    conn = proxy.live[0]
    conn.stall()        # a silent network cut: nothing passes, nothing closes
    conn.reset()        # RST both ways (SO_LINGER 0 via abortConnection)
    conn.cut()          # FIN both ways
    conn.slow(64_000)   # at most 64,000 bytes a second each way

Each accepted connection is a :class:`ProxiedConnection`; ``proxy.accepted``
counts them all (connection attempts through the proxy), ``proxy.live``
lists those still open. A connection whose target refuses is reset, as a
refused connection would look to the party that made it.
"""
from __future__ import annotations

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

BOTH = ("up", "down")  # up: client → target; down: target → client


class _Side(protocol.Protocol):
    """One socket of a proxied connection; what it reads goes to the other side (unless stalled)."""

    def __init__(self, conn: ProxiedConnection, direction: str) -> None:
        self.conn = conn
        self.direction = direction  # the direction of the bytes this side reads

    def dataReceived(self, data: bytes) -> None:
        self.conn._carry(self.direction, data)

    def connectionLost(self, reason) -> None:
        self.conn._side_lost(self)


class ProxiedConnection:
    """A client's connection and the proxy's own to the target, joined."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self, "up")
        self.server: _Side | None = None
        self.stalled: set[str] = set()
        self.rate: float | None = None
        self.request_line: bytes | None = None  # the first line the client sent (an HTTP request line)
        self.bytes = {"up": 0, "down": 0}
        self.closed: defer.Deferred = defer.Deferred()
        self._head = b""
        self._early = b""
        self._pending = {"up": b"", "down": b""}  # held back by slow()
        self._pump_call = None
        self._frozen = False  # stalled: closes do not pass either

    # -- faults -------------------------------------------------------------

    def cut(self) -> None:
        """Close both sockets cleanly (FIN)."""
        for side in self._sides():
            side.transport.loseConnection()

    def reset(self) -> None:
        """Reset both sockets (RST: abortConnection sets SO_LINGER 0)."""
        for side in self._sides():
            side.transport.abortConnection()

    def reset_client(self) -> None:
        """Reset the client's socket only; the target's is closed cleanly when the client's is gone."""
        self.client.transport.abortConnection()

    def stall(self, *directions: str) -> None:
        """Stop carrying bytes (``"up"``, ``"down"`` or both) and closes: a silent network cut."""
        self.stalled.update(directions or BOTH)
        self._frozen = True
        # A transport that goes stops its producer: unhook them, or one side's close would pass.
        self._couple(False)

    def resume(self) -> None:
        self.stalled.clear()
        self._frozen = False
        self._couple(True)

    def _couple(self, on: bool) -> None:
        """Hook each side's transport up as the other's producer (back-pressure), or unhook them."""
        if self.server is None:
            return
        pairs = ((self.client.transport, self.server.transport), (self.server.transport, self.client.transport))
        for consumer, producer in pairs:
            if on and consumer.connected and producer.connected and consumer.producer is None:
                consumer.registerProducer(producer, True)
            elif not on and consumer.producer is not None:
                consumer.unregisterProducer()
                producer.resumeProducing()

    def slow(self, bytes_per_second: float) -> None:
        """Carry at most ``bytes_per_second`` each way from now on."""
        self.rate = float(bytes_per_second)

    # -- carrying -----------------------------------------------------------

    def _sides(self):
        return [side for side in (self.client, self.server) if side is not None and side.transport is not None]

    def _peer(self, direction: str) -> _Side | None:
        return self.server if direction == "up" else self.client

    def _carry(self, direction: str, data: bytes) -> None:
        if direction == "up" and self.request_line is None:
            self._head += data
            if b"\r\n" in self._head or len(self._head) > 8192:
                self.request_line = self._head.split(b"\r\n", 1)[0]
                self._head = b""
        if direction in self.stalled:
            return  # dropped, as a black-holed network drops it
        if self.rate is None:
            self._deliver(direction, data)
            return
        self._pending[direction] += data
        self._pump()

    def _deliver(self, direction: str, data: bytes) -> None:
        peer = self._peer(direction)
        if peer is None:
            self._early += data  # the client spoke before the target answered
        elif peer.transport is not None:
            self.bytes[direction] += len(data)
            peer.transport.write(data)

    def _pump(self) -> None:
        if self._pump_call is not None and self._pump_call.active():
            return
        tick = 0.05
        budget = max(1, int(self.rate * tick))
        sent = False
        for direction in BOTH:
            chunk, self._pending[direction] = self._pending[direction][:budget], self._pending[direction][budget:]
            if chunk:
                self._deliver(direction, chunk)
                sent = True
        if sent:
            # The next budget only after a tick, whether more waits now or comes later.
            self._pump_call = reactor.callLater(tick, self._pump)

    def _side_lost(self, side: _Side) -> None:
        other = self.server if side is self.client else self.client
        if not self._frozen and other is not None and other.transport is not None:
            other.transport.loseConnection()
        if all(s is None or s.transport is None or not s.transport.connected for s in (self.client, self.server)):
            self._finished()

    def _finished(self) -> None:
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        if self in self.proxy.live:
            self.proxy.live.remove(self)
        if not self.closed.called:
            self.closed.callback(None)


class _Front(protocol.Factory):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr):
        return self.proxy._accept().client


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and joins each client to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port_to = host, port
        self.accepted = 0
        self.live: list[ProxiedConnection] = []
        self.all: list[ProxiedConnection] = []
        self._listening = None
        self._refusing = False

    @property
    def port(self) -> int:
        return self._listening.getHost().port

    def start(self) -> defer.Deferred:
        self._listening = reactor.listenTCP(0, _Front(self), interface="127.0.0.1")
        return defer.succeed(self)

    def refuse(self, refusing: bool = True) -> None:
        """Reset every new connection at once, as a dead host's port would (counted all the same)."""
        self._refusing = refusing

    def _accept(self) -> ProxiedConnection:
        conn = ProxiedConnection(self)
        self.accepted += 1
        self.live.append(conn)
        self.all.append(conn)
        reactor.callLater(0, self._join, conn)
        return conn

    def _join(self, conn: ProxiedConnection) -> None:
        client = conn.client.transport
        if client is None or not client.connected:
            conn._finished()
            return
        if self._refusing:
            client.abortConnection()
            return
        server = _Side(conn, "down")
        d = connectProtocol(TCP4ClientEndpoint(reactor, self.host, self.port_to, timeout=10), server)

        def joined(_):
            conn.server = server
            if not client.connected:
                server.transport.loseConnection()
                return
            early, conn._early = conn._early, b""
            if early:
                conn._deliver("up", early)
            # Back-pressure each way, as twisted.protocols.portforward does.
            conn._couple(True)

        def refused(failure):
            client.abortConnection()

        d.addCallbacks(joined, refused)

    def listening_on(self, marker: bytes) -> list[ProxiedConnection]:
        """The live connections whose request line holds ``marker`` (e.g. b"sb-hc-action=listen")."""
        return [c for c in self.live if c.request_line and marker in c.request_line]

    def attempts(self, marker: bytes) -> int:
        """How many connections, live or gone, had ``marker`` in their request line."""
        return sum(1 for c in self.all if c.request_line and marker in c.request_line)

    @defer.inlineCallbacks
    def stop(self):
        yield self._listening.stopListening()
        for conn in list(self.live):
            conn._frozen = False
            conn.reset()
        yield defer.DeferredList([c.closed for c in list(self.live)])
