"""One Autobahn protocol served twice in one process: on a local port and through the relay.

    export HYCO_CONNECTION_STRING=...            # from `txhyco relay`
    python examples/side_by_side.py [PATH] [LOCAL_PORT]

Direct clients use ws://127.0.0.1:LOCAL_PORT/, relayed ones reach PATH
through the relay; both get the same protocol class, unchanged.
"""
import os
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, task

from txhyco import ProtocolError, RelayedServerFactory, RelayError


class Greeter(WebSocketServerProtocol):
    def onConnect(self, request):
        self.via = "relay" if request.headers.get("x-forwarded-prefix") else "local port"

    def onMessage(self, payload, isBinary):
        self.sendMessage(f"hello {payload.decode('utf-8', 'replace')}, via the {self.via}".encode())


@defer.inlineCallbacks
def main(reactor, path="greeter", local_port="0"):
    local = WebSocketServerFactory()
    local.protocol = Greeter
    port_local = reactor.listenTCP(int(local_port), local, interface="127.0.0.1")
    print(f"local:   ws://127.0.0.1:{port_local.getHost().port}/", flush=True)

    try:
        relayed = RelayedServerFactory(path=path)  # reads HYCO_CONNECTION_STRING
        relayed.protocol = Greeter
        port_relayed = yield relayed.listen()
    except (ProtocolError, RelayError) as e:  # a bad string, wrong key, no relay: one line
        raise SystemExit(f"side_by_side: {e}")
    print(f"relayed: {port_relayed.getHost()}", flush=True)
    yield defer.Deferred()  # serve both until interrupted


if __name__ == "__main__":
    if not os.environ.get("HYCO_CONNECTION_STRING"):
        sys.exit("Set HYCO_CONNECTION_STRING to the connection string printed by `txhyco relay` (or your Azure namespace's).")
    task.react(main, sys.argv[1:3])
