"""The traffic inspector's JSON API over real sockets: a relay, a listener with inspect=, senders.

Requests go through the local relay to a twisted.web site behind a ``hyco:``
endpoint with an inspector; the API is read with the standard library's
HTTP client (in a thread) as a browser would, and must show what passed
(secrets masked), replay it, export it and refuse other origins.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys

import pytest

import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.httpclient import http_request
from tests.support.procs import spawn
from tests.support.rawlistener import make_token
from tests.support.wsclient import ws_connect
from tests.test_endpoint import endpoint_string
from txhyco.protocol.addresses import Namespace, connect_url

SECRET_AUTH = "Bearer very-secret-bearer-0001"
SECRET_COOKIE = "session=very-secret-cookie-0002"
SECRET_QUERY = "very-secret-query-token-0003"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e2213bc10000000049454e44ae426082")


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload.upper() if not isBinary else payload, isBinary)


class App(Resource):
    """What the listener serves: counts, echoes, JSON, an image, a large body."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.hits = 0

    def render(self, request):
        self.hits += 1
        path = request.path
        if path == b"/json":
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"set-cookie", b"id=very-secret-set-cookie-0004; Path=/")
            return json.dumps({"hits": self.hits, "nested": {"ok": True}}).encode()
        if path == b"/image.png":
            request.setHeader(b"content-type", b"image/png")
            return PNG
        if path == b"/big":
            request.setHeader(b"content-type", b"application/octet-stream")
            return bytes(range(256)) * 40  # 10240 bytes
        body = request.content.read()
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        auth = request.getHeader(b"authorization") or b""  # (its length only: a body is never masked)
        return b"hit %d: %s %s body=%s auth=%d" % (self.hits, request.method, request.uri, body, len(auth))


def make_site(app=None):
    """A Site: a WebSocket echo (upper-cased) at /ws, ``app`` (an :class:`App`) for every other path."""
    app = app or App()

    class Root(Resource):
        def getChild(self, name, request):
            return app

    root = Root()
    root.putChild(b"ws", WebSocketResource(type("F", (WebSocketServerFactory,), {"protocol": Echo})()))
    return Site(root), app


def api(port, method, path, body=None, headers=None):
    """(status, headers, body) of a request to the inspector, from a thread."""
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()
    return threads.deferToThread(run)


@defer.inlineCallbacks
def api_json(port, method, path, body=None, headers=None):
    status, _, data = yield api(port, method, path, body, headers)
    assert status == 200, (status, data)
    return json.loads(data)


@defer.inlineCallbacks
def listening(relay, path, **options):
    site, app = make_site()
    text = endpoint_string(relay, path, inspect="tcp\\:0\\:interface\\=127.0.0.1", **options)
    port = yield serverFromString(reactor, text).listen(site)
    return port, app, port.inspector.port.getHost().port


@defer.inlineCallbacks
def wait_for(predicate, what):
    for _ in range(300):
        if predicate():
            return
        yield threads.deferToThread(lambda: None)
    raise AssertionError(f"never: {what}")


@pytest_twisted.inlineCallbacks
def test_requests_are_listed_shown_masked_exported_and_replayed(relay, both_site_paths):
    port, app, inspect_port = yield listening(relay, "insp")
    try:
        token = make_token(relay, "insp")
        headers = {"ServiceBusAuthorization": token, "Authorization": SECRET_AUTH, "Cookie": SECRET_COOKIE,
                   "Content-Type": "text/plain"}
        status, *_ = yield http_request(relay.port, "POST", f"/insp/echo?a=1&sb-hc-token={SECRET_QUERY}", b"hello body", headers)
        assert status == 200
        status, _, _, body, _ = yield http_request(relay.port, "GET", "/insp/json", None, {"ServiceBusAuthorization": token})
        assert status == 200 and json.loads(body)["hits"] == 2
        yield http_request(relay.port, "GET", "/insp/image.png", None, {"ServiceBusAuthorization": token})
        inspector = port.inspector.inspector
        yield wait_for(lambda: len(inspector) == 3 and all(c.ended for c in inspector.captures()), "three exchanges ended")

        listing = yield api_json(inspect_port, "GET", "/api/requests")
        rows = listing["requests"]
        assert listing["limit"] == 500 and listing["bodyCap"] == 1024 * 1024
        # (the relay takes sb-hc-* parameters off before the listener sees the request)
        assert [r["path"] for r in rows] == ["/image.png", "/json", "/echo?a=1"]
        post = rows[2]
        assert post["method"] == "POST" and post["status"] == 200 and post["requestSize"] == len(b"hello body")
        assert post["responseSize"] > 0 and post["durationMs"] >= 0 and post["sender"].startswith("127.0.0.1:")
        assert post["kind"] == "http" and post["state"] == "complete"

        narrowed = yield api_json(inspect_port, "GET", "/api/requests?method=get&path=json")
        assert [r["path"] for r in narrowed["requests"]] == ["/json"]

        detail = yield api_json(inspect_port, "GET", f"/api/requests/{post['id']}")
        request_headers = dict((n.lower(), v) for n, v in detail["request"]["headers"])
        assert request_headers["authorization"] == "[masked]" and request_headers["cookie"] == "[masked]"
        assert request_headers.get("servicebusauthorization", "[masked]") == "[masked]"
        assert detail["request"]["body"] == {"size": 10, "kept": 10, "truncated": False, "contentType": "text/plain",
                                             "encoding": "utf-8", "data": "hello body"}
        assert detail["response"]["body"]["data"].startswith("hit 1: POST /echo?a=1")
        json_detail = yield api_json(inspect_port, "GET", f"/api/requests/{rows[1]['id']}")
        assert dict(json_detail["response"]["headers"])["Set-Cookie"] == "[masked]"
        image = yield api_json(inspect_port, "GET", f"/api/requests/{rows[0]['id']}")
        assert image["response"]["body"]["encoding"] == "base64" and image["response"]["body"]["contentType"] == "image/png"

        # Exports: curl and HAR, secrets masked there too.
        status, hdrs, curl = yield api(inspect_port, "GET", f"/api/requests/{post['id']}/curl")
        assert status == 200 and hdrs["Content-Type"].startswith("text/plain")
        curl = curl.decode()
        assert curl.startswith(f"curl -X POST 'http://{relay.host}/insp/echo?a=1'")
        assert "'Authorization: [masked]'" in curl and "--data-binary 'hello body'" in curl
        har = yield api_json(inspect_port, "GET", f"/api/requests/{post['id']}/har")
        entry = har["log"]["entries"][0]
        assert har["log"]["version"] == "1.2" and entry["request"]["method"] == "POST"
        assert entry["request"]["postData"]["text"] == "hello body" and entry["response"]["status"] == 200

        # No secret anywhere the inspector answers.
        everything = [json.dumps(listing), json.dumps(detail), json.dumps(json_detail), curl, json.dumps(har)]
        for secret in (token, SECRET_AUTH, SECRET_COOKIE, SECRET_QUERY, "very-secret-set-cookie-0004"):
            assert not any(secret in text for text in everything), secret

        # Replay, as captured: the application answers again (its Authorization was never kept).
        record = yield api_json(inspect_port, "POST", f"/api/requests/{post['id']}/replay", b"{}",
                                {"Content-Type": "application/json"})
        assert record["error"] is None and record["response"]["status"] == 200
        assert record["response"]["body"]["data"].startswith("hit 4: POST /echo?a=1 body=hello body auth=0")
        assert sorted(record["request"]["dropped"]) == ["Authorization", "Cookie"]
        # Edited: another path, method, body and a header given back.
        edits = {"method": "PUT", "path": "/edited?x=2", "body": "new body",
                 "headers": [["Authorization", "Bearer typed-in"], ["Content-Type", "text/plain"]]}
        record = yield api_json(inspect_port, "POST", f"/api/requests/{post['id']}/replay", json.dumps(edits).encode(),
                                {"Content-Type": "application/json"})
        assert record["response"]["body"]["data"] == "hit 5: PUT /edited?x=2 body=new body auth=15"
        assert dict(record["request"]["headers"])["Authorization"] == "[masked]"
        detail = yield api_json(inspect_port, "GET", f"/api/requests/{post['id']}")
        assert len(detail["replays"]) == 2 and "typed-in" not in json.dumps(detail)
        # A bad edit is the caller's error.
        status, _, body = yield api(inspect_port, "POST", f"/api/requests/{post['id']}/replay",
                                    json.dumps({"method": "NOT A TOKEN"}).encode(), {"Content-Type": "application/json"})
        assert status == 400 and b"cannot be sent" in body
        status, _, body = yield api(inspect_port, "POST", f"/api/requests/{post['id']}/replay", b"{nope",
                                    {"Content-Type": "application/json"})
        assert status == 400
    finally:
        yield port.stopListening()
    # The page stopped with the port.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", inspect_port)) != 0


@pytest_twisted.inlineCallbacks
def test_other_origins_hosts_and_simple_posts_are_refused(relay):
    port, app, inspect_port = yield listening(relay, "guarded")
    try:
        token = make_token(relay, "guarded")
        yield http_request(relay.port, "GET", "/guarded/x", None, {"ServiceBusAuthorization": token})
        assert app.hits == 1
        json_type = {"Content-Type": "application/json"}
        refused = [
            ("GET", "/api/requests", {"Host": "evil.example:4040"}, 403),
            ("GET", "/", {"Host": "rebound.attacker.test"}, 403),
            ("GET", "/api/requests", {"Origin": "http://evil.example"}, 403),
            ("GET", "/api/requests", {"Origin": "null"}, 403),
            ("GET", "/api/requests", {"Sec-Fetch-Site": "cross-site"}, 403),
            ("POST", "/api/requests/1/replay", {"Content-Type": "text/plain"}, 415),
            ("POST", "/api/requests/1/replay", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ("POST", "/api/requests/1/replay", dict(json_type, Origin="http://evil.example"), 403),
            ("POST", "/api/requests/1/replay", dict(json_type, **{"Sec-Fetch-Site": "same-site"}), 403),
            ("DELETE", "/api/requests/1", {}, 405),
            ("GET", "/api/requests/1/replay", {}, 405),
            ("GET", "/etc/passwd", {}, 404),
            ("GET", "/api/requests/999999", {}, 404),
            ("GET", "/api/requests/1/nothing", {}, 404),
        ]
        for method, path, headers, expected in refused:
            status, hdrs, _ = yield api(inspect_port, method, path, b"{}" if method == "POST" else None, headers)
            assert status == expected, (method, path, headers, status)
            assert hdrs["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in hdrs["Content-Security-Policy"]
        assert app.hits == 1  # no refused replay reached the application
        # The page's own origin is fine, by IP or as localhost.
        for headers in ({}, {"Origin": f"http://127.0.0.1:{inspect_port}", "Sec-Fetch-Site": "same-origin"},
                        {"Host": f"localhost:{inspect_port}"}):
            status, _, _ = yield api(inspect_port, "GET", "/api/requests", None, headers)
            assert status == 200, headers
        status, hdrs, page = yield api(inspect_port, "GET", "/")
        assert status == 200 and b"inspector.js" in page and hdrs["Content-Type"].startswith("text/html")
        status, _, _ = yield api(inspect_port, "GET", "/inspector.js")
        assert status == 200
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_events_caps_and_websocket_messages(relay, both_site_paths):
    port, app, inspect_port = yield listening(relay, "live", inspectBodyCap="1000", inspectKeep="3")
    events = []

    def read_events():
        conn = http.client.HTTPConnection("127.0.0.1", inspect_port, timeout=30)
        conn.request("GET", "/api/events")
        resp = conn.getresponse()
        assert resp.headers["Content-Type"] == "text/event-stream"
        buffer = b""
        while b"/big" not in buffer:
            chunk = resp.read1(65536)
            if not chunk:
                break
            buffer += chunk
        events.append(buffer)
        conn.close()

    reader = threads.deferToThread(read_events)
    try:
        inspector = port.inspector.inspector
        yield wait_for(lambda: port.inspector.site.resource.events.streams, "the event stream is open")
        token = make_token(relay, "live")
        status, _, _, body, _ = yield http_request(relay.port, "GET", "/live/big", None, {"ServiceBusAuthorization": token})
        assert status == 200 and len(body) == 10240
        yield reader
        assert b"event: summaries\ndata: [" in events[0]

        listing = yield api_json(inspect_port, "GET", "/api/requests")
        big = listing["requests"][0]
        detail = yield api_json(inspect_port, "GET", f"/api/requests/{big['id']}")
        assert detail["response"]["body"]["size"] == 10240 and detail["response"]["body"]["kept"] == 1000
        assert detail["response"]["body"]["truncated"] is True

        # A relayed WebSocket is listed too, with its messages each way.
        url = connect_url(Namespace.parse(relay.host, secure=False), "live", suffix="/ws", query="room=1")
        leg = yield ws_connect(url, headers={"ServiceBusAuthorization": token})
        leg.sendMessage(b"hello socket", isBinary=False)
        assert (yield leg.messages.get()) == (b"HELLO SOCKET", False)
        leg.sendMessage(b"\x00\x01" * 2000, isBinary=True)
        yield leg.messages.get()
        leg.sendClose(1000)
        yield leg.closed
        yield wait_for(lambda: inspector.captures()[0].kind == "websocket" and inspector.captures()[0].ended, "ws closed")
        listing = yield api_json(inspect_port, "GET", "/api/requests")
        ws = listing["requests"][0]
        assert ws["kind"] == "websocket" and ws["status"] == 101 and ws["path"] == "/ws?room=1"
        assert ws["requestSize"] == 12 + 4000 and ws["responseSize"] == 12 + 4000
        detail = yield api_json(inspect_port, "GET", f"/api/requests/{ws['id']}")
        texts = [(m["direction"], m["kind"], m.get("data")) for m in detail["messages"] if m["kind"] == "text"]
        assert texts == [("in", "text", "hello socket"), ("out", "text", "HELLO SOCKET")]
        binary = [m for m in detail["messages"] if m["kind"] == "binary"]
        assert [(m["direction"], m["size"], m["kept"]) for m in binary] == [("in", 4000, 4000), ("out", 4000, 4000)]
        assert token not in json.dumps(detail)
        status, _, _ = yield api(inspect_port, "GET", f"/api/requests/{ws['id']}/curl")
        assert status == 400

        # Large both ways: the request arrives on a rendezvous (address-only), the answer streams on one.
        big_body = bytes(range(256)) * 800  # 204800 bytes
        status, _, _, body, _ = yield http_request(relay.port, "POST", "/live/upload", big_body,
                                                   {"ServiceBusAuthorization": token})
        assert status == 200 and len(body) > len(big_body)
        yield wait_for(lambda: inspector.captures()[0].target == "/upload" and inspector.captures()[0].ended, "upload ended")
        listing = yield api_json(inspect_port, "GET", "/api/requests")
        upload = listing["requests"][0]
        assert (upload["requestSize"], upload["responseSize"], upload["state"]) == (len(big_body), len(body), "complete")
        detail = yield api_json(inspect_port, "GET", f"/api/requests/{upload['id']}")
        assert detail["request"]["body"]["kept"] == 1000 and detail["response"]["body"]["kept"] == 1000

        # The ring keeps the last 3.
        for _ in range(3):
            yield http_request(relay.port, "GET", "/live/x", None, {"ServiceBusAuthorization": token})
        listing = yield api_json(inspect_port, "GET", "/api/requests")
        assert len(listing["requests"]) == 3 and all(r["path"] == "/x" for r in listing["requests"])
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_an_up_file_entry_with_inspect(relay, tmp_path):
    site, app = make_site()
    web = reactor.listenTCP(0, site, interface="127.0.0.1")
    (tmp_path / "up.toml").write_text(
        "[[listen]]\n"
        'path = "upweb"\n'
        f'http = "http://127.0.0.1:{web.getHost().port}"\n'
        'inspect = "tcp:0:interface=127.0.0.1"\n'
        "inspectKeep = 10\n"
    )
    child = spawn(["-m", "txhyco", "up", str(tmp_path / "up.toml")], {"HYCO_CONNECTION_STRING": relay.connection_string.format()})
    try:
        line = yield child.wait_for("inspector at", timeout=20)
        url = line.split("inspector at", 1)[1].strip().rstrip(")")
        inspect_port = int(url.rsplit(":", 1)[1].strip("/"))
        status, *_ = yield http_request(relay.port, "GET", "/upweb/from-up", None,
                                        {"ServiceBusAuthorization": make_token(relay, "upweb")})
        assert status == 200
        listing = yield api_json(inspect_port, "GET", "/api/requests")
        assert listing["limit"] == 10 and [r["path"] for r in listing["requests"]] == ["/from-up"]
    finally:
        yield child.stop()
        yield defer.maybeDeferred(web.stopListening)


@pytest.mark.parametrize("argv, message", [
    (["listen", "x", "--echo", "--inspect"], "--inspect goes with --http."),
    (["listen", "x", "--http", "http://127.0.0.1:1", "--inspect-keep", "5"], "--inspect-keep and --inspect-body-cap go with --inspect."),
    (["listen", "x", "--http", "http://127.0.0.1:1", "--inspect", "--inspect-keep", "0"], "--inspect-keep='0' must be between 1 and 100000."),
    (["listen", "x", "--http", "http://127.0.0.1:1", "--inspect", "nonsense"], "is not yes, no, a port or a server endpoint string"),
])
def test_inspect_usage_errors(argv, message):
    result = subprocess.run([sys.executable, "-m", "txhyco", *argv], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, HYCO_CONNECTION_STRING="Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=a;"
                                     "SharedAccessKey=b;UseDevelopmentEmulator=true"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("entry, message", [
    ('echo = true\ninspect = true', "'inspect' goes with 'http'"),
    ('http = "http://127.0.0.1:1"\ninspectKeep = 3', "'inspectKeep' and 'inspectBodyCap' go with 'inspect'"),
    ('http = "http://127.0.0.1:1"\ninspect = "maybe"', "is not yes, no, a port"),
    ('http = "http://127.0.0.1:1"\ninspect = 1.5', "must be true, false, a port number"),
    ('http = "http://127.0.0.1:1"\ninspect = true\ninspectBodyCap = -1', "inspectBodyCap"),
])
def test_up_file_inspect_errors(tmp_path, entry, message):
    from txhyco.cli.common import CliError
    from txhyco.cli.upfile import load

    (tmp_path / "up.toml").write_text(f'[[listen]]\npath = "p"\n{entry}\n')
    with pytest.raises(CliError) as info:
        load(str(tmp_path / "up.toml"))
    assert message in info.value.message


@pytest_twisted.inlineCallbacks
def test_a_taken_inspector_port_is_named_and_the_relay_not_asked(relay):
    taken = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    try:
        text = endpoint_string(relay, "taken", inspect=str(taken.getHost().port))
        with pytest.raises(Exception) as info:
            yield serverFromString(reactor, text).listen(make_site()[0])
        assert getattr(info.value, "inspector_page", False)
        assert str(info.value).startswith(f"the inspector cannot listen on tcp:{taken.getHost().port}:interface=127.0.0.1: ")
        assert "in use" in str(info.value)
        status, _, _, body, _ = yield http_request(relay.port, "GET", "/taken/", None, {"ServiceBusAuthorization": make_token(relay, "taken")})
        assert status == 502 and b"no listener" in body.lower(), body  # no listener: the relay was never asked
    finally:
        yield taken.stopListening()


@pytest_twisted.inlineCallbacks
def test_an_inspector_on_a_websocket_factory_is_a_refused_listen_that_names_the_fix(relay):
    from txhyco.endpoint import RelayCannotListen

    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    text = endpoint_string(relay, "ws", inspect="tcp\\:0\\:interface\\=127.0.0.1")  # mode=auto: websocket here
    with pytest.raises(RelayCannotListen) as info:
        yield serverFromString(reactor, text).listen(factory)
    assert "needs http mode, not websocket mode: give mode=http" in str(info.value)
