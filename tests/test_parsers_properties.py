"""Any input to a parser yields a value or its documented error, never another exception.

The parsers with a property test of their own elsewhere (addresses, connection
strings, SAS tokens, commands, channel framing, endpoint strings, the relay's
TOML) are not repeated here; these are the rest that read what a peer or a user
wrote: header lists for the listener, names and targets, the relay's token
lookup, a rendezvous URL, the relay arguments of the public API, CLI addresses.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from txhyco.address import HybridConnection
from txhyco.cli.common import CliError, check_path, host_port
from txhyco.errors import RelayError
from txhyco.protocol.addresses import Namespace, check_entity_name, relative_target
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.grammar import FORBIDDEN_IN_VALUE
from txhyco.protocol.http import (
    connect_headers_for_listener,
    reason_phrase,
    request_headers_for_listener,
    response_headers_for_sender,
    sanitize_reason,
)
from txhyco.protocol.messages import Headers
from txhyco.protocol.sas import Rights
from txhyco.relay.auth import check_token, find_token, host_only
from txhyco.relay.config import HybridConnectionConfig, RelayConfig
from txhyco.relay.registry import Entity
from txhyco._twisted.handshake import split_ws_url

SETTINGS = settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])

#: Text with what a hostile peer puts in headers: CR, LF, NUL, colons, spaces, non-ASCII.
hostile_text = st.text(st.sampled_from("aZ09-_:; ,\t\r\n\x00\x7f\u00e9\u2028=/%"), max_size=12) | st.text(max_size=12)
header_part = hostile_text | st.binary(max_size=12)
pairs = st.lists(st.tuples(header_part, header_part), max_size=6)


def _checked_header_pairs(headers: Headers) -> None:
    for name, value in headers.items():
        assert name and ":" not in name and not any(c in name for c in " \t\r\n\x00")
        assert not FORBIDDEN_IN_VALUE.search(value), (name, value)


@SETTINGS
@given(pairs, st.booleans(), st.booleans())
def test_request_headers_for_the_listener_are_clean_or_refused(items, consume, keep_host):
    try:
        headers = request_headers_for_listener(items, via="1.1 relay", consume_authorization=consume, keep_host=keep_host)
    except ProtocolError as e:
        assert e.status == 400
        return
    _checked_header_pairs(headers)
    assert "servicebusauthorization" not in headers
    assert headers["via"].endswith("1.1 relay")


@SETTINGS
@given(pairs, st.booleans())
def test_connect_headers_for_the_listener_are_clean_or_refused(items, strip_auth):
    try:
        headers = connect_headers_for_listener(items, strip_auth=strip_auth)
    except ProtocolError:
        return
    _checked_header_pairs(headers)


@SETTINGS
@given(st.lists(st.tuples(hostile_text, hostile_text), max_size=6) | st.dictionaries(hostile_text, hostile_text, max_size=6)
       | st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=3), st.text(max_size=5)))
def test_headers_from_any_json_value_are_clean_or_refused(obj):
    try:
        headers = Headers.from_mapping(obj if not isinstance(obj, list) or not obj or isinstance(obj[0], int) else dict(obj))
    except ProtocolError:
        return
    _checked_header_pairs(headers)
    response_headers_for_sender(headers, via="1.1 relay")


@SETTINGS
@given(st.one_of(st.none(), hostile_text, st.text()), st.integers(-10, 1000))
def test_a_reason_phrase_is_always_one_clean_line(text, code):
    reason = sanitize_reason(text, code)
    assert not any(c in reason for c in "\r\n\x00")
    reason_phrase(code)


@SETTINGS
@given(st.text(max_size=40), st.text(max_size=20))
def test_names_and_targets_parse_or_raise_protocol_error(target, entity):
    for parse in (lambda: check_entity_name(target), lambda: relative_target(target, entity),
                  lambda: relative_target("/" + entity + target, entity)):
        try:
            parse()
        except ProtocolError:
            pass


@SETTINGS
@given(st.text(max_size=40))
def test_cli_paths_and_addresses_parse_or_raise_a_usage_error(text):
    for parse in (lambda: check_path(text), lambda: host_port(text), lambda: host_port(text, default_host="127.0.0.1")):
        try:
            parse()
        except CliError as e:
            assert e.exit_code == 2 and "\n" not in e.message


@SETTINGS
@given(st.text(max_size=60) | st.sampled_from(["ws://h/x", "wss://h:443/$hc/x?a=1", "ws://[::1]:9/", "ws://h:0/"]).map(
    lambda base: base) | st.builds(lambda a, b: f"ws://{a}/{b}", st.text(max_size=12), st.text(max_size=12)))
def test_rendezvous_addresses_split_or_raise_relay_error(url):
    try:
        secure, host, port, host_header, target = split_ws_url(url)
    except RelayError:
        return
    assert 0 < port < 65536 and host and target.startswith("/")
    assert not any(c in host_header + target for c in "\r\n\x00 ")


_CONFIG = RelayConfig.with_key("RootManageSharedAccessKey", "a-key-for-property-tests")
_ENTITY = Entity(HybridConnectionConfig("hc"))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["servicebusauthorization", "authorization", "x"]), hostile_text | st.text(), max_size=3),
       st.none() | st.text(max_size=60), st.booleans(), st.text(max_size=30), st.sampled_from(list(Rights)))
def test_the_relays_token_check_refuses_with_401_or_403_only(headers, query_token, http, host, required):
    assert host_only(host) is not None
    token = find_token(headers, query_token, http=http, consume_authorization=True)
    try:
        check_token(_CONFIG, _ENTITY, token, host=host_only(host), required=required, now=0)
    except ProtocolError as e:
        assert e.status in (401, 403)


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "connection_string": st.text(max_size=60) | st.just("Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey=k"),
    "namespace": st.text(max_size=20) | st.just("127.0.0.1:9"),
    "path": st.text(max_size=20),
    "key_name": st.text(max_size=10),
    "key": st.text(max_size=10),
    "token": st.text(max_size=30),
    "secure": st.booleans(),
}))
def test_the_public_relay_arguments_yield_a_hybrid_connection_or_protocol_error(args):
    try:
        hc = HybridConnection.from_args(environ={}, **args)
    except ProtocolError as e:
        assert e.message
        return
    assert isinstance(hc.namespace, Namespace) and hc.path is not None
    repr(hc)


@pytest.mark.parametrize("url", ["WS://\x00", "ws://h/a b", "ws://h/a\x00", "ws://h h/", "ws://h/\u00e9", "ws://h/?a=\x7f"])
def test_a_rendezvous_address_that_would_break_the_upgrade_request_is_refused(url):
    # Found by the property test above: urlsplit keeps NUL and spaces.
    with pytest.raises(RelayError, match="Not a WebSocket URL"):
        split_ws_url(url)


@pytest.mark.parametrize("text", ["\u00b2", "127.0.0.1:\u00b2", "1:\u0663"])
def test_a_port_of_digits_int_cannot_read_is_a_usage_error(text):
    # Found by the property test above: str.isdigit() takes superscripts and other scripts' digits.
    with pytest.raises(CliError, match="no valid port"):
        host_port(text, default_host="127.0.0.1")
