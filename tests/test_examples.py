"""The examples run as a user would run them, against a local relay."""
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
