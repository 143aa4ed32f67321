"""The server process: the same echo WebSocket server and twisted.web site, reachable two ways.

* directly on loopback TCP ports (the *direct* arrangement; the *proxy*
  arrangement forwards to these same ports), and
* through the relay with txhyco's listener (*relayed*): the same
  ``EchoProtocol`` class under ``RelayedServerFactory`` (hybrid connection
  ``echo``), the same ``Site`` under the ``hyco:`` endpoint (hybrid connection
  ``web``).

Usage: ``server_proc.py RELAY_PORT [SUFFIX]`` with the relay key in ``$BENCH_HYCO_KEY``
(SUFFIX is appended to both hybrid connection names: the cluster arrangements' listeners);
``$BENCH_INSPECT=1`` puts a traffic inspector on the relayed site (``inspect=``
on its endpoint, its page on an ephemeral loopback port, no viewer).
Prints ``{"event": "ready", "ws_port": N, "http_port": M}`` once both relayed
listeners are registered.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet import defer  # noqa: E402
from twisted.web import resource, server  # noqa: E402
from twisted.web.server import NOT_DONE_YET  # noqa: E402
from zope.interface import implementer  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402

SMALL_BODY = b"x" * 256
CHUNK = b"\0" * (256 * 1024)


class EchoProtocol(WebSocketServerProtocol):
    """Echo every message back with its type."""

    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class Small(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/octet-stream")
        return SMALL_BODY


@implementer(IPushProducer)
class Streamer:
    """Writes ``size`` bytes in 256 KiB chunks, pausing when the transport is full."""

    def __init__(self, request, size: int) -> None:
        self.request, self.left, self.paused, self.done = request, size, False, False

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.left > 0:
            n = min(self.left, len(CHUNK))
            self.left -= n
            self.request.write(CHUNK if n == len(CHUNK) else CHUNK[:n])
        if self.left <= 0 and not self.done:
            self.done = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.left, self.done = 0, True


class Big(resource.Resource):
    """``/big?size=N``: N bytes, streamed, with a Content-Length."""

    isLeaf = True

    def render_GET(self, request):
        size = int(request.args.get(b"size", [b"1048576"])[0])
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", str(size).encode())
        producer = Streamer(request, size)
        request.registerProducer(producer, True)
        from twisted.internet import reactor

        reactor.callLater(0, producer.resumeProducing)
        return NOT_DONE_YET


def make_site() -> server.Site:
    root = resource.Resource()
    root.putChild(b"small", Small())
    root.putChild(b"big", Big())
    site = server.Site(root)
    site.noisy = False
    site.log = lambda request: None  # no access log: it would be measured too
    return site


@defer.inlineCallbacks
def start(reactor, relay_port: int, suffix: str = ""):
    from twisted.internet.endpoints import serverFromString

    from txhyco.websocket import RelayedServerFactory

    direct = WebSocketServerFactory()
    direct.protocol = EchoProtocol
    ws_port = reactor.listenTCP(0, direct, interface="127.0.0.1", backlog=1024)
    site = make_site()
    http_port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=1024)

    key = os.environ[common.KEY_ENV]
    conn = (
        f"Endpoint=sb://127.0.0.1:{relay_port}/;SharedAccessKeyName={common.KEY_NAME};"
        f"SharedAccessKey={key};UseDevelopmentEmulator=true"
    )
    relayed = RelayedServerFactory(connection_string=conn, path="echo" + suffix)
    relayed.protocol = EchoProtocol
    yield relayed.listen()
    inspect = ":inspect=tcp\\:0\\:interface\\=127.0.0.1" if os.environ.get("BENCH_INSPECT") == "1" else ""
    endpoint = serverFromString(
        reactor,
        f"hyco:127.0.0.1\\:{relay_port}:web{suffix}:keyName={common.KEY_NAME}:keyEnv={common.KEY_ENV}:tls=no{inspect}",
    )
    yield endpoint.listen(site)
    common.emit({"event": "ready", "ws_port": ws_port.getHost().port, "http_port": http_port.getHost().port})


def main() -> None:
    common.raise_nofile()
    from twisted.internet import reactor

    relay_port = int(sys.argv[1])
    suffix = sys.argv[2] if len(sys.argv) > 2 else ""

    def failed(f):
        sys.stderr.write(f"server failed to start: {f.getTraceback()}\n")
        reactor.stop()

    reactor.callWhenRunning(lambda: start(reactor, relay_port, suffix).addErrback(failed))
    common.exit_on_stdin_eof(reactor)
    reactor.run()


if __name__ == "__main__":
    main()
