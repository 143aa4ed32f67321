"""An Autobahn client that talks to examples/echo_server.py through the relay.

    export HYCO_CONNECTION_STRING=...      # the same as the server's
    python examples/echo_client.py [PATH] [MESSAGE ...]
"""
import os
import sys

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import defer, task

from txhyco import ProtocolError, RelayError, connect_relay


class EchoClientProtocol(WebSocketClientProtocol):
    def onOpen(self):
        self.replies = defer.DeferredQueue()

    def onMessage(self, payload, isBinary):
        self.replies.put(payload)


@defer.inlineCallbacks
def main(reactor, path="echo", *messages):
    try:
        client = yield connect_relay(EchoClientProtocol, path=path)  # reads HYCO_CONNECTION_STRING
    except (ProtocolError, RelayError) as e:  # a bad string, wrong key, no listener: one line
        raise SystemExit(f"echo_client: {e}")
    for text in messages or ("Hello through the relay!",):
        started = reactor.seconds()
        client.sendMessage(text.encode("utf-8"))
        reply = yield client.replies.get()
        print(f"echo: {reply.decode('utf-8')} ({(reactor.seconds() - started) * 1000:.1f} ms)", flush=True)
    client.sendClose(1000)


if __name__ == "__main__":
    if not os.environ.get("HYCO_CONNECTION_STRING"):
        sys.exit("Set HYCO_CONNECTION_STRING to the connection string printed by `txhyco relay` (or your Azure namespace's).")
    task.react(main, sys.argv[1:])
