"""An unrelated Autobahn server and client, run with or without an active txhyco listener in the process.

    python -m tests.support.unrelated_pair with-txhyco | without-txhyco

Prints one JSON object: the bytes each side of the pair wrote (as Latin-1 text) and
the text and field types of every log event of the pair's run (Autobahn's debug lines
included), with what differs from run to run by nature (ports, process and
thread ids, the random handshake key and its answer, object addresses) replaced by placeholders.
With ``with-txhyco``, every txhyco module is imported first, and a local
relay runs with a listener that has exchanged a message through it.
tests/test_host_process.py compares the two.
"""
from __future__ import annotations

import json
import random
import re
import sys

import txaio

txaio.use_twisted()

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory, WebSocketClientProtocol, WebSocketServerFactory, WebSocketServerProtocol,
)
from twisted.internet import defer, task  # noqa: E402
from twisted.logger import formatEvent, globalLogPublisher  # noqa: E402
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory  # noqa: E402

MESSAGES = [("Hello", False), (b"\x00\x01\x02", True), (b"x" * 200, True), ("\u00e9t\u00e9 " * 300, False),
            (bytes(range(256)) * 20, True)]


class Recording(ProtocolWrapper):
    """Records what the wrapped protocol writes, as it goes to the wire."""

    def write(self, data):
        self.factory.written.append(bytes(data))
        super().write(data)

    def writeSequence(self, data):
        self.factory.written.extend(bytes(piece) for piece in data)
        super().writeSequence(data)


class RecordingFactory(WrappingFactory):
    protocol = Recording

    def __init__(self, wrapped):
        super().__init__(wrapped)
        self.written: list[bytes] = []


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class Client(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.received.put((payload, isBinary))

    def onPong(self, payload):
        self.factory.received.put(("pong", payload))

    def onClose(self, wasClean, code, reason):
        if not self.factory.closed.called:
            self.factory.closed.callback((wasClean, code, reason))


@defer.inlineCallbacks
def start_txhyco_listener():
    """Import every txhyco module, and start a relay and a listener that echo one relayed message."""
    import pkgutil
    from importlib import import_module

    import autobahn.websocket.protocol

    import txhyco

    for module in pkgutil.walk_packages(txhyco.__path__, "txhyco."):
        import_module(module.name)
    str(autobahn.websocket.protocol.Timings())  # raised TypeError when txhyco patched Autobahn

    from txhyco import RelayedServerFactory, connect_relay
    from txhyco.testing import start_relay

    relay = yield start_relay()
    listener = RelayedServerFactory(relay.connection_string.format(), path="echo")
    listener.protocol = Echo
    port = yield listener.listen()

    class RelayedClient(WebSocketClientProtocol):
        def onOpen(self):
            self.echoed = defer.Deferred()
            self.sendMessage(b"through the relay", isBinary=True)

        def onMessage(self, payload, isBinary):
            self.echoed.callback(payload)

    sender = yield connect_relay(RelayedClient, relay.connection_string.format(), path="echo")
    assert (yield sender.echoed) == b"through the relay"
    return relay, port, sender


def event_text(event: dict) -> str:
    """An event's text, and the types of its fields (what a JSON or other structured observer would see)."""
    fields = ", ".join(f"{key}: {type(value).__name__}" for key, value in sorted(event.items()) if not key.startswith("log_"))
    return f"{formatEvent(event)}  [{fields}]"


@defer.inlineCallbacks
def run_pair(reactor):
    lines: list[str] = []
    server_factory = WebSocketServerFactory("ws://127.0.0.1")
    server_factory.protocol = Echo
    server_wire = RecordingFactory(server_factory)
    listening = reactor.listenTCP(0, server_wire, interface="127.0.0.1")
    server_port = listening.getHost().port
    url = f"ws://127.0.0.1:{server_port}"
    client_factory = WebSocketClientFactory(url)
    client_factory.protocol = Client
    client_factory.opened, client_factory.closed = defer.Deferred(), defer.Deferred()
    client_factory.received = defer.DeferredQueue()
    client_wire = RecordingFactory(client_factory)

    # Autobahn masks client frames with the random module (seeded by its
    # factories): seeded here, the masks are the same in both runs.
    random.seed(13)
    globalLogPublisher.addObserver(lambda event: lines.append(event_text(event)))
    txaio.set_global_log_level("debug")
    reactor.connectTCP("127.0.0.1", server_port, client_wire)
    client = yield client_factory.opened
    client_port = client.transport.getHost().port
    for payload, binary in MESSAGES:
        client.sendMessage(payload.encode("utf-8") if isinstance(payload, str) else payload, isBinary=binary)
        yield client_factory.received.get()
    client.sendPing(b"are you there")
    yield client_factory.received.get()
    client.sendClose(1000, "done")
    closed = yield client_factory.closed
    yield listening.stopListening()
    txaio.set_global_log_level("info")
    lines.append(f"closed: {closed}")

    secrets = {client.websocket_key.decode(): "KEY"}
    for header in b"".join(server_wire.written).split(b"\r\n"):
        if header.lower().startswith(b"sec-websocket-accept:"):
            secrets[header.split(b":", 1)[1].strip().decode()] = "ACCEPT"
    ports = {str(server_port): "SERVERPORT", str(client_port): "CLIENTPORT"}

    def normal(text: str) -> str:
        for secret, name in secrets.items():
            text = text.replace(secret, name)
        text = re.sub(r"0x[0-9a-f]{6,}", "0xADDRESS", text)
        text = re.sub(r"(?<='own_pid': )\d+|(?<='own_tid': )\d+", "ID", text)
        return re.sub(r"(?<=127\.0\.0\.1:)\d+|(?<=TCP Port )\d+", lambda m: ports.get(m.group(0), "PORT"), text)

    return {
        "server wrote": normal(b"".join(server_wire.written).decode("latin-1")),
        "client wrote": normal(b"".join(client_wire.written).decode("latin-1")),
        "log": [normal(line) for line in lines],
    }


@defer.inlineCallbacks
def main(reactor, mode):
    txhyco_parts = None
    if mode == "with-txhyco":
        txhyco_parts = yield start_txhyco_listener()
    result = yield run_pair(reactor)
    if txhyco_parts is not None:
        relay, port, sender = txhyco_parts
        sender.sendClose(1000)
        yield port.stopListening()
        yield relay.stop()
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:] not in (["with-txhyco"], ["without-txhyco"]):
        sys.exit("usage: python -m tests.support.unrelated_pair with-txhyco|without-txhyco")
    task.react(main, sys.argv[1:])
