"""What each of txhyco's Autobahn speed-ups is worth (txhyco/_twisted/autobahn_speedups.py).

An echo server protocol runs over an in-memory transport (no sockets, no
reactor): a connection is ``makeConnection`` plus the opening handshake, a
message is one masked client frame in and one frame out. Each speed-up is
measured alone against Autobahn's plain protocol, then all together; the
variants take turns, and each keeps its best time.

    python benchmarks/lean_protocols.py
"""
from __future__ import annotations

import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from txhyco._twisted import autobahn_speedups as speedups  # noqa: E402

UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def variants() -> dict[str, type]:
    everything = speedups._replacements()
    only = {
        "lazy hltype/hlval": {"hltype", "hlval"},
        "small-frame masker": {"create_xor_masker"},
    }
    found = {"plain Autobahn": WebSocketServerProtocol}
    for label, names in only.items():
        subset = {module: {n: f for n, f in replaced.items() if n in names} for module, replaced in everything.items()}
        found[label] = speedups._lean(WebSocketServerProtocol, "Variant", subset, False, set())
    found["no configuration dump"] = speedups._lean(WebSocketServerProtocol, "Variant", {}, True, set())
    found["all (LeanServerProtocol)"] = speedups.LeanServerProtocol
    return found


def echo_class(base: type) -> type:
    class Echo(base):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    return Echo


def client_frame(size: int) -> bytes:
    mask, payload = os.urandom(4), os.urandom(size)
    head = bytes([0x82, 0x80 | size]) if size < 126 else bytes([0x82, 0x80 | 126]) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def connection_run(base: type, count: int = 200):
    factory = WebSocketServerFactory("ws://example/chat")
    factory.protocol = echo_class(base)

    def run():
        for _ in range(count):
            proto = factory.buildProtocol(None)
            proto.makeConnection(StringTransport())
            proto.dataReceived(UPGRADE)

    return run, count


def message_run(base: type, size: int, count: int = 3000):
    factory = WebSocketServerFactory("ws://example/chat")
    factory.protocol = echo_class(base)
    proto, transport = factory.buildProtocol(None), StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(UPGRADE)
    frames = [client_frame(size) for _ in range(count)]

    def run():
        for frame in frames:
            proto.dataReceived(frame)
        transport.clear()

    return run, count


def best_us(runs: dict, rounds: int) -> dict:
    """Each run's best time per item, the runs taking turns (a shared machine's drift hits all alike)."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for key, (run, count) in runs.items():
            best[key] = min(best[key], timeit.timeit(run, number=1) / count * 1e6)
    return best


def main(rounds: int = 15) -> None:
    bases = variants()
    columns = {"connection": lambda b: connection_run(b), "100 B msg": lambda b: message_run(b, 100),
               "2 KiB msg": lambda b: message_run(b, 2048)}
    best = best_us({(label, column): make(base) for label, base in bases.items()
                    for column, make in columns.items()}, rounds)
    print(f"{'':28}" + "".join(f"{column:>12}" for column in columns) + f"   (us each, best of {rounds})")
    for label in bases:
        print(f"{label:28}" + "".join(f"{best[label, column]:12.2f}" for column in columns))


if __name__ == "__main__":
    main()
