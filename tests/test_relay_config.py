"""The relay's TOML configuration: rules, named hybrid connections, anonymous senders, limits."""
from __future__ import annotations

import http.client
import tomllib

import pytest
import pytest_twisted
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.internet import threads

from tests.support.rawlistener import RawListener, make_token
from tests.support.wsclient import HandshakeFailed, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights
from txhyco._suggest import shown
from txhyco.relay.config import DEFAULT_KEY_NAME, Limits, RelayConfig, load_config, parse_config
from txhyco.testing import start_relay

CONFIG = """
[[rules]]
name = "admin"
key = "YWRtaW4ta2V5LWZvci10ZXN0cw=="
rights = ["Listen", "Send", "Manage"]

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


RULE = {"name": "x", "key": "k", "rights": ["Listen"]}


def rule(**changes):
    return {k: v for k, v in {**RULE, **changes}.items() if v is not None}


@pytest.mark.parametrize(
    "doc, words",
    [
        ({"rulez": []}, ["the top level", "'rulez'", "did you mean 'rules'?", "hosts, hybridConnections, limits"]),
        ({"rules": {"name": "x"}}, ["'rules'", "array of tables", "[[rules]]"]),
        ({"rules": [rule(key=None)]}, ["[[rules]] 'x'", "needs 'key'"]),
        ({"rules": [rule(name=None)]}, ["[[rules]] #1", "needs 'name'"]),
        ({"rules": [rule(rights=["Listen", "Fly"])]}, ["[[rules]] 'x'", "'rights'", "unknown right 'Fly'", "Listen, Manage, Send"]),
        ({"rules": [rule(rights=["Lisen"])]}, ["unknown right 'Lisen'", "did you mean 'Listen'?"]),
        ({"rules": [rule(rights=7)]}, ["'x'", "'rights'", "not an integer"]),
        ({"rules": [rule(secondaryKey=1)]}, ["'secondaryKey'", "must be a string"]),
        ({"hybridConnections": {"name": "a"}}, ["'hybridConnections'", "array of tables"]),
        ({"hybridConnections": [{"nme": "a"}]}, ["[[hybridConnections]] #1", "'nme'", "did you mean 'name'?"]),
        ({"hybridConnections": [{"userMetadata": "a"}]}, ["[[hybridConnections]] #1", "needs 'name'"]),
        ({"hybridConnections": [{"name": "a/b c"}]}, ["[[hybridConnections]] 'a/b c'", "letters, digits"]),
        ({"hybridConnections": [{"name": "a//b"}]}, ["'a//b'", "empty segment"]),
        ({"hybridConnections": [{"name": "a/../b"}]}, ["'a/../b'", "'..'"]),
        ({"hybridConnections": [{"name": 5}]}, ["[[hybridConnections]] #1", "'name' must be a string"]),
        ({"hybridConnections": [{"name": "a", "requiresClientAuthorization": "no"}]},
         ["[[hybridConnections]] 'a'", "'requiresClientAuthorization'", "true or false", "not a string"]),
        ({"hybridConnections": [{"name": "a", "rules": [{"name": "r", "rights": ["Send"]}]}]},
         ["[[hybridConnections.rules]] 'r' of [[hybridConnections]] 'a'", "needs 'key'"]),
        ({"hybridConnections": [{"name": "a", "userMetadata": 3}]}, ["'userMetadata'", "must be a string"]),
        ({"restrict": "yes"}, ["'restrict'", "true or false"]),
        ({"hosts": "relay.local"}, ["'hosts'", "must be an array"]),
        ({"hosts": ["relay local"]}, ["'hosts'", "entry 1", "host name"]),
        ({"hosts": [3]}, ["'hosts'", "entry 1", "must be a string"]),
        ({"limits": []}, ["[limits]", "must be a table"]),
        ({"limits": {"maxListeners": "25"}}, ["[limits]", "'maxListeners'", "whole number", "not a string"]),
        ({"limits": {"maxListeners": -1}}, ["'maxListeners'", "from 1 to", "not -1"]),
        ({"limits": {"maxListeners": 0}}, ["'maxListeners'", "from 1 to", "not 0"]),
        ({"limits": {"maxListeners": 2.5}}, ["'maxListeners'", "whole number", "not a float"]),
        ({"limits": {"maxListeners": 10**9}}, ["'maxListeners'", "to 10000"]),
        ({"limits": {"acceptTimeout": float("nan")}}, ["'acceptTimeout'", "seconds"]),
        ({"limits": {"acceptTimeout": float("inf")}}, ["'acceptTimeout'", "seconds"]),
        ({"limits": {"acceptTimeout": 0}}, ["'acceptTimeout'", "greater than 0"]),
        ({"limits": {"handshakeTimeout": -3}}, ["'handshakeTimeout'", "greater than 0"]),
        ({"limits": {"streamIdleTimeout": 10**7}}, ["'streamIdleTimeout'", "at most 86400"]),
        ({"limits": {"tokenGrace": -1}}, ["'tokenGrace'", "from 0"]),
        ({"limits": {"responseTimeout": True}}, ["'responseTimeout'", "not a boolean"]),
        ({"limits": {"maxMessageSize": 10**400}}, ["'maxMessageSize'", "or 0 for no limit"]),
        ({"limits": {"maxMessageSize": -10**5000}}, ["'maxMessageSize'", "not a number that large"]),
        ({"limits": {"maxControlMessageSize": 100}}, ["'maxControlMessageSize'", "from 4096"]),
        ({"limits": {"maxHeaderSize": 0}}, ["'maxHeaderSize'", "from 1024"]),
        ({"limits": {"noListenerStatus": 200}}, ["'noListenerStatus'", "from 400 to 599"]),
        ({"limits": {"maxListners": 3}}, ["[limits]", "'maxListners'", "did you mean 'maxListeners'?"]),
    ],
)
def test_garbage_values_name_the_table_and_the_setting(doc, words):
    with pytest.raises(ProtocolError) as info:
        parse_config(doc)
    for word in words:
        assert word in info.value.message
    assert "\n" not in info.value.message and info.value.message.endswith(".")


# The security bug of issue 14: a misspelt setting was ignored, and a rule
# that had misspelt 'rights' got Listen, Send and Manage.
MISSPELT = {
    "a rule's rights": (
        '[[rules]]\nname = "x"\nkey = "abc"\nrigths = ["Listen"]\n',
        ["[[rules]] 'x'", "unknown setting 'rigths'", "did you mean 'rights'?", "known settings: key, name, primaryKey, rights, secondaryKey"],
    ),
    "a hybrid connection's client authorization": (
        '[[hybridConnections]]\nname = "open"\nrequiresClientAuthorisation = false\n',
        ["[[hybridConnections]] 'open'", "'requiresClientAuthorisation'", "did you mean 'requiresClientAuthorization'?",
         "known settings: name, requiresClientAuthorization, rules, userMetadata"],
    ),
    "a hybrid connection rule's rights": (
        '[[hybridConnections]]\nname = "hc"\n[[hybridConnections.rules]]\nname = "r"\nkey = "abc"\nrihgts = ["Send"]\n',
        ["[[hybridConnections.rules]] 'r' of [[hybridConnections]] 'hc'", "'rihgts'", "did you mean 'rights'?"],
    ),
    "a top-level setting": ('restric = false\n', ["the top level", "'restric'", "did you mean 'restrict'?"]),
    "a limit": ("[limits]\nmaxlisteners = 3\n", ["[limits]", "'maxlisteners'", "did you mean 'maxListeners'?"]),
}


@pytest.mark.parametrize("name", list(MISSPELT))
def test_misspelt_settings_are_refused(name, tmp_path):
    text, words = MISSPELT[name]
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ProtocolError) as info:
        load_config(str(path))
    message = info.value.message
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message, message


def test_rights_are_required_and_never_widened():
    with pytest.raises(ProtocolError, match=r"\[\[rules\]\] 'x' needs 'rights'"):
        parse_config({"rules": [{"name": "x", "key": "k"}]})
    with pytest.raises(ProtocolError, match="an empty array grants nothing"):
        parse_config({"rules": [rule(rights=[])]})
    with pytest.raises(ProtocolError, match="names Listen twice"):
        parse_config({"rules": [rule(rights=["Listen", "listen"])]})
    with pytest.raises(ProtocolError, match=r'must be an array to name several rights'):
        parse_config({"rules": [rule(rights="Listen, Send")]})
    config = parse_config({"rules": [rule(rights=["Listen"])]})
    assert config.rules["x"].rights == Rights.LISTEN
    assert parse_config({"rules": [rule(rights="send")]}).rules["x"].rights == Rights.SEND


def test_duplicates_and_two_spellings_of_one_key_are_refused():
    with pytest.raises(ProtocolError, match=r"\[\[rules\]\]: two entries are named 'x'"):
        parse_config({"rules": [rule(), rule(key="other")]})
    with pytest.raises(ProtocolError, match=r"\[\[hybridConnections\]\]: two entries are named 'a'"):
        parse_config({"hybridConnections": [{"name": "a"}, {"name": "/a/"}]})
    with pytest.raises(ProtocolError, match="give 'key' or 'primaryKey', not both"):
        parse_config({"rules": [rule(primaryKey="p")]})
    assert parse_config({"rules": [rule(key=None, primaryKey="p")]}).rules["x"].primary_key == "p"


def test_key_problems_never_show_the_key():
    for bad in (" c2VjcmV0", "c2Vj;cmV0", "c2Vj\ncmV0"):
        with pytest.raises(ProtocolError) as info:
            parse_config({"rules": [rule(key=bad)]})
        assert "'key'" in info.value.message and "c2V" not in info.value.message


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
    huge = tmp_path / "huge.toml"
    huge.write_text("[limits]\nmaxListeners = " + "9" * 5000 + "\n")
    with pytest.raises(ProtocolError, match="huge.toml is not valid TOML.*digits"):
        load_config(str(huge))
    deep = tmp_path / "deep.toml"
    deep.write_text("hosts = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ProtocolError, match="deep.toml is not valid TOML: it nests arrays or tables too deeply"):
        load_config(str(deep))
    with pytest.raises(ProtocolError, match="is not a file name"):
        load_config("relay\0.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"restrict = \xff\xfe\n")
    with pytest.raises(ProtocolError, match="binary.toml.*UTF-8"):
        load_config(str(binary))


def test_every_declared_table_refuses_unknown_keys():
    """Structural: a table declared in the schema is strict without code of its own."""
    from txhyco.relay import config as module
    from txhyco.relay.schema import Table

    declared = [value for value in vars(module).values() if isinstance(value, Table)]
    assert {t.title for t in declared} >= {"the top level", "[[rules]]", "[[hybridConnections]]",
                                           "[[hybridConnections.rules]]", "[limits]"}
    for table in declared:
        with pytest.raises(ProtocolError, match=f"unknown setting 'surplus'; known settings: {', '.join(sorted(table.settings))}"):
            table.read({"surplus": 1})


def test_every_limit_can_be_set_and_is_range_checked():
    """A Limits field added later needs its [limits] key (with its range) to be tunable at all."""
    import dataclasses

    from txhyco.relay.config import LIMITS

    assert {s.field for s in LIMITS.settings.values()} == {f.name for f in dataclasses.fields(Limits)}
    defaults = Limits()
    for key, setting in LIMITS.settings.items():  # the defaults are within the ranges
        assert LIMITS.read({key: getattr(defaults, setting.field)}) == defaults


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
known_keys = st.sampled_from(
    ["rules", "hybridConnections", "restrict", "limits", "hosts", "name", "key", "primaryKey", "rights",
     "requiresClientAuthorization", "maxListeners", "acceptTimeout", "tokenGrace", "secondaryKey", "userMetadata",
     "other", "rigths"]
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


VALID = {
    "rules": [{"name": "admin", "key": "a2V5", "rights": ["Manage"]}],
    "hybridConnections": [{"name": "hc", "rules": [{"name": "send", "key": "c2VuZA==", "rights": ["Send"]}]}],
    "limits": {"maxListeners": 3},
}
# Where a stray key can go in VALID: a path of keys and indexes to a table, and that table's name in the schema.
TABLES = [((), "DOCUMENT"), (("rules", 0), "NAMESPACE_RULE"), (("hybridConnections", 0), "HYBRID_CONNECTION"),
          (("hybridConnections", 0, "rules", 0), "ENTITY_RULE"), (("limits",), "LIMITS")]


@settings(deadline=None)
@given(st.sampled_from(TABLES), st.text(min_size=1, max_size=30), toml_values)
def test_a_stray_key_in_any_table_is_named(where, stray, value):
    import copy

    from txhyco.relay import config as module

    path, schema = where
    assume(stray not in getattr(module, schema).settings)
    doc = copy.deepcopy(VALID)
    target = doc
    for step in path:
        target = target[step]
    target[stray] = value
    with pytest.raises(ProtocolError) as info:
        parse_config(doc)
    assert f"unknown setting {shown(stray)}" in info.value.message and "known settings: " in info.value.message
    assert "a2V5" not in info.value.message  # never a key


def _toml_key(name):
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else '"' + name + '"'


# Near-valid files: the real tables with real keys, some values and keys
# changed, written as TOML text and read through load_config.
rule_tables = st.fixed_dictionaries(
    {"name": st.sampled_from(['"a"', '"b"', "3", '""']), "key": st.sampled_from(['"k"', '" k"', "true"])},
    optional={"rights": st.sampled_from(['["Listen"]', '["Send", "Manage"]', "[]", '"Send"', '["Fly"]', "1"]),
              "rigths": st.just('["Listen"]'), "secondaryKey": st.sampled_from(['"s"', "2"])},
)
limit_values = st.sampled_from(["1", "0", "-1", "2.5", "30", "1e9", "inf", "nan", '"10"', "true", "65536", "502"])


@st.composite
def toml_files(draw):
    lines = []
    for entry in draw(st.lists(rule_tables, max_size=3)):
        lines.append("[[rules]]")
        lines += [f"{k} = {v}" for k, v in entry.items()]
    for name in draw(st.lists(st.sampled_from(['"a"', '"b/c"', '"a b"', '"/a/"', "4"]), max_size=3)):
        lines += ["[[hybridConnections]]", f"name = {name}"]
        if draw(st.booleans()):
            key = draw(st.sampled_from(["requiresClientAuthorization", "requiresClientAuthorisation", "userMetadata"]))
            value = draw(st.sampled_from(["false", '"no"', '"meta"']))
            lines.append(f"{key} = {value}")
        for entry in draw(st.lists(rule_tables, max_size=2)):
            lines.append("[[hybridConnections.rules]]")
            lines += [f"{k} = {v}" for k, v in entry.items()]
    if draw(st.booleans()):
        lines.append("[limits]")
        keys = st.sampled_from([*LIMIT_KEYS, "maxlisteners", draw(st.text(min_size=1, max_size=6))])
        for key in draw(st.lists(keys, max_size=4, unique=True)):
            lines.append(f"{_toml_key(key)} = {draw(limit_values)}")
    return "\n".join(lines) + "\n"


LIMIT_KEYS = ["maxListeners", "maxMessageSize", "maxControlMessageSize", "maxHeaderSize", "acceptTimeout",
              "responseTimeout", "streamIdleTimeout", "handshakeTimeout", "tokenGrace", "noListenerStatus"]


@settings(deadline=None, max_examples=300)
@given(st.one_of(toml_files(), st.text(max_size=200), st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
                 st.integers(1, 6000).map(lambda digits: "[limits]\nmaxListeners = " + "7" * digits + "\n"),
                 st.integers(1, 3000).map(lambda depth: "hosts = " + "[" * depth + "]" * depth + "\n")))
def test_any_file_yields_a_config_or_one_protocol_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("toml") / "relay.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        config = load_config(str(path))
    except ProtocolError as e:
        assert str(path) in e.message
    else:
        assert isinstance(config, RelayConfig)
        for rule_ in config.rules.values():  # nothing read as "all rights" that did not say so
            assert rule_.rights


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
