"""Cluster settings (command line and [cluster]) and the inter-node messages: good values, garbage."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from txhyco.cli.common import CliError
from txhyco.cli.relay import relay_settings
from txhyco.protocol.errors import ProtocolError
from txhyco.relay.cluster import wire
from txhyco.relay.cluster.settings import cluster_settings, parse_advertise, parse_redis_url
from txhyco.relay.config import parse_config

KEY = "c2V0dGluZ3MtdGVzdC1rZXktbm90LXNlY3JldC0wMTIzNDU2Nzg="


def test_redis_urls():
    assert parse_redis_url("redis://10.0.0.5:6380/3") == ("10.0.0.5", 6380, 3, None)
    assert parse_redis_url("redis://cache") == ("cache", 6379, 0, None)
    assert parse_redis_url("redis://:s%40cret@[::1]:7000/1") == ("[::1]", 7000, 1, "s@cret")


@pytest.mark.parametrize("url", ["http://x:1/0", "redis://", "redis://h:0/0", "redis://h:99999", "redis://h:1/x",
                                 "redis://h:1/0?db=2", "redis://h h:1", "redis://:pw@:1/0"])
def test_bad_redis_urls_are_refused_without_the_password(url):
    with pytest.raises(ProtocolError) as e:
        parse_redis_url(url.replace("redis://:pw@", "redis://:hunter2@"))
    assert "hunter2" not in e.value.message


def test_advertise_and_node_id():
    assert parse_advertise("10.1.2.3:9101") == ("10.1.2.3", 9101)
    for bad in ("10.1.2.3", "0.0.0.0:9", ":9", "a b:1", "h:70000"):
        with pytest.raises(ProtocolError):
            parse_advertise(bad)
    s = cluster_settings(redis="redis://r:1/0", advertise="h:9", node_id="n-1.a_b")
    assert (s.node_id, s.advertise, s.ttl) == ("n-1.a_b", "h:9", 6.0)
    assert cluster_settings(redis="redis://r:1/0", advertise="h:9").node_id.endswith("-9")
    for bad in ("", "a|b", "x" * 65, "a/b"):
        with pytest.raises(ProtocolError):
            cluster_settings(redis="redis://r:1/0", advertise="h:9", node_id=bad)
    with pytest.raises(ProtocolError, match="advertised address"):
        cluster_settings(redis="redis://r:1/0", advertise=None)


def test_password_never_in_repr_or_url():
    s = cluster_settings(redis="redis://:topsecret@r:1/0", advertise="h:9", node_id="n")
    assert "topsecret" not in repr(s) and "topsecret" not in s.redis_url and s.redis_password == "topsecret"


def test_cluster_table():
    config = parse_config({"cluster": {"redis": "redis://r:6379/2", "advertise": "10.0.0.1:9101", "nodeId": "a", "ttl": 4}})
    assert (config.cluster.redis_db, config.cluster.advertise_port, config.cluster.node_id, config.cluster.ttl) == (2, 9101, "a", 4.0)
    assert parse_config({}).cluster is None
    with pytest.raises(ProtocolError, match="redis"):
        parse_config({"cluster": {"advertise": "h:1"}})
    with pytest.raises(ProtocolError, match="nodeid|nodeId"):
        parse_config({"cluster": {"redis": "redis://r", "advertise": "h:1", "nodeid": "x"}})
    with pytest.raises(ProtocolError, match=r"\[cluster\]"):
        parse_config({"cluster": {"redis": "redis://r", "advertise": "h:1", "ttl": 30}})
    with pytest.raises(ProtocolError) as e:
        parse_config({"cluster": {"redis": "redis://:hunter2@r:1/x", "advertise": "h:1"}})
    assert "hunter2" not in e.value.message


def test_command_line_options(tmp_path):
    s = relay_settings(key=KEY, cluster="redis://127.0.0.1:6379/0", advertise="127.0.0.1:9101", node_id="n1")
    assert (s.config.cluster.node_id, s.config.cluster.advertise) == ("n1", "127.0.0.1:9101")
    assert relay_settings(key=KEY).config.cluster is None
    with pytest.raises(CliError, match="--cluster"):
        relay_settings(key=KEY, advertise="127.0.0.1:9101")
    with pytest.raises(CliError, match="advertised"):
        relay_settings(key=KEY, cluster="redis://127.0.0.1:6379/0")
    config = tmp_path / "relay.toml"
    config.write_text('[cluster]\nredis = "redis://127.0.0.1:6379/1"\nadvertise = "127.0.0.1:9101"\nnodeId = "file"\n')
    s = relay_settings(key=KEY, config_file=str(config), advertise="127.0.0.1:9102")
    assert (s.config.cluster.redis_db, s.config.cluster.advertise_port, s.config.cluster.node_id) == (1, 9102, "file")


def test_wire_round_trip():
    for message in (
        wire.ForwardedCommand("slot", "hc/ø", "n1/ab", "ref", '{"accept":{}}'),
        wire.Gone("ref", 404, "gone"),
        wire.ListenerEvent(True, "hc", "n1/ab|s", "track"),
        wire.ListenerEvent(False, "hc", "n1/ab|s", ""),
    ):
        assert wire.decode(wire.encode(message)) == message
        assert wire.decode(wire.encode(message).encode()) == message


@pytest.mark.parametrize("data", [b"\xff", "", "[]", "{}", '{"t":"nope"}', '{"t":"gone","ref":"r","status":200,"why":"x"}',
                                  '{"t":"gone","ref":"r","status":true,"why":"x"}', '{"t":"command","slot":1}',
                                  '{"t":"add","hc":"","field":"f","id":"x"}', "[" * 100000, "x" * 300000])
def test_wire_garbage_is_refused(data):
    with pytest.raises(wire.WireError):
        wire.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=6).map(lambda d: __import__("json").dumps(d))))
def test_wire_decode_raises_only_wire_error(data):
    try:
        wire.decode(data)
    except wire.WireError:
        pass


def test_readme_cluster_table_is_valid():
    import re
    import tomllib

    from tests.test_readme import README

    text = open(README, encoding="utf-8").read()
    block = re.search(r"```toml\n(\[cluster\]\n.*?)\n```", text, re.S).group(1)
    config = parse_config(tomllib.loads(block))
    assert (config.cluster.node_id, config.cluster.advertise, config.cluster.ttl) == ("node1", "10.0.0.11:9101", 6.0)


def test_redis_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("HYCO_REDIS_PASSWORD", "from-env")
    assert cluster_settings(redis="redis://r:1/0", advertise="h:9").redis_password == "from-env"
    assert cluster_settings(redis="redis://:in-url@r:1/0", advertise="h:9").redis_password == "in-url"


def test_twistd_plugin_takes_the_cluster_options():
    import importlib.util

    spec = importlib.util.spec_from_file_location("txhyco_relay_plugin", str(__import__("pathlib").Path(__file__).resolve().parent.parent / "twisted" / "plugins" / "txhyco_relay.py"))
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    options = plugin.Options()
    options.parseOptions(["--key", KEY, "--cluster", "redis://127.0.0.1:6379/3", "--advertise", "127.0.0.1:9101", "--node-id", "tw"])
    cluster = options.settings.config.cluster
    assert (cluster.redis_db, cluster.node_id, cluster.advertise) == (3, "tw", "127.0.0.1:9101")


@pytest.mark.parametrize("redis, advertise", [("redis://[::1:1/0", "h:9"), ("redis://r:1/0", "[::1")])
def test_an_unclosed_ipv6_bracket_is_named(redis, advertise):
    with pytest.raises(ProtocolError, match=r"unclosed '\['"):
        cluster_settings(redis=redis, advertise=advertise)
