"""Raw TCP clients and relay probes for robustness tests.

``RawClient`` writes whatever a test scripts (garbage, half heads, pipelined
requests) and collects what comes back. ``relay_buffered`` adds up the bytes
the relay itself holds for its connections (transport write buffers, unparsed
input, bodies parked while a rendezvous opens): the memory a flood could
grow, measured directly rather than through the test process's RSS, which
also holds the test's own clients.
"""
from __future__ import annotations

import dataclasses

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from txhyco._twisted.eagerwrite import transport_unsent
from txhyco.relay.config import Limits, RelayConfig


def limited_config(**limits) -> RelayConfig:
    """A default relay config (fresh key, any path) with some limits changed."""
    return dataclasses.replace(RelayConfig.with_key(), limits=Limits(**limits))


class RawClient(Protocol):
    """Collects everything received; ``closed`` fires with it when the connection ends."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: defer.Deferred = defer.Deferred()
        self._waits: list[tuple[bytes, defer.Deferred]] = []
        self.on_data = None

    #: seconds after which a connection still open is cut (a hang fails the test, not the run)
    safety_timeout = 15.0

    def connectionMade(self) -> None:
        self._safety = reactor.callLater(self.safety_timeout, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.on_data is not None:
            self.on_data(data)
        for item in list(self._waits):
            marker, d = item
            if marker in self.data:
                self._waits.remove(item)
                d.callback(self.data)

    def connectionLost(self, reason) -> None:
        if self._safety.active():
            self._safety.cancel()
        for _, d in self._waits:
            d.errback(AssertionError(f"connection closed before the expected bytes; got {self.data[:300]!r}"))
        self._waits = []
        self.closed.callback(self.data)

    def wait_for(self, marker: bytes, timeout: float = 10.0) -> defer.Deferred:
        """Fires with all data so far once ``marker`` has arrived (fails after ``timeout``: a hang)."""
        if marker in self.data:
            return defer.succeed(self.data)
        d: defer.Deferred = defer.Deferred()
        item = (marker, d)
        self._waits.append(item)

        def too_late():
            if item in self._waits:
                self._waits.remove(item)
                d.errback(AssertionError(f"{marker!r} did not arrive within {timeout} s; got {self.data[:300]!r}"))
        call = reactor.callLater(timeout, too_late)
        d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return d


def raw_connect(port: int, cls=RawClient) -> defer.Deferred:
    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), cls())


#: Bytes a Twisted TCP transport (or the TCP under its TLS) holds, written but not yet sent.
transport_buffered = transport_unsent


def relay_buffered(running) -> int:
    """All bytes the relay buffers for its connections right now (see the module docstring)."""
    total = 0
    for door in list(running.relay.connections):
        total += transport_buffered(door.transport)
        total += len(door._buffer)
        delegate = door._delegate
        if delegate is None:
            continue
        total += len(getattr(delegate, "data", b"") or b"")  # Autobahn's unparsed input
        conn = getattr(delegate, "conn", None)
        if conn is not None:  # an HTTP sender: h11's unparsed input, parked bodies
            total += len(conn._receive_buffer)
            exchange = delegate.exchange
            if exchange is not None:
                total += sum(map(len, exchange._body)) + sum(map(len, exchange._response_body or ()))
    return total


class Sampler:
    """Samples ``relay_buffered`` every few milliseconds and keeps the peak."""

    def __init__(self, running, interval: float = 0.003) -> None:
        self.running = running
        self.peak = 0
        self._loop = task.LoopingCall(self.sample)
        self._loop.start(interval)

    def sample(self) -> None:
        self.peak = max(self.peak, relay_buffered(self.running))

    def stop(self) -> int:
        self.sample()
        if self._loop.running:
            self._loop.stop()
        return self.peak


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_until(predicate, *, timeout: float = 10.0, interval: float = 0.01):
    """Poll ``predicate`` until true (a test failure after ``timeout``, which is only a safety net)."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        yield sleep(interval)
        waited += interval


@defer.inlineCallbacks
def wait_stalled(read_counter, *, rounds: int = 8, interval: float = 0.02, timeout: float = 10.0):
    """Wait until ``read_counter()`` stops changing for ``rounds`` samples: the flow is blocked."""
    last, same, waited = read_counter(), 0, 0.0
    while same < rounds:
        yield sleep(interval)
        waited += interval
        if waited > timeout:
            raise AssertionError("the flow never stalled")
        now = read_counter()
        same = same + 1 if now == last else 0
        last = now
