"""txhyco.protocol.proxy: proxy URLs, curl's environment variables, NO_PROXY, CONNECT — and garbage."""
from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString, serverFromString

from txhyco.address import HybridConnection
from txhyco.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from txhyco.protocol.proxy import (
    DEFAULT_PROXY_PORT,
    ConnectResponseReader,
    ProxyPolicy,
    ProxyURL,
    ProxyURLError,
    connect_request,
    no_proxy_matches,
)

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("text, host, port, user, password", [
    ("http://proxy.example.com:3128", "proxy.example.com", 3128, None, None),
    ("proxy.example.com:3128", "proxy.example.com", 3128, None, None),
    ("HTTP://Proxy.Example.COM/", "proxy.example.com", DEFAULT_PROXY_PORT, None, None),
    ("http://u%40corp:p%3Ass%2Fw@10.0.0.1:8080", "10.0.0.1", 8080, "u@corp", "p:ss/w"),
    ("http://user@[::1]:3128", "::1", 3128, "user", None),
    ("http://user:@proxy:1", "proxy", 1, "user", ""),
])
def test_proxy_urls(text, host, port, user, password):
    proxy = ProxyURL.parse(text)
    assert (proxy.host, proxy.port, proxy.username, proxy.password) == (host, port, user, password)


@pytest.mark.parametrize("text, words", [
    ("https://proxy:443", "does not support"),
    ("socks5://proxy:1080", "only http:// proxies"),
    ("http://proxy:3128/path", "path, query or fragment"),
    ("http://proxy:0", "no valid port"),
    ("http://proxy:99999", "no valid port"),
    ("http://proxy:", "without a port"),
    ("http://:3128", "no valid host"),
    ("http://::1:3128", "IPv6"),
    ("http://[nonsense]:1", "IPv6"),
    ("http://:secret@proxy:1", "without a user name"),
    ("http://u:%ff@proxy:1", "not UTF-8"),
    ("http://pro xy:1", "spaces"),
])
def test_unusable_proxy_urls_say_why(text, words):
    with pytest.raises(ProxyURLError) as info:
        ProxyURL.parse(text, source="--proxy")
    assert words in str(info.value) and str(info.value).startswith("--proxy")


def test_credentials_never_shown():
    proxy = ProxyURL.parse("http://alice:Hunter2-secret@proxy:3128")
    assert str(proxy) == proxy.display == "http://proxy:3128"
    assert "Hunter2" not in repr(proxy) and "alice" not in repr(proxy) and "credentials" in repr(proxy)
    policy = ProxyPolicy.from_setting(proxy, {})
    env_policy = ProxyPolicy.from_setting(None, {"HTTPS_PROXY": "http://alice:Hunter2-secret@proxy:3128"})
    hc = HybridConnection.from_args(namespace="127.0.0.1:9", path="x", proxy="http://alice:Hunter2-secret@proxy:3128")
    for shown in (repr(policy), repr(env_policy), repr(hc), repr(hc.proxy)):
        assert "Hunter2" not in shown and "alice" not in shown
    for bad in ("http://alice:Hunter2-secret@proxy:x", "https://alice:Hunter2-secret@proxy", "ftp://alice:Hunter2-secret@p",
                "http://alice:Hunter2-secret@proxy/p", "http://alice:Hunter2-secret@:1"):
        with pytest.raises(ProxyURLError) as info:
            ProxyURL.parse(bad)
        assert "Hunter2" not in str(info.value) and "alice" not in str(info.value)
    # a URL missing its host may put the password where the port goes: not shown either
    with pytest.raises(ProxyURLError) as info:
        ProxyURL.parse("http://alice:Hunter2-secret")
    assert "Hunter2" not in str(info.value)


def test_connect_request_carries_basic_credentials_to_the_proxy():
    request = connect_request(ProxyURL.parse("http://alice:p%C3%A4ss@proxy:3128"), "relay.example.com", 443)
    head, _, rest = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"CONNECT relay.example.com:443 HTTP/1.1" and rest == b""
    assert b"host: relay.example.com:443" in [line.lower() for line in lines]
    expected = base64.b64encode("alice:päss".encode()).decode()
    assert f"proxy-authorization: Basic {expected}".lower().encode() in [line.lower() for line in lines]
    assert b"Proxy-Authorization" not in connect_request(ProxyURL.parse("proxy:1"), "::1", 80)
    assert connect_request(ProxyURL.parse("proxy:1"), "::1", 80).startswith(b"CONNECT [::1]:80 HTTP/1.1\r\n")


def env_policy(**variables):
    return ProxyPolicy.from_setting(None, variables)


def test_environment_as_curl_reads_it():
    both = env_policy(https_proxy="http://lower:1", HTTPS_PROXY="http://upper:1", http_proxy="http://plain:1", ALL_PROXY="http://all:1")
    assert both.proxy_for("relay", secure=True).host == "lower"  # lower case wins
    assert both.proxy_for("relay", secure=False).host == "plain"  # ws/http: http_proxy
    assert env_policy(HTTPS_PROXY="http://upper:1").proxy_for("relay", secure=True).host == "upper"
    assert env_policy(HTTP_PROXY="http://upper:1").proxy_for("relay", secure=False).host == "upper"
    assert env_policy(HTTP_PROXY="http://upper:1").proxy_for("relay", secure=True) is None
    assert env_policy(all_proxy="http://all:1", ALL_PROXY="http://ALL:1").proxy_for("relay", secure=True).host == "all"
    assert env_policy(https_proxy="", HTTPS_PROXY="http://upper:1").proxy_for("relay", secure=True).host == "upper"
    assert env_policy().proxy_for("relay", secure=True) is None
    # no_proxy (lower case wins over NO_PROXY), and explicit settings
    policy = env_policy(https_proxy="http://p:1", no_proxy="relay", NO_PROXY="other")
    assert policy.proxy_for("relay", secure=True) is None and policy.proxy_for("other", secure=True) is not None
    assert ProxyPolicy.from_setting("http://x:2", {"no_proxy": "*"}).proxy_for("relay", secure=True).host == "x"
    assert ProxyPolicy.from_setting("none", {"https_proxy": "http://p:1"}).proxy_for("relay", secure=True) is None
    assert ProxyPolicy.from_setting(False, {"https_proxy": "http://p:1"}).proxy_for("relay", secure=True) is None
    assert ProxyPolicy.from_setting({"host": "p", "port": 8}, {}).proxy_for("r", secure=True) == ProxyURL("p", 8)
    with pytest.raises(ProxyURLError) as info:
        env_policy(https_proxy="socks5://p:1").proxy_for("relay", secure=True)
    assert "https_proxy" in str(info.value)
    for bad in ("", 3128, {"host": "p"}, {"host": "p", "port": "8"}, ["http://p:1"]):
        with pytest.raises(ProxyURLError):
            ProxyPolicy.from_setting(bad, {})


def test_environment_is_read_once():
    environ = {"https_proxy": "http://p:1"}
    policy = ProxyPolicy.from_setting(None, environ)
    environ["https_proxy"] = "http://changed:1"
    assert policy.proxy_for("relay", secure=True).host == "p"


@pytest.mark.parametrize("host, no_proxy, matches", [
    ("relay.example.com", "example.com", True),
    ("relay.example.com", ".example.com", True),
    ("example.com", ".example.com", True),
    ("badexample.com", "example.com", False),
    ("RELAY.Example.COM.", "example.com", True),
    ("relay.example.com", "other.com example.com", True),
    ("relay.example.com", "other.com,,", False),
    ("anything", "*", True),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("11.1.2.3", "10.0.0.0/8", False),
    ("10.1.2.3", "10.1.2.3", True),
    ("::1", "::1", True),
    ("[::1]", "[::1]", True),
    ("fd00::5", "fd00::/8", True),
    ("10.1.2.3", "example.com", False),
    ("example.com", "10.0.0.0/8", False),
    ("relay", "relay:443", False),
])
def test_no_proxy_matching(host, no_proxy, matches):
    assert no_proxy_matches(host, no_proxy) is matches


def test_connect_answers():
    reader = ConnectResponseReader("relay", 443)
    assert reader.receive(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection") is None
    answer = reader.receive(b" established\r\nVia: x\r\n\r\n\x16\x03\x01")
    assert answer.established and answer.status == 200 and answer.leftover == b"\x16\x03\x01"
    refused = ConnectResponseReader("relay", 443).receive(b"HTTP/1.0 407 Proxy Authentication Required\r\nConnection: close\r\n\r\n<html>")
    assert (refused.status, refused.reason, refused.established, refused.leftover) == (407, "Proxy Authentication Required", False, b"")
    with pytest.raises(RemoteProtocolError):
        ConnectResponseReader("relay", 443).receive(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        ConnectResponseReader("relay", 443).receive(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000)


@SETTINGS
@given(st.text(max_size=60) | st.text(alphabet="http:/@[]%.:0123456789abcXYZ-_ ", max_size=40))
def test_any_proxy_url_parses_or_says_why(text):
    try:
        proxy = ProxyURL.parse(text)
    except ProxyURLError as e:
        assert e.message
        return
    assert 0 < proxy.port <= 65535 and proxy.host
    assert ProxyURL.parse(proxy.display) == ProxyURL(proxy.host, proxy.port)


@SETTINGS
@given(st.text(max_size=40), st.text(max_size=60))
def test_any_no_proxy_list_matches_or_not(host, no_proxy):
    assert no_proxy_matches(host, no_proxy) in (True, False)


@SETTINGS
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_any_connect_answer_reads_or_says_why(chunks):
    reader = ConnectResponseReader("relay.example.com", 443)
    try:
        for chunk in chunks:
            answer = reader.receive(chunk)
            if answer is not None:
                assert 100 <= answer.status <= 999
    except RemoteProtocolError as e:
        assert e.message


@SETTINGS
@given(st.text(alphabet="abcAZ09-._%:@/[]", max_size=30))
def test_any_relay_host_gives_a_connect_request_or_a_local_error(host):
    try:
        request = connect_request(ProxyURL("proxy", 3128), host, 443)
    except LocalProtocolError:
        return
    assert request.startswith(b"CONNECT ") and request.endswith(b"\r\n\r\n")


def test_hyco_strings_take_a_proxy():
    base = "hyco:127.0.0.1\\:9090:echo:key=k:tls=no"
    for parse in (serverFromString, clientFromString):
        endpoint = parse(reactor, base + ":proxy=http\\://proxy.example\\:3128")
        assert endpoint.hc.proxy.proxy_for("127.0.0.1", secure=False) == ProxyURL("proxy.example", 3128)
        endpoint = parse(reactor, base + ":proxy=none")
        assert endpoint.hc.proxy.proxy_for("127.0.0.1", secure=False) is None
        for bad, words in (("https\\://p\\:1", "does not support"), ("socks5\\://p\\:1", "only http://")):
            with pytest.raises(ProtocolError) as info:
                parse(reactor, base + ":proxy=" + bad)
            assert words in str(info.value) and "usage: hyco:" in str(info.value)


def test_cli_proxy_none_means_direct_as_in_python_and_hyco_strings():
    from argparse import Namespace

    from txhyco.cli.common import proxy_setting

    assert proxy_setting(Namespace(proxy="none", no_proxy=False)) == "none"
    assert proxy_setting(Namespace(proxy="None ", no_proxy=False)) == "none"
