"""A browser chat served entirely through a relay: the page over relayed HTTP,
the messages over WebSockets relayed to this listener.

    export HYCO_CONNECTION_STRING='Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true'
    python examples/chat/chat_server.py [PATH]      # PATH defaults to "chat"

The server registers as a listener (outbound connections only) and prints the
URL to open in a browser: the hybrid connection's HTTP address with a SAS
token in ``sb-hc-token`` (browsers cannot set the ServiceBusAuthorization
header), valid for an hour. Anyone holding that URL can chat until it expires;
the key itself is never printed.

Behind the endpoint is a plain twisted.web Site: ``index.html`` at the hybrid
connection's root and an Autobahn WebSocketResource at ``ws`` that sends every
message to every connected page.
"""
import json
import os
import sys
import time

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File

from txhyco.protocol.addresses import encode_component, http_url
from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.sas import dotnet_audience, sign_token

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = "HYCO_CONNECTION_STRING"
TOKEN_LIFETIME = 3600
MAX_MESSAGE = 4096


class ChatProtocol(WebSocketServerProtocol):
    """One browser page; text messages are relayed to every page in the room."""

    def onOpen(self):
        self.factory.room.add(self)
        print(f"joined: {self.peer} ({len(self.factory.room)} in the room)", flush=True)

    def onMessage(self, payload, isBinary):
        if isBinary:
            return
        text = payload.decode("utf-8", "replace").strip()[:MAX_MESSAGE]
        if not text:
            return
        event = json.dumps({"from": self.peer, "text": text}).encode()
        for client in list(self.factory.room):
            client.sendMessage(event)

    def onClose(self, wasClean, code, reason):
        self.factory.room.discard(self)


def make_site() -> Site:
    root = Resource()
    root.putChild(b"", File(os.path.join(HERE, "index.html"), defaultType="text/html"))
    factory = WebSocketServerFactory()
    factory.protocol = ChatProtocol
    factory.room = set()
    root.putChild(b"ws", WebSocketResource(factory))
    return Site(root)


def browser_url(cs: ConnectionString, path: str, lifetime: int = TOKEN_LIFETIME) -> str:
    """The page's relay URL with a token for ``path`` in ``sb-hc-token``.

    The token is signed with the connection string's key (never printed) for
    the .NET audience ``http://host/path/``, which covers both the page
    (``/path/``) and the WebSocket (``/$hc/path/ws``).
    """
    if not (cs.shared_access_key_name and cs.shared_access_key):
        raise SystemExit(f"{ENV} has no SharedAccessKeyName/SharedAccessKey to sign a browser token with.")
    page = http_url(cs.namespace, path, suffix="/")
    token = sign_token(dotnet_audience(page), cs.shared_access_key_name, cs.shared_access_key, int(time.time()) + lifetime)
    return f"{page}?sb-hc-token={encode_component(token)}"


@defer.inlineCallbacks
def main(reactor, path="chat"):
    try:
        cs = ConnectionString.parse(os.environ[ENV])
        port = yield serverFromString(reactor, f"hyco:connectionStringEnv={ENV}:path={path}").listen(make_site())
    except (ValueError, CannotListenError) as e:  # a bad string, wrong key, no relay: one line
        raise SystemExit(f"chat_server: {e}")
    print(f"chat online at {port.getHost()}", flush=True)
    print(f"open in a browser: {browser_url(cs, path)}", flush=True)
    yield defer.Deferred()  # serve until interrupted


if __name__ == "__main__":
    if not os.environ.get(ENV):
        sys.exit(f"Set {ENV} to the connection string printed by `txhyco relay` (or your Azure namespace's).")
    task.react(main, sys.argv[1:2])
