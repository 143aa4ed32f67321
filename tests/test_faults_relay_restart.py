"""Faults: the relay SIGKILLed and restarted on the same address while listeners of every kind are online.

Each listener reaches the relay through a fault proxy of its own
(tests/support/faultproxy.py), which counts its connection attempts. After the
relay returns, each listener is back with a bounded number of attempts (its
backoff schedule: 0, 1, 2, 5, 10, 30 s, ±25 % jitter), holds exactly one
control channel, and a sender gets through.
"""
from __future__ import annotations

import http.client
import os
import sys

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import reactor, task, threads

from tests.support.faultproxy import FaultProxy
from tests.support.faults import RelayProcess, child_env, listeners_gauge, wait_for
from tests.support.procs import Child, spawn
from tests.support.rawlistener import make_token
from tests.support.wsclient import ws_connect
from txhyco.listener.reconnect import BACKOFF
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.websocket import RelayedServerFactory

pytestmark = pytest.mark.timeout(120)  # each test bounded, whatever its own guards

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
PATHS = ("sdk", "web", "cli")
OUTAGE = 1.5  # seconds the relay stays dead
JITTER = 0.25


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


def most_attempts(outage: float) -> int:
    """Attempts a listener following BACKOFF can make in ``outage`` seconds, plus the one that succeeds."""
    failed, elapsed = 0, 0.0
    for delay in BACKOFF:
        elapsed += delay * (1 - JITTER)  # the earliest each attempt can start
        if elapsed > outage:
            break
        failed += 1
    return failed + 1


def http_get(relay: RelayProcess, target: str, headers: dict):
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    return threads.deferToThread(run)


@pytest_twisted.inlineCallbacks
def test_listeners_of_every_kind_return_once_each_after_relay_sigkill(tmp_path):
    relay = yield RelayProcess().start()
    proxies = {}
    children: list[Child] = []
    port = None
    try:
        for path in PATHS:
            proxies[path] = yield FaultProxy("127.0.0.1", relay.port).start()

        # RelayedServerFactory, in this process
        factory = RelayedServerFactory(relay.connection_string(proxies["sdk"].port), path="sdk")
        factory.protocol = Echo
        port = yield factory.listen()
        # the hyco: endpoint under twistd web
        site = tmp_path / "site"
        site.mkdir()
        (site / "index.html").write_bytes(b"<h1>back again</h1>\n")
        web = Child()
        reactor.spawnProcess(
            web, TWISTD,
            [TWISTD, "-n", "--pidfile=", "--logfile=-", "web", "--listen",
             f"hyco:127.0.0.1\\:{proxies['web'].port}:web:keyName={relay.KEY_NAME}:keyEnv=HYCO_TEST_KEY:tls=no",
             "--path", str(site)],
            env=dict(os.environ, **child_env(HYCO_TEST_KEY=relay.KEY, PYTHONUNBUFFERED="1")), path=str(tmp_path),
        )
        children.append(web)
        # txhyco listen
        cli = spawn(["-m", "txhyco.cli", "listen", "cli", "--echo", "--log"],
                    env=child_env(HYCO_CONNECTION_STRING=relay.connection_string(proxies["cli"].port)))
        children.append(cli)
        yield web.wait_for("online", timeout=30)
        yield cli.wait_for("listening on", timeout=30)

        samples = yield relay.scrape()
        assert [listeners_gauge(samples, p) for p in PATHS] == [1, 1, 1]
        before = {p: proxies[p].accepted for p in PATHS}

        killed_at = reactor.seconds()
        yield relay.kill()
        yield wait_for(lambda: all(not proxies[p].live for p in PATHS), what="every listener noticing the loss")
        yield task.deferLater(reactor, OUTAGE, lambda: None)
        yield relay.start()
        back_at = reactor.seconds()

        online_at = {}

        def all_back():
            return len(online_at) == len(PATHS)

        def poll():
            def note(samples):
                for p in PATHS:
                    if p not in online_at and listeners_gauge(samples, p) == 1:
                        online_at[p] = reactor.seconds()
            return relay.scrape().addCallback(note)

        loop = task.LoopingCall(poll)
        loop.start(0.1)
        try:
            yield wait_for(all_back, timeout=60, what="every listener back online")
        finally:
            loop.stop()

        attempts = {p: proxies[p].accepted - before[p] for p in PATHS}
        bound = most_attempts(back_at - killed_at)
        print(f"\noutage {back_at - killed_at:.1f} s; attempts per listener {attempts} (bound {bound}); "
              f"online again after the relay returned: "
              + ", ".join(f"{p} {online_at[p] - back_at:.1f} s" for p in PATHS))
        for p in PATHS:
            assert 1 <= attempts[p] <= bound, (p, attempts, bound)
            # exactly one control channel per listener, at the relay and on the wire
            assert len(proxies[p].listening_on(b"sb-hc-action=listen")) == 1, p
        samples = yield relay.scrape()
        assert [listeners_gauge(samples, p) for p in PATHS] == [1, 1, 1]

        # and senders get through to each
        for path in ("sdk", "cli"):
            url = connect_url(Namespace.parse(relay.host, secure=False), path)
            sender = yield ws_connect(url, headers={"ServiceBusAuthorization": make_token(relay, path)})
            sender.sendMessage(b"after the outage", isBinary=True)
            assert (yield sender.messages.get()) == (b"after the outage", True)
            sender.sendClose(1000)
            yield sender.closed
        status, body = yield http_get(relay, "/web/", {"ServiceBusAuthorization": make_token(relay, "web")})
        assert status == 200 and b"back again" in body
        # still one each: no duplicate registered meanwhile
        samples = yield relay.scrape()
        assert [listeners_gauge(samples, p) for p in PATHS] == [1, 1, 1]
    finally:
        if port is not None:
            yield port.stopListening()
        for child in children:
            yield child.stop()
        for proxy in proxies.values():
            yield proxy.stop()
        yield relay.stop()
