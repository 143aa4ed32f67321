"""The hyco: endpoint: parser plugin, Site (HTTP + WebSocket) and stream mode through the relay."""
import http.client
import os
import subprocess
import sys

import pytest
import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, error, reactor, threads
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.internet.protocol import Factory
from twisted.plugin import getPlugins
from twisted.protocols.basic import LineReceiver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data, File
from zope.interface.verify import verifyObject

from tests.support.rawlistener import make_token
from tests.support.wsclient import ws_connect
from txhyco.protocol.addresses import Namespace, connect_url


def endpoint_string(relay, path, **options):
    os.environ["TXHYCO_TEST_KEY"] = relay.rule.primary_key
    extra = "".join(f":{k}={v}" for k, v in options.items())
    return f"hyco:127.0.0.1\\:{relay.port}:{path}:keyName={relay.rule.name}:keyEnv=TXHYCO_TEST_KEY:tls=no{extra}"


def fetch(relay, method, target, headers=None, body=None):
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), data
    return threads.deferToThread(run)


# -- the parser ---------------------------------------------------------------

def test_plugin_is_discovered_and_provides_the_interface():
    parsers = [p for p in getPlugins(IStreamServerEndpointStringParser) if p.prefix == "hyco"]
    assert len(parsers) == 1
    verifyObject(IStreamServerEndpointStringParser, parsers[0])


def test_plugin_import_is_light():
    code = (
        "import sys, importlib.util\n"
        "spec = importlib.util.spec_from_file_location('p', 'twisted/plugins/txhyco_endpoints.py')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "heavy = [n for n in ('twisted.internet.reactor', 'autobahn', 'twisted.web') if n in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("text, problem", [
    ("hyco:onlyns", "expected NAMESPACE:PATH"),
    ("hyco:ns:path", "no key"),
    ("hyco:ns:path:key=a:keyFile=b", "only one of"),
    ("hyco:ns:path:key=a:mode=carrier-pigeon", "mode="),
    ("hyco:ns:path:key=a:tls=maybe", "yes or no"),
    ("hyco:ns:path:keyFile=/nonexistent/key", "keyFile: cannot read"),
    ("hyco:ns:path:keyEnv=TXHYCO_SURELY_UNSET", "is not set"),
    ("hyco:ns:path:key=a:colour=blue", "unknown option 'colour'"),
    ("hyco:connectionStringEnv=TXHYCO_SURELY_UNSET", "is not set"),
    ("hyco:bad host!:path:key=a", "NAMESPACE"),
    ("hyco:ns::key=a", "PATH"),
])
def test_malformed_strings_raise_value_error_with_usage(text, problem):
    with pytest.raises(ValueError) as info:
        serverFromString(reactor, text)
    assert problem in str(info.value)
    assert "usage: hyco:NAMESPACE:PATH" in str(info.value)


def test_connection_string_env_form(monkeypatch):
    monkeypatch.setenv("HYCO_CS", "Endpoint=sb://127.0.0.1:9999/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=site;UseDevelopmentEmulator=true")
    endpoint = serverFromString(reactor, "hyco:connectionStringEnv=HYCO_CS")
    assert str(endpoint.hc.address) == "ws://127.0.0.1:9999/$hc/site"
    endpoint = serverFromString(reactor, "hyco:connectionStringEnv=HYCO_CS:path=other:mode=stream")
    assert endpoint.hc.path == "other" and endpoint.mode == "stream"
    assert serverFromString(reactor, "hyco:myns:hc:key=k").hc.namespace.host == "myns.servicebus.windows.net"


@pytest_twisted.inlineCallbacks
def test_listen_failure_is_cannot_listen_error(relay):
    endpoint = serverFromString(reactor, endpoint_string(relay, "x").replace("keyEnv=TXHYCO_TEST_KEY", "key=d3Jvbmc="))
    with pytest.raises(error.CannotListenError) as info:
        yield endpoint.listen(Site(Resource()))
    assert "401" in str(info.value)


# -- a Site through the relay ---------------------------------------------------

class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


def make_site(tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello, relayed world\n")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    root = File(str(tmp_path))
    root.putChild(b"ws", WebSocketResource(type("F", (WebSocketServerFactory,), {"protocol": Echo})()))

    class Info(Resource):
        isLeaf = True

        def render(self, request):
            request.setHeader(b"content-type", b"text/plain")
            prefix = request.getHeader(b"x-forwarded-prefix") or b""
            return b"%s %s prefix=%s body=%d" % (request.method, request.uri, prefix, len(request.content.read()))

    root.putChild(b"info", Info())
    return Site(root)


@pytest_twisted.inlineCallbacks
def test_site_serves_http_and_websocket_through_relay(relay, both_site_paths, tmp_path):
    port = yield serverFromString(reactor, endpoint_string(relay, "site")).listen(make_site(tmp_path))
    try:
        auth = {"ServiceBusAuthorization": make_token(relay, "site")}
        status, headers, body = yield fetch(relay, "GET", "/site/hello.txt", auth)
        assert (status, body) == (200, b"hello, relayed world\n")
        assert "Via" in headers
        status, headers, body = yield fetch(relay, "GET", "/site/big.bin", auth)
        assert status == 200 and body == bytes(range(256)) * 1024
        status, headers, body = yield fetch(relay, "GET", "/site/big.bin", dict(auth, Range="bytes=1000-1999"))
        assert status == 206 and body == (bytes(range(256)) * 1024)[1000:2000]
        status, _, body = yield fetch(relay, "POST", "/site/info/x?y=1", auth, body=b"z" * 100_000)
        assert body == b"POST /info/x?y=1 prefix=/site body=100000"
        status, _, _ = yield fetch(relay, "GET", "/site/missing", auth)
        assert status == 404
        url = connect_url(Namespace.parse(relay.host, secure=False), "site", suffix="/ws")
        leg = yield ws_connect(url, headers=auth)
        for payload, binary in [(b"through the site", False), (b"\x01" * 100_000, True)]:
            leg.sendMessage(payload, isBinary=binary)
            assert (yield leg.messages.get()) == (payload, binary)
        leg.sendClose(1000)
        yield leg.closed
    finally:
        yield port.stopListening()


# -- stream mode ----------------------------------------------------------------

class Upper(LineReceiver):
    def lineReceived(self, line):
        self.sendLine(line.upper())


class Collect(LineReceiver):
    def connectionMade(self):
        self.lines = defer.DeferredQueue()

    def lineReceived(self, line):
        self.lines.put(line)


@pytest_twisted.inlineCallbacks
def test_stream_mode_with_client_endpoint(relay):
    port = yield serverFromString(reactor, endpoint_string(relay, "lines")).listen(Factory.forProtocol(Upper))
    try:
        client = yield clientFromString(reactor, endpoint_string(relay, "lines")).connect(Factory.forProtocol(Collect))
        client.sendLine(b"hello")
        client.sendLine(b"x" * 15000)
        assert (yield client.lines.get()) == b"HELLO"
        assert (yield client.lines.get()) == b"X" * 15000
        client.transport.loseConnection()
    finally:
        yield port.stopListening()


def test_transports_provide_twisted_interfaces():
    from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport

    from txhyco.listener.accept import RelayedTransport
    from txhyco._twisted.streamleg import StreamTransport

    for transport in (RelayedTransport(None, None, None), StreamTransport(None, None, None)):
        for interface in (ITransport, IConsumer, IPushProducer):
            verifyObject(interface, transport)
        assert callable(transport.abortConnection)


@pytest_twisted.inlineCallbacks
def test_endpoint_listen_is_cancellable(relay):
    d = serverFromString(reactor, endpoint_string(relay, "cancel")).listen(Site(Resource()))
    d.cancel()
    with pytest.raises(defer.CancelledError):
        yield d


def test_auto_mode_looks_through_wrapping_factories():
    from autobahn.twisted.websocket import WebSocketServerFactory
    from twisted.protocols.policies import WrappingFactory

    from txhyco.endpoint import detect_mode

    assert detect_mode(WrappingFactory(WrappingFactory(WebSocketServerFactory()))) == "websocket"
    assert detect_mode(WrappingFactory(Site(Resource()))) == "http"
    assert detect_mode(WrappingFactory(Factory.forProtocol(Upper))) == "stream"
