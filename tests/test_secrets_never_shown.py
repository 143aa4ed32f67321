"""Keys and token signatures never show: not in logs (at debug level), error messages,
``repr()``, exceptions, the CLI's output, nor the process listing of a CLI command.

The one deliberate exception is the connection string ``txhyco relay`` prints as its
first stdout line: it is what clients need, and the relay's documented output.
"""
from __future__ import annotations

import os
import re
import time

import pytest
import pytest_twisted
import txaio
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher

from tests.support.wsclient import Echo, RelayLeg
from tests.support.rawtcp import wait_until
from tests.test_cli_tunnels import cli, finished, stopped
from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.sas import create_relay_token
from txhyco.websocket import RelayedServerFactory, connect_relay

#: A signature as it would leak: at least 16 characters of base64, raw or percent-encoded.
LEAKED_SIGNATURE = re.compile(r"sig=(?!<)[A-Za-z0-9%+/=]{16,}")


def signature(token: str) -> str:
    return token.split("sig=")[1].split("&")[0]


def assert_clean(texts, secrets, where: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{where}: a secret in {text[:300]!r}"
        assert not LEAKED_SIGNATURE.search(text), f"{where}: a signature in {text[:300]!r}"


def cmdline(child) -> str:
    with open(f"/proc/{child.transport.pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode("utf-8", "replace")


# -- in-process: relay, listener and sender logging at debug level ---------------------


@pytest_twisted.inlineCallbacks
def test_nothing_in_process_shows_a_secret_at_debug_level(relay):
    events = []
    globalLogPublisher.addObserver(events.append)
    txaio.set_global_log_level("debug")
    cs = relay.connection_string
    wrong = ConnectionString.parse(cs.format().replace(cs.shared_access_key, "d3Jvbmcta2V5LXRoYXQtaXMtbG9uZw=="))
    token = create_relay_token(f"http://{relay.host}/echo", cs.shared_access_key_name, cs.shared_access_key,
                               int(reactor.seconds()) + 600)
    shown = []
    try:
        factory = RelayedServerFactory(cs.format(), path="echo")
        factory.protocol = Echo
        port = yield factory.listen()
        client = yield connect_relay(RelayLeg, cs.format(), path="echo")
        client.sendMessage(b"hello")
        assert (yield client.messages.get().addTimeout(10, reactor)) == (b"hello", False)
        client.sendClose(1000)
        yield client.closed
        with_token = yield connect_relay(RelayLeg, namespace=relay.host, path="echo", token=token, secure=False)
        with_token.sendClose(1000)
        yield with_token.closed
        for bad in (dict(connection_string=wrong.format()), dict(namespace=relay.host, path="echo", secure=False,
                                                                  token=token.replace("se=", "se=1"))):
            with pytest.raises(Exception) as info:
                yield connect_relay(RelayLeg, **({"path": "echo"} | bad))
            shown += [str(info.value), repr(info.value)]
        shown += [repr(factory), repr(factory.hybrid_connection), repr(cs), str(cs.__repr__()), repr(wrong),
                  repr(port), repr(relay.rule), repr(relay)]
        yield port.stopListening()
    finally:
        txaio.set_global_log_level("info")
        globalLogPublisher.removeObserver(events.append)
    assert len(events) > 20  # the logging really was on
    # (Autobahn's client protocol logs its own request heads at debug level, tokens
    # included: that is Autobahn's, as in test_relay_lifecycle; ours must be clean.)
    ours = [e for e in events if "WebSocketClientProtocol" not in (e.get("log_namespace") or "")]
    texts = shown + [formatEvent(e) or "" for e in ours] + [repr(e) for e in ours]
    assert_clean(texts, [cs.shared_access_key, wrong.shared_access_key, signature(token)], "in process")


@pytest_twisted.inlineCallbacks
def test_a_proxy_password_never_shows(relay, tmp_path, monkeypatch):
    import base64

    from tests.support.tinyproxy import TinyProxy

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    proxy = TinyProxy(str(tmp_path), auth=("proxyuser", "Pr0xy-Secret")).start()
    wrong_url = proxy.url.replace("Pr0xy-Secret", "Wr0ng-Secret")
    secrets = ["Pr0xy-Secret", "Wr0ng-Secret", base64.b64encode(b"proxyuser:Pr0xy-Secret").decode(),
               base64.b64encode(b"proxyuser:Wr0ng-Secret").decode()]
    events = []
    globalLogPublisher.addObserver(events.append)
    txaio.set_global_log_level("debug")
    shown = []
    try:
        cs = relay.connection_string.format()
        factory = RelayedServerFactory(cs, path="hidden", proxy=proxy.url)
        factory.protocol = Echo
        port = yield factory.listen()
        monkeypatch.setenv("http_proxy", proxy.url)  # the sender's, from the environment
        client = yield connect_relay(RelayLeg, cs, path="hidden")
        client.sendMessage(b"hello")
        assert (yield client.messages.get().addTimeout(10, reactor)) == (b"hello", False)
        client.sendClose(1000)
        yield client.closed
        with pytest.raises(Exception) as info:
            yield connect_relay(RelayLeg, cs, path="hidden", proxy=wrong_url)
        shown += [str(info.value), repr(info.value), repr(factory.hybrid_connection), repr(factory.hybrid_connection.proxy)]
        yield port.stopListening()
    finally:
        txaio.set_global_log_level("info")
        globalLogPublisher.removeObserver(events.append)
        proxy.stop()
    # (Autobahn's own request heads carry SAS tokens, as above; proxy credentials never reach Autobahn.)
    ours = [e for e in events if "WebSocketClientProtocol" not in (e.get("log_namespace") or "")]
    texts = shown + [formatEvent(e) or "" for e in ours] + [repr(e) for e in ours]
    assert_clean(texts, secrets, "in process, through a proxy")
    autobahn = "".join(formatEvent(e) or "" for e in events if e not in ours)
    assert not any(secret in autobahn for secret in secrets)


# -- the command line: relay, listen, connect, request ---------------------------------


@pytest_twisted.inlineCallbacks
def test_no_cli_command_shows_a_secret_in_its_output_or_its_process_listing(tmp_path):
    key = "c2VjcmV0LWtleS1mb3ItdGhlLWNsaS10ZXN0"
    key_file = tmp_path / "relay.key"
    key_file.write_text(key + "\n")
    relay = cli("relay", "--listen", "tcp:0:interface=127.0.0.1", "--key-file", str(key_file))
    children = [relay]
    listings = []
    try:
        listings.append(cmdline(relay))
        line = yield relay.wait_for("Endpoint=")
        cs = ConnectionString.parse(line)
        assert cs.shared_access_key == key
        listener = cli("listen", "echo", "--echo", "--log", cs=cs)
        children.append(listener)
        listings.append(cmdline(listener))
        yield listener.wait_for("listening on")
        sender = cli("connect", "echo", cs=cs)
        children.append(sender)
        listings.append(cmdline(sender))
        sender.transport.write(b"hello through the relay\n")
        yield sender.wait_for("hello through the relay")
        sender.transport.closeStdin()
        code, out, err = yield finished(sender)
        assert code == 0
        request = cli("request", "echo", "/x", "--data", "hi", cs=cs)
        listings.append(cmdline(request))
        code, out, err = yield finished(request)
        assert code == 0, err
        # Refused: a wrong key, and a token (a connection string holding a signature).
        wrong = ConnectionString.parse(cs.format().replace(key, "d3Jvbmcta2V5LWZvci10aGUtY2xp"))
        token = create_relay_token(f"http://{cs.namespace.authority}/echo", cs.shared_access_key_name, key, int(time.time()) - 3600)
        with_token = ConnectionString(endpoint=cs.endpoint, shared_access_signature=token, use_development_emulator=True)
        refusals = []
        for bad in (wrong, with_token):
            for args in (("request", "echo", "/x"), ("connect", "echo"), ("listen", "echo", "--echo", "--log")):
                child = cli(*args, cs=bad)
                listings.append(cmdline(child))
                if args[0] == "connect":
                    child.transport.closeStdin()
                if args[0] == "listen":  # it may retry: stopped once it said why
                    yield wait_until(lambda: b"401" in child.stderr or child.ended.called, timeout=20)
                    refusals.append((yield stopped(child)))
                else:
                    refusals.append((yield finished(child)))
        for code, out, err in refusals:
            assert "401" in err, err
    finally:
        for child in reversed(children):
            yield child.stop()
    outputs = []
    for child in children:
        lines = [line for line in child.lines if not (child is relay and line.startswith("Endpoint="))]
        outputs += lines + [child.stderr.decode("utf-8", "replace")]
    outputs += [out + err for _, out, err in refusals]
    secrets = [key, wrong.shared_access_key, signature(token), os.fsdecode(key_file.read_bytes()).strip()]
    assert_clean(listings, secrets, "process listing")
    assert_clean(outputs, secrets, "CLI output")
