"""Tests for txhyco.protocol.http: HTTP-over-relay rules and channel framing
(Hybrid Connections protocol, "Listener protocol" and "Request message")."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txhyco.protocol import http as relay_http
from txhyco.protocol.channel import BodyData, BodyEnded, BodyStarted, ChannelReader, CommandReceived
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.http import (
    CONNECTION_HEADERS,
    CONTROL_CHANNEL_BODY_LIMIT,
    HEADER_METADATA_LIMIT,
    MAX_COMMAND_SIZE,
    RESPONSE_FLUSH_DELAY,
    ResponseBuffer,
    connect_headers_for_listener,
    inline_request_possible,
    reason_phrase,
    request_headers_for_listener,
    response_has_body,
    response_headers_for_sender,
    REASON_LIMIT,
    sanitize_reason,
)
from txhyco.protocol.messages import (
    Accept,
    Headers,
    RenewToken,
    Request,
    Response,
    serialize_command,
)

VIA = "1.1 ns.example"


def test_constants():
    assert CONTROL_CHANNEL_BODY_LIMIT == 65536
    assert MAX_COMMAND_SIZE == 65536
    assert HEADER_METADATA_LIMIT == 32768
    assert relay_http.RESPONSE_DEADLINE == 60.0
    assert relay_http.STREAM_IDLE_LIMIT == 60.0
    assert relay_http.ACCEPT_TIMEOUT == 30.0
    assert RESPONSE_FLUSH_DELAY == 2.0
    assert "host" not in CONNECTION_HEADERS
    assert {"connection", "content-length", "te", "trailer", "transfer-encoding", "upgrade", "close"} <= CONNECTION_HEADERS


# -- request headers (Hybrid Connections protocol, "Request operation" and "Request message")

SENDER_HEADERS = [
    ("Host", "contoso.servicebus.windows.net"),
    ("Content-Type", "application/json"),
    ("Content-Length", "12"),
    ("Transfer-Encoding", "chunked"),
    ("Connection", "keep-alive, X-Hop"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-T"),
    ("Upgrade", "h2c"),
    ("X-Hop", "dropped"),
    ("Accept", "text/html"),
    ("accept", "application/json"),
    ("ServiceBusAuthorization", "SharedAccessSignature sr=a&sig=b"),
    ("Authorization", "Bearer app-token"),
]


def test_request_headers_filtering():
    h = request_headers_for_listener(SENDER_HEADERS, via=VIA, consume_authorization=False)
    assert h == Headers(
        [
            ("Host", "contoso.servicebus.windows.net"),
            ("Content-Type", "application/json"),
            ("Accept", "text/html, application/json"),
            ("Authorization", "Bearer app-token"),
            ("Via", VIA),
        ]
    )
    assert list(h)[-1] == "Via"


def test_request_headers_authorization_consumed_and_host_dropped():
    h = request_headers_for_listener(SENDER_HEADERS, via=VIA, consume_authorization=True, keep_host=False)
    assert "authorization" not in h and "servicebusauthorization" not in h and "host" not in h
    assert h["accept"] == "text/html, application/json"


def test_service_bus_authorization_always_removed_any_case():
    h = request_headers_for_listener([("servicebusauthorization", "x")], via=VIA, consume_authorization=False)
    assert list(h) == ["Via"]


def test_via_appended_in_place():
    h = request_headers_for_listener(
        [("Via", "1.0 fred"), ("X", "1"), ("via", "1.1 p.example")], via=VIA, consume_authorization=False
    )
    assert h.items() == (("Via", f"1.0 fred, 1.1 p.example, {VIA}"), ("X", "1"))


def test_connection_nominated_headers_removed_case_insensitive():
    h = request_headers_for_listener(
        [("connection", "X-Foo ,, x-bar"), ("X-FOO", "1"), ("X-Bar", "2"), ("X-Baz", "3")],
        via=VIA,
        consume_authorization=False,
    )
    assert list(h) == ["X-Baz", "Via"]


def test_request_headers_bytes_accepted():
    h = request_headers_for_listener(
        [(b"Host", b"h"), (b"X-Utf8", "é".encode()), (b"X-Latin", b"\xe9")], via=VIA, consume_authorization=False
    )
    assert h["x-utf8"] == "é" and h["x-latin"] == "é"


@pytest.mark.parametrize(
    "pair",
    [
        ("X-A", "v\r\nX-Injected: 1"),
        ("X-A", "v\x00"),
        ("X-A\r\n", "v"),
        ("X A", "v"),
        ("", "v"),
        (b"X-A", b"v\nw"),
    ],
)
def test_request_header_smuggling_rejected(pair):
    with pytest.raises(ProtocolError) as info:
        request_headers_for_listener([pair], via=VIA, consume_authorization=False)
    assert info.value.status == 400
    with pytest.raises(ProtocolError):
        connect_headers_for_listener([pair])


def test_bad_header_shapes_rejected():
    with pytest.raises(ProtocolError):
        request_headers_for_listener([("a", "b", "c")], via=VIA, consume_authorization=False)  # type: ignore[list-item]
    with pytest.raises(ProtocolError):
        request_headers_for_listener([(1, "b")], via=VIA, consume_authorization=False)  # type: ignore[list-item]
    with pytest.raises(ProtocolError):
        request_headers_for_listener([], via="bad\r\nvia", consume_authorization=False)


# -- connect headers (Hybrid Connections protocol, "Accept handshake") -----------------


def test_connect_headers_canonical_casing():
    h = connect_headers_for_listener(
        [
            ("host", "ns:443"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "k=="),
            ("Sec-Websocket-Version", "13"),
            ("sec-websocket-protocol", "chat"),
            ("Sec-WebSocket-Protocol", "superchat"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("servicebusauthorization", "secret"),
            ("Authorization", "app"),
            ("x-custom", "v"),
        ]
    )
    assert h.items() == (
        ("Host", "ns:443"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "k=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Authorization", "app"),
        ("x-custom", "v"),
    )
    kept = connect_headers_for_listener([("ServiceBusAuthorization", "s")], strip_auth=False)
    assert kept["servicebusauthorization"] == "s"


# -- response headers (Hybrid Connections protocol, "Responding to requests" and "HTTP request protocol")


def test_response_headers_for_sender():
    h = Headers(
        [
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("connection", "close, x-private"),
            ("x-private", "p"),
            ("set-cookie", "a=1, b=2"),
        ]
    )
    assert response_headers_for_sender(h, via=VIA) == [
        ("content-type", "text/plain"),
        ("set-cookie", "a=1, b=2"),
        ("Via", VIA),
    ]
    assert response_headers_for_sender(Headers({"Via": "1.1 l"}), via=VIA) == [("Via", f"1.1 l, {VIA}")]


# -- status line and body rules ---------------------------------------------


def test_reason_phrases():
    assert reason_phrase(200) == "OK"
    assert reason_phrase(201) == "Created"
    assert reason_phrase(599) == ""
    assert sanitize_reason(None, 201) == "Created"
    assert sanitize_reason("", 404) == "Not Found"
    assert sanitize_reason("  ", 404) == "Not Found"
    assert sanitize_reason("Custom\r\nX-Injected: 1", 200) == "CustomX-Injected: 1"
    assert sanitize_reason("\r\n", 500) == "Internal Server Error"
    assert sanitize_reason("Tab\tok", 200) == "Tab\tok"
    assert sanitize_reason(None, 799) == ""
    assert sanitize_reason("x" * 60000, 200) == "x" * REASON_LIMIT  # a peer's novel is cut short
    assert sanitize_reason("\x00" * 3000 + "ok", 200) == "OK"  # (what is left of its start)


@pytest.mark.parametrize(
    "method, status, expected",
    [
        ("GET", 200, True),
        ("HEAD", 200, False),
        ("POST", 204, False),
        ("GET", 304, False),
        ("GET", 100, False),
        ("GET", 199, False),
        ("GET", 205, True),
        ("DELETE", 500, True),
    ],
)
def test_response_has_body(method, status, expected):
    assert response_has_body(method, status) is expected


def test_inline_decision_boundaries():
    assert inline_request_possible(0)
    assert inline_request_possible(65536)
    assert not inline_request_possible(65537)
    assert not inline_request_possible(None)  # chunked, or no length known
    assert not inline_request_possible(-1)


# -- ResponseBuffer (Hybrid Connections protocol, "Responding via rendezvous") ---------


def test_response_buffer_small_response():
    buf = ResponseBuffer()
    assert buf.write(b"hello") is False
    assert buf.write(b"") is False
    assert buf.take() == b"hello"
    assert buf.take() == b""


def test_response_buffer_overflow_at_boundary():
    buf = ResponseBuffer()
    assert buf.write(b"a" * (CONTROL_CHANNEL_BODY_LIMIT - 1)) is False
    assert buf.write(b"b") is False  # exactly the limit still fits
    assert buf.write(b"c") is True
    assert buf.write(bytearray(b"d")) is True
    data = buf.take()
    assert len(data) == CONTROL_CHANNEL_BODY_LIMIT + 2 and data.endswith(b"cd")
    assert buf.write(b"e") is True  # sticky: the response is on a rendezvous now


def test_response_buffer_single_chunk_not_copied():
    chunk = b"x" * 1000
    buf = ResponseBuffer()
    buf.write(chunk)
    assert buf.take() is chunk


# -- ChannelReader (Hybrid Connections protocol, "Request message" and "Responding via rendezvous")

REQ_BODY = Request("wss://a", "r1", "/hc/x", "POST", Headers({"Content-Type": "text/plain"}), True)
REQ_NOBODY = Request("wss://a", "r2", "/hc/x", "GET", Headers(), False)
REQ_ADDR = Request("wss://a", "r3")
ACCEPT = Accept("wss://a", "c1", Headers({"Sec-WebSocket-Key": "k"}))
RESP_BODY = Response("r1", 200, "OK", Headers(), True)
RESP_NOBODY = Response("r1", 204, None, Headers(), False)
RENEW = RenewToken("SharedAccessSignature sr=x")


def feed(reader, *steps):
    events = []
    for step in steps:
        if isinstance(step, tuple):
            name, arg = step
            events.extend(getattr(reader, name)(arg))
        else:
            events.extend(getattr(reader, step)())
    return events


def text(cmd):
    return ("text", serialize_command(cmd))


def test_inline_request_with_body():
    reader = ChannelReader("listener")
    events = feed(reader, text(REQ_BODY), "binary_begin", ("binary_data", b"hello"), "binary_end")
    assert events == [CommandReceived(REQ_BODY), BodyStarted(REQ_BODY), BodyData(b"hello"), BodyEnded()]
    assert feed(reader, text(REQ_NOBODY)) == [CommandReceived(REQ_NOBODY)]  # the body is over: commands again


def test_whole_binary_message_api():
    reader = ChannelReader("listener")
    assert feed(reader, text(REQ_BODY), ("binary", b"hi")) == [
        CommandReceived(REQ_BODY), BodyStarted(REQ_BODY), BodyData(b"hi"), BodyEnded(),
    ]
    assert feed(reader, text(REQ_BODY), ("binary", b"")) == [
        CommandReceived(REQ_BODY), BodyStarted(REQ_BODY), BodyEnded(),
    ]
    assert feed(reader, text(REQ_NOBODY), ("binary", b"")) == [CommandReceived(REQ_NOBODY)]
    with pytest.raises(ProtocolError):
        reader.binary(b"x")


def test_fragmented_body_is_not_copied():
    reader = ChannelReader("relay")
    parts = [b"a" * 10, b"", b"b" * 20, b"c"]
    events = feed(reader, text(RESP_BODY), "binary_begin", *[("binary_data", p) for p in parts], "binary_end")
    data = [e.data for e in events if isinstance(e, BodyData)]
    assert data == [parts[0], parts[2], parts[3]]
    assert data[0] is parts[0]
    assert events[-1] == BodyEnded()


def test_empty_body():
    reader = ChannelReader("relay")
    events = feed(reader, text(RESP_BODY), "binary_begin", ("binary_data", b""), "binary_end")
    assert events == [CommandReceived(RESP_BODY), BodyStarted(RESP_BODY), BodyEnded()]


def test_node_stray_empty_binary_after_body_false_dropped():
    reader = ChannelReader("relay")
    events = feed(reader, text(RESP_NOBODY), "binary_begin", ("binary_data", b""), "binary_end", text(RESP_NOBODY))
    assert events == [CommandReceived(RESP_NOBODY), CommandReceived(RESP_NOBODY)]
    # also with no data call at all
    assert feed(reader, "binary_begin", "binary_end") == []


def test_non_empty_stray_binary_rejected():
    reader = ChannelReader("relay")
    feed(reader, text(RESP_NOBODY), "binary_begin")
    with pytest.raises(ProtocolError, match="no body"):
        reader.binary_data(b"x")
    with pytest.raises(ProtocolError):  # stays failed
        reader.text(serialize_command(RESP_NOBODY))


def test_text_where_body_expected_rejected():
    reader = ChannelReader("listener")
    reader.text(serialize_command(REQ_BODY))
    with pytest.raises(ProtocolError, match="body"):
        reader.text(serialize_command(REQ_NOBODY))


def test_text_inside_body_rejected():
    reader = ChannelReader("listener")
    feed(reader, text(REQ_BODY), "binary_begin", ("binary_data", b"x"))
    with pytest.raises(ProtocolError):
        reader.text(serialize_command(REQ_NOBODY))


def test_close_ends_response_body_java():
    reader = ChannelReader("relay")
    events = feed(reader, text(RESP_BODY), "binary_begin", ("binary_data", b"abc"), "closed")
    assert events == [CommandReceived(RESP_BODY), BodyStarted(RESP_BODY), BodyData(b"abc"), BodyEnded(by_close=True)]
    assert reader.closed() == []
    with pytest.raises(ProtocolError, match="after the channel closed"):
        reader.text(serialize_command(RESP_BODY))


def test_close_before_response_body_began_ends_it_empty():
    reader = ChannelReader("relay")
    events = feed(reader, text(RESP_BODY), "closed")
    assert events == [CommandReceived(RESP_BODY), BodyStarted(RESP_BODY), BodyEnded(by_close=True)]


def test_request_body_interrupted_by_close():
    reader = ChannelReader("listener")
    feed(reader, text(REQ_BODY), "binary_begin", ("binary_data", b"part"))
    with pytest.raises(ProtocolError, match="request body"):
        reader.closed()
    reader = ChannelReader("listener")
    reader.text(serialize_command(REQ_BODY))
    with pytest.raises(ProtocolError):
        reader.closed()


def test_close_when_idle_and_messages_after_close():
    reader = ChannelReader("listener")
    assert reader.closed() == []
    with pytest.raises(ProtocolError, match="after the channel closed"):
        reader.text(serialize_command(ACCEPT))


def test_direction_rules():
    listener = ChannelReader("listener")
    assert feed(listener, text(ACCEPT), text(REQ_ADDR), text(REQ_NOBODY)) == [
        CommandReceived(ACCEPT), CommandReceived(REQ_ADDR), CommandReceived(REQ_NOBODY),
    ]
    for cmd in (RESP_NOBODY, RENEW):
        with pytest.raises(ProtocolError, match="direction"):
            ChannelReader("listener").text(serialize_command(cmd))
    relay = ChannelReader("relay")
    assert feed(relay, text(RENEW), text(RESP_NOBODY)) == [CommandReceived(RENEW), CommandReceived(RESP_NOBODY)]
    for cmd in (ACCEPT, REQ_NOBODY):
        with pytest.raises(ProtocolError):
            ChannelReader("relay").text(serialize_command(cmd))
    rendezvous = ChannelReader(accept=[Response])
    with pytest.raises(ProtocolError):
        rendezvous.text(serialize_command(RENEW))
    with pytest.raises(ValueError):
        ChannelReader("sender")


def test_address_only_request_expects_no_body():
    reader = ChannelReader("listener")
    assert feed(reader, text(REQ_ADDR)) == [CommandReceived(REQ_ADDR)]
    assert feed(reader, text(REQ_NOBODY)) == [CommandReceived(REQ_NOBODY)]  # no body awaited


def test_binary_protocol_misuse():
    for steps in (["binary_data"], ["binary_end"], ["binary_begin", "binary_begin"]):
        reader = ChannelReader("relay")
        with pytest.raises(ProtocolError):
            for step in steps:
                if step == "binary_data":
                    reader.binary_data(b"x")
                else:
                    getattr(reader, step)()


def test_garbage_text_rejected():
    with pytest.raises(ProtocolError):
        ChannelReader("relay").text("not json")
    with pytest.raises(ProtocolError):
        ChannelReader("relay").text(b"\xff")


# -- property test: any event sequence only ever raises ProtocolError ------------

valid_texts = st.sampled_from(
    [serialize_command(c) for c in (REQ_BODY, REQ_NOBODY, REQ_ADDR, ACCEPT, RESP_BODY, RESP_NOBODY, RENEW)]
)
steps = st.one_of(
    st.tuples(st.just("text"), valid_texts | st.text(max_size=20) | st.binary(max_size=20)),
    st.tuples(st.just("binary_data"), st.sampled_from([b"", b"x", b"hello"])),
    st.tuples(st.just("binary"), st.sampled_from([b"", b"body"])),
    st.sampled_from(["binary_begin", "binary_end", "closed"]),
)


@settings(deadline=None)
@given(st.sampled_from(["listener", "relay"]), st.lists(steps, max_size=25))
def test_event_sequences_only_raise_protocol_error(role, sequence):
    reader = ChannelReader(role)
    in_body = False
    for step in sequence:
        try:
            events = feed(reader, step)
        except ProtocolError:
            continue
        for event in events:
            if isinstance(event, BodyStarted):
                assert not in_body
                in_body = True
            elif isinstance(event, BodyData):
                assert in_body and event.data
            elif isinstance(event, BodyEnded):
                assert in_body
                in_body = False
            else:
                assert isinstance(event, CommandReceived)
                assert not in_body
