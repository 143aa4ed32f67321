"""Plain HTTP senders through the relay: control channel, rendezvous, errors."""
import http.client
import json

import pytest_twisted
from twisted.internet import reactor, task, threads

from tests.support.httpclient import http_request
from tests.support.rawlistener import RawListener, make_token
from txhyco.relay.config import HybridConnectionConfig, Limits, RelayConfig
from txhyco.testing import start_relay


def fetch(relay, method, target, body=None, headers=None, *, chunks=None):
    """(status, reason, headers, body) of a real HTTP/1.1 request through the relay."""
    d = http_request(relay.port, method, target, body, headers, chunks=chunks)
    return d.addCallback(lambda r: (r[0], r[1], dict(r[2].items()), r[3]))


def token_header(relay, path):
    return {"ServiceBusAuthorization": make_token(relay, path)}


def echo(request, body):
    info = {"method": request["method"], "target": request["requestTarget"], "headers": request["requestHeaders"], "body": len(body)}
    return 200, {"Content-Type": "application/json", "X-Listener": "raw"}, json.dumps(info).encode()


@pytest_twisted.inlineCallbacks
def test_small_get_goes_inline_and_back(relay):
    listener = yield RawListener(relay, "web", respond=echo).start()
    status, reason, headers, body = yield fetch(relay, "GET", "/web/a/b?x=1&sb-hc-token=zzz&y=2", headers=token_header(relay, "web"))
    assert status == 200 and reason == "OK"
    info = json.loads(body)
    assert info["method"] == "GET"
    assert info["target"] == "/web/a/b?x=1&y=2"
    assert "ServiceBusAuthorization" not in info["headers"]
    assert "Via" in info["headers"]
    assert headers["X-Listener"] == "raw"
    assert "Via" in headers
    request, _ = listener.requests[0]
    assert request["remoteEndpoint"]["address"] == "127.0.0.1"
    assert not request["address"].endswith("?")


@pytest_twisted.inlineCallbacks
def test_large_post_uses_rendezvous_both_ways(relay):
    listener = yield RawListener(relay, "up", respond=lambda r, b: (201, {"Content-Type": "application/octet-stream"}, b[::-1])).start()
    payload = bytes(range(256)) * 800  # 200 KiB
    status, reason, headers, body = yield fetch(relay, "POST", "/up/file", body=payload, headers=token_header(relay, "up"))
    assert (status, reason) == (201, "Created")
    assert body == payload[::-1]
    assert listener.requests[0][1] == payload


@pytest_twisted.inlineCallbacks
def test_chunked_post_streams_over_rendezvous(relay):
    listener = yield RawListener(relay, "ch", respond=lambda r, b: (200, {}, b"got %d" % len(b))).start()
    chunks = [b"a" * 1000, b"b" * 70000, b"c"]
    status, _, _, body = yield fetch(relay, "PUT", "/ch", headers=token_header(relay, "ch"), chunks=chunks)
    assert status == 200 and body == b"got 71001"
    assert listener.requests[0][1] == b"".join(chunks)


@pytest_twisted.inlineCallbacks
def test_listener_status_and_reason_pass_through(relay):
    yield RawListener(relay, "st", respond=lambda r, b: (418, {}, b"teapot")).start()
    status, reason, headers, body = yield fetch(relay, "GET", "/st", headers=token_header(relay, "st"))
    assert (status, reason, body) == (418, "I'm a Teapot", b"teapot") or (status, body) == (418, b"teapot")
    assert "Via" in headers


@pytest_twisted.inlineCallbacks
def test_head_and_204_have_no_body(relay):
    yield RawListener(relay, "nb", respond=lambda r, b: (204 if r["method"] == "DELETE" else 200, {}, b"")).start()
    status, _, _, body = yield fetch(relay, "HEAD", "/nb", headers=token_header(relay, "nb"))
    assert (status, body) == (200, b"")
    status, _, _, body = yield fetch(relay, "DELETE", "/nb", headers=token_header(relay, "nb"))
    assert (status, body) == (204, b"")


@pytest_twisted.inlineCallbacks
def test_head_keeps_the_length_a_get_would_get(relay):
    yield RawListener(relay, "hl", respond=lambda r, b: (200, {"Content-Length": "11"}, b"")).start()
    status, _, headers, body = yield fetch(relay, "HEAD", "/hl", headers=token_header(relay, "hl"))
    assert (status, headers.get("Content-Length"), body) == (200, "11", b"")


@pytest_twisted.inlineCallbacks
def test_no_listener_is_502_without_via(relay):
    status, reason, headers, body = yield fetch(relay, "GET", "/ghost", headers=token_header(relay, "ghost"))
    assert status == 502
    assert "There are no listeners connected" in reason
    assert "Via" not in headers


@pytest_twisted.inlineCallbacks
def test_auth_rules_for_http(relay):
    yield RawListener(relay, "sec", respond=echo).start()
    status, _, _, _ = yield fetch(relay, "GET", "/sec")
    assert status == 401
    status, _, _, body = yield fetch(relay, "GET", "/sec", headers={"Authorization": make_token(relay, "sec")})
    assert status == 200
    assert "Authorization" not in json.loads(body)["headers"]
    status, _, _, _ = yield fetch(relay, "GET", "/sec", headers={"ServiceBusAuthorization": make_token(relay, "sec", key="nope")})
    assert status == 401


@pytest_twisted.inlineCallbacks
def test_anonymous_hybrid_connection_forwards_authorization():
    base = RelayConfig.with_key()
    config = RelayConfig(rules=base.rules, hybrid_connections={"open": HybridConnectionConfig("open", requires_client_authorization=False)}, restrict=True)
    relay = yield start_relay(config)
    try:
        yield RawListener(relay, "open", respond=echo).start()
        status, _, _, body = yield fetch(relay, "GET", "/open/x", headers={"Authorization": "Bearer app-level"})
        assert status == 200
        assert json.loads(body)["headers"]["Authorization"] == "Bearer app-level"
        status, _, _, _ = yield fetch(relay, "GET", "/closed/x", headers=token_header(relay, "closed"))
        assert status == 404
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_silent_listener_gets_504():
    relay = yield start_relay(RelayConfig(rules=RelayConfig.with_key().rules, limits=Limits(response_timeout=0.5)))
    try:
        yield RawListener(relay, "slow", respond=lambda r, b: None).start()
        status, reason, _, _ = yield fetch(relay, "GET", "/slow", headers=token_header(relay, "slow"))
        assert status == 504
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_listener_vanishing_mid_request_gives_502(relay):
    listener = yield RawListener(relay, "gone", respond=lambda r, b: None).start()
    d = fetch(relay, "GET", "/gone", headers=token_header(relay, "gone"))
    yield task.deferLater(reactor, 0.2, lambda: None)
    listener.control.dropConnection(abort=True)
    status, reason, _, _ = yield d
    assert status == 502
    assert "disconnected" in reason


@pytest_twisted.inlineCallbacks
def test_keep_alive_serves_several_requests_on_one_connection(relay):
    yield RawListener(relay, "ka", respond=echo).start()
    hdrs = token_header(relay, "ka")

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        out = []
        for i in range(3):
            conn.request("POST", f"/ka/{i}", body=b"x" * i, headers=hdrs)
            resp = conn.getresponse()
            out.append((resp.status, json.loads(resp.read())["target"]))
        conn.close()
        return out
    result = yield threads.deferToThread(run)
    assert result == [(200, "/ka/0"), (200, "/ka/1"), (200, "/ka/2")]


@pytest_twisted.inlineCallbacks
def test_malformed_http_gets_400_and_relay_lives_on(relay):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    class Grab(Protocol):
        def __init__(self):
            self.data = b""
            from twisted.internet.defer import Deferred
            self.done = Deferred()
        def dataReceived(self, data):
            self.data += data
        def connectionLost(self, reason):
            self.done.callback(self.data)

    for garbage in [b"\x00\x01\x02 garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"]:
        proto = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port), Grab())
        proto.transport.write(garbage)
        data = yield proto.done
        assert data.startswith(b"HTTP/1.1 400"), data
    yield RawListener(relay, "alive", respond=echo).start()
    status, _, _, _ = yield fetch(relay, "GET", "/alive", headers=token_header(relay, "alive"))
    assert status == 200
