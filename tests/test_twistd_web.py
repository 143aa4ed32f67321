"""`twistd -n web --listen hyco:... --path DIR`, run as a user would, served through the relay."""
import http.client
import os
import sys

import pytest_twisted
from twisted.internet import reactor, threads

from tests.support.procs import Child
from tests.support.rawlistener import make_token

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def fetch(relay, target, headers):
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    return threads.deferToThread(run)


@pytest_twisted.inlineCallbacks
def test_twistd_web_serves_a_directory(relay, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_bytes(b"<h1>relayed</h1>\n")
    big = os.urandom(300_000)
    (site / "big.bin").write_bytes(big)
    env = dict(os.environ, HYCO_TEST_KEY=relay.rule.primary_key, PYTHONUNBUFFERED="1")
    description = f"hyco:127.0.0.1\\:{relay.port}:webdir:keyName={relay.rule.name}:keyEnv=HYCO_TEST_KEY:tls=no"
    child = Child()
    reactor.spawnProcess(
        child, TWISTD,
        [TWISTD, "-n", "--pidfile=", "--logfile=-", "web", "--listen", description, "--path", str(site)],
        env=env, path=str(tmp_path),
    )
    try:
        yield child.wait_for("online")  # the listener's log line once registered
        auth = {"ServiceBusAuthorization": make_token(relay, "webdir")}
        status, headers, body = yield fetch(relay, "/webdir/", auth)
        assert status == 200 and b"relayed" in body
        status, headers, body = yield fetch(relay, "/webdir/big.bin", auth)
        assert status == 200 and body == big
        status, headers, body = yield fetch(relay, "/webdir/big.bin", dict(auth, Range="bytes=100-299"))
        assert status == 206 and body == big[100:300]
        status, _, _ = yield fetch(relay, "/webdir/big.bin", {})
        assert status == 401
        assert relay.rule.primary_key not in "\n".join(child.lines)
    finally:
        yield child.stop()
