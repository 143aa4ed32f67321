"""The hyco: endpoint string is strict: a misspelt or empty option, a number out of range,
a key file that is not one line or a CA file without a certificate is an EndpointStringError."""
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.endpoints import _parse, clientFromString, serverFromString

from txhyco._twisted.endpointstring import EndpointStringError, parse_hyco
from txhyco.endpoint import client_from_args, server_from_args
from txhyco.protocol.tokens import SasKeyTokenProvider

BASE = "hyco:127.0.0.1\\:9090:hc:tls=no:key=c2VjcmV0"


@pytest.mark.parametrize("option, meant", [
    ("keepAlve=30", "keepAlive"),
    ("keyNam=send", "keyName"),
    ("caFil=x.pem", "caFile"),
    ("tsl=no", "tls"),
])
def test_misspelt_option_says_what_was_meant(option, meant):
    for parse in (serverFromString, clientFromString):
        with pytest.raises(EndpointStringError) as info:
            parse(reactor, f"{BASE}:{option}")
        message = str(info.value)
        name = option.split("=")[0]
        assert f"unknown option {name!r} (did you mean {meant!r}?)" in message
        assert ("known options: caFile, connectionStringEnv, inspect, inspectBodyCap, inspectKeep, keepAlive, key, keyEnv, "
                "keyFile, keyName, mode, path, proxy, tls") in message


@pytest.mark.parametrize("option, name, value", [
    ("keepalive=30", "keepalive", 30.0),
    ("KeepAlive=30", "keepalive", 30.0),
    ("MODE=stream", "mode", "stream"),
    ("keyname=send", "key_name", "send"),
])
def test_option_names_ignore_case(option, name, value):
    options = parse_hyco(("127.0.0.1:9090", "hc"), dict([option.split("=")] + [("key", "c2VjcmV0")]))
    assert options[name] == value


def test_an_option_twice_in_two_cases_is_refused():
    with pytest.raises(EndpointStringError, match="keepAlive= is given twice"):
        serverFromString(reactor, f"{BASE}:keepAlive=1:keepalive=2")


def test_unrelated_unknown_option_lists_the_known_ones():
    with pytest.raises(EndpointStringError) as info:
        serverFromString(reactor, f"{BASE}:colour=blue")
    assert "unknown option 'colour'; known options: caFile" in str(info.value)


@pytest.mark.parametrize("option, problem", [
    ("keepAlive=nan", "keepAlive='nan' must be more than 0 and at most 86400 seconds"),
    ("keepAlive=inf", "keepAlive='inf' must be more than 0"),
    ("keepAlive=1e400", "keepAlive='1e400' must be more than 0"),
    ("keepAlive=0", "keepAlive='0' must be more than 0"),
    ("keepAlive=-5", "must be more than 0"),
    ("keepAlive=100000", "at most 86400 seconds"),
    ("keepAlive=soon", "not a number of seconds"),
    ("caFile=", "caFile= has no value"),
    ("keyName=", "keyName= has no value"),
    ("mode=", "mode= has no value"),
    ("caFile=/nonexistent/ca.pem", "caFile: cannot read /nonexistent/ca.pem"),
])
def test_values_are_checked(option, problem):
    with pytest.raises(EndpointStringError) as info:
        serverFromString(reactor, f"{BASE}:{option}")
    assert problem in str(info.value)


def test_keep_alive_in_range_is_used():
    assert serverFromString(reactor, f"{BASE}:keepAlive=2.5").keepalive == 2.5


def test_key_file_must_hold_one_line(tmp_path):
    good = tmp_path / "good.key"
    good.write_text("\nc2VjcmV0\n\n")
    endpoint = serverFromString(reactor, f"hyco:127.0.0.1\\:9090:hc:tls=no:keyFile={good}")
    assert endpoint.hc.token_provider == SasKeyTokenProvider("RootManageSharedAccessKey", "c2VjcmV0")
    for name, content, problem in [
        ("two.key", "c2VjcmV0\nb3RoZXI=\n", "holds 2 lines"),
        ("pem.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", "holds 3 lines"),
        ("empty.key", "\n \n", "is empty"),
    ]:
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(EndpointStringError) as info:
            serverFromString(reactor, f"hyco:127.0.0.1\\:9090:hc:tls=no:keyFile={path}")
        assert f"keyFile: {path} {problem}" in str(info.value)
        assert "b3RoZXI" not in str(info.value) and "MIIE" not in str(info.value)
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(EndpointStringError, match="not UTF-8 text"):
        serverFromString(reactor, f"hyco:127.0.0.1\\:9090:hc:tls=no:keyFile={binary}")


def test_ca_file_must_hold_a_certificate(tmp_path):
    from txhyco.relay.tls import write_self_signed

    cert, _ = write_self_signed(str(tmp_path / "tls"))
    assert serverFromString(reactor, f"hyco:127.0.0.1\\:9090:hc:key=k:caFile={cert}").hc.ca_file == cert
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("just text\n")
    with pytest.raises(EndpointStringError, match="does not hold a PEM certificate"):
        serverFromString(reactor, f"hyco:127.0.0.1\\:9090:hc:key=k:caFile={not_pem}")


# -- any string ---------------------------------------------------------------------

OPTIONS = ["keyName", "key", "keyFile", "keyEnv", "tls", "caFile", "mode", "keepAlive", "connectionStringEnv", "path",
           "keepalive", "Key", "colour"]
VALUES = ["", "yes", "no", "0", "-1", "30", "nan", "1e999", "auto", "stream", "carrier-pigeon", "/nonexistent",
          "HYCO_TEST_SET", "HYCO_TEST_UNSET", "HYCO_TEST_CS", "c2VjcmV0", "a/b", "..", "%zz", "a\x00b", "\udcff"]
ENVIRON = {
    "HYCO_TEST_SET": "c2VjcmV0",
    "HYCO_TEST_CS": "Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
}
pieces = st.one_of(
    st.tuples(st.sampled_from(OPTIONS), st.sampled_from(VALUES)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["myns", "127.0.0.1\\:9090", "hc", "a/b", "", "bad host!", "[::1]\\:1"]),
    st.text(alphabet="ab:=\\/%.-_ \x00é", max_size=12),
)


def _check(args, kwargs):
    try:
        options = parse_hyco(tuple(args), dict(kwargs), environ=ENVIRON)
    except EndpointStringError as e:
        assert str(e) and "usage: hyco:" in str(e)
    else:
        assert options["mode"] in ("auto", "http", "websocket", "stream")


@settings(deadline=None, max_examples=400)
@given(st.lists(pieces, max_size=6))
def test_any_string_yields_an_endpoint_or_endpoint_string_error(parts):
    """Through Twisted's own tokenizer (strings it cannot tokenize never reach the plugin)."""
    text = "hyco:" + ":".join(parts)
    try:
        args, kwargs = _parse(text)
    except Exception:  # Twisted's tokenizer, before txhyco is asked (a trailing '\\' is its RuntimeError)
        assume(False)
    args = args[1:]  # args[0] is the "hyco" prefix
    _check(args, kwargs)
    for make in (server_from_args, client_from_args):
        try:
            endpoint = make(reactor, tuple(args), dict(kwargs))
        except EndpointStringError as e:
            assert "usage: hyco:" in str(e)
        else:
            assert endpoint.hc.path


@settings(deadline=None, max_examples=400)
@given(st.lists(st.text(max_size=10), max_size=4), st.dictionaries(st.sampled_from(OPTIONS) | st.text(max_size=6),
                                                                    st.text(max_size=10) | st.sampled_from(VALUES),
                                                                    max_size=5))
def test_any_parts_yield_options_or_endpoint_string_error(args, kwargs):
    _check(args, kwargs)
