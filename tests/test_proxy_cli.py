"""The command line and twistd through a real HTTP CONNECT proxy (Debian's tinyproxy).

A CLI TCP tunnel (txhyco listen/connect --forward), `twistd web --listen
hyco:...:proxy=...` answering a >64 KiB response (a rendezvous leg) to
`txhyco request`, with the proxy taken from --proxy, the hyco: string and
the environment (credentials there only). The in-process relay records its
peers: every one must be the proxy.
"""
from __future__ import annotations

import base64
import json
import os

import pytest_twisted
from twisted.internet import reactor

from tests.support.procs import Child
from tests.support.tinyproxy import PROXY_SOURCE, TinyProxy, free_port, record_peers
from tests.test_cli_tunnels import cli, echo_server, exchange, finished
from tests.test_twistd_web import TWISTD

#: What the children inherit: no proxy variables but the ones a test sets.
NO_PROXY_VARIABLES = {name: "" for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                            "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")}


@pytest_twisted.inlineCallbacks
def test_cli_tunnel_through_the_proxy(relay, tmp_path):
    tiny = TinyProxy(str(tmp_path)).start()
    peers = record_peers(relay)
    service = echo_server()
    local = free_port()
    cs = relay.connection_string
    # the listener finds the proxy in the environment (ws:// relay: HTTP_PROXY), the connector gets --proxy
    listener = cli("listen", "db", "--forward", f"127.0.0.1:{service.getHost().port}", cs=cs,
                   env=dict(NO_PROXY_VARIABLES, HTTP_PROXY=tiny.url))
    sender = cli("connect", "db", "--forward", str(local), "--proxy", tiny.url, cs=cs, env=NO_PROXY_VARIABLES)
    try:
        yield listener.wait_for("listening on")
        yield sender.wait_for("127.0.0.1:")
        payload = os.urandom(200_000)
        assert (yield exchange("127.0.0.1", local, payload)) == payload
        # control channel, the tunnel's sender leg and its rendezvous
        assert len(peers) >= 3 and set(peers) == {PROXY_SOURCE}
        assert tiny.connects().count(f"127.0.0.1:{relay.port}") == len(peers)
    finally:
        yield sender.stop()
        yield listener.stop()
        yield service.stopListening()
        tiny.stop()


@pytest_twisted.inlineCallbacks
def test_twistd_web_and_txhyco_request_through_proxies(relay, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "auth").mkdir()
    plain = TinyProxy(str(tmp_path / "plain")).start()
    guarded = TinyProxy(str(tmp_path / "auth"), auth=("webuser", "pa55-word")).start()
    peers = record_peers(relay)
    site = tmp_path / "site"
    site.mkdir()
    big = os.urandom(300_000)  # beyond 64 KiB: the response streams on a rendezvous leg
    (site / "big.bin").write_bytes(big)
    description = (f"hyco:127.0.0.1\\:{relay.port}:webdir:keyName={relay.rule.name}:keyEnv=HYCO_TEST_KEY:tls=no"
                   f":proxy=http\\://127.0.0.1\\:{plain.port}")
    web = Child()
    reactor.spawnProcess(
        web, TWISTD,
        [TWISTD, "-n", "--pidfile=", "--logfile=-", "web", "--listen", description, "--path", str(site)],
        env=dict(os.environ, **NO_PROXY_VARIABLES, HYCO_TEST_KEY=relay.rule.primary_key, PYTHONUNBUFFERED="1"),
        path=str(tmp_path),
    )
    cs = relay.connection_string
    try:
        yield web.wait_for("online")
        # the password stays in the environment: http_proxy for an http:// relay
        fetch = cli("request", "webdir", "/big.bin", "--json", cs=cs, env=dict(NO_PROXY_VARIABLES, http_proxy=guarded.url))
        code, stdout, stderr = yield finished(fetch)
        assert code == 0, stderr
        answer = json.loads(stdout)
        assert answer["status"] == 200 and base64.b64decode(answer["body_base64"]) == big
        wrong = guarded.url.replace("pa55-word", "not-it")
        code, _, stderr = yield finished(cli("request", "webdir", "/big.bin", cs=cs, env=dict(NO_PROXY_VARIABLES, http_proxy=wrong)))
        assert code == 1 and f"The proxy http://127.0.0.1:{guarded.port}" in stderr and "user name and password" in stderr
        assert "not-it" not in stderr and "webuser" not in stderr
        assert set(peers) == {PROXY_SOURCE}
        assert plain.connects().count(f"127.0.0.1:{relay.port}") >= 2  # control channel, rendezvous
        assert guarded.connects().count(f"127.0.0.1:{relay.port}") == 2  # the request (twice: right, then wrong password)
        assert len(peers) == plain.connects().count(f"127.0.0.1:{relay.port}") + 1
    finally:
        yield web.stop()
        plain.stop()
        guarded.stop()


@pytest_twisted.inlineCallbacks
def test_cli_refuses_a_proxy_password_on_the_command_line(relay):
    code, _, stderr = yield finished(cli("request", "x", "--proxy", "http://me:secret@127.0.0.1:3128", cs=relay.connection_string))
    assert code == 2 and "process listings" in stderr and "https_proxy" in stderr and "secret" not in stderr
    code, _, stderr = yield finished(cli("request", "x", "--proxy", "https://127.0.0.1:3128", cs=relay.connection_string))
    assert code == 2 and "does not support" in stderr


@pytest_twisted.inlineCallbacks
def test_up_takes_its_proxy_from_the_command_line(relay, tmp_path):
    from tests.test_cli_up import address_of, event

    tiny = TinyProxy(str(tmp_path)).start()
    peers = record_peers(relay)
    service = echo_server()
    config = tmp_path / "tunnels.toml"
    config.write_text(f'[[listen]]\npath = "t"\nforward = "127.0.0.1:{service.getHost().port}"\n\n'
                      '[[connect]]\npath = "t"\nforward = "0"\n')
    # --proxy wins over a dead proxy in the environment
    up = cli("up", str(config), "--json", "--proxy", tiny.url, cs=relay.connection_string,
             env=dict(NO_PROXY_VARIABLES, http_proxy=f"http://127.0.0.1:{free_port()}"))
    try:
        yield event(up, "online", "t")
        started = yield event(up, "started", "t")
        while started.get("kind") != "connect":
            started = yield event(up, "started", "t")
        assert (yield exchange(*address_of(started), b"up" * 1000)) == b"up" * 1000
        assert len(peers) >= 3 and set(peers) == {PROXY_SOURCE}
    finally:
        yield up.stop()
        yield service.stopListening()
        tiny.stop()
