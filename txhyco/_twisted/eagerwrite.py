"""Writing to a TCP socket now instead of at the reactor's next turn.

Twisted's ``transport.write`` only buffers; the bytes leave in ``doWrite``
when the reactor next polls. When a process forwards many small messages
(a listener answering what the relay sends, the relay forwarding frames and
commands), a batch read in one go therefore leaves in one go too, and the
next process in the chain sits idle until then: on a few cores, the relay,
the listener and the sender end up taking turns instead of working side by
side.

So on connections this module is installed on, the *first* write to a
connection while one read is being handled leaves at once (the next process
starts on the first message while this one works on the rest, what Node
does), and further writes to that connection during the same read are
gathered and sent together, with one ``sendmsg``, when the read has been
handled (one system call and one wake-up of the peer for the rest of the
batch, not one per message). Writes outside any read leave at once.

On a sender's legs (``install(..., large_writes_wait=True)``, from
:mod:`txhyco.sender.leg`) a large write (:data:`_LARGE` bytes or more,
Twisted's own ``SEND_LIMIT``) is the exception: it goes to Twisted's buffers
as ``write`` would put it (after what the connection held, in order) and
leaves when the reactor next polls. A sender echoing 1 MiB messages that sent
them at once made glibc hand its heap back to the kernel and fault it in
again, message after message: 570,000-730,000 minor page faults in a
``make bench`` run of ws_echo_1m against 15,000 (as many as a plain Autobahn
client through the TCP proxy), and 2.5-3.3 ms of the sender's CPU per message
against 1.9-2.4. The relay and the listener keep sending at once: there,
handing large writes to Twisted cost more than it saved (the listener's CPU
per 1 MiB echoed message went from 1.9-2.4 to 2.6-3.6 ms, per MiB downloaded
from 0.55-0.63 to 0.78-0.92: ``doWrite`` copies and re-arms the poller).

Whatever the kernel does not take waits in Twisted's own send buffer (the
rest of a large write at an offset, uncopied), so ordering, producers,
half-close and connection loss keep Twisted's semantics; a failed send is
queued too and reported by ``doWrite`` as usual. Where Twisted's own
``write`` must decide (after ``abortConnection``, under ``startTLS``, with a
pull producer) it does.

Only plain ``twisted.internet.tcp`` connections (or the TCP connection under
Twisted's TLS) are changed, one connection at a time (txhyco's own: the
relay's and its legs'); Twisted's classes and other connections keep their
``write``. All this reads Twisted's private state of a connection (its send
buffers and flags): the first time a connection class is met, it is checked
to have them (:func:`internals_usable`); if not, :func:`install` leaves its
connections to Twisted's own writes and :func:`unsent_bytes` sees nothing.
"""
from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.logger import Logger

log = Logger()

# While a read is handled: connections written once already, and what was
# written to them since (their _Eager -> list of pieces, possibly empty).
_reading = 0
_held: dict = {}
#: Held writes are sent at once past this many pieces, or with a piece this large.
_HOLD_PIECES = 64
_HOLD_BYTES = 16384
#: Writes this large are Twisted's to send where asked (see module doc): its FileDescriptor.SEND_LIMIT.
_LARGE = 128 * 1024
_NEVER = float("inf")


#: Twisted's private state of a tcp.Connection read here, and the type of its
#: class-level default (FileDescriptor's and Connection's, Twisted 21.2 to 26.10).
_CLASS_STATE = {
    "dataBuffer": bytes, "offset": int, "connected": int, "disconnecting": int,
    "_writeDisconnected": bool, "_writeDisconnecting": bool, "_aborting": bool,
    "TLS": bool, "streamingProducer": bool, "producer": type(None),
}
#: Methods called or replaced (the first three on the instance only).
_METHODS = ("write", "writeSequence", "doRead", "_maybePauseProducer", "startWriting")
#: Connection classes checked so far: class -> usable.
_checked: dict = {}


def _has_internals(conn) -> bool:
    cls = type(conn)
    return (
        all(isinstance(getattr(cls, name, None), kind) for name, kind in _CLASS_STATE.items())
        and all(callable(getattr(cls, name, None)) for name in _METHODS)
        and isinstance(getattr(conn, "_tempDataLen", None), int)  # set per instance
        and isinstance(getattr(conn, "_tempDataBuffer", None), list)
        and isinstance(getattr(conn, "socket", None), socket.socket)
    )


def internals_usable(conn) -> bool:
    """Whether ``conn``'s class has the Twisted internals this module relies on (checked once per class)."""
    usable = _checked.get(type(conn))
    if usable is None:
        usable = _checked[type(conn)] = _has_internals(conn)
        if not usable:
            log.warn("{cls} lacks the Twisted internals txhyco's eager writes rely on: "
                     "its connections keep Twisted's own writes, and backlog limits do not see their buffers",
                     cls=f"{type(conn).__module__}.{type(conn).__qualname__}")
    return usable


def tcp_wire(transport):
    """The ``twisted.internet.tcp`` connection of ``transport`` (itself, or the one under its TLS), else None."""
    if isinstance(transport, tcp.Connection):
        return transport
    wire = getattr(transport, "transport", None)  # TLSMemoryBIOProtocol's
    return wire if isinstance(wire, tcp.Connection) else None


def unsent_bytes(wire) -> int:
    """Bytes written to a ``twisted.internet.tcp`` connection and not yet sent (Twisted's own buffers), 0 if unknown."""
    if not internals_usable(wire):
        return 0
    return len(wire.dataBuffer) - wire.offset + wire._tempDataLen


def transport_unsent(transport) -> int:
    """:func:`unsent_bytes` of ``transport`` (or of the TCP under its TLS); 0 if it has none."""
    wire = tcp_wire(transport)
    return unsent_bytes(wire) if wire is not None else 0


def install(transport, *, large_writes_wait: bool = False) -> None:
    """Make ``transport`` (or the TCP connection under its TLS) write eagerly (see module doc).

    With ``large_writes_wait``, writes of :data:`_LARGE` bytes or more are Twisted's to send.
    """
    conn = tcp_wire(transport)
    if conn is None or "write" in conn.__dict__ or not internals_usable(conn):
        return  # not TCP, installed already, or a Twisted this was not written for
    eager = _Eager(conn, _LARGE if large_writes_wait else _NEVER)
    conn.write = eager.write
    conn.writeSequence = eager.write_sequence
    conn.doRead = eager.do_read


class _Eager:
    """One connection's eager ``write``/``writeSequence``/``doRead`` (one small object per connection)."""

    __slots__ = ("conn", "sock", "large")

    def __init__(self, conn, large) -> None:
        self.conn = conn
        self.sock = conn.socket
        self.large = large  # writes this large are Twisted's to send

    # Twisted's own methods (the class's, which the instance attributes shadow).
    def queue(self, data) -> None:
        self.conn.__class__.write(self.conn, data)

    def queue_sequence(self, pieces) -> None:
        self.conn.__class__.writeSequence(self.conn, pieces)

    def busy(self) -> bool:
        # Twisted's own write() when something is queued, the connection is
        # going or gone (abortConnection drops what follows), TLS was started
        # on it (startTLS encrypts in write()), or a pull producer feeds it
        # (only doWrite asks a pull producer for more).
        conn = self.conn
        return bool(conn._tempDataLen or conn.dataBuffer or not conn.connected
                    or conn.disconnecting or conn._writeDisconnected or conn._writeDisconnecting
                    or conn._aborting or conn.TLS or (conn.producer is not None and not conn.streamingProducer))

    def keep_rest(self, data: bytes, sent: int) -> None:
        # What the kernel did not take waits in Twisted's own send buffer,
        # at an offset (as doWrite leaves a partly sent buffer): no copy of
        # a large remainder, and the producer is paused as write() would.
        conn = self.conn
        conn.dataBuffer = data
        conn.offset = sent
        conn._maybePauseProducer()
        conn.startWriting()

    def send_now(self, data: bytes) -> None:
        if not data or self.busy():
            self.queue(data)
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.queue(data)  # doWrite meets the error and reports it
            return
        if sent < len(data):
            self.keep_rest(data, sent)

    def send_all_now(self, pieces) -> None:
        if self.busy():
            self.queue_sequence(pieces)
            return
        pieces = [piece for piece in pieces if piece]
        sock = self.sock
        try:
            if _HAS_SENDMSG:
                sent = sock.sendmsg(pieces)
            else:  # Windows
                sent = sock.send(b"".join(pieces))
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.queue_sequence(pieces)  # doWrite meets the error and reports it
            return
        for index, piece in enumerate(pieces):
            if sent < len(piece):
                self.keep_rest(piece, sent)
                self.queue_sequence(pieces[index + 1:])
                return
            sent -= len(piece)

    def write(self, data) -> None:
        if data.__class__ is not bytes and not isinstance(data, bytes):
            raise TypeError("Data must be bytes")  # at the call, as Twisted does
        if len(data) >= self.large:
            self.queue_large([data])
            return
        if _reading:
            held = _held.get(self)
            if held is not None:
                held.append(data)
                if len(held) > _HOLD_PIECES or len(data) > _HOLD_BYTES:
                    self.release(held)
                return
            _held[self] = []
        self.send_now(data)

    def write_sequence(self, pieces) -> None:
        for piece in pieces:
            if piece.__class__ is not bytes and not isinstance(piece, bytes):
                raise TypeError("Data must be bytes")
        size = sum(map(len, pieces))
        if size >= self.large:
            self.queue_large(pieces)
            return
        if _reading:
            held = _held.get(self)
            if held is not None:
                held.extend(pieces)
                if len(held) > _HOLD_PIECES or size > _HOLD_BYTES:
                    self.release(held)
                return
            _held[self] = []
        self.send_all_now(pieces)

    def queue_large(self, pieces) -> None:
        # Behind what this connection holds from the current read, if anything.
        held = _held.get(self)
        if held:
            self.release(held)
        self.queue_sequence(pieces)

    def release(self, held: list) -> None:
        # Bulk data is not held back: it goes now, so that a full socket
        # queues it with Twisted and pauses the producer writing it.
        pieces = held[:]
        held.clear()
        self.send_all_now(pieces)

    def do_read(self):
        global _reading
        _reading += 1
        try:
            return self.conn.__class__.doRead(self.conn)
        finally:
            _reading -= 1
            if not _reading and _held:
                _flush()


_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")


def _flush() -> None:
    """Send what each connection held, in order, at the end of the outermost read."""
    global _reading
    # Still "reading" meanwhile: a write made while flushing (a producer
    # paused by a full buffer may write elsewhere) joins that connection's
    # held pieces instead of overtaking them.
    _reading += 1
    error = None
    try:
        while _held:
            eager = next(iter(_held))
            pieces = _held.pop(eager)
            if pieces:
                try:
                    eager.send_all_now(pieces)
                except Exception as e:  # one connection's failure must not strand the others' bytes
                    error = error or e
    finally:
        _reading -= 1
    if error is not None:
        raise error
