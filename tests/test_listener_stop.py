"""A listener that stops closes its relayed connections with 1001 after a drain (issue 14, "Liveness").

``stopListening``, reactor shutdown and SIGTERM of ``txhyco listen`` used to
leave relayed connections to die with the process (the sender saw 1006 and
lost what was still in flight). Now the sender gets every message the
application sent before the stop, then a Close 1001.
"""
import http.client

import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.support.rawlistener import make_token
from tests.support.rawtcp import wait_until
from tests.support.wsclient import ws_connect
from tests.test_cli_tunnels import cli, finished
from tests.test_relay_websocket import auth, sender_url
from txhyco.endpoint import HybridConnectionServerEndpoint
from txhyco.listener.drain import RelayedConnections
from txhyco.websocket import RelayedServerFactory

COUNT = 40
SIZE = 32 * 1024  # 1.25 MiB in all: still on its way when the stop comes


def numbered(n: int) -> bytes:
    return b"%06d" % n + bytes([n % 251]) * (SIZE - 6)


class Burst(WebSocketServerProtocol):
    """Answers any message with COUNT numbered messages."""

    def onMessage(self, payload, isBinary):
        for n in range(COUNT):
            self.sendMessage(numbered(n), isBinary=True)


class StreamBurst(Protocol):
    def dataReceived(self, data):
        for n in range(COUNT):
            self.transport.write(numbered(n))


@defer.inlineCallbacks
def _all_then_close(sender):
    """Every numbered message in order, then the close; (wasClean, code, reason)."""
    received = b""
    while len(received) < COUNT * SIZE:
        payload, _ = yield sender.messages.get()
        received += payload
    assert received == b"".join(numbered(n) for n in range(COUNT))
    result = yield sender.closed
    return result


@pytest_twisted.inlineCallbacks
def test_stop_listening_closes_relayed_websockets_with_1001_after_what_was_sent(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="stopping")
    factory.protocol = Burst
    port = yield factory.listen()
    sender = yield ws_connect(sender_url(relay, "stopping"), headers=auth(relay, "stopping"))
    sender.sendMessage(b"go")
    yield wait_until(lambda: sender.messages.pending)  # the burst is on its way
    stopped = port.stopListening()
    assert (yield _all_then_close(sender)) == (True, 1001, "The listener is stopping.")
    yield stopped
    assert len(port.connections) == 0 and port.status == "offline"


@pytest_twisted.inlineCallbacks
def test_stop_listening_closes_stream_mode_connections_with_1001(relay):
    endpoint = HybridConnectionServerEndpoint(reactor, _hc(relay, "streamstop"), mode="stream")
    port = yield endpoint.listen(Factory.forProtocol(StreamBurst))
    sender = yield ws_connect(sender_url(relay, "streamstop"), headers=auth(relay, "streamstop"))
    sender.sendMessage(b"go", isBinary=True)
    yield wait_until(lambda: sender.messages.pending)
    stopped = port.stopListening()
    assert (yield _all_then_close(sender)) == (True, 1001, "The listener is stopping.")
    yield stopped


@pytest_twisted.inlineCallbacks
def test_connections_that_do_not_close_are_dropped_after_the_drain_time(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="stubborn")
    factory.protocol = Burst
    port = yield factory.listen()
    port.drain_timeout = 0.2
    sender = yield ws_connect(sender_url(relay, "stubborn"), headers=auth(relay, "stubborn"))
    sender.sendMessage(b"go")
    yield wait_until(lambda: sender.messages.pending)
    sender.transport.pauseProducing()  # reads nothing: the closing handshake cannot finish
    (bridge,) = list(port.connections._live)
    bridge.app.closeHandshakeTimeout = 0  # only the drain time bounds the wait
    yield port.stopListening()
    assert len(port.connections) == 0
    yield wait_until(lambda: bridge.state == bridge.CLOSED)  # aborted
    sender.transport.resumeProducing()
    yield sender.closed


@pytest_twisted.inlineCallbacks
def test_sigterm_of_txhyco_listen_closes_relayed_connections_with_1001(relay):
    listener = cli("listen", "echo", "--echo", cs=relay.connection_string)
    yield listener.wait_for("listening on")
    sender = yield ws_connect(sender_url(relay, "echo"), headers=auth(relay, "echo"))
    sender.closed.addTimeout(20, reactor)  # a failure guard
    for n in range(COUNT):
        sender.sendMessage(numbered(n), isBinary=True)
    first, _ = yield sender.messages.get()
    listener.stop()  # SIGTERM while echoes are on their way
    result = yield sender.closed
    echoed = first + b"".join(payload for payload, _ in sender.messages.pending)
    # Every echo the listener sent arrived whole and in order (those of
    # messages that reached it after its Close are not sent), then 1001.
    count = len(echoed) // SIZE
    assert count >= 1 and echoed == b"".join(numbered(n) for n in range(count))
    assert result == (True, 1001, "The listener is stopping.")
    code, _, err = yield finished(listener)
    assert code == 0, err
    assert "Traceback" not in err and "connection #1 closed" in err, err


def test_an_empty_registry_drains_at_once():
    d = RelayedConnections(reactor).close_all(5)
    assert d.called


def _hc(relay, path):
    from txhyco.address import HybridConnection

    return HybridConnection.from_args(connection_string=relay.connection_string.format(), path=path)


class Held(Resource):
    """Answers each GET when the test says so (``release``), with a body to check."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.waiting = []

    def render_GET(self, request):
        self.waiting.append(request)
        return NOT_DONE_YET

    def release(self):
        for request in self.waiting:
            request.write(b"answered after the stop began")
            request.finish()


def _get_in_thread(relay, path: str):
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("GET", f"/{path}/slow", headers={"ServiceBusAuthorization": make_token(relay, path)})
        response = conn.getresponse()
        return response.status, response.read()
    return threads.deferToThread(run)


@pytest_twisted.inlineCallbacks
def test_a_stopping_listener_still_answers_the_http_requests_it_is_serving(relay):
    # The control channel stays open until the requests being served are
    # answered (within the drain time): their responses travel on it. It
    # used to close at once, and the sender got 502 for a request its
    # application was about to answer.
    resource = Held()
    endpoint = HybridConnectionServerEndpoint(reactor, _hc(relay, "stopping-http"), mode="http")
    port = yield endpoint.listen(Site(resource))
    answered = _get_in_thread(relay, "stopping-http")
    yield wait_until(lambda: resource.waiting, timeout=10)
    stopped = port.stopListening()
    reactor.callLater(0.2, resource.release)
    status, body = yield answered
    assert (status, body) == (200, b"answered after the stop began")
    yield stopped


@pytest_twisted.inlineCallbacks
def test_a_request_that_arrives_while_the_listener_stops_gets_503_at_once(relay):
    resource = Held()
    endpoint = HybridConnectionServerEndpoint(reactor, _hc(relay, "stopping-new"), mode="http")
    port = yield endpoint.listen(Site(resource))
    first = _get_in_thread(relay, "stopping-new")
    yield wait_until(lambda: resource.waiting, timeout=10)
    stopped = port.stopListening()
    # The drain waits for the first request; a second one is refused at once,
    # while the first is still unanswered, and never reaches the application.
    status, body = yield _get_in_thread(relay, "stopping-new")
    assert (status, body) == (503, b"This listener is stopping.\n")
    assert len(resource.waiting) == 1 and not stopped.called
    resource.release()
    assert (yield first) == (200, b"answered after the stop began")
    yield stopped


def test_a_relayed_request_leaves_the_registry_when_answered_and_its_done_fires():
    # A relayed request tells the registry it is over without a Deferred
    # (when_over); its done Deferred, made on demand, fires all the same.
    from twisted.internet.task import Clock

    from txhyco.address import HybridConnection
    from txhyco.listener.http import HttpExchange
    from txhyco.protocol.addresses import Namespace
    from txhyco.protocol.messages import Request

    class Hello(Resource):
        isLeaf = True

        def render_GET(self, request):
            return b"hello"

    class Responder:
        def __init__(self, clock):
            self.reactor, self.requests, self.answers = clock, RelayedConnections(clock), []

        def respond(self, response, body=None):
            self.answers.append((response.status_code, body))
            return True

    clock = Clock()
    listener = Responder(clock)
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    exchanges = []
    for n in range(2):
        request = Request(address=f"ws://127.0.0.1:1/$hc/x?sb-hc-action=request&sb-hc-id={n}", id=str(n),
                          request_target="/x/", method="GET", request_headers={"Host": "h"})
        exchange = HttpExchange(clock, hc, Site(Hello()), listener, request)
        listener.requests.add(exchange)
        exchanges.append(exchange)
    early = exchanges[0].done  # asked for before the end
    drained = listener.requests.close_all(drain_timeout=5)
    exchanges[0].start(b"")
    assert early.called and not drained.called and len(listener.requests) == 1
    exchanges[1].start(b"")
    assert drained.called and len(listener.requests) == 0
    assert exchanges[1].done.called  # asked for after the end
    seen = []
    exchanges[1].when_over(seen.append)
    assert seen == [exchanges[1]]
    assert listener.answers == [(200, b"hello"), (200, b"hello")]
    clock.advance(0)  # the applications' connections end
