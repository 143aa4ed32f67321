"""The command line as a newcomer uses it day to day (issue 16): replies kept, PATH from EntityPath.

Children run as real processes (tests/support/procs.py) against the relay in
this process; listeners the tests need run here too.
"""
from __future__ import annotations

import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.test_cli_tunnels import Collect, assert_one_line_error, cli, echo_server, finished, stopped, tunnel
from txhyco.protocol.connection_string import ConnectionString
from txhyco.websocket import RelayedServerFactory


class SlowEcho(WebSocketServerProtocol):
    """Answers each message a moment later, as a listener doing some work does."""

    def onMessage(self, payload, isBinary):
        reactor.callLater(0.3, self._answer, payload, isBinary)

    def _answer(self, payload, isBinary):
        if self.state == self.STATE_OPEN:
            self.sendMessage(b"re: " + payload, isBinary)


class AnswerThenClose(WebSocketServerProtocol):
    """Answers the first message and closes at once."""

    def onMessage(self, payload, isBinary):
        self.sendMessage(b"re: " + payload, isBinary)
        self.sendClose(1000, "that is all")


class Silent(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        pass


@defer.inlineCallbacks
def listening(relay, path: str, protocol):
    factory = RelayedServerFactory(relay.connection_string.format(), path=path)
    factory.protocol = protocol
    port = yield factory.listen()
    return port


@defer.inlineCallbacks
def piped(relay, path: str, text: bytes, *extra: str):
    """``printf TEXT | txhyco connect PATH EXTRA``: (exit code, stdout, stderr)."""
    session = cli("connect", path, *extra, cs=relay.connection_string)
    session.transport.write(text)
    session.transport.closeStdin()
    result = yield finished(session)
    return result


@pytest_twisted.inlineCallbacks
def test_connect_waits_at_end_of_input_for_replies_still_due(relay):
    port = yield listening(relay, "slow", SlowEcho)
    try:
        code, out, err = yield piped(relay, "slow", b"one\ntwo\n", "--wait", "30")
    finally:
        yield port.stopListening()
    assert code == 0, err
    assert out.splitlines() == ["re: one", "re: two"]
    assert "no reply" not in err and "Traceback" not in err


@pytest_twisted.inlineCallbacks
def test_connect_keeps_the_reply_of_a_listener_that_closes_after_answering(relay):
    port = yield listening(relay, "curt", AnswerThenClose)
    try:
        code, out, err = yield piped(relay, "curt", b"one\n")
    finally:
        yield port.stopListening()
    assert code == 0, err
    assert out.splitlines() == ["re: one"]
    assert "Traceback" not in err


@pytest_twisted.inlineCallbacks
def test_connect_says_when_replies_never_came(relay):
    port = yield listening(relay, "silent", Silent)
    try:
        code, out, err = yield piped(relay, "silent", b"one\ntwo\n", "--wait", "0.2")
    finally:
        yield port.stopListening()
    assert code == 0, err
    assert out == ""
    assert_one_line_error(1, err, "2 of 2 messages got no reply within 0.2 s", "--wait")


@pytest_twisted.inlineCallbacks
def test_path_comes_from_the_connection_strings_entity_path(relay):
    with_path = ConnectionString.parse(relay.connection_string.format() + ";EntityPath=named")
    listener = cli("listen", "--echo", cs=with_path)
    yield listener.wait_for("listening on")
    session = cli("connect", cs=with_path)
    session.transport.write(b"by name\n")
    session.transport.closeStdin()
    code, out, err = yield finished(session)
    yield stopped(listener)
    assert code == 0, err
    assert out.splitlines() == ["by name"]

    code, _, err = yield finished(cli("listen", "--echo", cs=relay.connection_string))
    assert_one_line_error(code, err, "no PATH given", "EntityPath", status=2)


@pytest_twisted.inlineCallbacks
def test_tunnel_sender_learns_why_the_listener_closed_it(relay):
    spare = echo_server()
    dead_port = spare.getHost().port
    yield spare.stopListening()
    listener, sender, (host, port) = yield tunnel(relay.connection_string, "gone", dead_port)
    client = Collect()
    yield connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
    data = yield client.done.addTimeout(30, reactor)
    assert data == b""
    yield stopped(listener)
    _, _, log = yield stopped(sender)
    assert f"cannot connect to 127.0.0.1:{dead_port}" in log, log
    # txhyco's own words only: no Autobahn log lines without --debug.
    assert "autobahn" not in log.lower() and "dropping connection" not in log, log


@pytest_twisted.inlineCallbacks
def test_live_panel_leaves_no_stale_frame_around_stdout_lines(relay):
    """On a terminal, the 'listening on' line goes above the panel, not glued to an old frame's bottom."""
    import os
    import re
    import sys

    from tests.support.procs import ROOT, Child

    child = Child()
    env = dict(os.environ, HYCO_CONNECTION_STRING=relay.connection_string.format(), PYTHONUNBUFFERED="1",
               PYTHONPATH=ROOT, COLUMNS="100", TERM="xterm")
    reactor.spawnProcess(child, sys.executable, [sys.executable, "-m", "txhyco", "listen", "tty", "--echo"],
                         env=env, path=ROOT, usePTY=True)
    try:
        line = yield child.wait_for("listening on")
    finally:
        yield child.stop()
    # What is left on the terminal's line: the text after the last "erase line".
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line.rsplit("\x1b[2K", 1)[-1]).replace("\r", "")
    assert shown.startswith("listening on ws://"), repr(line)


@pytest_twisted.inlineCallbacks
def test_autobahn_log_lines_only_with_debug(relay):
    logs = {}
    for extra in ((), ("--debug",)):
        sender = cli("connect", "nobody", "--forward", "0", *extra, cs=relay.connection_string)
        host, port = (yield sender.wait_for("127.0.0.1:")).strip().rsplit(":", 1)
        client = Collect()
        yield connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), client)
        yield client.done.addTimeout(30, reactor)
        _, _, logs[extra] = yield stopped(sender)
    assert "no listeners" in logs[()] and "[autobahn." not in logs[()], logs[()]
    assert "[autobahn." in logs[("--debug",)], logs[("--debug",)]
