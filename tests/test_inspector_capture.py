"""The inspector's parts without a network: masking, capture caps, the ring, live notices,
WebSocket message reading, exports, the request guard and its settings, garbage included."""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from txhyco._twisted.endpointstring import EndpointStringError, parse_hyco
from txhyco.inspector.capture import BodyCapture, Inspector
from txhyco.inspector.export import curl_command, har_log
from txhyco.inspector.frames import MessageReader
from txhyco.inspector.guard import host_allowed, refusal
from txhyco.inspector.masking import MASK, mask_headers, mask_target
from txhyco.inspector.options import DEFAULT_ENDPOINT, InspectOptionError, inspect_endpoint
from txhyco.inspector.replay import ReplayError, replay_parts
from txhyco.inspector.views import body_json, detail, summary
from txhyco.protocol.frames import OP_BINARY, OP_CONTINUATION, OP_TEXT, frame_header
from txhyco.protocol.messages import Accept, RemoteEndpoint, Request


# -- masking -----------------------------------------------------------------------------

def test_secret_headers_are_masked_whatever_their_case_or_type():
    pairs = [("ServiceBusAuthorization", "SharedAccessSignature sr=x&sig=s3cret"), ("AUTHORIZATION", "Bearer t"),
             (b"Cookie", b"a=b"), ("set-cookie", "id=1"), ("Proxy-Authorization", "Basic x"),
             ("X-Other", "kept"), (b"X-Bytes", b"caf\xc3\xa9")]
    assert mask_headers(pairs) == [("ServiceBusAuthorization", MASK), ("AUTHORIZATION", MASK), ("Cookie", MASK),
                                   ("set-cookie", MASK), ("Proxy-Authorization", MASK), ("X-Other", "kept"),
                                   ("X-Bytes", "café")]


@pytest.mark.parametrize("target, expected", [
    ("/a?sb-hc-token=SharedAccessSignature%20sig", f"/a?sb-hc-token={MASK}"),
    ("/a?x=1&SB-HC-TOKEN=abc&y=2", f"/a?x=1&SB-HC-TOKEN={MASK}&y=2"),
    ("/a?sb%2Dhc%2Dtoken=abc", f"/a?sb%2Dhc%2Dtoken={MASK}"),
    ("/a?sb-hc-token", f"/a?sb-hc-token={MASK}"),
    ("/a?authorization=x", f"/a?authorization={MASK}"),
    ("/a?token=not-ours", "/a?token=not-ours"),
    ("/no-query", "/no-query"),
    ("/a?", "/a?"),
])
def test_secret_query_parameters_are_masked(target, expected):
    assert mask_target(target) == expected


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=40), st.text(alphabet="abc=&%?-2D#", max_size=20))
def test_masking_any_target_keeps_no_token(prefix, noise):
    target = f"/{prefix.replace('?', '')}?{noise}&sb-hc-token=SECRETVALUE&{noise}"
    assert "SECRETVALUE" not in mask_target(target)


# -- bodies, the ring, notices -------------------------------------------------------------

def test_a_body_keeps_its_first_cap_bytes_and_counts_the_rest():
    body = BodyCapture(10)
    for piece in (b"abc", b"defghij", b"klmnop", b"", b"q" * 1000):
        body.add(piece)
    assert body.kept == b"abcdefghij" and body.size == 1016 and body.truncated
    empty = BodyCapture(0)
    empty.add(b"xyz")
    assert empty.kept == b"" and empty.size == 3 and empty.truncated
    exact = BodyCapture(3)
    exact.add(b"abc")
    assert exact.kept == b"abc" and not exact.truncated


def _request(target="/hc/path?q=1", method="POST", headers=None, address="203.0.113.9"):
    return Request(address="wss://relay/$hc/hc?sb-hc-action=request&sb-hc-id=1", id="r1", request_target=target,
                   method=method, request_headers=headers or {"Authorization": "Bearer x", "Content-Type": "text/plain"},
                   body=True, remote_endpoint=RemoteEndpoint(address, 4711))


class _HC:
    path = "hc"

    class namespace:
        secure = True
        authority = "relay.example"


def _exchange(inspector, body=b"hello", response=b"world", status=200, target="/hc/path?q=1"):
    capture = inspector.http_observer()
    capture.request_started(_request(target), body)
    capture.response_head(status, "OK", [("Content-Type", "text/plain"), ("Set-Cookie", "s=1")])
    capture.response_data(response)
    capture.exchange_ended(None)
    return capture


def test_the_ring_keeps_the_last_n_newest_first():
    inspector = Inspector(None, _HC(), limit=3)
    captures = [_exchange(inspector, target=f"/hc/{i}") for i in range(5)]
    assert [c.target for c in inspector.captures()] == ["/4", "/3", "/2"]
    assert inspector.get(captures[0].id) is None and inspector.get(captures[4].id) is captures[4]
    assert [c.id for c in captures] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        Inspector(limit=0)


def test_a_capture_summarises_and_details_with_secrets_masked():
    inspector = Inspector(None, _HC(), body_cap=4)
    capture = _exchange(inspector)
    s = summary(capture)
    assert (s["method"], s["path"], s["status"], s["requestSize"], s["responseSize"], s["sender"], s["state"]) == \
        ("POST", "/path?q=1", 200, 5, 5, "203.0.113.9:4711", "complete")
    d = detail(capture)
    assert d["request"]["headers"] == [["Authorization", MASK], ["Content-Type", "text/plain"]]
    assert d["response"]["headers"][1] == ["Set-Cookie", MASK]
    assert d["request"]["body"]["data"] == "hell" and d["request"]["body"]["truncated"]
    json.dumps(d)
    # Nothing of the secret is kept, shown or not.
    assert "Bearer x" not in repr(vars(capture)) and "s=1" not in repr(vars(capture))


def test_ipv6_senders_are_bracketed_and_unanswered_exchanges_failed():
    inspector = Inspector(None, None)
    capture = inspector.http_observer()
    request = _request(address="2001:db8::1")
    capture.request_started(request, None)
    capture.request_data(b"x")
    capture.exchange_ended("the relay closed the request rendezvous")
    s = summary(capture)
    assert s["sender"] == "[2001:db8::1]:4711" and s["state"] == "failed" and s["path"] == "/hc/path?q=1"
    assert s["error"] == "the relay closed the request rendezvous" and s["requestSize"] == 1


def test_live_viewers_are_told_in_batches_and_only_while_there_are_some():
    clock = Clock()
    inspector = Inspector(clock, None)
    _exchange(inspector)
    assert not clock.getDelayedCalls()  # nobody watching: nothing scheduled
    seen = []
    inspector.subscribe(seen.append)
    for _ in range(3):
        _exchange(inspector)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(1)
    assert len(seen) == 1 and [c.id for c in seen[0]] == [2, 3, 4]
    inspector.unsubscribe(seen.append)
    _exchange(inspector)
    assert not clock.getDelayedCalls()
    inspector.subscribe(seen.append)
    _exchange(inspector)
    inspector.stop()
    assert not clock.getDelayedCalls()


# -- WebSocket messages from raw frames ----------------------------------------------------

def _frame(opcode, payload, fin=True, mask=None):
    if mask is None:
        return frame_header(opcode, fin, len(payload)) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return frame_header(opcode, fin, len(payload), mask) + masked


@pytest.mark.parametrize("mask", [None, b"\x01\x02\x03\x04"])
def test_messages_are_read_from_frames_in_any_chunking(mask):
    stream = (_frame(OP_TEXT, b"hello", mask=mask) + _frame(0x9, b"p", mask=mask)
              + _frame(OP_BINARY, b"\x00" * 70000, fin=False, mask=mask) + _frame(OP_CONTINUATION, b"\x01" * 10, mask=mask)
              + _frame(OP_TEXT, b"", mask=mask) + _frame(0x8, b"\x03\xe8bye", mask=mask))
    rng = random.Random(7)
    for split in ([1] * 40, [rng.randint(1, 500) for _ in range(50)], [len(stream)]):
        seen = []
        reader = MessageReader(lambda *m: seen.append(m), cap=100)
        pos, i = 0, 0
        while pos < len(stream):
            step = split[i % len(split)]
            reader.feed(stream[pos:pos + step])
            pos, i = pos + step, i + 1
        assert reader.broken is None
        assert seen == [("text", 5, b"hello"), ("ping", 1, b"p"), ("binary", 70010, b"\x00" * 100), ("text", 0, b""),
                        ("close", 5, b"\x03\xe8bye")]


def test_unreadable_frames_stop_the_reader_without_raising():
    reader = MessageReader(lambda *m: None, cap=10)
    reader.feed(b"\xf1\x00")  # reserved bits
    assert reader.broken
    reader.feed(b"anything")
    lone = MessageReader(lambda *m: None, cap=10)
    lone.feed(_frame(OP_CONTINUATION, b"x"))
    assert lone.broken


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_garbage_frames_never_raise(data, step):
    reader = MessageReader(lambda *m: None, cap=16)
    for i in range(0, len(data), step):
        reader.feed(data[i:i + step])


def test_a_websocket_capture_keeps_its_first_messages():
    inspector = Inspector(None, _HC(), message_limit=2, message_cap=3)
    accept = Accept(address="wss://relay/$hc/hc/room?sb-hc-action=accept&sb-hc-id=9&x=1", id="9",
                    connect_headers={"Authorization": "Bearer x"}, remote_endpoint=RemoteEndpoint("10.0.0.1", 5))
    ws = inspector.websocket_observer(accept)
    ws.opened()
    ws.received(_frame(OP_TEXT, b"one", mask=b"abcd"))
    ws.sent(_frame(OP_TEXT, b"two!"))
    ws.received(_frame(OP_BINARY, b"three"))
    ws.closed()
    d = detail(ws)
    assert d["path"] == "/room?x=1" and d["status"] == 101 and d["messageCount"] == 3 and len(d["messages"]) == 2
    assert [(m["direction"], m["data"], m["size"]) for m in d["messages"]] == [("in", "one", 3), ("out", "two", 4)]
    assert d["request"]["headers"] == [["Authorization", MASK]] and d["requestSize"] == 8 and d["responseSize"] == 4
    rejected = inspector.websocket_observer(accept)
    rejected.closed("The listener declined the connection.", 503)
    assert summary(rejected)["status"] == 503 and summary(rejected)["state"] == "failed"


# -- views and exports -----------------------------------------------------------------------

def test_bodies_are_text_when_utf8_else_base64():
    assert body_json(b"caf\xc3\xa9", 5)["encoding"] == "utf-8"
    assert body_json(b"\xff\xfe", 2)["encoding"] == "base64"
    assert body_json(b"GIF89a", 6, "image/gif")["encoding"] == "base64"
    assert body_json(b"<svg/>", 6, "image/svg+xml")["encoding"] == "utf-8"
    assert body_json(b"\x00\x01abc", 5)["encoding"] == "base64"
    assert body_json(b"plain", 5, "application/octet-stream")["encoding"] == "base64"
    assert body_json(b"a\tb\r\nc", 6, "text/plain")["encoding"] == "utf-8"


def test_curl_and_har_exports():
    inspector = Inspector(None, _HC(), body_cap=1000)
    capture = _exchange(inspector, body=b"line one\nit's here")
    curl = curl_command(capture)
    assert curl.startswith("curl -X POST 'https://relay.example/hc/path?q=1' \\\n")
    assert "-H 'Authorization: [masked]'" in curl and "--data-binary 'line one\nit'\"'\"'s here'" in curl
    binary = _exchange(inspector, body=b"\x00\xff'")
    assert "--data-binary $'\\x00\\xff\\x27'" in curl_command(binary)
    cut = _exchange(Inspector(None, _HC(), body_cap=2), body=b"abcdef")
    assert curl_command(cut).startswith("# the request body was 6 bytes; only the first 2 were kept\n")
    har = har_log([capture, binary])
    entries = har["log"]["entries"]
    assert [e["request"]["url"] for e in entries] == ["https://relay.example/hc/path?q=1"] * 2
    assert entries[0]["request"]["queryString"] == [{"name": "q", "value": "1"}]
    assert entries[1]["request"]["postData"]["comment"] == "base64"
    assert entries[0]["response"]["content"]["text"] == "world" and entries[0]["startedDateTime"].endswith("Z")
    json.dumps(har)


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=200), st.binary(max_size=200),
       st.text(alphabet=st.characters(min_codepoint=32, blacklist_categories=("Cc", "Cs")), max_size=30))
def test_exports_of_any_bodies_and_headers_never_fail(request_body, response_body, header_value):
    inspector = Inspector(None, _HC(), body_cap=64)
    capture = inspector.http_observer()
    capture.request_started(_request(headers={"X-Any": header_value.strip() or "v"}), request_body)
    capture.response_head(200, "OK", [("Content-Type", "application/octet-stream")])
    capture.response_data(response_body)
    capture.exchange_ended()
    assert curl_command(capture).startswith("curl")
    json.dumps(har_log([capture]))
    json.dumps(detail(capture))


# -- replay edits ------------------------------------------------------------------------------

@pytest.mark.parametrize("edits, status", [
    ([], 400), ({"colour": "red"}, 400), ({"method": 5}, 400), ({"path": "no-slash"}, 400),
    ({"headers": "X: y"}, 400), ({"headers": [["only-name"]]}, 400), ({"headers": [[1, 2]]}, 400),
    ({"body": "a", "bodyBase64": "YQ=="}, 400), ({"body": 7}, 400), ({"bodyBase64": "!!"}, 400),
])
def test_bad_replay_edits_are_refused(edits, status):
    capture = _exchange(Inspector(None, _HC()))
    with pytest.raises(ReplayError) as info:
        replay_parts(capture, edits)
    assert info.value.status == status


def test_replay_parts_drop_masked_headers_and_need_a_whole_body():
    capture = _exchange(Inspector(None, _HC()))
    method, path, headers, body, dropped = replay_parts(capture, {})
    assert (method, path, body, dropped) == ("POST", "/path?q=1", b"hello", ["Authorization"])
    assert headers == [("Content-Type", "text/plain")]
    assert replay_parts(capture, {"bodyBase64": "AAE="})[3] == b"\x00\x01"
    cut = _exchange(Inspector(None, _HC(), body_cap=2))
    with pytest.raises(ReplayError) as info:
        replay_parts(cut, {})
    assert info.value.status == 409
    assert replay_parts(cut, {"body": "given"})[3] == b"given"


# -- who may use the page; settings -----------------------------------------------------------

@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:4040", True), ("localhost:4040", True), ("LOCALHOST", True), ("[::1]:4040", True),
    ("192.0.2.7:80", True), ("[::1]", True), ("evil.example:4040", False), ("127.0.0.1.nip.io:4040", False),
    ("localhost.evil.example", False), ("[::1", False), ("[::1]x", False), ("127.0.0.1:port", False), ("", False),
])
def test_hosts_allowed(host, allowed):
    assert host_allowed(host) is allowed


def test_refusals():
    def check(method, path, **headers):
        headers.setdefault("host", "127.0.0.1:4040")
        return refusal(method, path, {k.replace("_", "-"): v for k, v in headers.items()})

    assert check(b"GET", b"/api/requests") is None
    assert check(b"GET", b"/", origin="http://evil.example") is None  # the page itself: no data in it
    assert check(b"GET", b"/api/requests", origin="http://evil.example")[0] == 403
    assert check(b"GET", b"/api/requests", sec_fetch_site="same-site")[0] == 403
    assert check(b"GET", b"/api/requests", sec_fetch_site="none") is None
    assert check(b"POST", b"/api/requests/1/replay", content_type="application/json; charset=utf-8") is None
    assert check(b"POST", b"/api/requests/1/replay", content_type="text/plain")[0] == 415
    assert check(b"POST", b"/api/requests/1/replay")[0] == 415
    assert check(b"PUT", b"/api/requests")[0] == 405
    assert check(b"GET", b"/", host="attacker.test")[0] == 403
    assert refusal(b"GET", b"/", {})[0] == 403


@pytest.mark.parametrize("value, endpoint", [
    ("", DEFAULT_ENDPOINT), ("yes", DEFAULT_ENDPOINT), ("no", None), ("4041", "tcp:4041:interface=127.0.0.1"),
    ("tcp:0:interface=::1", "tcp:0:interface=::1"),
])
def test_inspect_values(value, endpoint):
    assert inspect_endpoint(value) == endpoint


@pytest.mark.parametrize("value", ["70000", "maybe", "4040x"])
def test_bad_inspect_values(value):
    with pytest.raises(InspectOptionError):
        inspect_endpoint(value)


def test_inspect_in_hyco_strings():
    base = (("127.0.0.1:9090", "hc"), {"key": "c2VjcmV0"})
    options = parse_hyco(base[0], dict(base[1], inspect="tcp:0:interface=127.0.0.1", inspectKeep="7", inspectBodyCap="0"))
    assert (options["inspect"].endpoint, options["inspect"].limit, options["inspect"].body_cap) == ("tcp:0:interface=127.0.0.1", 7, 0)
    assert parse_hyco(*base)["inspect"] is None
    for extra in ({"inspect": "yes", "mode": "stream"}, {"inspectKeep": "5"}, {"inspect": "yes", "inspectKeep": "0"},
                  {"inspect": "yes", "inspectBodyCap": "lots"}, {"inspect": "bogus"}):
        with pytest.raises(EndpointStringError):
            parse_hyco(base[0], dict(base[1], **extra))


def test_inspect_on_a_client_endpoint_is_an_error():
    from twisted.internet import reactor
    from twisted.internet.endpoints import clientFromString

    with pytest.raises(EndpointStringError, match="inspect= is for listening"):
        clientFromString(reactor, "hyco:127.0.0.1\\:9090:hc:key=c2VjcmV0:inspect=yes")


def test_an_inspector_endpoint_that_cannot_be_made_is_a_refused_listen_in_words(tmp_path):
    """ssl: with a certificate file that is not there raises no ValueError, but is the user's string all the same."""
    from twisted.internet import reactor

    from txhyco.inspector.capture import Inspector
    from txhyco.inspector.server import InspectorCannotListen, serve_inspector

    missing = tmp_path / "missing.pem"
    failures = []
    serve_inspector(reactor, Inspector(), f"ssl:0:privateKey={missing}:certKey={missing}").addErrback(failures.append)
    assert failures and failures[0].check(InspectorCannotListen)
    assert str(failures[0].value).startswith(f"the inspector cannot listen on ssl:0:privateKey={missing}")
