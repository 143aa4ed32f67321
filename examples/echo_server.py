"""An Autobahn echo server reachable through a relay.

    export HYCO_CONNECTION_STRING='Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true'
    python examples/echo_server.py [PATH]        # PATH defaults to "echo" (or EntityPath)

The only relay-specific line is RelayedServerFactory instead of
WebSocketServerFactory, and factory.listen() instead of listenWS(factory).
"""
import os
import sys

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, task

from txhyco import ProtocolError, RelayedServerFactory, RelayError


class EchoServerProtocol(WebSocketServerProtocol):
    def onConnect(self, request):
        print(f"connection from {request.peer} for {request.path}", flush=True)

    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


@defer.inlineCallbacks
def main(reactor, path="echo"):
    try:
        factory = RelayedServerFactory(path=path)  # reads HYCO_CONNECTION_STRING
        factory.protocol = EchoServerProtocol
        port = yield factory.listen()
    except (ProtocolError, RelayError) as e:  # a bad string, wrong key, no relay: one line
        raise SystemExit(f"echo_server: {e}")
    print(f"listening on {port.getHost()}", flush=True)
    yield defer.Deferred()  # serve until interrupted


if __name__ == "__main__":
    if not os.environ.get("HYCO_CONNECTION_STRING"):
        sys.exit("Set HYCO_CONNECTION_STRING to the connection string printed by `txhyco relay` (or your Azure namespace's).")
    task.react(main, sys.argv[1:2])
