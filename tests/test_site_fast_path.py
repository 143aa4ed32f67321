"""twisted.web's fast path (txhyco.listener.siterequest): a Site's Request built from the
request command sees exactly what the byte path's parsed request sees, and the byte path
takes over wherever the fast path does not apply."""
import json

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, task
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.hostilerelay import Answers, Spy, control_channel
from tests.support.httpclient import http_request
from tests.support.rawlistener import make_token
from tests.support.rawtcp import wait_until
from tests.test_endpoint import endpoint_string
from txhyco.listener import http as listener_http
from txhyco.listener import siterequest
from txhyco.listener.httpresponse import _head_fields_fast, _response_head_fast


class Dump(Resource):
    """Answers with everything the request saw, as JSON."""

    isLeaf = True

    def render(self, request):
        def text(value):
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)

        seen = {
            "method": text(request.method), "uri": text(request.uri), "path": text(request.path),
            "clientproto": text(request.clientproto), "prepath": [text(p) for p in request.prepath],
            "postpath": [text(p) for p in request.postpath],
            "args": {text(k): [text(v) for v in vs] for k, vs in sorted(request.args.items())},
            "content": text(request.content.read()),
            "headers": sorted((text(k), [text(v) for v in vs]) for k, vs in request.requestHeaders.getAllRawHeaders()),
            "cookies": {text(k): text(v) for k, v in request.received_cookies.items()},
            "client": text(request.getClientAddress()), "host": text(request.getHost()),
            "secure": request.isSecure(), "hostname": text(request.getRequestHostname()),
            "persistent": bool(request.channel.persistent) if hasattr(request.channel, "persistent") else None,
        }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(seen).encode()


class HeadCount:
    """Counts synthetic request heads written (the byte path)."""

    def __init__(self, monkeypatch):
        self.heads = 0
        original = listener_http.write_request_head

        def counted(*args):
            self.heads += 1
            return original(*args)

        monkeypatch.setattr(listener_http, "write_request_head", counted)


REQUESTS = [
    ("GET", "/seen/a/b?x=1&y=two&x=3", None, {"Cookie": "k=v; other=w", "X-Thing": "a  b", "Accept": "*/*"}),
    ("POST", "/seen/form", b"name=value&n=2", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("PUT", "/seen/", b"\x00\x01 raw body", {"X-Empty": ""}),
    ("DELETE", "/seen", None, {"X-Repeated": "one"}),
]


@pytest_twisted.inlineCallbacks
def test_a_site_request_sees_the_same_on_both_paths(relay, monkeypatch):
    count = HeadCount(monkeypatch)
    port = yield serverFromString(reactor, endpoint_string(relay, "seen")).listen(Site(Dump()))
    try:
        answers = {}
        for enabled in (True, False):
            monkeypatch.setattr(siterequest, "ENABLED", enabled)
            before = count.heads
            for method, target, body, headers in REQUESTS:
                headers = dict(headers, ServiceBusAuthorization=make_token(relay, "seen"))
                status, _, _, data, _ = yield http_request(relay.port, method, target, body, headers)
                assert status == 200, data
                seen = json.loads(data)
                # the sender's own port differs from request to request
                seen["client"] = seen["client"].rsplit(",", 1)[0]
                seen["headers"] = [h for h in seen["headers"] if h[0].lower() != "x-forwarded-for"] + [
                    ("x-forwarded-for", h[1][0].count(".")) for h in seen["headers"] if h[0].lower() == "x-forwarded-for"]
                answers.setdefault(enabled, []).append(seen)
            assert count.heads - before == (0 if enabled else len(REQUESTS))
        assert answers[True] == answers[False]
        get, post = answers[True][:2]
        assert get["args"] == {"x": ["1", "3"], "y": ["two"]} and get["cookies"] == {"k": "v", "other": "w"}
        assert post["args"] == {"n": ["2"], "name": ["value"]} and post["content"] == "name=value&n=2"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_the_byte_path_serves_when_twisted_is_not_as_expected(relay, monkeypatch):
    count = HeadCount(monkeypatch)
    monkeypatch.setattr(siterequest, "_WRAPPER", None)  # as if Site's channel wrapper were gone
    port = yield serverFromString(reactor, endpoint_string(relay, "seen")).listen(Site(Dump()))
    try:
        status, _, _, data, _ = yield http_request(relay.port, "GET", "/seen/x?q=1", headers={
            "ServiceBusAuthorization": make_token(relay, "seen")})
        assert status == 200 and json.loads(data)["args"] == {"q": ["1"]}
        assert count.heads == 1
        # The fast path without reading the answer's head from its fields: written and read as bytes.
        monkeypatch.setattr(siterequest, "_WRAPPER", type(Site(Dump()).buildProtocol(None)))
        monkeypatch.setattr(siterequest, "_HEADS_AS_HEADERS", False)
        status, _, headers, data, _ = yield http_request(relay.port, "GET", "/seen/x?q=2", headers={
            "ServiceBusAuthorization": make_token(relay, "seen")})
        assert status == 200 and json.loads(data)["args"] == {"q": ["2"]} and headers["Content-Type"] == "application/json"
        assert count.heads == 1
    finally:
        yield port.stopListening()


def test_the_fast_path_is_available_on_this_twisted():
    assert siterequest.AVAILABLE


@pytest_twisted.inlineCallbacks
def test_a_head_the_channel_refuses_goes_the_byte_path_to_its_400(relay, both_site_paths, monkeypatch):
    count = HeadCount(monkeypatch)
    spy = Spy()
    port = yield serverFromString(reactor, endpoint_string(relay, "many")).listen(Site(spy))
    try:
        answers = Answers(control_channel(relay, "many"))
        # More header fields than twisted.web's channel takes (its maxHeaders,
        # 500), from a relay of our own making (a front door would not pass them).
        answers.send("many-1", "many", "/many/", {f"X-H{i}": "v" for i in range(600)})
        # twisted.web's 400 has no Content-Length (its body ends with the
        # connection), so it would leave by a rendezvous, which this made-up
        # request's address cannot open: the test watches the channel's parser.
        yield wait_until(lambda: count.heads == 1)
        # The channel's parser saw the head (and refused it): the application did not.
        assert spy.hits == []
    finally:
        yield port.stopListening()


@pytest.mark.parametrize("factory_kind", ["subclassed channel", "other request factory"])
def test_only_twisted_webs_own_channel_and_requests_qualify(factory_kind):
    from twisted.web import http

    site = Site(Dump())
    if factory_kind == "subclassed channel":
        class Channel(http.HTTPChannel):
            pass
        app = site.buildProtocol(None)
        app._channel = Channel()
    else:
        site.requestFactory = lambda channel, queued: http.Request(channel, queued)
        app = site.buildProtocol(None)
    assert siterequest.site_channel(app) is None
    assert siterequest.site_channel(Site(Dump()).buildProtocol(None)) is not None


def test_direct_fields_leave_uncommon_heads_to_the_byte_path():
    channel = Site(Dump()).buildProtocol(None)._channel
    assert siterequest.direct_fields(channel, "GET", "/", [("Host", "h"), ("X-A", "b c")]) == [(b"Host", b"h"), (b"X-A", b"b c")]
    # the channel's own limit on the head's size, to the byte
    line = "GET / HTTP/1.1"
    fill = 16384 - len(line) - len("X-Fill: ")
    assert siterequest.direct_fields(channel, "GET", "/", [("X-Fill", "v" * fill)]) is not None
    assert siterequest.direct_fields(channel, "GET", "/", [("X-Fill", "v" * (fill + 1))]) is None
    for method, target, headers in [
        ("G ET", "/", []), ("GET", "/a b", []), ("GET", "/", [("X-Name", "caf\u00e9")]),
        ("GET", "/", [("Bad Name", "v")]), ("GET", "/", [("X-A", " padded")]),
        ("GET", "/", [("X-Long", "v" * 20000)]), ("GET", "/", [(f"X-{i}", "v") for i in range(501)]),
        ("GET", "/", [("X-A", "b\nX-C: d")]), ("GET", "/", [("X-A\nX-B", "v")]), ("GET", "/", [("X-A", "b\r")]),
        ("GET", "/", [("X-A", "trailing\t")]), ("GET", "/", [("X-A", "b"), ("", "v")]), ("GET", "/", [("X-A", "\x7f")]),
    ]:
        assert siterequest.direct_fields(channel, method, target, headers) is None


# -- the response head read as fields (ResponseReader.head) -------------------

_FIELD_BYTES = st.binary(max_size=12) | st.sampled_from([b"Content-Length", b"content-length", b"Transfer-Encoding",
                                                           b"X-A", b"12", b"chunked", b"", b" 5", b"caf\xc3\xa9"])


@settings(max_examples=400, deadline=None)
@given(code=st.sampled_from([b"200", b"204", b"304", b"101", b"404", b"999", b"20", b"abc"]) | st.binary(max_size=4),
       reason=st.sampled_from([b"OK", b"", b"Not \xc3\xa9", b"A\tB"]) | st.binary(max_size=6),
       headers=st.lists(st.tuples(_FIELD_BYTES, _FIELD_BYTES), max_size=5))
def test_a_head_as_fields_is_judged_as_its_bytes_would_be(code, reason, headers):
    """Where the bytes would be read without h11, the fields are, with the same status and length; else neither."""
    if b"\r\n" in reason or any(b"\r\n" in n or b"\r\n" in v or b":" in n for n, v in headers):
        return  # fields twisted.web would never hand over
    data = b"HTTP/1.1 " + code + b" " + reason + b"".join(b"\r\n" + n + b": " + v for n, v in headers)
    from_bytes = _response_head_fast(data)
    from_fields = _head_fields_fast(code, reason, headers)
    if from_fields is not None:
        assert from_bytes is not None and (from_bytes[0], from_bytes[3]) == from_fields and from_bytes[2] == headers
    elif from_bytes is not None:
        # the bytes path also takes values it strips of spaces; the fields path leaves those to it
        assert any(v != v.strip(b" \t") for _, v in headers) or reason != from_bytes[1]


@pytest_twisted.inlineCallbacks
def test_a_small_answer_still_unfinished_after_the_flush_delay_streams_on_a_rendezvous(relay, both_site_paths):
    """The flush timer of a head written while the request is being handed over is armed when that is done."""
    from tests.test_endpoint_http import stream_get
    from twisted.web.server import NOT_DONE_YET

    held = []

    class Slow(Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"content-length", b"10")
            request.write(b"first")
            held.append(request)
            return NOT_DONE_YET

    port = yield serverFromString(reactor, endpoint_string(relay, "slow")).listen(Site(Slow()))
    try:
        seen = []
        d = stream_get(relay, "/slow/", {"ServiceBusAuthorization": make_token(relay, "slow")}, on_chunk=seen.append, read_size=1)
        # Only a rendezvous carries part of an answer: the control channel sends whole ones.
        for _ in range(1000):
            if seen:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        assert seen and held
        held[0].write(b"-last")
        held[0].finish()
        status, total, _ = yield d
        assert (status, total) == (200, 10)
    finally:
        yield port.stopListening()



@pytest.mark.parametrize("fast", [True, False])
def test_the_application_loses_its_connection_once_its_calls_have_returned(fast, monkeypatch):
    # Twisted's own loss of a socket comes after the protocol's calls return;
    # a relayed exchange ends the same way: after the application's write
    # (and the request that made it) have returned, without waiting a reactor
    # turn when the answer was complete by then; on a timer otherwise.
    from twisted.internet.task import Clock
    from twisted.web.server import NOT_DONE_YET

    from txhyco.address import HybridConnection
    from txhyco.listener import siterequest
    from txhyco.listener.http import HttpExchange
    from txhyco.protocol.addresses import Namespace
    from txhyco.protocol.messages import Request

    monkeypatch.setattr(siterequest, "ENABLED", fast)
    events = []

    class Answer(Resource):
        isLeaf = True

        def render_GET(self, request):
            transport = request.transport
            request.setHeader(b"content-length", b"%d" % len(request.path[1:]))
            if request.path == b"/later":
                clock.callLater(1, lambda: (request.write(b"later"), request.finish(),
                                            events.append(("returned", transport.disconnected))))
                return NOT_DONE_YET
            request.write(b"now")
            request.finish()
            events.append(("returned", transport.disconnected))
            return NOT_DONE_YET

    class Responder:
        def respond(self, response, body=None):
            events.append(body)
            return True

    clock = Clock()
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    for target in ("/x/now", "/x/later"):
        del events[:]
        request = Request(address="ws://127.0.0.1:1/$hc/x?sb-hc-action=request&sb-hc-id=1", id="1",
                          request_target=target, method="GET", request_headers={"Host": "h"})
        exchange = HttpExchange(clock, hc, Site(Answer()), Responder(), request)
        exchange.start(b"")
        if target == "/x/later":
            assert events == []
            clock.advance(1)  # (a Clock runs the timer it adds at once)
            assert events == [b"later", ("returned", False)]
        else:
            assert events == [b"now", ("returned", False)]
        assert exchange.transport.disconnected
