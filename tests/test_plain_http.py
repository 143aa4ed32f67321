"""Plain HTTP requests read and answered without h11 (txhyco/relay/plainhttp.py): only what h11 reads alike, and h11's bytes."""
import json
import random

import h11
import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import fuzz
from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import raw_connect, wait_until
from txhyco.relay import frontdoor, httpsender
from txhyco.relay.httpanswer import _h11_response
from txhyco.relay.plainhttp import plain_request, plain_response

MAX_HEAD = 16 * 1024

GET = b"GET /web/small?x=1 HTTP/1.1\r\nHost: relay.example:9000\r\nServiceBusAuthorization: SharedAccessSignature sr=a&sig=b\r\n\r\n"
POST = b"POST /web/up HTTP/1.1\r\nHost: relay.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def h11_reading(data: bytes):
    """(Request, body, complete) as h11 reads ``data``, or None where it refuses it."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(data)
    request, body = None, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            else:
                break
    except h11.RemoteProtocolError:
        return None
    if request is None:
        return None
    return request, body, event.__class__ is h11.EndOfMessage and not conn.trailing_data[0], conn


def assert_h11_agrees(data: bytes) -> bool:
    quick = plain_request(data, MAX_HEAD)
    if quick is None:
        return False
    read = h11_reading(data)
    assert read is not None, data
    request, body, complete, conn = read
    assert complete, data  # one whole request, nothing behind it
    assert (request.method, request.target, request.http_version) == (quick.method, quick.target, b"1.1"), data
    assert list(request.headers.raw_items()) == list(quick.headers), data
    assert body == quick.body, data
    assert conn.their_state is h11.DONE and conn.our_state is h11.SEND_RESPONSE and conn.our_state is not h11.MUST_CLOSE
    assert not conn.they_are_waiting_for_100_continue
    return True


def test_plain_requests_are_read_as_h11_reads_them():
    assert assert_h11_agrees(GET)
    assert assert_h11_agrees(POST)
    assert assert_h11_agrees(GET.replace(b"Host:", b"Connection: close\r\nX-Spaced: \t a  b \t\r\nHost:")) is False
    assert assert_h11_agrees(GET.replace(b"Host:", b"Connection: Keep-Alive\r\nHost:"))
    assert assert_h11_agrees(GET.replace(b"\r\n\r\n", b"\r\nX-Spaced: \t a  b \t\r\nX-Empty:\r\nX-Latin: \xe9t\xe9\r\n\r\n"))


@pytest.mark.parametrize("change", [
    (b"GET ", b"CONNECT "), (b"GET ", b"BREW "), (b"GET ", b"get "), (b"GET ", b"GET  "), (b" HTTP/1.1", b"  HTTP/1.1"),
    (b"GET ", b"\r\nGET "), (b"HTTP/1.1", b"HTTP/1.0"), (b"HTTP/1.1", b"HTTP/2.0"),
    (b"Host: relay.example:9000\r\n", b""), (b"Host: relay.example:9000\r\n", b"Host: a\r\nHost: b\r\n"),
    (b"Host:", b"Connection: keep-alive, close\r\nHost:"), (b"Host:", b"Connection: close\r\nHost:"),
    (b"Host:", b"Expect: 100-continue\r\nHost:"), (b"Host:", b"Upgrade: websocket\r\nHost:"),
    (b"Host:", b"Upgrade: websocket\r\nConnection: Upgrade\r\nHost:"),
    (b"Host:", b"Transfer-Encoding: chunked\r\nHost:"), (b"Host:", b"Content-Length: 0\r\nContent-Length: 0\r\nHost:"),
    (b"Host:", b"Content-Length: 1\r\nHost:"), (b"Host:", b"Content-Length: +0\r\nHost:"),
    (b"Host:", b"X-Folded: a\r\n b\r\nHost:"), (b"Host:", b"X Bad: 1\r\nHost:"), (b"Host:", b"X-Bad: a\x01b\r\nHost:"),
    (b"Host:", b"X-Bad: a\x7fb\r\nHost:"), (b"Host:", b"X-B: 1\nHost:"), (b"Host:", b"X-B: 1\rHost:"),
    (b"\r\n\r\n", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), (b"\r\n\r\n", b"\r\n\r\nx"), (b"\r\n\r\n", b"\r\n"),
    (b"/web/small?x=1", b"/web/\xe9"), (b"/web/small?x=1", b"/web/\x7f"),
])
def test_anything_else_is_left_to_h11(change):
    data = GET.replace(*change)
    assert data != GET and plain_request(data, MAX_HEAD) is None


def test_a_body_must_be_all_there_and_the_head_within_the_limit():
    assert plain_request(POST[:-1], MAX_HEAD) is None
    assert plain_request(POST + b"x", MAX_HEAD) is None
    assert plain_request(GET, len(GET) - 1) is None
    assert plain_request(GET, len(GET)) is not None


def test_a_head_read_again_is_read_alike_and_refused_alike():
    # Heads read lately are remembered (plainhttp._plain_heads): the body is judged each time.
    for _ in range(3):
        request = plain_request(POST, MAX_HEAD)
        assert (request.method, request.target, request.body) == (b"POST", b"/web/up", b"hello")
        assert list(request.headers) == [(b"Host", b"relay.example"), (b"Content-Type", b"text/plain"), (b"Content-Length", b"5")]
        assert plain_request(POST[:-1], MAX_HEAD) is None
        assert plain_request(GET.replace(b"Host:", b"X-Bad: a\x01b\r\nHost:"), MAX_HEAD) is None


def _requests(rng: random.Random, count: int):
    """Plain-looking requests with one thing changed at random."""
    pieces = [b"", b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"\x00", b"\x7f", b"\x80", b"\xff", b"a", b"Host: x\r\n",
              b"Content-Length: 3\r\n", b"Content-Length: 0\r\n", b"abc", b"HTTP/1.1", b"HEAD ", b"POST ", b"\r\n\r\n", b"/", b"?"]
    for _ in range(count):
        data = bytearray(rng.choice([GET, POST, GET.replace(b"GET", b"HEAD"), POST.replace(b"POST", b"PUT")]))
        for _ in range(rng.randrange(1, 3)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5:
                data[at:at + rng.randrange(0, 3)] = rng.choice(pieces)
            else:
                data[at:at] = rng.choice(pieces)
        yield bytes(data)


def test_the_fuzzers_requests_taken_quickly_are_requests_h11_takes_alike():
    rng = random.Random(18)
    datas = list(_requests(rng, 3000))
    datas += [data for _, data in fuzz.garbage_heads(rng, 300)]
    upgrades = [data for _, data in fuzz.broken_upgrades(rng, 300, path="web", host="relay.example", token="t")]
    datas += upgrades + [data.replace(b"Upgrade: websocket\r\n", b"").replace(b"Connection: Upgrade\r\n", b"") for data in upgrades]
    taken = sum(assert_h11_agrees(data) for data in datas)
    assert taken > 300


_LINE_BYTES = st.sampled_from([b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"\x80", b"\xff", b"(", b",",
                               b"/", b"=", b"Host", b"Connection", b"Content-Length", b"1", b"0", b"keep-alive"])


@given(st.lists(st.lists(_LINE_BYTES, max_size=8).map(b"".join), max_size=4), st.sampled_from([0, 1, 2, 3, 4]),
       st.sampled_from([b"", b"x", b"abc"]))
@settings(max_examples=400, deadline=None)
def test_hypothesis_requests_taken_quickly_are_requests_h11_takes_alike(extra_lines, at, body):
    lines = [b"POST /web/a HTTP/1.1", b"Host: relay.example", b"Content-Length: %d" % len(body), b"X-A: b"]
    lines[at:at] = extra_lines
    assert_h11_agrees(fuzz.head(lines) + body)


# -- answers -----------------------------------------------------------------------------------------------------------

_HEADERS = [
    [],
    [("Content-Type", "application/octet-stream"), ("Via", "1.1 relay.example")],
    [("X-Utf8", "\u00e9t\u00e9 \u2603"), ("Set-Cookie", "a=1, b=2"), ("X-Empty", ""), ("x-tab", "a\tb")],
    [("X-First", "1"), ("Host", "listener.example"), ("X-Last", "2")],
]


def h11_answer(method: bytes, status: int, reason: str, headers, body, content_length) -> bytes:
    """What the relay's h11 path writes: SenderAnswers.send_response's events on a connection that read ``method``."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"%s / HTTP/1.1\r\nHost: a\r\n\r\n" % method)
    assert isinstance(conn.next_event(), h11.Request) and isinstance(conn.next_event(), h11.EndOfMessage)
    raw = [(n.encode("ascii"), v.encode("utf-8")) for n, v in headers]
    length = content_length if body is None else len(body)
    if length is not None:
        raw.append((b"Content-Length", str(length).encode("ascii")))
    data = conn.send(_h11_response(status, raw, reason.encode("utf-8")))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    assert conn.our_state is h11.DONE and conn.their_state is h11.DONE
    return data


@pytest.mark.parametrize("headers", _HEADERS)
@pytest.mark.parametrize("status, reason", [(200, "OK"), (201, ""), (204, "No Content"), (304, "Not Modified"),
                                            (404, "Not Found \u00e9"), (599, "x"), (999, "Odd")])
@pytest.mark.parametrize("method, body, content_length", [
    (b"GET", b"", None), (b"GET", b"x" * 256, None), (b"POST", b"ok", None),
    (b"GET", None, None), (b"HEAD", None, 123), (b"HEAD", None, 0),
])
def test_plain_answers_are_the_bytes_h11_writes(headers, status, reason, method, body, content_length):
    if body is None and content_length is None and status not in (204, 304) or status >= 600:
        return  # the relay lets h11 write these (h11 adds its own framing header; older h11 refuses 600 up)
    if body is not None and status in (204, 304):
        return  # the relay never sends a body with them
    length = content_length if body is None else len(body)
    expected = h11_answer(method, status, reason, headers, body, content_length)
    assert plain_response(status, reason.encode("utf-8"), headers, length) + (body or b"") == expected
    for _ in range(2):  # a tuple of headers is remembered with its head: the same bytes
        assert plain_response(status, reason.encode("utf-8"), tuple(headers), length) + (body or b"") == expected


# -- through the relay -------------------------------------------------------------------------------------------------

def _answer(request, body):
    target = request["requestTarget"].rsplit("/", 1)[1]
    if target == "slow":
        return None  # answered by the test
    if target == "big":
        return 200, {"Content-Type": "application/octet-stream"}, b"B" * 100_000 + b"end-of-big"
    if target == "headless":
        return 200, {"X-Head": "yes"}, b""
    return 200, {"Content-Type": "text/plain"}, b"answer-to-" + target.encode() + b"-" + body


@pytest_twisted.inlineCallbacks
def test_one_connection_mixes_plain_requests_with_those_h11_reads(relay, monkeypatch):
    taken = []
    def counted(data, limit, read=None):
        taken.append(plain_request(data, limit, read))
        return taken[-1]
    monkeypatch.setattr(httpsender, "plain_request", counted)
    monkeypatch.setattr(frontdoor, "plain_request", counted)
    listener = yield RawListener(relay, "plain", respond=_answer).start()
    token = make_token(relay, "plain").encode()

    def request(method, target, body=b"", extra=b""):
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        return b"%s %s HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\n%s%s\r\n%s" % (
            method, target, relay.host.encode(), token, length, extra, body)

    client = yield raw_connect(relay.port)
    client.transport.write(request(b"GET", b"/plain/one"))  # the front door's plain path
    yield client.wait_for(b"answer-to-one-")
    client.transport.write(request(b"POST", b"/plain/two", b"posted"))  # HttpSender's
    yield client.wait_for(b"answer-to-two-posted")
    client.transport.write(request(b"GET", b"/nowhere/three"))  # refused (the token is for another path): h11 reads it, then answers
    yield client.wait_for(b"does not cover the entity path")
    client.transport.write(request(b"GET", b"/plain/big"))  # streamed from a rendezvous: h11 answers
    yield client.wait_for(b"end-of-big")
    client.transport.write(request(b"HEAD", b"/plain/headless"))  # no length: h11 answers
    yield client.wait_for(b"X-Head: yes")
    client.transport.write(request(b"GET", b"/plain/slow"))
    yield wait_until(lambda: listener.requests and listener.requests[-1][0]["requestTarget"] == "/plain/slow")
    client.transport.write(request(b"GET", b"/plain/behind"))  # while /slow waits: h11 takes the connection on
    (sender,) = [door._delegate for door in relay.relay.connections if isinstance(door._delegate, httpsender.HttpSender)]
    yield wait_until(lambda: sender._paused)  # h11 read /behind, which waits for its turn
    slow = listener.requests[-1][0]
    response = {"requestId": slow["id"], "statusCode": 200, "responseHeaders": {}, "body": True}
    listener.control.sendMessage(json.dumps({"response": response}).encode(), isBinary=False)
    listener.control.sendMessage(b"answer-to-slow", isBinary=True)
    yield client.wait_for(b"answer-to-behind-")
    client.transport.write(request(b"GET", b"/plain/five") + request(b"GET", b"/plain/six"))  # pipelined: h11's
    yield client.wait_for(b"answer-to-six-")
    client.transport.write(request(b"GET", b"/plain/seven"))  # plain again
    data = yield client.wait_for(b"answer-to-seven-")
    client.transport.loseConnection()

    order = [b"answer-to-one-", b"answer-to-two-posted", b"HTTP/1.1 401", b"end-of-big", b"X-Head: yes",
             b"answer-to-slow", b"answer-to-behind-", b"answer-to-five-", b"answer-to-six-", b"answer-to-seven-"]
    assert [data.index(marker) for marker in order] == sorted(data.index(marker) for marker in order)
    assert data.count(b"HTTP/1.1 ") == len(order)
    head_answer = data[data.index(b"X-Head: yes"):]
    assert b"\r\nTransfer-Encoding: chunked" in head_answer.split(b"\r\n\r\n")[0]  # as h11 writes it
    assert sum(result is not None for result in taken) == 7  # one (at the front door), two, three, big, headless, slow, seven
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_the_front_door_reads_a_first_head_once(relay, monkeypatch):
    reads = []
    real = frontdoor.read_head
    monkeypatch.setattr(frontdoor, "read_head", lambda head: reads.append(head) or real(head))
    listener = yield RawListener(relay, "once", respond=_answer).start()
    client = yield raw_connect(relay.port)
    client.transport.write(b"GET /once/first HTTP/1.1\r\nHost: %s\r\nServiceBusAuthorization: %s\r\n\r\n" % (
        relay.host.encode(), make_token(relay, "once").encode()))
    yield client.wait_for(b"answer-to-first-")
    client.transport.loseConnection()
    # judged as an upgrade (it is not) and as a plain request from one reading
    assert sum(head.startswith(b"GET /once/first ") for head in reads) == 1
    yield listener.stop()


def test_only_small_heads_are_remembered():
    small = plain_request(GET, MAX_HEAD)
    big_head = GET[:-2] + b"X-Filler: " + b"f" * 5000 + b"\r\n\r\n"
    big = plain_request(big_head, MAX_HEAD)
    assert isinstance(small.headers, tuple)  # shared by every request with this head (httprequest remembers it)
    assert isinstance(big.headers, list) and big.headers[-1] == (b"X-Filler", b"f" * 5000)
