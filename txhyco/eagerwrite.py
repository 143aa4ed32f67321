"""Writing to a TCP socket now instead of at the reactor's next turn.

Twisted's ``transport.write`` only buffers; the bytes leave in ``doWrite``
when the reactor next polls. When a process forwards many small messages
(a listener answering what the relay sends, the relay forwarding frames and
commands), a batch read in one go therefore leaves in one go too, and the
next process in the chain sits idle until then: on a few cores, the relay,
the listener and the sender end up taking turns instead of working side by
side. Sending each write at once when nothing is queued lets the next
process start on the first message while this one works on the rest (what
Node does). Whatever the kernel does not take is queued with Twisted's own
``write``, so ordering, producers, half-close and connection loss keep
Twisted's semantics; a failed send is queued too and reported by
``doWrite`` as usual.

Only plain ``twisted.internet.tcp`` connections (or the TCP connection under
Twisted's TLS) are changed; other transports keep their ``write``.
"""
from __future__ import annotations

from twisted.internet import tcp


def install(transport) -> None:
    """Make ``transport`` (or the TCP connection under its TLS) write eagerly (see module doc).

    ``writeSequence`` becomes eager too, and sends its pieces with one
    ``sendmsg`` (a frame header and its payload leave together, uncopied).
    """
    conn = transport
    if not isinstance(conn, tcp.Connection):
        conn = getattr(transport, "transport", None)  # TLSMemoryBIOProtocol's wire
        if not isinstance(conn, tcp.Connection):
            return
    if "write" in conn.__dict__:
        return  # installed already
    # Twisted's buffering methods, bound before they are shadowed.
    queue, queue_sequence = conn.write, conn.writeSequence
    send = conn.writeSomeData
    sendmsg = conn.socket.sendmsg

    def busy() -> bool:
        return bool(conn._tempDataLen or conn.dataBuffer or not conn.connected
                    or conn.disconnecting or conn._writeDisconnected or conn._writeDisconnecting)

    def write(data: bytes) -> None:
        if not data or busy():
            queue(data)
            return
        sent = send(data)
        if sent.__class__ is int:
            if sent == len(data):
                return
            data = data[sent:]
        queue(data)

    def write_sequence(pieces) -> None:
        if busy():
            queue_sequence(pieces)
            return
        pieces = [piece for piece in pieces if piece]
        try:
            sent = sendmsg(pieces)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            queue_sequence(pieces)  # doWrite meets the error and reports it
            return
        for index, piece in enumerate(pieces):
            if sent < len(piece):
                queue_sequence([piece[sent:]] + pieces[index + 1:])
                return
            sent -= len(piece)

    conn.write = write
    conn.writeSequence = write_sequence
