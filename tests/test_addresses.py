"""Addressing (Hybrid Connections protocol, "Protocol reference"): namespaces, entity
paths, URLs, sb-hc-* parameters."""
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from txhyco.protocol.addresses import (
    DEFAULT_DOMAIN,
    Namespace,
    append_relay_token,
    connect_url,
    create_relay_base_uri,
    create_relay_http_uri,
    create_relay_listen_uri,
    create_relay_send_uri,
    encode_entity_path,
    entity_path_candidates,
    http_url,
    listen_url,
    parse_relay_target,
    percent_decode,
    query_value,
    reject_parameters,
    reject_url,
    relative_target,
    rendezvous_url,
    strip_reserved_query,
)
from txhyco.protocol.errors import ProtocolError

NS = Namespace.parse("myns")
LOCAL = Namespace.parse("127.0.0.1:9090", secure=False)


# ---------------------------------------------------------------- Namespace


@pytest.mark.parametrize(
    "text, host, port, secure",
    [
        ("myns", "myns.servicebus.windows.net", None, True),
        ("MyNs.ServiceBus.Windows.Net", "myns.servicebus.windows.net", None, True),
        ("  myns.servicebus.windows.net ", "myns.servicebus.windows.net", None, True),
        ("127.0.0.1:9090", "127.0.0.1", 9090, True),
        ("localhost:9090", "localhost", 9090, True),
        ("[::1]:9090", "::1", 9090, True),
        ("[::1]", "::1", None, True),
        ("sb://myns.servicebus.windows.net/", "myns.servicebus.windows.net", None, True),
        ("sb://localhost:9090", "localhost", 9090, True),
        ("SB://LOCALHOST/", "localhost", None, True),
        ("wss://h.example:8443/", "h.example", 8443, True),
        ("ws://h.example", "h.example", None, False),
        ("https://h.example", "h.example", None, True),
        ("http://[::1]:80/", "::1", 80, False),
    ],
)
def test_namespace_parse(text, host, port, secure):
    assert Namespace.parse(text) == Namespace(host, port, secure)


def test_namespace_secure_argument():
    assert Namespace.parse("sb://h/", secure=False).secure is False
    assert Namespace.parse("h:1", secure=False).secure is False
    assert Namespace.parse("wss://h/", secure=False).secure is True
    assert Namespace.parse("http://h/", secure=True).secure is False


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "host:", "host:0", "host:65536", "host:abc", "host:١٢", "::1", "::1:9090", "[::1", "[::1]x",
        "[]:1", "[fe80::1%eth0]:1", "sb://h/path", "sb://h/?q", "sb://h/#f", "ftp://h/", "sb://", "sb://u@h/",
        "my ns", "-bad", "a..b", "a/b", "caf\u00e9.example", "a" * 64 + ".com", "sb://h:99999/", "h@x",
    ],
)
def test_namespace_parse_errors(text):
    with pytest.raises(ProtocolError) as info:
        Namespace.parse(text)
    assert info.value.status == 400


def test_namespace_properties():
    assert NS.authority == "myns.servicebus.windows.net"
    assert NS.ws_base == "wss://myns.servicebus.windows.net"
    assert NS.http_base == "https://myns.servicebus.windows.net"
    assert NS.effective_port == 443
    assert NS.sb_url == "sb://myns.servicebus.windows.net/"
    assert LOCAL.authority == "127.0.0.1:9090" and LOCAL.ws_base == "ws://127.0.0.1:9090"
    assert LOCAL.http_base == "http://127.0.0.1:9090" and LOCAL.effective_port == 9090
    v6 = Namespace.parse("[::1]:9090")
    assert v6.authority == "[::1]:9090" and v6.ws_base == "wss://[::1]:9090"
    assert Namespace("h", None, False).effective_port == 80
    assert DEFAULT_DOMAIN == "servicebus.windows.net"


def test_namespace_constructor_validates():
    with pytest.raises(ProtocolError):
        Namespace("")
    with pytest.raises(ProtocolError):
        Namespace("h", 0)
    with pytest.raises(ProtocolError):
        Namespace("h", True)


# ---------------------------------------------------------------- entity paths


def test_encode_entity_path():
    assert encode_entity_path("myhc") == "myhc"
    assert encode_entity_path("/a/b/") == "a/b"
    assert encode_entity_path("my hc/é?#%$") == "my%20hc/%C3%A9%3F%23%25$"
    assert encode_entity_path("a+b;c=d@e:f") == "a+b;c=d@e:f"
    for bad in ["", "/", "a//b", "a/./b", "..", "\ud800", "$hc/x", "$HC"]:
        with pytest.raises(ProtocolError):
            encode_entity_path(bad)


def test_percent_decode_undoes_encode_entity_path():
    assert percent_decode("my%20hc/%C3%A9$") == "my hc/é$"
    assert percent_decode("a+b") == "a+b"
    for bad in ["%", "%2", "%zz", "%FF", "%C3"]:
        with pytest.raises(ProtocolError):
            percent_decode(bad)


def test_entity_path_candidates():
    assert entity_path_candidates("a/b/c") == ["a/b/c", "a/b", "a"]
    assert entity_path_candidates("/a/") == ["a"]
    assert entity_path_candidates("") == []


# ----------------------------- queries (Hybrid Connections protocol, "Request message")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("sb-hc-undefined", "sb-hc-undefined"),
        ("&&&", "&&&"),
        ("a=1&a=1&b", "a=1&a=1&b"),
        ("sb-hc-action=listen&sb-hc-id=x", ""),
        ("a=1&SB-HC-Token=x&b=2", "a=1&b=2"),
        ("api-version=2016-07&sb-hc-token=x", "api-version=2016-07"),
        ("x=%22%3C&sb-hc-id=1&y=%c3%b8+z", "x=%22%3C&y=%c3%b8+z"),
        ("sb-hc-=1&sb-hcx=2", "sb-hcx=2"),
        ("", ""),
    ],
)
def test_strip_reserved_query(query, expected):
    assert strip_reserved_query(query) == expected


@pytest.mark.parametrize(
    "target, entity, expected",
    [
        ("/myhc/index.html", "myhc", "/index.html"),
        ("/myhc", "myhc", "/"),
        ("/myhc?x=1", "myhc", "/?x=1"),
        ("/MyHC/a/b?x=1&y", "myhc", "/a/b?x=1&y"),
        ("/$hc/myhc/room?x=1", "myhc", "/room?x=1"),
        ("/$hc/myhc", "myhc", "/"),
        ("/$hc/a/b/c", "a/b", "/c"),
        ("/myhcroom", "myhc", "/myhcroom"),
        ("/$hc/myhcroom", "myhc", "/myhcroom"),
        ("/other/x", "myhc", "/other/x"),
        ("*", "myhc", "*"),
        ("", "myhc", "/"),
        ("/caf%C3%A9/x", "café", "/x"),
    ],
)
def test_relative_target(target, entity, expected):
    assert relative_target(target, entity) == (expected, "/" + encode_entity_path(entity))


def test_query_value():
    q = "a=1&SB-HC-ID=abc&sb-hc-token=Shared%20x%2By+z&b&sb-hc-statusDescription=Rejected+by%20user"
    assert query_value(q, "a") == "1"
    assert query_value(q, "A") is None
    assert query_value(q, "sb-hc-id") == "abc"
    assert query_value(q, "sb-hc-token") == "Shared x+y+z"
    assert query_value(q, "b") == ""
    assert query_value(q, "sb-hc-statusDescription", form=True) == "Rejected by user"
    assert query_value("a=1&a=2", "a") == "1"
    with pytest.raises(ProtocolError):
        query_value("sb-hc-id=%zz", "sb-hc-id")


# --------------------- URL builders (Hybrid Connections protocol, "Protocol reference")


def test_listen_url():
    assert listen_url(NS, "myhc") == "wss://myns.servicebus.windows.net/$hc/myhc?sb-hc-action=listen"
    assert listen_url(LOCAL, "a b", tracking_id="id 1", token="tok&=", query="x=1&sb-hc-action=bad") == (
        "ws://127.0.0.1:9090/$hc/a%20b?x=1&sb-hc-action=listen&sb-hc-id=id%201&sb-hc-token=tok%26%3D"
    )


def test_connect_url():
    assert connect_url(NS, "hc", suffix="/api/x", query="?q=1", token="t") == (
        "wss://myns.servicebus.windows.net/$hc/hc/api/x?q=1&sb-hc-action=connect&sb-hc-token=t"
    )
    assert connect_url(NS, "hc", suffix="api", tracking_id="g") == (
        "wss://myns.servicebus.windows.net/$hc/hc/api?sb-hc-action=connect&sb-hc-id=g"
    )
    assert connect_url(NS, "hc", suffix="/a b?#", query="x=a b#") == (
        "wss://myns.servicebus.windows.net/$hc/hc/a%20b%3F%23?x=a%20b%23&sb-hc-action=connect"
    )
    # Existing escapes are kept; a lone '%' is escaped so the URL stays valid.
    assert connect_url(NS, "hc", suffix="/%41%", query="p=100%&q=%2B") == (
        "wss://myns.servicebus.windows.net/$hc/hc/%41%25?p=100%25&q=%2B&sb-hc-action=connect"
    )


def test_http_url():
    assert http_url(NS, "hc") == "https://myns.servicebus.windows.net/hc"
    assert http_url(LOCAL, "hc", suffix="/x", query="a=1", token="S t") == "http://127.0.0.1:9090/hc/x?a=1&sb-hc-token=S%20t"
    assert http_url(NS, "hc", token="t") == "https://myns.servicebus.windows.net/hc?sb-hc-token=t"


def test_rendezvous_url():
    url = rendezvous_url(NS, "hc", action="accept", rendezvous_id="abc_G1", suffix="/s", query="a=1&sb-hc-token=x")
    assert url == "wss://myns.servicebus.windows.net/$hc/hc/s?a=1&sb-hc-action=accept&sb-hc-id=abc_G1"
    assert rendezvous_url(LOCAL, "hc", action="request", rendezvous_id="r") == (
        "ws://127.0.0.1:9090/$hc/hc?sb-hc-action=request&sb-hc-id=r"
    )
    with pytest.raises(ProtocolError):
        rendezvous_url(NS, "hc", action="listen", rendezvous_id="r")


def test_reject_url():
    base = "wss://g.example:443/$hc/hc?sb-hc-action=accept&sb-hc-id=1"
    assert reject_url(base, 401, "Rejected by user code") == (
        base + "&sb-hc-statusCode=401&sb-hc-statusDescription=Rejected+by+user+code"
    )
    assert reject_url(base, 400, "a\r\nb & c+é") == base + "&sb-hc-statusCode=400&sb-hc-statusDescription=ab+%26+c%2B%C3%A9"
    assert reject_url("wss://h/x", 404, "") == "wss://h/x?sb-hc-statusCode=404&sb-hc-statusDescription="
    for bad in [99, 1000, "401", True, 401.0]:
        with pytest.raises(ProtocolError):
            reject_url(base, bad, "x")


# ---------------------------------------------------------------- relay target


def test_parse_relay_target_listen():
    t = parse_relay_target("/$hc/my%20hc?x=1&sb-hc-action=LISTEN&sb-hc-id=abc&sb-hc-token=Shared%20sr%3Da")
    assert t.hybrid and t.path == "my hc" and t.raw_path == "/$hc/my%20hc"
    assert t.query == "x=1&sb-hc-action=LISTEN&sb-hc-id=abc&sb-hc-token=Shared%20sr%3Da"
    assert t.app_query == "x=1" and t.action == "listen" and t.tracking_id == "abc"
    assert t.token == "Shared sr=a" and t.status_code is None and t.status_description is None
    assert "Shared" not in repr(t)


def test_parse_relay_target_variants():
    assert parse_relay_target("/%24hc/hc/sub").path == "hc/sub"
    assert parse_relay_target("/%24HC/hc").hybrid
    t = parse_relay_target("/hc/api/items?x=1")
    assert not t.hybrid and t.path == "hc/api/items" and t.action is None and t.app_query == "x=1"
    assert parse_relay_target("/").path == "" and parse_relay_target("/$hc").path == ""
    t = parse_relay_target("http://host:9/$hc/hc?sb-hc-action=connect")
    assert t.hybrid and t.path == "hc" and t.action == "connect"
    assert parse_relay_target("https://host?a=1").raw_path == "/"
    t = parse_relay_target("/$hc/hc?sb-hc-action=accept&sb-hc-id=1&sb-hc-statusCode=401&sb-hc-statusDescription=No+way%21")
    assert (t.status_code, t.status_description) == (401, "No way!")
    assert parse_relay_target("/hc/caf\u00e9").path == "hc/café"


_QUERY_KEYS = st.sampled_from(["sb-hc-action", "SB-HC-ACTION", "sb-hc-id", "Sb-Hc-Id", "sb-hc-token", "sb-hc-statusCode",
                                "sb-hc-statusdescription", "sb-hc-other", "x", "statusCode", ""])
_QUERY_VALUES = st.sampled_from(["", "accept", "connect", "a%20b", "401", "No+way%21", "1", "t%3Dk"])


@given(st.lists(st.tuples(_QUERY_KEYS, st.booleans(), _QUERY_VALUES), max_size=6))
@settings(max_examples=300, deadline=None)
def test_parse_relay_target_reads_the_query_as_query_value_and_raw_value_do(pairs):
    """The one-pass reading of sb-hc-* parameters agrees with the per-name functions, duplicates and bare keys included."""
    from txhyco.protocol.addresses import _lenient_form_decode, _raw_value

    query = "&".join(key + ("=" + value if equals else "") for key, equals, value in pairs)

    def expected():
        action = query_value(query, "sb-hc-action")
        status = _raw_value(query, "sb-hc-statusCode")
        if action is not None and action.lower() not in ("listen", "connect", "accept", "request"):
            raise ProtocolError("action")
        if status is not None and not (status.strip().isdigit() and len(status.strip()) == 3 and int(status) >= 100):
            raise ProtocolError("status")
        description = _raw_value(query, "sb-hc-statusDescription")
        return (action and action.lower(), query_value(query, "sb-hc-id"), query_value(query, "sb-hc-token"),
                None if status is None else int(status), None if description is None else _lenient_form_decode(description),
                strip_reserved_query(query))

    try:
        want = expected()
    except ProtocolError:
        with pytest.raises(ProtocolError):
            parse_relay_target("/$hc/x?" + query)
        return
    t = parse_relay_target("/$hc/x?" + query)
    assert (t.action, t.tracking_id, t.token, t.status_code, t.status_description, t.app_query) == want


@pytest.mark.parametrize(
    "target",
    [
        "", "hc", "*", "/a b", "/a\x00", "/a\tb", "/a\x7f", "/a#f", "/%zz", "/%FF", "/$hc/x?sb-hc-action=dance",
        "/$hc/x?sb-hc-action=", "/$hc/x?sb-hc-statusCode=abc", "/$hc/x?sb-hc-statusCode=4010",
        "/$hc/x?sb-hc-statusCode=099", "/$hc/x?sb-hc-token=%zz", "/\ud800",
    ],
)
def test_parse_relay_target_errors(target):
    with pytest.raises(ProtocolError) as info:
        parse_relay_target(target)
    assert info.value.status == 400


# -- reject detection (Hybrid Connections protocol, "Rejecting the socket"; Azure/azure-relay-node)


def test_reject_parameters():
    issued = "a=1&sb-hc-action=accept&sb-hc-id=x"
    assert reject_parameters(issued, issued) is None
    assert reject_parameters(issued, issued + "&sb-hc-statusCode=401&sb-hc-statusDescription=Rejected+by+user") == (
        401, "Rejected by user")
    assert reject_parameters(issued, issued + "&statusCode=403&statusDescription=Go%20away") == (403, "Go away")
    assert reject_parameters(issued, issued + "&sb-hc-statusCode=500") == (500, "")
    assert reject_parameters(issued, issued + "&SB-HC-STATUSCODE=404&sb-hc-statusdescription=%0D%0Ax%zz") == (
        404, "x%zz")
    # A sender's own statusCode parameter inside the issued query is not a reject.
    issued2 = "statusCode=401&sb-hc-action=accept&sb-hc-id=x"
    assert reject_parameters(issued2, issued2) is None
    assert reject_parameters(issued2, issued2 + "&statusCode=410") == (410, "")
    assert reject_parameters("sb-hc-id=x", "sb-hc-id=y&statusCode=401") is None
    for bad in ["&sb-hc-statusCode=x", "&statusCode=99", "&statusCode="]:
        with pytest.raises(ProtocolError):
            reject_parameters(issued, issued + bad)


def test_reject_url_round_trips_through_relay():
    address = rendezvous_url(LOCAL, "hc", action="accept", rendezvous_id="r1", query="q=1")
    issued_query = address.split("?", 1)[1]
    rejected = reject_url(address, 451, "Legal reasons: no")
    received_query = rejected.split("?", 1)[1]
    assert reject_parameters(issued_query, received_query) == (451, "Legal reasons: no")
    target = parse_relay_target(rejected.split("127.0.0.1:9090", 1)[1])
    assert (target.action, target.tracking_id, target.status_code, target.status_description) == (
        "accept", "r1", 451, "Legal reasons: no")


# ---------------------------------------------- Node-named helpers (Azure/azure-relay-node)


def test_node_helpers():
    assert create_relay_base_uri("contoso.servicebus.windows.net", "hc") == "wss://contoso.servicebus.windows.net:443/$hc/hc"
    assert create_relay_base_uri(LOCAL, "hc") == "ws://127.0.0.1:9090/$hc/hc"
    assert create_relay_base_uri("localhost:8443", "hc") == "wss://localhost:8443/$hc/hc"
    assert create_relay_listen_uri("myns", "hc") == "wss://myns.servicebus.windows.net:443/$hc/hc?sb-hc-action=listen"
    assert create_relay_listen_uri("ns.example", "hc", "S t", "i d") == (
        "wss://ns.example:443/$hc/hc?sb-hc-action=listen&sb-hc-token=S%20t&sb-hc-id=i%20d"
    )
    assert create_relay_send_uri("ns.example", "hc", token="t") == (
        "wss://ns.example:443/$hc/hc?sb-hc-action=connect&sb-hc-token=t"
    )
    assert create_relay_http_uri("ns.example", "hc") == "https://ns.example/hc"
    assert create_relay_http_uri(LOCAL, "hc") == "http://127.0.0.1:9090/hc"
    assert append_relay_token("https://ns/hc", "a b") == "https://ns/hc?sb-hc-token=a%20b"
    assert append_relay_token("https://ns/hc?x=1", "t", "id") == "https://ns/hc?x=1&sb-hc-token=t&sb-hc-id=id"
    assert append_relay_token("https://ns/hc?", "t") == "https://ns/hc?sb-hc-token=t"


# ---------------------------------------------------------------- properties

_segment = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10).filter(
    lambda s: "/" not in s and s not in (".", "..") and s.lower() != "$hc"
)
_entity = st.lists(_segment, min_size=1, max_size=4).map("/".join) | st.sampled_from(
    ["a b/c", "caf\u00e9/\u6f22\u5b57", "100%/x", "what?/is#this", "x/$hc", "$h/c", "a+b/c&d=e"]
)


@settings(deadline=None)
@given(_entity)
def test_entity_path_round_trip(path):
    encoded = encode_entity_path(path)
    assert encoded.isascii() and "?" not in encoded and "#" not in encoded and " " not in encoded
    assert percent_decode(encoded) == path


@settings(deadline=None)
@given(_entity, st.none() | st.text(max_size=20), st.none() | st.text(max_size=40))
def test_listen_url_parses_back(path, tracking_id, token):
    assume(tracking_id is None or tracking_id.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == tracking_id)
    assume(token is None or token.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == token)
    url = listen_url(LOCAL, path, tracking_id=tracking_id, token=token)
    target = parse_relay_target(url)
    assert target.hybrid and target.path == path and target.action == "listen"
    assert target.tracking_id == tracking_id and target.token == token and target.app_query == ""


@settings(deadline=None)
@given(_entity, st.text(max_size=20))
def test_http_url_parses_back(path, query):
    try:
        url = http_url(NS, path, query=query)
    except ProtocolError:
        return
    target = parse_relay_target(url)
    assert not target.hybrid and target.path == path


@settings(deadline=None)
@given(_entity, st.text(max_size=20), st.text(max_size=20))
def test_connect_url_parses_back(path, suffix, query):
    try:
        url = connect_url(LOCAL, path, suffix=suffix, query=query, tracking_id="t")
    except ProtocolError:
        return
    try:
        target = parse_relay_target(url)
    except ProtocolError:
        assert "%" in suffix  # a raw suffix may carry escapes that do not decode (e.g. %FF)
        return
    assert target.hybrid and target.action == "connect" and target.tracking_id == "t"
    assert target.path.startswith(path)
    assert strip_reserved_query(target.app_query) == target.app_query


@settings(deadline=None)
@given(
    host=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){1,3}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    secure=st.booleans(),
)
def test_namespace_round_trip(host, port, secure):
    ns = Namespace(host, port, secure)
    assert Namespace.parse(ns.ws_base) == ns
    assert Namespace.parse(ns.http_base) == ns
    assert Namespace.parse(ns.sb_url, secure=secure) == ns
    assert Namespace.parse(ns.authority, secure=secure) == ns


@settings(deadline=None)
@given(st.text())
def test_parsers_raise_only_protocol_error(text):
    for func in (
        Namespace.parse,
        percent_decode,
        encode_entity_path,
        parse_relay_target,
        lambda t: query_value(t, "sb-hc-token"),
        lambda t: query_value(t, "x", form=True),
        lambda t: reject_parameters("sb-hc-id=1", t),
        lambda t: reject_parameters("sb-hc-id=1", "sb-hc-id=1" + t),
        lambda t: listen_url(NS, "hc", query=t, token=t),
        lambda t: connect_url(NS, "hc", suffix=t, query=t),
        lambda t: reject_url("wss://h/?a", 400, t),
        lambda t: create_relay_listen_uri(t, "hc"),
    ):
        try:
            func(text)
        except ProtocolError:
            pass
    assert strip_reserved_query(text).count("&") <= text.count("&")
    entity_path_candidates(text)


@settings(deadline=None)
@given(st.lists(st.sampled_from(["a=1", "", "sb-hc-x=1", "SB-HC-id=2", "sb-hc-bare", "b", "a=1", "c=%20"]), max_size=8))
def test_strip_reserved_query_keeps_everything_else(pairs):
    expected = "&".join(p for p in pairs if not (p.lower().startswith("sb-hc-") and "=" in p))
    assert strip_reserved_query("&".join(pairs)) == expected


def test_a_bare_reserved_name_in_the_application_query_is_not_a_reserved_parameter():
    # Found by hypothesis: http_url kept "SB-HC-ACTION" (no '=') as application
    # query, and parsing it back read an empty, unknown action out of it.
    url = http_url(NS, "a", query="SB-HC-ACTION")
    target = parse_relay_target(url)
    assert target.action is None and target.app_query == "SB-HC-ACTION"
