"""Tests for txhyco.protocol.messages: control-channel commands
(Hybrid Connections protocol, "Listener protocol")."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txhyco.protocol import messages
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.grammar import FORBIDDEN_IN_VALUE
from txhyco.protocol.messages import (
    MAX_COMMAND_SIZE,
    Accept,
    Headers,
    RemoteEndpoint,
    RenewToken,
    Request,
    Response,
    parse_command,
    serialize_command,
    serialize_request,
)

# -- example commands, shaped like those of Hybrid Connections protocol, "Listener protocol"

ACCEPT_EXAMPLE = """{"accept": {
  "address": "wss://gw.example:443/$hc/myhc/suffix?x=1&sb-hc-action=accept&sb-hc-id=4cb542c3-047a-4d40-a19f-bdc66441e736_G1",
  "id": "4cb542c3-047a-4d40-a19f-bdc66441e736_G1",
  "connectHeaders": {
    "Host": "contoso.servicebus.windows.net:443",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "l8fWd829IrZbEqUcLejv+Q==",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Protocol": "chat, superchat",
    "CustomHeader1": "Some value here; other-value/here."
  },
  "remoteEndpoint": {"address": "203.0.113.7", "port": 51234}
}}"""

REQUEST_EXAMPLE = """{"request": {
  "address": "wss://gw.example:443/$hc/myhc?sb-hc-action=request&sb-hc-id=42c34cb5-7a04-4d40-a19f-bdc66441e736_G10",
  "id": "42c34cb5-7a04-4d40-a19f-bdc66441e736_G10",
  "requestTarget": "/myhc/abc/def?myarg=value",
  "method": "POST",
  "remoteEndpoint": {"address": "10.0.0.1", "port": 1234},
  "requestHeaders": {"Host": "contoso.servicebus.windows.net", "Content-Type": "application/json", "User-Agent": "curl/8.0"},
  "body": true
}}"""

ADDRESS_ONLY_EXAMPLE = (
    '{"request": {"address": "wss://gw.example:443/$hc/myhc?sb-hc-action=request&sb-hc-id=abc", "id": "abc"}}'
)

RESPONSE_EXAMPLE = """{"response": {
  "requestId": "42c34cb5-7a04-4d40-a19f-bdc66441e736_G10",
  "statusCode": 200,
  "statusDescription": "OK",
  "responseHeaders": {"Content-Type": "application/json", "Content-Encoding": "gzip"},
  "body": true
}}"""

RENEW_EXAMPLE = (
    '{"renewToken": {"token": "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net'
    '%2Fmyhc%2F&sig=abc&se=1700003600&skn=RootManageSharedAccessKey"}}'
)


def test_accept_example():
    cmd = parse_command(ACCEPT_EXAMPLE)
    assert isinstance(cmd, Accept)
    assert cmd.id == "4cb542c3-047a-4d40-a19f-bdc66441e736_G1"
    assert cmd.address.startswith("wss://gw.example:443/$hc/myhc/suffix?x=1&")
    assert cmd.connect_headers["sec-websocket-protocol"] == "chat, superchat"
    assert list(cmd.connect_headers)[4] == "Sec-WebSocket-Version"
    assert cmd.remote_endpoint == RemoteEndpoint("203.0.113.7", 51234)


def test_request_example():
    cmd = parse_command(REQUEST_EXAMPLE)
    assert isinstance(cmd, Request)
    assert not cmd.address_only
    assert cmd.method == "POST"
    assert cmd.request_target == "/myhc/abc/def?myarg=value"
    assert cmd.body is True
    assert cmd.request_headers.get("content-type") == "application/json"
    assert cmd.remote_endpoint == RemoteEndpoint("10.0.0.1", 1234)


def test_address_only_request_example():
    cmd = parse_command(ADDRESS_ONLY_EXAMPLE)
    assert isinstance(cmd, Request)
    assert cmd.address_only
    assert cmd.method is None and cmd.body is None and cmd.request_target is None
    assert cmd.request_headers == Headers()
    assert serialize_command(cmd) == (
        '{"request":{"address":"wss://gw.example:443/$hc/myhc?sb-hc-action=request&sb-hc-id=abc","id":"abc"}}'
    )


def test_response_example_and_string_status():
    cmd = parse_command(RESPONSE_EXAMPLE)
    assert cmd == Response(
        "42c34cb5-7a04-4d40-a19f-bdc66441e736_G10",
        200,
        "OK",
        Headers([("Content-Type", "application/json"), ("Content-Encoding", "gzip")]),
        True,
    )
    as_string = parse_command(RESPONSE_EXAMPLE.replace('"statusCode": 200', '"statusCode": "200"'))
    assert as_string == cmd


def test_renew_token_example_and_redaction():
    cmd = parse_command(RENEW_EXAMPLE)
    assert isinstance(cmd, RenewToken)
    assert cmd.token.startswith("SharedAccessSignature sr=")
    assert "sig=" not in repr(cmd) and "Shared" not in repr(cmd)
    assert "redacted" in repr(cmd)


def test_dotnet_alphabetical_order_and_escaped_slashes():
    text = (
        '{"response":{"body":false,"requestId":"r1","responseHeaders":{"Location":"http:\\/\\/x\\/y"},'
        '"statusCode":201,"statusDescription":"Created"}}'
    )
    cmd = parse_command(text)
    assert cmd == Response("r1", 201, "Created", Headers({"Location": "http://x/y"}), False)
    accept = parse_command(
        '{"accept":{"address":"wss:\\/\\/h\\/$hc\\/x?sb-hc-action=accept","connectHeaders":{},'
        '"id":"i","remoteEndpoint":{"address":"::1","port":1}}}'
    )
    assert accept.address == "wss://h/$hc/x?sb-hc-action=accept"


def test_java_member_order():
    text = '{"response":{"requestId":"r","body":true,"statusCode":404,"statusDescription":"Not Found","responseHeaders":{}}}'
    assert parse_command(text) == Response("r", 404, "Not Found", Headers(), True)


def test_port_as_string_and_missing_optionals():
    cmd = parse_command('{"accept":{"address":"a","id":"i","remoteEndpoint":{"address":"1.2.3.4","port":"1234"}}}')
    assert cmd.remote_endpoint == RemoteEndpoint("1.2.3.4", 1234)
    assert cmd.connect_headers == Headers()
    resp = parse_command('{"response":{"requestId":"r","statusCode":204}}')
    assert resp == Response("r", 204, None, Headers(), False)
    req = parse_command('{"request":{"address":"a","id":"i","requestTarget":"/x","method":"GET","body":false}}')
    assert req.request_headers == Headers() and req.remote_endpoint is None


def test_null_optionals_are_absent():
    resp = parse_command(
        '{"response":{"requestId":"r","statusCode":200,"statusDescription":null,"responseHeaders":null,"body":null}}'
    )
    assert resp == Response("r", 200)


def test_full_request_without_body_member_is_normalised():
    # Node decides by "method"; .NET/Java by "body" — a method without body is full form, no body.
    req = parse_command('{"request":{"address":"a","id":"i","requestTarget":"/x","method":"GET"}}')
    assert not req.address_only and req.body is False


def test_unknown_keys_are_ignored():
    text = '{"request":{"address":"a","id":"i","extra":[1,{"x":2}],"requestTarget":"/","method":"GET","body":false},"other":{}}'
    assert parse_command(text) == Request("a", "i", "/", "GET", Headers(), False)


def test_node_non_string_header_values():
    text = json.dumps(
        {
            "response": {
                "requestId": "r",
                "statusCode": 200,
                "responseHeaders": {
                    "content-length": 12,
                    "x-float": 1.5,
                    "x-int-float": 2.0,
                    "x-bool": True,
                    "x-false": False,
                    "x-null": None,
                    "set-cookie": ["a=1", "b=2"],
                    "x-mixed": [1, True, None],
                },
                "body": True,
            }
        }
    )
    headers = parse_command(text).response_headers
    assert headers["content-length"] == "12"
    assert headers["x-float"] == "1.5"
    assert headers["x-int-float"] == "2"
    assert headers["x-bool"] == "true"
    assert headers["x-false"] == "false"
    assert headers["x-null"] == ""
    assert headers["set-cookie"] == "a=1, b=2"
    assert headers["x-mixed"] == "1, true"


def test_header_object_value_rejected():
    with pytest.raises(ProtocolError):
        parse_command('{"response":{"requestId":"r","statusCode":200,"responseHeaders":{"x":{"a":1}}}}')


@pytest.mark.parametrize(
    "name, value",
    [
        ("X-A", "a\r\nInjected: yes"),
        ("X-A", "a\nb"),
        ("X-A", "a\rb"),
        ("X-A", "a\x00b"),
        ("X-A", "a\x1bb"),
        ("X-A\r\nInjected", "v"),
        ("X A", "v"),
        ("X:A", "v"),
        ("", "v"),
        ("X\tA", "v"),
        ("Ünicode", "v"),
    ],
)
def test_header_smuggling_rejected(name, value):
    with pytest.raises(ProtocolError):
        Headers([(name, value)])
    text = json.dumps({"response": {"requestId": "r", "statusCode": 200, "responseHeaders": {name: value}}})
    with pytest.raises(ProtocolError):
        parse_command(text)


def test_request_target_and_method_smuggling_rejected():
    for target in ["/a b", "/a\r\nHost: evil", "relative", "", "/a\x00"]:
        with pytest.raises(ProtocolError):
            parse_command(json.dumps({"request": {"address": "a", "id": "i", "requestTarget": target, "method": "GET", "body": False}}))
    for method in ["GET /x HTTP/1.1\r\n", "", "G ET", 5]:
        with pytest.raises(ProtocolError):
            parse_command(json.dumps({"request": {"address": "a", "id": "i", "requestTarget": "/", "method": method, "body": False}}))


def test_status_description_control_chars_removed():
    resp = parse_command('{"response":{"requestId":"r","statusCode":200,"statusDescription":"O\\r\\nK"}}')
    assert resp.status_description == "OK"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "[]",
        '"accept"',
        "{}",
        '{"foo":{}}',
        '{"injectFault":{"delay":"00:01:00"}}',
        '{"accept":{"id":"i"},"request":{"address":"a","id":"i"}}',
        '{"accept":[]}',
        '{"accept":{"address":"a"}}',
        '{"accept":{"address":1,"id":"i"}}',
        '{"accept":{"address":"a","id":"i","connectHeaders":[]}}',
        '{"accept":{"address":"a","id":"i","remoteEndpoint":{"address":"x","port":70000}}}',
        '{"accept":{"address":"a","id":"i","remoteEndpoint":{"address":"x","port":"12a"}}}',
        '{"accept":{"address":"a","id":"i","remoteEndpoint":{"port":1}}}',
        '{"accept":{"address":"a","id":"i","remoteEndpoint":5}}',
        '{"request":{"address":"a","id":"i","body":true}}',
        '{"request":{"address":"a","id":"i","requestTarget":"/","method":"GET","body":"yes"}}',
        '{"response":{"requestId":"r"}}',
        '{"response":{"requestId":"r","statusCode":99}}',
        '{"response":{"requestId":"r","statusCode":1000}}',
        '{"response":{"requestId":"r","statusCode":true}}',
        '{"response":{"requestId":"r","statusCode":"OK"}}',
        '{"response":{"requestId":"r","statusCode":200.5}}',
        '{"response":{"requestId":"r","statusCode":NaN}}',
        '{"response":{"requestId":"r","statusCode":200,"statusDescription":5}}',
        '{"renewToken":{}}',
        '{"renewToken":{"token":null}}',
        "{" * 70000,
        "[" * 60000,
        '{"response":{"requestId":"r","statusCode":' + "9" * 5000 + "}}",
    ],
)
def test_invalid_commands(text):
    with pytest.raises(ProtocolError) as info:
        parse_command(text)
    assert info.value.status == 400
    assert str(info.value)


def test_bytes_input_and_bad_utf8():
    assert isinstance(parse_command(RESPONSE_EXAMPLE.encode()), Response)
    with pytest.raises(ProtocolError, match="UTF-8"):
        parse_command(b'{"renewToken":{"token":"\xff"}}')
    with pytest.raises(ProtocolError):
        parse_command(12)  # type: ignore[arg-type]


def test_size_limit():
    filler = "x" * (MAX_COMMAND_SIZE - len('{"renewToken":{"token":""}}'))
    exact = '{"renewToken":{"token":"%s"}}' % filler
    assert len(exact) == MAX_COMMAND_SIZE
    assert parse_command(exact) == RenewToken(filler)
    assert parse_command(exact.encode()) == RenewToken(filler)
    with pytest.raises(ProtocolError, match="limit"):
        parse_command(exact.replace('"x', '"xx'))
    # counted in UTF-8 bytes, not characters
    wide = '{"renewToken":{"token":"%s"}}' % ("é" * 33000)
    with pytest.raises(ProtocolError, match="limit"):
        parse_command(wide)


def test_serialize_shapes():
    accept = Accept("wss://h/$hc/x?a=1", "i", Headers([("Host", "h"), ("Sec-WebSocket-Key", "k")]), RemoteEndpoint("1.2.3.4", 5))
    assert serialize_command(accept) == (
        '{"accept":{"address":"wss://h/$hc/x?a=1","id":"i","connectHeaders":{"Host":"h","Sec-WebSocket-Key":"k"},'
        '"remoteEndpoint":{"address":"1.2.3.4","port":5}}}'
    )
    req = Request("wss://a", "i", "/x?y=1", "PUT", Headers({"A": "b"}), True, RemoteEndpoint("::1", 9))
    assert serialize_command(req) == (
        '{"request":{"address":"wss://a","id":"i","requestTarget":"/x?y=1","method":"PUT",'
        '"remoteEndpoint":{"address":"::1","port":9},"requestHeaders":{"A":"b"},"body":true}}'
    )
    resp = Response("i", 200, None, Headers(), False)
    assert serialize_command(resp) == '{"response":{"requestId":"i","statusCode":200,"responseHeaders":{},"body":false}}'
    resp = Response("i", 201, "Created", Headers({"X": "1"}), True)
    assert serialize_command(resp) == (
        '{"response":{"requestId":"i","statusCode":201,"statusDescription":"Created","responseHeaders":{"X":"1"},"body":true}}'
    )
    assert serialize_command(RenewToken("t")) == '{"renewToken":{"token":"t"}}'


def test_serialize_too_large():
    big = Headers([(f"X-{i}", "v" * 1000) for i in range(70)])
    with pytest.raises(ProtocolError, match="limit"):
        serialize_command(Request("a", "i", "/", "GET", big, False))
    with pytest.raises(ProtocolError):
        serialize_command("nope")  # type: ignore[arg-type]


def test_headers_mapping_behaviour():
    h = Headers([("Content-Type", "a"), ("X-Multi", "1"), ("x-multi", " 2 ")])
    assert h["content-type"] == "a" and h.get("CONTENT-TYPE") == "a"
    assert "x-MULTI" in h and "nope" not in h and 5 not in h
    assert h["X-Multi"] == "1, 2"
    assert list(h) == ["Content-Type", "X-Multi"]
    assert h.items() == (("Content-Type", "a"), ("X-Multi", "1, 2"))
    assert len(h) == 2
    assert h.get("missing") is None and h.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        h["missing"]
    reordered = Headers([("X-Multi", "1, 2"), ("Content-Type", "a")])
    assert h == reordered and hash(h) == hash(reordered)
    assert h != Headers([("content-type", "a"), ("X-Multi", "1, 2")])  # names compare case-sensitively
    assert h == {"Content-Type": "a", "X-Multi": "1, 2"}
    assert Headers.from_mapping({"A": 1}) == Headers([("A", "1")])
    assert Headers(h) == h and Headers.from_mapping(h) is h
    assert {h: 1}[reordered] == 1
    with pytest.raises(ProtocolError):
        Headers.from_mapping(["A", "b"])
    with pytest.raises(ProtocolError):
        Headers([("A",)])  # type: ignore[list-item]
    with pytest.raises(ProtocolError):
        Headers(5)  # type: ignore[arg-type]


def test_dataclasses_accept_plain_dicts_and_validate():
    assert Accept("a", "i", {"Host": "h"}).connect_headers == Headers({"Host": "h"})  # type: ignore[arg-type]
    assert Request("a", "i").address_only
    assert Request("a", "i", "/", "GET").body is False
    with pytest.raises(ProtocolError):
        Request("a", "i", None, "GET", body=False)
    with pytest.raises(ProtocolError):
        Request("a", "i", "/", None, body=True)
    with pytest.raises(ProtocolError):
        Response("r", 42)
    with pytest.raises(ProtocolError):
        Response("r", True)  # type: ignore[arg-type]


# -- property tests ----------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20)
safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.just("\t"), max_size=40
)
header_maps = st.lists(st.tuples(tokens, safe_text), max_size=6).map(Headers)
endpoints = st.none() | st.builds(RemoteEndpoint, safe_text, st.integers(0, 65535))
targets = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs"), blacklist_characters="\x7f"), max_size=30
).map(lambda t: "/" + t)

accepts = st.builds(Accept, safe_text, safe_text, header_maps, endpoints)
full_requests = st.builds(Request, safe_text, safe_text, targets, tokens, header_maps, st.booleans(), endpoints)
address_only_requests = st.builds(Request, safe_text, safe_text, remote_endpoint=endpoints)
responses = st.builds(
    Response, safe_text, st.integers(100, 999), st.none() | st.text(max_size=30), header_maps, st.booleans()
)
renewals = st.builds(RenewToken, st.text(max_size=100))
commands = st.one_of(accepts, full_requests, address_only_requests, responses, renewals)


@settings(deadline=None)
@given(commands)
def test_round_trip(cmd):
    text = serialize_command(cmd)
    assert text.isascii()
    assert parse_command(text) == cmd
    assert parse_command(text.encode()) == cmd


def _generic_request_json(cmd: Request) -> str:
    """A request command as json.dumps writes the dict of its members (what serialize_request must equal)."""
    inner = {"address": cmd.address, "id": cmd.id}
    if cmd.request_target is not None:
        inner["requestTarget"] = cmd.request_target
    if not cmd.address_only:
        inner["method"] = cmd.method
    if cmd.remote_endpoint is not None:
        inner["remoteEndpoint"] = {"address": cmd.remote_endpoint.address, "port": cmd.remote_endpoint.port}
    if not cmd.address_only or cmd.request_headers:
        inner["requestHeaders"] = dict(cmd.request_headers.items())
    if not cmd.address_only:
        inner["body"] = bool(cmd.body)
    return json.dumps({"request": inner}, separators=(",", ":"), ensure_ascii=True)


any_requests = st.one_of(
    st.builds(Request, st.text(), st.text(), targets, tokens, header_maps, st.booleans(), endpoints),
    st.builds(Request, st.text(), st.text(), st.none() | targets, request_headers=header_maps, remote_endpoint=endpoints),
)


@settings(deadline=None)
@given(any_requests)
def test_request_writer_matches_generic_encoder(cmd):
    expected = _generic_request_json(cmd)
    assert serialize_command(cmd) == expected
    assert serialize_request(
        cmd.address, cmd.id, request_target=cmd.request_target, method=cmd.method, request_headers=cmd.request_headers,
        body=cmd.body, remote_endpoint=cmd.remote_endpoint,
    ) == expected


def test_request_writer_unusual_types():
    # Not what the relay sends, but what the dataclass lets through: written as the generic encoder writes it.
    cmd = Request("a", 7, remote_endpoint=RemoteEndpoint("h", "80"))  # type: ignore[arg-type]
    assert serialize_command(cmd) == _generic_request_json(cmd) == '{"request":{"address":"a","id":7,"remoteEndpoint":{"address":"h","port":"80"}}}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4), st.sampled_from(["", " ", "\n", "x", "}", "{}"]),
       st.sampled_from(["", " "]))
def test_the_quick_object_read_is_json_loads_or_leaves_it_to_the_decoder(obj, after, before):
    text = before + json.dumps(obj) + after
    quick = messages._whole_object(text)
    if quick is not None:
        assert quick == json.loads(text) and not before and not after
    with pytest.raises(ProtocolError, match="NaN"):
        messages._whole_object('{"a":NaN}')


def _response_with(headers) -> str:
    return json.dumps({"response": {"requestId": "r", "statusCode": 200, "responseHeaders": headers}})


def test_repeated_header_objects_are_judged_alike():
    # Header objects seen before are reused (protocol.messages._seen): never
    # for values that are no strings, never for refused ones, and bounded.
    first = parse_command(_response_with({"A": "1", "B": "x"})).response_headers
    assert parse_command(_response_with({"A": "1", "B": "x"})).response_headers == first == Headers({"A": "1", "B": "x"})
    assert parse_command(_response_with({"A": 1, "B": "x"})).response_headers == first
    assert parse_command(_response_with({"A": True, "B": "x"})).response_headers["A"] == "true"
    assert parse_command(_response_with({"A": ["p", "q"]})).response_headers["A"] == "p, q"
    assert parse_command(_response_with({"A": ["p", "q"]})).response_headers["A"] == "p, q"
    for _ in range(2):
        with pytest.raises(ProtocolError, match="smuggling"):
            parse_command(_response_with({"A": "x\r\nB: y"}))
        with pytest.raises(ProtocolError, match="token"):
            parse_command(_response_with({"A B": "x"}))
    for n in range(messages._SEEN_LIMIT + 5):
        assert parse_command(_response_with({"N": str(n)})).response_headers["n"] == str(n)
    assert len(messages._seen) <= messages._SEEN_LIMIT


@settings(deadline=None)
@given(st.text())
def test_arbitrary_text_only_protocol_error(text):
    try:
        parse_command(text)
    except ProtocolError:
        pass


@settings(deadline=None)
@given(st.binary())
def test_arbitrary_bytes_only_protocol_error(data):
    try:
        parse_command(data)
    except ProtocolError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
member_names = st.sampled_from(
    ["address", "id", "connectHeaders", "remoteEndpoint", "requestTarget", "method", "requestHeaders",
     "body", "requestId", "statusCode", "statusDescription", "responseHeaders", "token", "port", "other"]
)


@settings(deadline=None)
@given(
    st.sampled_from(["accept", "request", "response", "renewToken", "x"]),
    st.dictionaries(member_names, json_values | st.dictionaries(member_names | tokens, json_values, max_size=3)),
)
def test_structured_garbage_only_protocol_error(key, members):
    try:
        parse_command(json.dumps({key: members}))
    except ProtocolError:
        pass


_header_name = st.text(st.sampled_from("aZ09-_!#~"), min_size=1, max_size=8)
_any_text = st.text(max_size=12).filter(lambda t: not FORBIDDEN_IN_VALUE.search(t))


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=40).filter(lambda t: not FORBIDDEN_IN_VALUE.search(t)), st.integers(100, 999),
       st.none() | _any_text, st.lists(st.tuples(_header_name, _any_text), max_size=6), st.booleans())
def test_a_response_is_written_as_the_json_encoder_writes_it(request_id, status, description, headers, body):
    # serialize_command writes a response's text directly (the listener's hot
    # path); it must be the encoder's, character for character.
    resp = Response(request_id, status, description, Headers(headers), body)
    inner = {"requestId": request_id, "statusCode": status}
    if description is not None:
        inner["statusDescription"] = resp.status_description
    inner["responseHeaders"] = resp.response_headers.to_dict()
    inner["body"] = body
    text = serialize_command(resp)
    assert text == json.dumps({"response": inner}, separators=(",", ":"), ensure_ascii=True)
    assert parse_command(text) == resp


def test_a_response_too_large_to_send_is_refused():
    big = Headers([(f"X-{i}", "v" * 1000) for i in range(70)])
    with pytest.raises(ProtocolError, match="response command would be .* the limit is 65536"):
        serialize_command(Response("i", 200, "OK", big, True))
