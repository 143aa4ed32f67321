"""HTTP through the relay at the edges: size thresholds, 100-continue, HTTP/1.0,
pipelining, hostile or sloppy listener responses (Hybrid Connections protocol,
"Request message", "Responding to requests", "Responding via rendezvous" and
"HTTP request protocol"; Azure/azure-relay-dotnet, azure-relay-node and
azure-relay-java)."""
import http.client
import json

import pytest_twisted
from twisted.internet import defer, threads

from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import raw_connect, wait_until
from tests.support.wsclient import Leg, ws_connect
from tests.test_relay_http import fetch, token_header


def send_json(channel, obj):
    channel.sendMessage(json.dumps(obj).encode(), isBinary=False)


class ScriptedListener(RawListener):
    """A RawListener whose answers are written by the test: ``script(listener, request, body, channel)``."""

    def __init__(self, relay, path, script, **kw):
        super().__init__(relay, path, **kw)
        self.script = script

    def _answer(self, request, body, channel):
        self.requests.append((request, body))
        self.script(self, request, body, channel)


def response(request, status=200, body=False, **extra):
    out = {"requestId": request["id"], "statusCode": status, "body": body}
    out.update(extra)
    return {"response": out}


def parse_responses(data: bytes):
    """Split raw HTTP/1.1 responses with Content-Length or chunked bodies: [(status line, headers, body)]."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if lines[0].split(b" ")[1].startswith(b"1"):
            out.append((lines[0], headers, b""))
            continue
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            body, data = data[:n], data[n:]
        elif headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                body += data[:size]
                data = data[size + 2:]
                if size == 0:
                    break
        else:
            body, data = data, b""
        out.append((lines[0], headers, body))
    return out


# -- where bodies travel (Hybrid Connections protocol, "Request message") --------------


@pytest_twisted.inlineCallbacks
def test_64_kib_body_goes_inline_one_byte_more_over_a_rendezvous(relay):
    listener = yield RawListener(relay, "edge", respond=lambda r, b: (200, {}, b"%d" % len(b))).start()
    tok = token_header(relay, "edge")
    status, _, _, body = yield fetch(relay, "POST", "/edge", body=b"a" * 65536, headers=tok)
    assert (status, body) == (200, b"65536")
    assert listener.stubs == []
    request, seen = listener.requests[0]
    assert request["method"] == "POST" and request["body"] is True and seen == b"a" * 65536
    status, _, _, body = yield fetch(relay, "POST", "/edge", body=b"b" * 65537, headers=tok)
    assert (status, body) == (200, b"65537")
    assert len(listener.stubs) == 1
    # address-only form (Hybrid Connections protocol, "Request message")
    assert set(listener.stubs[0]) == {"address", "id"}
    assert listener.requests[1][1] == b"b" * 65537


@pytest_twisted.inlineCallbacks
def test_expect_100_continue_small_and_large(relay):
    listener = yield RawListener(relay, "cont", respond=lambda r, b: (200, {}, b"%d" % len(b))).start()
    for size in (10, 200_000):
        client = yield raw_connect(relay.port)
        client.transport.write(
            b"PUT /cont HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
            % (relay.host.encode(), make_token(relay, "cont").encode(), size))
        # A strict client sends nothing until it hears 100 Continue.
        yield client.wait_for(b"HTTP/1.1 100 ")
        client.transport.write(b"x" * size)
        data = yield client.closed
        (cont, _, _), (final, headers, body) = parse_responses(data)
        assert final.startswith(b"HTTP/1.1 200 ") and body == b"%d" % size
    assert [len(b) for _, b in listener.requests] == [10, 200_000]


@pytest_twisted.inlineCallbacks
def test_http_1_0_sender(relay):
    big = bytes(range(256)) * 400  # 100 KiB: streamed from a rendezvous
    yield RawListener(relay, "old", respond=lambda r, b: (200, {"X-Kind": r["requestTarget"]}, big if "big" in r["requestTarget"] else b"small")).start()
    from urllib.parse import quote

    token = quote(make_token(relay, "old"), safe="")
    for target, expected in [(b"/old/small", b"small"), (b"/old/big", big)]:
        client = yield raw_connect(relay.port)
        client.transport.write(b"GET %s?sb-hc-token=%s HTTP/1.0\r\n\r\n" % (target, token.encode()))
        data = yield client.closed  # HTTP/1.0: the relay closes after the response
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"chunked" not in head.lower()  # an HTTP/1.0 client cannot read chunks
        assert body == expected


@pytest_twisted.inlineCallbacks
def test_pipelined_requests_are_answered_in_order(relay):
    listener = yield RawListener(relay, "pipe", respond=lambda r, b: (200, {}, r["requestTarget"].encode() + b" " + b)).start()
    tok = make_token(relay, "pipe").encode()
    host = relay.host.encode()
    requests = b"".join([
        b"GET /pipe/1 HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\n\r\n" % (host, tok),
        b"POST /pipe/2 HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\nContent-Length: 5\r\n\r\nhello" % (host, tok),
        b"POST /pipe/3 HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" % (host, tok),
        b"GET /nothere/4 HTTP/1.1\r\nHost: %s\r\n\r\n" % host,  # 401: an error answer in the pipeline
        b"GET /pipe/5 HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\nConnection: close\r\n\r\n" % (host, tok),
    ])
    client = yield raw_connect(relay.port)
    client.transport.write(requests)
    data = yield client.closed
    answers = parse_responses(data)
    assert [a[0].split(b" ")[1] for a in answers] == [b"200", b"200", b"200", b"401", b"200"]
    assert [a[2] for a in answers[:3]] + [answers[4][2]] == [b"/pipe/1 ", b"/pipe/2 hello", b"/pipe/3 abc", b"/pipe/5 "]
    assert len(listener.requests) == 4


# -- sloppy or hostile listener responses (Hybrid Connections protocol, "Responding to requests")


@pytest_twisted.inlineCallbacks
def test_crlf_in_listener_headers_or_reason_never_reaches_the_sender(relay):
    def script(listener, request, body, channel):
        target = request["requestTarget"]
        if target.endswith("/reason"):
            send_json(channel, response(request, 200, statusDescription="OK\r\nX-Injected: yes"))
        elif target.endswith("/value"):
            send_json(channel, response(request, 200, responseHeaders={"X-Evil": "a\r\nX-Injected: yes"}))
        elif target.endswith("/name"):
            send_json(channel, response(request, 200, responseHeaders={"X-Evil\r\nX-Injected": "yes"}))
        else:
            send_json(channel, response(request, 200, True, responseHeaders={"X-Fine": "1"}))
            channel.sendMessage(b"fine", isBinary=True)

    answers = {}
    for what in ("reason", "value", "name", "ok"):
        # Each case on its own hybrid connection: a listener that sends an
        # unparseable response loses its control channel (a framing error).
        path = f"crlf{what}"
        listener = yield ScriptedListener(relay, path, script).start()
        client = yield raw_connect(relay.port)
        client.transport.write(b"GET /%s/%s HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\nConnection: close\r\n\r\n"
                               % (path.encode(), what.encode(), relay.host.encode(), make_token(relay, path).encode()))
        data = yield client.closed
        assert b"\r\nX-Injected" not in data, data
        answers[what] = (data.split(b" ", 2)[1], listener)
    assert answers["reason"][0] == b"200"  # CR/LF removed from the reason phrase
    for what in ("value", "name"):
        status, listener = answers[what]
        assert status == b"502"
        was_clean, code, reason = yield listener.control.closed
        assert code == 1008
    assert answers["ok"][0] == b"200"


@pytest_twisted.inlineCallbacks
def test_body_false_then_stray_empty_binary_and_the_next_request(relay):
    def script(listener, request, body, channel):
        if request["method"] == "HEAD" or request["requestTarget"].endswith("/none"):
            send_json(channel, response(request, 204 if request["method"] != "HEAD" else 200, False))
            channel.sendMessage(b"", isBinary=True)  # hyco-https does this after every response
        else:
            send_json(channel, response(request, 200, True))
            channel.sendMessage(b"next ok", isBinary=True)
            channel.sendMessage(b"", isBinary=True)

    listener = yield ScriptedListener(relay, "node", script).start()
    tok = token_header(relay, "node")
    status, _, _, body = yield fetch(relay, "DELETE", "/node/none", headers=tok)
    assert (status, body) == (204, b"")
    status, _, _, body = yield fetch(relay, "HEAD", "/node/x", headers=tok)
    assert (status, body) == (200, b"")
    status, _, _, body = yield fetch(relay, "GET", "/node/next", headers=tok)
    assert (status, body) == (200, b"next ok")
    assert listener.control.state == listener.control.STATE_OPEN


@pytest_twisted.inlineCallbacks
def test_java_style_rendezvous_body_ended_by_close(relay):
    payload = bytes(range(256)) * 300

    @defer.inlineCallbacks
    def answer_on_rendezvous(request):
        leg = yield ws_connect(request["address"], cls=Leg)
        send_json(leg, response(request, 200, True, statusDescription="OK", responseHeaders={"Content-Type": "application/x-java"}))
        leg.sendFrame(2, payload[:30000], fin=False)
        leg.sendFrame(0, payload[30000:], fin=False)
        leg.sendClose(1000, "NormalClosure")  # no final FIN frame: the Close ends the body

    def script(listener, request, body, channel):
        answer_on_rendezvous(request)

    yield ScriptedListener(relay, "java", script).start()
    status, _, headers, body = yield fetch(relay, "GET", "/java", headers=token_header(relay, "java"))
    assert status == 200 and body == payload
    assert headers["Content-Type"] == "application/x-java"


@pytest_twisted.inlineCallbacks
def test_rendezvous_dropped_mid_body_is_not_a_complete_response(relay):
    @defer.inlineCallbacks
    def answer_on_rendezvous(request):
        leg = yield ws_connect(request["address"], cls=Leg)
        send_json(leg, response(request, 200, True))
        leg.sendFrame(2, b"partial" * 1000, fin=False)
        yield wait_until(lambda: relay.relay.metrics.bytes_to_sender[0] >= 7000)
        leg.transport.abortConnection()

    yield ScriptedListener(relay, "cut", lambda l, r, b, c: answer_on_rendezvous(r)).start()

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("GET", "/cut", headers=token_header(relay, "cut"))
        resp = conn.getresponse()
        try:
            resp.read()
        except (http.client.IncompleteRead, ConnectionError):
            return "incomplete"
        return "complete"
    assert (yield threads.deferToThread(run)) == "incomplete"


@pytest_twisted.inlineCallbacks
def test_inline_request_answered_on_a_rendezvous(relay):
    @defer.inlineCallbacks
    def answer_on_rendezvous(request, body):
        leg = yield ws_connect(request["address"], cls=Leg)
        send_json(leg, response(request, 201, True, responseHeaders={"X-Where": "rendezvous"}))
        leg.sendMessage(b"rv:" + body, isBinary=True)

    listener = yield ScriptedListener(relay, "inl", lambda l, r, b, c: answer_on_rendezvous(r, b)).start()
    status, reason, headers, body = yield fetch(relay, "POST", "/inl", body=b"small", headers=token_header(relay, "inl"))
    assert (status, reason, body) == (201, "Created", b"rv:small")
    assert headers["X-Where"] == "rendezvous"
    assert listener.stubs == []  # the request itself came inline
    # The relay sends nothing on that rendezvous (the request was already delivered).
    status, _, _, body = yield fetch(relay, "POST", "/inl", body=b"again", headers=token_header(relay, "inl"))
    assert (status, body) == (201, b"rv:again")


@pytest_twisted.inlineCallbacks
def test_status_as_string_and_missing_or_unknown_descriptions(relay):
    def script(listener, request, body, channel):
        target = request["requestTarget"]
        if target.endswith("/string"):
            send_json(channel, response(request, "200", True))
        elif target.endswith("/created"):
            send_json(channel, response(request, 201, True))
        elif target.endswith("/empty"):
            send_json(channel, response(request, 404, True, statusDescription=""))
        elif target.endswith("/custom"):
            send_json(channel, response(request, 299, True, statusDescription="Fine Enough"))
        else:
            send_json(channel, response(request, 299, True))
        channel.sendMessage(b"body", isBinary=True)

    yield ScriptedListener(relay, "codes", script).start()
    tok = token_header(relay, "codes")
    results = []
    for t in ("string", "created", "empty", "custom", "unknown"):
        status, reason, _, body = yield fetch(relay, "GET", f"/codes/{t}", headers=tok)
        results.append((status, reason, body))
    assert results == [
        (200, "OK", b"body"),
        (201, "Created", b"body"),
        (404, "Not Found", b"body"),
        (299, "Fine Enough", b"body"),
        (299, "", b"body"),
    ]


@pytest_twisted.inlineCallbacks
def test_listener_framing_headers_do_not_corrupt_the_sender_framing(relay):
    def script(listener, request, body, channel):
        target = request["requestTarget"]
        if target.endswith("/cl"):
            headers = {"Content-Length": "3", "X-A": "1"}
        elif target.endswith("/te"):
            headers = {"Transfer-Encoding": "chunked", "Connection": "close, X-Hop", "X-Hop": "x"}
        else:
            headers = {"content-length": "999999"}
        send_json(channel, response(request, 200, True, responseHeaders=headers))
        channel.sendMessage(b"0123456789", isBinary=True)

    yield ScriptedListener(relay, "frame", script).start()
    tok = token_header(relay, "frame")

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        out = []
        for t in ("cl", "te", "lower", "cl"):
            conn.request("GET", f"/frame/{t}", headers=tok)
            resp = conn.getresponse()
            out.append((resp.status, resp.read(), resp.getheader("X-Hop"), resp.getheader("Connection")))
        conn.close()
        return out
    results = yield threads.deferToThread(run)
    assert [r[:2] for r in results] == [(200, b"0123456789")] * 4
    assert all(r[2] is None and r[3] is None for r in results)


@pytest_twisted.inlineCallbacks
def test_streamed_response_keeps_the_listeners_content_length_and_holds_it_to_it(relay):
    payload = bytes(range(256)) * 400  # over a rendezvous: streamed

    @defer.inlineCallbacks
    def answer_on_rendezvous(request):
        kind = request["requestTarget"].rsplit("/", 1)[1]
        declared = {"exact": len(payload), "short": len(payload) + 10, "long": len(payload) - 10, "junk": "12x"}[kind]
        leg = yield ws_connect(request["address"], cls=Leg)
        send_json(leg, response(request, 200, True, responseHeaders={"Content-Length": str(declared)}))
        leg.sendFrame(2, payload[:50000], fin=False)
        leg.sendFrame(0, payload[50000:], fin=True)

    yield ScriptedListener(relay, "cl", lambda l, r, b, c: answer_on_rendezvous(r)).start()
    tok = token_header(relay, "cl")

    def get(kind):
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("GET", f"/cl/{kind}", headers=tok)
        resp = conn.getresponse()
        framing = (resp.getheader("Content-Length"), resp.getheader("Transfer-Encoding"))
        try:
            body = resp.read()
        except (http.client.IncompleteRead, ConnectionError):
            return framing, "incomplete"
        finally:
            conn.close()
        return framing, body

    exact = yield threads.deferToThread(get, "exact")
    assert exact == ((str(len(payload)), None), payload)
    junk = yield threads.deferToThread(get, "junk")  # not a length: the relay chunks
    assert junk == ((None, "chunked"), payload)
    for kind in ("short", "long"):  # a body that breaks its own length never looks complete
        (length, _), body = yield threads.deferToThread(get, kind)
        assert length is not None and body == "incomplete", kind
