"""The examples run as a user would run them, against a local relay."""
import pytest
import pytest_twisted

from tests.support.procs import spawn


@pytest_twisted.inlineCallbacks
def test_echo_server_and_client(relay):
    env = {"HYCO_CONNECTION_STRING": relay.connection_string.format()}
    server = spawn(["examples/echo_server.py", "echo"], env)
    try:
        line = yield server.wait_for("listening on")
        assert "/$hc/echo" in line
        client = spawn(["examples/echo_client.py", "echo", "one", "two"], env)
        code = yield client.ended
        assert code == 0, client.stderr
        assert [l.split(" (")[0] for l in client.lines if l.startswith("echo:")] == ["echo: one", "echo: two"]
        yield server.wait_for("connection from tcp4:127.0.0.1")
    finally:
        yield server.stop()


def _get(relay, target, path):
    import http.client

    from tests.support.rawlistener import make_token

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("GET", target, headers={"ServiceBusAuthorization": make_token(relay, path)})
        resp = conn.getresponse()
        return resp.status, resp.read()

    from twisted.internet import threads

    return threads.deferToThread(run)


@pytest_twisted.inlineCallbacks
def test_side_by_side(relay):
    from tests.support.wsclient import ws_connect
    from txhyco.websocket import connect_relay
    from tests.test_websocket_factories import Client

    env = {"HYCO_CONNECTION_STRING": relay.connection_string.format()}
    server = spawn(["examples/side_by_side.py", "greeter"], env)
    try:
        local_line = yield server.wait_for("local:")
        yield server.wait_for("relayed:")
        direct = yield ws_connect(local_line.split()[-1])
        through = yield connect_relay(Client, relay.connection_string.format(), path="greeter")
        direct.sendMessage(b"ann")
        through.sendMessage(b"bob")
        assert (yield direct.messages.get()) == (b"hello ann, via the local port", False)
        assert (yield through.messages.get()) == (b"hello bob, via the relay", False)
    finally:
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_klein_app(relay):
    import json

    server = spawn(["examples/klein_app.py", "kl"], {"HYCO_CONNECTION_STRING": relay.connection_string.format()})
    try:
        yield server.wait_for("klein app online")
        status, body = yield _get(relay, "/kl/hello/world", "kl")
        assert status == 200 and json.loads(body) == {"hello": "world", "self": "/kl/hello/world"}
    finally:
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_twistd_web_script(relay, tmp_path):
    import os
    import sys

    from twisted.internet import reactor

    from tests.support.procs import Child

    (tmp_path / "note.txt").write_bytes(b"served by twistd\n")
    env = dict(os.environ, HYCO_CONNECTION_STRING=relay.connection_string.format())
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    child = Child()
    reactor.spawnProcess(child, "/bin/sh", ["/bin/sh", "examples/twistd_web.sh", str(tmp_path), "files"], env=env, path=os.getcwd())
    try:
        yield child.wait_for("online")
        status, body = yield _get(relay, "/files/note.txt", "files")
        assert (status, body) == (200, b"served by twistd\n")
    finally:
        yield child.stop()


@pytest.mark.parametrize("script", ["examples/echo_server.py", "examples/echo_client.py", "examples/klein_app.py"])
@pytest_twisted.inlineCallbacks
def test_examples_refused_by_the_relay_say_why_in_one_line(relay, script):
    cs = relay.connection_string
    wrong_key = cs.format().replace(cs.shared_access_key, "d3Jvbmcga2V5IGZvciB0aGUgcmVsYXkgdGVzdHMgIQ==")
    run = spawn([script], {"HYCO_CONNECTION_STRING": wrong_key})
    code = yield run.ended
    assert code == 1
    stderr = run.stderr.decode("utf-8", "replace")
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "401" in errors[0] and "Traceback" not in stderr, stderr
