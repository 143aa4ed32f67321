"""Piping bytes between two connections, with backpressure both ways and byte counts.

A :class:`Splice` joins a *near* connection (the one that arrived: a relayed
connection at ``listen``, a local TCP client at ``connect --forward``) to a
*far* one it opens (a local TCP service, or a tunnel through the relay).
Until the far side is up, the near side is paused and what it still sends is
held. Once both are up each transport is the other's streaming producer, so
a slow reader pauses the fast writer instead of filling memory. Either side
closing closes the other after its pending writes are flushed.

Twisted's ``portforward.ProxyFactory`` is not used: it writes to the peer
before the peer exists when data arrives synchronously with the connection
(as a relayed HTTP request does), and a closing consumer calls
``stopProducing`` on its producer, which aborts ours and drops buffered bytes.
"""
from __future__ import annotations

import time
from typing import Callable

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from txhyco._twisted.streamleg import ClosedByPeer

from .status import Monitor


@implementer(IPushProducer)
class Pacer:
    """A transport as a producer, minus ``stopProducing``: closing is the splice's business."""

    def __init__(self, transport) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


class End(Protocol):
    """One side of a splice."""

    def __init__(self, splice: Splice, near: bool) -> None:
        self.splice = splice
        self.near = near

    def connectionMade(self) -> None:
        if self.near:
            self.splice.near_made(self)
        else:
            self.splice.far_made(self)

    def dataReceived(self, data: bytes) -> None:
        self.splice.received(self, data)

    def connectionLost(self, reason) -> None:
        self.splice.lost(self, reason)


class Splice:
    """One piped connection (see the module doc).

    :param connect_far: called with a factory once the near side is up; returns
        a Deferred that fails if the far side cannot be reached.
    :param describe: text for the "opened" event, given the near transport.
    :param far_failed: called with the near :class:`End` and the failure when
        the far side cannot be reached (default: log it and close the near side).
    """

    def __init__(self, monitor: Monitor, connect_far: Callable, *, describe: Callable[[object], str],
                 far_failed: Callable | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.monitor = monitor
        self.connect_far = connect_far
        self.describe = describe
        self.on_far_failed = far_failed
        self.clock = clock
        self.near: End | None = None
        self.far: End | None = None
        self.pending: list[bytes] = []
        self.near_gone = False
        self.far_gone = False
        self.bytes_in = 0  # near -> far
        self.bytes_out = 0  # far -> near
        self.number = 0
        self.started = 0.0
        self.why = ""

    # hooks for subclasses (the HTTP forwarder rewrites the request head)
    def to_far(self, data: bytes) -> bytes:
        return data

    def to_near(self, data: bytes) -> bytes:
        return data

    def near_made(self, end: End) -> None:
        self.near = end
        self.started = self.clock()
        self.number = self.monitor.opened(self.describe(end.transport))
        end.transport.pauseProducing()
        factory = Factory.forProtocol(lambda: End(self, near=False))
        factory.noisy = False
        try:
            d = self.connect_far(factory)
        except Exception as e:  # a bad endpoint: same as unreachable
            from twisted.internet import defer

            d = defer.fail(e)
        d.addErrback(self._far_failed)

    def _far_failed(self, failure) -> None:
        if self.far is not None:
            return
        self.far_gone = True
        if self.near_gone:
            return
        if self.on_far_failed is not None:
            self.on_far_failed(self, failure)
        else:
            self.why = failure.getErrorMessage()
            self.monitor.error(f"connection #{self.number}: {self.why}")
            self.near.transport.loseConnection()

    def far_made(self, end: End) -> None:
        self.far = end
        if self.near_gone:
            end.transport.loseConnection()
            return
        near_t, far_t = self.near.transport, end.transport
        pending, self.pending = self.pending, []
        for chunk in pending:
            far_t.write(chunk)
        near_t.registerProducer(Pacer(far_t), True)
        far_t.registerProducer(Pacer(near_t), True)
        near_t.resumeProducing()

    def received(self, end: End, data: bytes) -> None:
        if end is self.near:
            self.bytes_in += len(data)
            self.monitor.count(inbound=len(data))
            data = self.to_far(data)
            if not data:
                return
            if self.far is None:
                self.pending.append(data)
            elif not self.far_gone:
                self.far.transport.write(data)
        else:
            self.bytes_out += len(data)
            self.monitor.count(outbound=len(data))
            data = self.to_near(data)
            if data and not self.near_gone:
                self.near.transport.write(data)

    def lost(self, end: End, reason) -> None:
        if end is self.near:
            if self.near_gone:
                return
            self.near_gone = True
            if self.far is not None and not self.far_gone:
                _release(self.far.transport)
                self.far.transport.loseConnection()
        else:
            if self.far_gone:
                return
            self.far_gone = True
            told = getattr(reason, "value", None)
            if isinstance(told, ClosedByPeer) and told.reason and not self.why:
                self.why = f"closed by the other side: {told.reason}"  # a listener's reason, say
            if not self.near_gone:
                _release(self.near.transport)
                self.near.transport.loseConnection()
        if self.near_gone and (self.far_gone or self.far is None):
            self._finish()

    def _finish(self) -> None:
        if self.number and self.started is not None:
            self.monitor.closed(
                self.number, bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                seconds=self.clock() - self.started, why=self.why,
            )
            self.started = None


def _release(transport) -> None:
    """Unregister our producer from ``transport`` (harmless if none or already closed)."""
    try:
        if getattr(transport, "producer", True) is not None:
            transport.unregisterProducer()
    except Exception:
        pass


class SpliceFactory(Factory):
    """Builds the near end of a fresh :class:`Splice` for each connection."""

    noisy = False

    def __init__(self, make_splice: Callable[[], Splice]) -> None:
        self.make_splice = make_splice

    def buildProtocol(self, addr):
        return End(self.make_splice(), near=True)
