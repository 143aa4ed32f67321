"""``txhyco listen --http`` in front of a local web server, and ``txhyco request`` through it."""
from __future__ import annotations

import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tests.test_cli_tunnels import assert_no_secrets, assert_one_line_error, cli, echo_server, finished, stopped
from txhyco.cli import main
from txhyco.cli.listen import rewrite_head
from txhyco.websocket import connect_relay

BIG = bytes(range(256)) * 400  # 100 KiB: more than the control channel's 64 KiB


class Shout(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload.upper(), isBinary)


class Show(Resource):
    """What the web server saw: method, target, Host, X-Forwarded-Host, body."""

    isLeaf = True

    def render(self, request):
        body = request.content.read()
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"x-seen", b"yes")
        return b"|".join([
            request.method, request.uri, request.getHeader(b"host") or b"-",
            request.getHeader(b"x-forwarded-host") or b"-", body,
        ])


def local_site():
    root = Resource()
    root.putChild(b"", Data(b"small page\n", "text/plain"))
    root.putChild(b"big", Data(BIG, "application/octet-stream"))
    root.putChild(b"show", Show())
    ws = WebSocketServerFactory()
    ws.protocol = Shout
    root.putChild(b"ws", WebSocketResource(ws))
    return reactor.listenTCP(0, Site(root), interface="127.0.0.1")


class Talk(WebSocketClientProtocol):
    def onOpen(self):
        self.replies = defer.DeferredQueue()

    def onMessage(self, payload, isBinary):
        self.replies.put(payload)


def split_response(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


@pytest_twisted.inlineCallbacks
def test_listen_http_serves_pages_posts_and_websockets(relay):
    cs = relay.connection_string
    site = local_site()
    listener = cli("listen", "web", "--http", f"http://127.0.0.1:{site.getHost().port}", cs=cs)
    yield listener.wait_for("listening on")
    try:
        small, big, post, body_only = yield defer.gatherResults([
            finished(cli("request", "web", cs=cs)),
            finished(cli("request", "web", "/big", "--no-headers", cs=cs)),
            finished(cli("request", "web", "/show?q=1", "-X", "POST", "-H", "X-Test: one", "--data", "a body", cs=cs)),
            finished(cli("request", "web", "/show", "--no-headers", cs=cs)),
        ])
        # curl -i style: status line, headers, blank line, body.
        code, out, err = small
        assert code == 0, err
        status, headers, body = split_response(out)
        assert status == "HTTP/1.1 200 OK"
        assert headers["Content-Type"] == "text/plain" and "Via" in headers
        assert body == "small page"  # (the helper drops the final newline)

        code, out, err = big  # > 64 KiB: the response travels on a rendezvous
        assert code == 0, err
        assert len(out) > 64 * 1024  # exact bytes: test_big_body_exact_bytes_and_stdin_data

        code, out, err = post
        assert code == 0, err
        status, headers, body = split_response(out)
        assert status == "HTTP/1.1 200 OK" and headers["X-Seen"] == "yes"
        method, target, host, forwarded_host, sent = body.split("|")
        assert (method, target, sent) == ("POST", "/show?q=1", "a body")
        # The Host header is kept as the sender sent it (the relay's), like ngrok.
        assert host == f"127.0.0.1:{relay.port}" and forwarded_host == f"127.0.0.1:{relay.port}"

        code, out, err = body_only
        assert code == 0 and out.startswith("GET|/show|"), err

        # A WebSocket through the relay reaches the local server's WebSocketResource.
        client = yield connect_relay(Talk, connection_string=cs, path="web", suffix="/ws")
        for word in (b"hello", b"through", b"the relay"):
            client.sendMessage(word)
            assert (yield client.replies.get()) == word.upper()
        client.sendClose(1000)
        yield client.is_closed
    finally:
        code, _, log = yield stopped(listener)
        yield site.stopListening()
    assert code == 0, log
    assert "request #1 GET / -> 200 OK" in log or "GET / -> 200 OK" in log, log
    assert "GET /ws (WebSocket) -> 101 Switching Protocols" in log, log
    assert_no_secrets(log, cs)


@pytest_twisted.inlineCallbacks
def test_big_body_exact_bytes_and_stdin_data(relay, tmp_path):
    """--no-headers writes the body's bytes exactly; --data-file - reads stdin."""
    cs = relay.connection_string
    site = local_site()
    listener = cli("listen", "web2", "--http", f"http://127.0.0.1:{site.getHost().port}/", "--host-header", "rewrite", cs=cs)
    yield listener.wait_for("listening on")
    try:
        out_file = tmp_path / "big.bin"
        getter = cli("request", "web2", "/big", "--no-headers", cs=cs)
        chunks = []
        getter.outReceived = chunks.append  # raw bytes, not lines
        code, _, err = yield finished(getter)
        assert code == 0, err
        out_file.write_bytes(b"".join(chunks))
        assert out_file.read_bytes() == BIG

        poster = cli("request", "web2", "/show", "--data-file", "-", "--no-headers", cs=cs)
        poster.transport.write(b"from stdin")
        poster.transport.closeStdin()
        code, out, err = yield finished(poster)
        assert code == 0, err
        method, target, host, _, sent = out.split("|")
        assert (method, target, sent) == ("POST", "/show", "from stdin")
        assert host == f"127.0.0.1:{site.getHost().port}"  # --host-header rewrite

        # A reader that goes away (`| head -c 10`) ends the command quietly, as with Unix tools.
        gone = cli("request", "web2", "/big", "--no-headers", cs=cs)
        gone.transport.closeStdout()
        code, _, err = yield finished(gone)
        assert (code, err) == (141, "")
    finally:
        yield stopped(listener)
        yield site.stopListening()


@pytest_twisted.inlineCallbacks
def test_web_server_down_gives_502_from_the_listener(relay):
    spare = echo_server()
    port = spare.getHost().port
    yield spare.stopListening()
    cs = relay.connection_string
    listener = cli("listen", "down", "--http", f"http://127.0.0.1:{port}", cs=cs)
    yield listener.wait_for("listening on")
    code, out, err = yield finished(cli("request", "down", cs=cs))
    yield stopped(listener)
    assert code == 0, err  # an HTTP answer from the listener: exit 0, like curl
    assert out.startswith("HTTP/1.1 502 Bad Gateway") and "cannot be reached" in out


@pytest_twisted.inlineCallbacks
def test_request_errors_are_one_line(relay):
    cs = relay.connection_string
    from txhyco.protocol.connection_string import ConnectionString

    spare = echo_server()
    closed_port = spare.getHost().port
    yield spare.stopListening()
    unreachable = ConnectionString.parse(cs.format().replace(f":{relay.port}/", f":{closed_port}/"))
    runs = [
        (cli("request", "x"), ("HYCO_CONNECTION_STRING",), 2),
        (cli("request", "bad path!", cs=cs), ("PATH",), 2),
        (cli("request", "x", "-H", "no colon", cs=cs), ("-H",), 2),
        (cli("request", "nobody", cs=cs), ("502", "no listener"), 1),
        (cli("request", "x", cs=unreachable), ("cannot reach the relay", "Connection refused"), 1),
    ]
    results = yield defer.gatherResults([finished(child) for child, _, _ in runs])
    for (child, words, status), (code, out, err) in zip(runs, results):
        assert_one_line_error(code, err, *words, status=status)
        assert out == ""
        assert cs.shared_access_key not in err


def test_request_help_shows_examples(capsys):
    assert main(["request", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "txhyco request web" in out
    assert main(["listen", "--help"]) == 0
    assert "txhyco listen web --http http://127.0.0.1:8080" in capsys.readouterr().out


def test_rewrite_head():
    head = b"GET /a?b=1 HTTP/1.1\r\nHost: relay.example:443\r\nX-Forwarded-Prefix: /web"
    assert rewrite_head(head, prefix="", host=None) == head
    out = rewrite_head(head, prefix="/app", host="127.0.0.1:8080")
    assert out.split(b"\r\n")[:2] == [b"GET /app/a?b=1 HTTP/1.1", b"Host: 127.0.0.1:8080"]


@pytest_twisted.inlineCallbacks
def test_a_request_the_listener_cannot_pass_on_gets_400_and_no_traceback(relay):
    from tests.test_relay_http import fetch, token_header

    cs = relay.connection_string
    site = local_site()
    listener = cli("listen", "web3", "--http", f"http://127.0.0.1:{site.getHost().port}/", cs=cs)
    yield listener.wait_for("listening on")
    try:
        headers = dict(token_header(relay, "web3"), **{"X-Name": "caf\u00e9"})  # not ASCII: HTTP/1.1 to the site cannot carry it
        status, _, _, body = yield fetch(relay, "GET", "/web3/", headers=headers)
        assert status == 400 and b"cannot be passed on" in body
        status, _, _, _ = yield fetch(relay, "GET", "/web3/", headers=token_header(relay, "web3"))
        assert status == 200
    finally:
        _, _, err = yield stopped(listener)
        yield site.stopListening()
    assert "Traceback" not in err and "Unhandled" not in err, err
