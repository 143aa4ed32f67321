"""The whole idea on one machine: a relay, a web site behind it, and a sender.

    make demo            (or: python examples/demo.py)

1. starts a local relay on a free loopback port;
2. puts a twisted.web Site, with a page and a WebSocket resource, behind the
   hyco: endpoint -- the Site only ever opens outbound connections to the relay;
3. acts as a sender: fetches the page over plain HTTP and exchanges WebSocket
   messages, all through the relay, printing who talked to whom and how fast;
4. shuts everything down and exits 0.
"""
import os
import statistics
import warnings

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from txhyco import connect_relay
from txhyco.address import HybridConnection
from txhyco.testing import start_relay

# Twisted's HTTP client warns about its own response transport; not ours to fix.
warnings.filterwarnings("ignore", message="Using readBody with a transport")

PATH = "demo"
PAGE = b"<!doctype html><title>txhyco demo</title><h1>Hello from behind the relay</h1>\n"


def say(who, text):
    print(f"{who:<9} {text}", flush=True)


class Shout(WebSocketServerProtocol):
    def onConnect(self, request):
        say("listener", f"WebSocket from {request.peer} for {request.path} (prefix {request.headers.get('x-forwarded-prefix')})")

    def onMessage(self, payload, isBinary):
        self.sendMessage(payload.upper(), isBinary)




def make_site():
    root = Resource()
    root.putChild(b"", Data(PAGE, "text/html"))
    factory = WebSocketServerFactory()
    factory.protocol = Shout
    root.putChild(b"ws", WebSocketResource(factory))
    return Site(root)


@defer.inlineCallbacks
def main(reactor):
    relay = yield start_relay()
    cs = relay.connection_string
    say("relay", f"listening on {relay.host}")
    say("relay", f"connection string: {cs.format(redact=True)}")

    os.environ["DEMO_RELAY_KEY"] = cs.shared_access_key
    description = f"hyco:127.0.0.1\\:{relay.port}:{PATH}:keyName={cs.shared_access_key_name}:keyEnv=DEMO_RELAY_KEY:tls=no"
    port = yield serverFromString(reactor, description).listen(make_site())
    say("listener", f"twisted.web Site registered at {port.getHost()} (outbound connection only)")

    sender = HybridConnection.from_args(connection_string=cs, path=PATH)
    token = yield sender.get_token(reactor)

    # Plain HTTP through the relay.
    url = f"http://{relay.host}/{PATH}/".encode()
    started = reactor.seconds()
    response = yield Agent(reactor).request(b"GET", url, Headers({b"ServiceBusAuthorization": [token.encode()]}))
    body = yield readBody(response)
    elapsed = (reactor.seconds() - started) * 1000
    via = response.headers.getRawHeaders(b"via", [b"-"])[0].decode()
    say("sender", f"GET {url.decode()} -> {response.code} {response.phrase.decode()}, {len(body)} bytes, Via: {via}, {elapsed:.1f} ms")
    assert body == PAGE, body

    # A WebSocket through the relay to the Site's /ws resource.
    from autobahn.twisted.websocket import WebSocketClientProtocol

    class Talk(WebSocketClientProtocol):
        def onOpen(self):
            self.replies = defer.DeferredQueue()

        def onMessage(self, payload, isBinary):
            self.replies.put(payload)

    started = reactor.seconds()
    client = yield connect_relay(Talk, connection_string=cs, path=PATH, suffix="/ws")
    say("sender", f"WebSocket to ws://{relay.host}/$hc/{PATH}/ws open in {(reactor.seconds() - started) * 1000:.1f} ms")
    rtts = []
    for word in ["hello", "through", "the", "relay"] * 5:
        started = reactor.seconds()
        client.sendMessage(word.encode())
        reply = yield client.replies.get()
        rtts.append((reactor.seconds() - started) * 1000)
        assert reply == word.upper().encode(), reply
    say("sender", f"{len(rtts)} messages echoed upper-cased: round trip median {statistics.median(rtts):.2f} ms, max {max(rtts):.2f} ms")
    client.sendClose(1000)
    yield client.is_closed

    yield port.stopListening()
    yield relay.stop()
    say("demo", "done: relay, listener and sender shut down cleanly")


if __name__ == "__main__":
    task.react(main)
