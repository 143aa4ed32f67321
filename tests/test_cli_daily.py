"""The command line as a newcomer uses it day to day (issue 16): replies kept, PATH from EntityPath.

Children run as real processes (tests/support/procs.py) against the relay in
this process; listeners the tests need run here too.
"""
from __future__ import annotations

import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor

from tests.test_cli_tunnels import assert_one_line_error, cli, finished, stopped
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
