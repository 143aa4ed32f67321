"""HTTP through the hyco: endpoint: streaming, large downloads in bounded memory, Klein, hostile headers."""
import http.client
import json
import time

import pytest
import pytest_twisted
from klein import Klein
from twisted.internet import reactor, task, threads
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.static import File

from tests.support.rawlistener import make_token
from tests.test_endpoint import endpoint_string

# Every test here runs with twisted.web's fast path on and off (txhyco.listener.siterequest).
pytestmark = pytest.mark.usefixtures("both_site_paths")


def stream_get(relay, target, headers, on_chunk=None, read_size=65536):
    """GET in a thread, reading the body piece by piece; returns (status, total bytes, first-chunk time)."""
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=60)
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        total, first = 0, None
        while True:
            chunk = resp.read1(read_size) if hasattr(resp, "read1") else resp.read(read_size)
            if not chunk:
                break
            if first is None:
                first = time.monotonic()
            total += len(chunk)
            if on_chunk:
                on_chunk(chunk)
        return resp.status, total, first
    return threads.deferToThread(run)


class Ticker(Resource):
    """Server-sent events: one now, one after the test says so."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b"data: first\n\n")
        self.requests.append(request)
        return NOT_DONE_YET


@pytest_twisted.inlineCallbacks
def test_server_sent_events_arrive_as_written(relay):
    ticker = Ticker()
    root = Resource()
    root.putChild(b"events", ticker)
    port = yield serverFromString(reactor, endpoint_string(relay, "sse")).listen(Site(root))
    try:
        seen = []
        d = stream_get(relay, "/sse/events", {"ServiceBusAuthorization": make_token(relay, "sse")}, on_chunk=seen.append, read_size=1)
        # The first event must reach the sender while the response is still open.
        for _ in range(200):
            if b"".join(seen).endswith(b"data: first\n\n"):
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        assert b"".join(seen) == b"data: first\n\n"
        request = ticker.requests[0]
        request.write(b"data: second\n\n")
        request.finish()
        status, total, _ = yield d
        assert status == 200 and b"".join(seen) == b"data: first\n\ndata: second\n\n"
    finally:
        yield port.stopListening()


def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest_twisted.inlineCallbacks
def test_large_download_runs_in_bounded_memory(relay, tmp_path):
    size = 192 << 20
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: no disk cost
    port = yield serverFromString(reactor, endpoint_string(relay, "dl")).listen(Site(File(str(tmp_path))))
    try:
        baseline = _rss()
        peak = [baseline]
        sampler = task.LoopingCall(lambda: peak.__setitem__(0, max(peak[0], _rss())))
        sampler.start(0.01)
        status, total, _ = yield stream_get(relay, "/dl/huge.bin", {"ServiceBusAuthorization": make_token(relay, "dl")}, read_size=1 << 20)
        sampler.stop()
        assert status == 200 and total == size
        # Relay, listener and sender share this process: all of them together
        # must not hold more than a fraction of the file.
        print("RSS growth MiB", (peak[0] - baseline) >> 20)
        assert peak[0] - baseline < 64 << 20, (peak[0] - baseline) >> 20
    finally:
        yield port.stopListening()


app = Klein()


@app.route("/hello/<name>")
def hello(request, name):
    request.setHeader("content-type", "application/json")
    return json.dumps({"hello": name, "prefix": request.getHeader("x-forwarded-prefix")})


@app.route("/echo", methods=["POST"])
def echo(request):
    return request.content.read()


@pytest_twisted.inlineCallbacks
def test_klein_app_through_relay(relay):
    port = yield serverFromString(reactor, endpoint_string(relay, "klein")).listen(Site(app.resource()))
    try:
        auth = {"ServiceBusAuthorization": make_token(relay, "klein")}

        def run():
            conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
            conn.request("GET", "/klein/hello/relay", headers=auth)
            first = conn.getresponse()
            one = (first.status, json.loads(first.read()))
            conn.request("POST", "/klein/echo", body=b"k" * 200_000, headers=auth)
            second = conn.getresponse()
            return one, (second.status, second.read())
        (s1, body1), (s2, body2) = yield threads.deferToThread(run)
        assert s1 == 200 and body1 == {"hello": "relay", "prefix": "/klein"}
        assert s2 == 200 and body2 == b"k" * 200_000
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_response_ended_by_close_is_delivered(relay):
    from twisted.internet.protocol import Factory, Protocol

    class RawHTTP10(Protocol):
        """A minimal server that answers like HTTP/1.0 servers do: no length, then close."""

        def dataReceived(self, data):
            if b"\r\n\r\n" in data and not getattr(self, "answered", False):
                self.answered = True
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                self.transport.write(b"ended by close: " + b"x" * 70000)
                self.transport.loseConnection()

    port = yield serverFromString(reactor, endpoint_string(relay, "closed", mode="http")).listen(Factory.forProtocol(RawHTTP10))
    try:
        status, total, _ = yield stream_get(relay, "/closed/", {"ServiceBusAuthorization": make_token(relay, "closed")})
        assert status == 200 and total == len(b"ended by close: ") + 70000
    finally:
        yield port.stopListening()


class Headed(Resource):
    """A response with one header repeated and the rest single."""

    isLeaf = True

    def render_GET(self, request):
        request.responseHeaders.addRawHeader(b"X-Multi", b"a")
        request.responseHeaders.addRawHeader(b"x-multi", b"b")
        request.setHeader(b"X-Single", b"one  two")
        return b"ok"


@pytest_twisted.inlineCallbacks
def test_repeated_response_headers_are_joined_and_single_ones_kept(relay):
    port = yield serverFromString(reactor, endpoint_string(relay, "headed")).listen(Site(Headed()))
    try:
        def run():
            conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
            conn.request("GET", "/headed/", headers={"ServiceBusAuthorization": make_token(relay, "headed")})
            resp = conn.getresponse()
            return resp.status, resp.getheader("X-Multi"), resp.getheader("X-Single"), resp.read()
        assert (yield threads.deferToThread(run)) == (200, "a, b", "one  two", b"ok")
    finally:
        yield port.stopListening()


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"hello world"


@pytest_twisted.inlineCallbacks
def test_head_gets_the_get_head_without_a_body_and_the_connection_goes_on(relay):
    port = yield serverFromString(reactor, endpoint_string(relay, "hd")).listen(Site(Hello()))
    headers = {"ServiceBusAuthorization": make_token(relay, "hd")}
    try:
        def run():
            conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=20)
            conn.request("HEAD", "/hd/x", headers=headers)
            head = conn.getresponse()
            answers = [(head.status, head.getheader("Content-Length"), head.read())]
            conn.request("GET", "/hd/x", headers=headers)  # same connection
            get = conn.getresponse()
            answers.append((get.status, get.getheader("Content-Length"), get.read()))
            conn.close()
            return answers
        answers = yield threads.deferToThread(run)
        assert answers == [(200, "11", b""), (200, "11", b"hello world")]
    finally:
        yield port.stopListening()
