"""One listener process of the soak (``soak.py``): an echo WebSocket server and an echo web site.

Usage: ``soak_listener.py LISTENER_ID`` with the relay's connection string in
``$HYCO_CONNECTION_STRING`` and its key in ``$HYCO_RELAY_KEY``. Listens through
the relay on two hybrid connections:

* ``soak``: ``RelayedServerFactory`` with an Autobahn protocol that first sends
  the text message ``listener LISTENER_ID`` (so a sender knows which listener
  serves it, and can tell a closure caused by that listener stopping from any
  other), then echoes every message back unchanged, with its type;
* ``soakweb``: a twisted.web ``Site`` under the ``hyco:`` endpoint whose
  ``/echo`` answers a POST with the request body.

Prints ``{"event": "ready", "id": ...}`` once both are registered. SIGTERM
stops the reactor, as it stops ``txhyco listen``: whatever the listener
side does with its relayed connections on shutdown is what the soak observes.
"""
from __future__ import annotations

import json
import os
import sys

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer
from twisted.web import resource, server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WS_PATH = "soak"
HTTP_PATH = "soakweb"


class EchoWithHello(WebSocketServerProtocol):
    """Says which listener it is, then echoes."""

    listener_id = "?"

    def onOpen(self):
        self.sendMessage(f"listener {self.listener_id}".encode(), isBinary=False)

    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class Echo(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"content-type", b"application/octet-stream")
        return request.content.read()


def make_site() -> server.Site:
    root = resource.Resource()
    root.putChild(b"echo", Echo())
    site = server.Site(root)
    site.noisy = False
    site.log = lambda request: None
    return site


@defer.inlineCallbacks
def start(reactor, listener_id: str):
    from twisted.internet.endpoints import serverFromString

    from txhyco.protocol.connection_string import ConnectionString
    from txhyco.websocket import RelayedServerFactory

    conn = os.environ["HYCO_CONNECTION_STRING"]
    protocol = type("Echo_" + listener_id, (EchoWithHello,), {"listener_id": listener_id})
    factory = RelayedServerFactory(connection_string=conn, path=WS_PATH)
    factory.protocol = protocol
    yield factory.listen()
    parsed = ConnectionString.parse(conn)
    authority = parsed.namespace.authority.replace(":", "\\:")
    endpoint = serverFromString(
        reactor, f"hyco:{authority}:{HTTP_PATH}:keyName={parsed.shared_access_key_name}:keyEnv=HYCO_RELAY_KEY:tls=no"
    )
    yield endpoint.listen(make_site())
    sys.stdout.write(json.dumps({"event": "ready", "id": listener_id, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()


def main() -> None:
    from twisted.internet import reactor

    listener_id = sys.argv[1]

    def failed(f):
        sys.stderr.write(f"listener {listener_id} failed to start: {f.getTraceback()}\n")
        reactor.stop()

    reactor.callWhenRunning(lambda: start(reactor, listener_id).addErrback(failed))
    reactor.run()


if __name__ == "__main__":
    main()
