"""The relay's TOML configuration: rules, named hybrid connections, anonymous senders, limits."""
from __future__ import annotations

import http.client
import tomllib

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import threads

from tests.support.rawlistener import RawListener, make_token
from tests.support.wsclient import HandshakeFailed, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights
from txhyco.relay.config import DEFAULT_KEY_NAME, Limits, RelayConfig, load_config, parse_config
from txhyco.testing import start_relay

CONFIG = """
[[rules]]
name = "admin"
key = "YWRtaW4ta2V5LWZvci10ZXN0cw=="

[[rules]]
name = "listen-only"
key = "bGlzdGVuLW9ubHk="
rights = ["Listen"]

[[rules]]
name = "send-only"
key = "c2VuZC1vbmx5"
rights = "Send"

[[hybridConnections]]
name = "orders"

[[hybridConnections]]
name = "public"
requiresClientAuthorization = false

[[hybridConnections]]
name = "private"
userMetadata = "only for the private client"

  [[hybridConnections.rules]]
  name = "private-send"
  key = "cHJpdmF0ZQ=="
  rights = ["Send"]

[limits]
maxListeners = 1
acceptTimeout = 5
maxMessageSize = 1048576
"""

KEYS = {"listen-only": "bGlzdGVuLW9ubHk=", "send-only": "c2VuZC1vbmx5", "private-send": "cHJpdmF0ZQ=="}


@pytest.fixture
def configured():
    running = pytest_twisted.blockon(start_relay(parse_config(tomllib.loads(CONFIG))))
    yield running
    pytest_twisted.blockon(running.stop())


def send_url(relay, path):
    return connect_url(Namespace.parse(relay.host, secure=False), path)


def as_rule(relay, path, name):
    return {"ServiceBusAuthorization": make_token(relay, path, key_name=name, key=KEYS[name])}


@pytest_twisted.inlineCallbacks
def refused(url, headers=None) -> int:
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(url, headers=headers)
    return info.value.status


# -- parsing -------------------------------------------------------------------


def test_parse_full_config():
    config = parse_config(tomllib.loads(CONFIG))
    assert config.restrict  # named hybrid connections restrict by default
    assert set(config.hybrid_connections) == {"orders", "public", "private"}
    assert config.root_rule.name == "admin"
    assert config.rules["listen-only"].rights == Rights.LISTEN
    assert config.rules["send-only"].rights == Rights.SEND
    assert not config.hybrid_connections["public"].requires_client_authorization
    assert config.hybrid_connections["orders"].requires_client_authorization
    assert set(config.rules_for(config.hybrid_connections["private"])) == {"admin", "listen-only", "send-only", "private-send"}
    assert config.hybrid_connections["private"].user_metadata == "only for the private client"
    assert config.limits == Limits(max_listeners=1, accept_timeout=5.0, max_message_size=1048576)
    assert config.entity("elsewhere") is None


def test_defaults_serve_any_path_with_a_fresh_key():
    config = parse_config({})
    assert not config.restrict and config.entity("anything").name == "anything"
    assert config.root_rule.name == DEFAULT_KEY_NAME and len(config.root_rule.primary_key) == 44
    assert parse_config({}).root_rule.primary_key != config.root_rule.primary_key


def test_command_line_key_becomes_the_printed_rule():
    config = parse_config(tomllib.loads(CONFIG), key_name="cli", key="Y2xp")
    assert config.root_rule.name == "cli" and config.root_rule.primary_key == "Y2xp"
    assert "admin" in config.rules
    replaced = parse_config(tomllib.loads(CONFIG), key_name="admin", key="bmV3")
    assert replaced.root_rule.primary_key == "bmV3"


@pytest.mark.parametrize(
    "doc, words",
    [
        ({"rulez": []}, ["rulez"]),
        ({"rules": {"name": "x"}}, ["'rules'", "list"]),
        ({"rules": [{"name": "x"}]}, ["'x'", "'key'"]),
        ({"rules": [{"key": "k"}]}, ["rule 1", "'name'"]),
        ({"rules": [{"name": "x", "key": "k", "rights": ["Listen", "Fly"]}]}, ["'x'", "rights", "Fly"]),
        ({"rules": [{"name": "x", "key": "k", "rights": 7}]}, ["'x'", "rights"]),
        ({"rules": [{"name": "x", "key": "k", "secondaryKey": 1}]}, ["secondaryKey"]),
        ({"hybridConnections": {"name": "a"}}, ["hybridConnections"]),
        ({"hybridConnections": [{"nom": "a"}]}, ["hybrid connection 1", "'name'"]),
        ({"hybridConnections": [{"name": "a/b c"}]}, ["hybrid connection 1", "'a/b c'", "letters, digits"]),
        ({"hybridConnections": [{"name": "a//b"}]}, ["'a//b'", "empty segment"]),
        ({"hybridConnections": [{"name": "a/../b"}]}, ["'a/../b'", "'..'"]),
        ({"hybridConnections": [{"name": "a", "requiresClientAuthorization": "no"}]}, ["'a'", "requiresClientAuthorization"]),
        ({"hybridConnections": [{"name": "a", "rules": [{"name": "r"}]}]}, ["hybrid connection 'a'", "'r'", "'key'"]),
        ({"restrict": "yes"}, ["restrict"]),
        ({"hosts": "relay.local"}, ["hosts"]),
        ({"limits": []}, ["limits"]),
        ({"limits": {"maxListeners": "25"}}, ["maxListeners"]),
        ({"limits": {"maxListeners": -1}}, ["maxListeners"]),
        ({"limits": {"maxListeners": 2.5}}, ["maxListeners", "whole"]),
        ({"limits": {"acceptTimeout": float("nan")}}, ["acceptTimeout"]),
        ({"limits": {"acceptTimeout": float("inf")}}, ["acceptTimeout"]),
        ({"limits": {"responseTimeout": True}}, ["responseTimeout"]),
        ({"limits": {"maxMessageSize": 10**400}}, ["maxMessageSize"]),
        ({"limits": {"maxListners": 3}}, ["maxListners", "maxListeners"]),
    ],
)
def test_garbage_values_name_the_setting(doc, words):
    with pytest.raises(ProtocolError) as info:
        parse_config(doc)
    for word in words:
        assert word in info.value.message


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ProtocolError, match="absent.toml"):
        load_config(str(tmp_path / "absent.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("limits = {")
    with pytest.raises(ProtocolError, match="bad.toml.*TOML"):
        load_config(str(bad))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[limits]\nmaxListeners = 'many'\n")
    with pytest.raises(ProtocolError, match="wrong.toml.*maxListeners"):
        load_config(str(wrong))


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
known_keys = st.sampled_from(
    ["rules", "hybridConnections", "restrict", "limits", "hosts", "name", "key", "rights", "requiresClientAuthorization",
     "maxListeners", "acceptTimeout", "secondaryKey", "userMetadata", "other"]
)
documents = st.recursive(
    toml_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(known_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None)
@given(st.dictionaries(known_keys, documents, max_size=5))
def test_arbitrary_documents_only_raise_protocol_error(doc):
    try:
        config = parse_config(doc)
    except ProtocolError as e:
        assert e.message
    else:
        assert isinstance(config, RelayConfig) and config.rules


# -- a relay running the configuration ---------------------------------------------


@pytest_twisted.inlineCallbacks
def test_unknown_hybrid_connection_is_404(configured):
    assert (yield refused(send_url(configured, "nope"), {"ServiceBusAuthorization": make_token(configured, "nope")})) == 404
    with pytest.raises(HandshakeFailed) as info:
        yield RawListener(configured, "nope").start()
    assert info.value.status == 404

    def get():
        conn = http.client.HTTPConnection("127.0.0.1", configured.port, timeout=10)
        conn.request("GET", "/nope/x", headers={"ServiceBusAuthorization": make_token(configured, "nope")})
        status = conn.getresponse().status
        conn.close()
        return status

    assert (yield threads.deferToThread(get)) == 404


@pytest_twisted.inlineCallbacks
def test_rights_are_enforced(configured):
    yield RawListener(configured, "orders", token=make_token(configured, "orders", key_name="listen-only", key=KEYS["listen-only"])).start()
    assert (yield refused(send_url(configured, "orders"), as_rule(configured, "orders", "listen-only"))) == 403
    with pytest.raises(HandshakeFailed) as info:
        yield RawListener(configured, "orders", token=make_token(configured, "orders", key_name="send-only", key=KEYS["send-only"])).start()
    assert info.value.status == 403
    sender = yield ws_connect(send_url(configured, "orders"), headers=as_rule(configured, "orders", "send-only"))
    sender.sendMessage(b"sent with Send only")
    assert (yield sender.messages.get()) == (b"sent with Send only", False)
    sender.sendClose(1000)
    yield sender.closed


@pytest_twisted.inlineCallbacks
def test_hybrid_connection_rules_apply_to_it_alone(configured):
    yield RawListener(configured, "private").start()
    yield RawListener(configured, "orders").start()
    sender = yield ws_connect(send_url(configured, "private"), headers=as_rule(configured, "private", "private-send"))
    sender.sendMessage(b"private")
    assert (yield sender.messages.get()) == (b"private", False)
    assert (yield refused(send_url(configured, "orders"), as_rule(configured, "orders", "private-send"))) == 401


@pytest_twisted.inlineCallbacks
def test_anonymous_hybrid_connection_accepts_senders_without_token(configured):
    with pytest.raises(HandshakeFailed) as info:  # listeners still need a token
        yield RawListener(configured, "public", token="").start()
    assert info.value.status == 401
    yield RawListener(configured, "public").start()
    sender = yield ws_connect(send_url(configured, "public"))
    sender.sendMessage(b"anonymous")
    assert (yield sender.messages.get()) == (b"anonymous", False)
    assert (yield refused(send_url(configured, "orders"))) == 401  # but only there


@pytest_twisted.inlineCallbacks
def test_listener_limit_from_config(configured):
    yield RawListener(configured, "orders").start()
    with pytest.raises(HandshakeFailed) as info:
        yield RawListener(configured, "orders").start()
    assert info.value.status == 403
