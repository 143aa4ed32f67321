"""Hostile input against a running relay and a running listener, from a seeded generator
(tests/support/fuzz.py): every bad peer gets the right status or close code, nothing is
logged as an unhandled error, and an echo through the relay works during and after.

The counts are printed (``pytest -s``) for the record; the seed makes a run repeatable.
"""
from __future__ import annotations

import json
import random

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionAborted

from tests.support import fuzz
from tests.support.hostilerelay import Answers, control_channel
from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import RawClient, limited_config, raw_connect, sleep, wait_until
from tests.support.wsclient import ws_connect
from tests.test_relay_http import fetch, token_header
from tests.test_relay_websocket import auth, sender_url
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory

SEED = 14_2026
MAX_MESSAGE = 65536


@pytest.fixture
def fuzz_relay():
    config = limited_config(handshake_timeout=1.0, stream_idle_timeout=1.0, response_timeout=2.0, max_header_size=8192,
                            max_message_size=MAX_MESSAGE, max_control_message_size=MAX_MESSAGE)
    running = pytest_twisted.blockon(start_relay(config))
    yield running
    pytest_twisted.blockon(running.stop())


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class Bystander:
    """An echo listener (RelayedServerFactory) and one sender kept open through all the fuzzing."""

    @defer.inlineCallbacks
    def start(self, relay, path="echo"):
        self.relay, self.path = relay, path
        factory = RelayedServerFactory(relay.connection_string.format(), path=path)
        factory.protocol = Echo
        self.port = yield factory.listen()
        self.sender = yield ws_connect(sender_url(relay, path), headers=auth(relay, path))
        self.echoes = 0
        return self

    @defer.inlineCallbacks
    def check(self):
        message = b"still here %d" % self.echoes
        self.sender.sendMessage(message, isBinary=True)
        got = yield self.sender.messages.get().addTimeout(10, reactor)
        assert got == (message, True)
        self.echoes += 1

    @defer.inlineCallbacks
    def stop(self):
        yield self.check()
        fresh = yield ws_connect(sender_url(self.relay, self.path), headers=auth(self.relay, self.path))
        fresh.sendMessage(b"a new connection")
        assert (yield fresh.messages.get().addTimeout(10, reactor)) == (b"a new connection", False)
        for leg in (fresh, self.sender):
            leg.sendClose(1000)
            yield leg.closed
        yield self.port.stopListening()


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@defer.inlineCallbacks
def answers(relay, cases, *, batch=25):
    """Send each case's bytes on its own connection (``batch`` at a time); [(label, answer)]."""
    cases = list(cases)
    out = []
    for start in range(0, len(cases), batch):
        clients = []
        for label, data in cases[start:start + batch]:
            client = yield raw_connect(relay.port)
            client.transport.write(data)
            clients.append((label, client))
        for label, client in clients:
            out.append((label, (yield client.closed)))
    return out


def refused(status) -> bool:
    """A client error, or 505 for an HTTP version other than 1.1 (RFC 9110 §15.6.6)."""
    return status is not None and (400 <= status < 500 or status == 505)


def assert_refused(results, allowed=refused):
    wrong = [(label, answer[:120]) for label, answer in results if not allowed(status_of(answer))]
    assert wrong == [], wrong


# -- the relay's front door ----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_the_front_door_refuses_hostile_heads_and_keeps_serving(fuzz_relay):
    relay, rng, failures = fuzz_relay, random.Random(SEED), fuzz.FailureLog()
    bystander = yield Bystander().start(relay)
    token = make_token(relay, "echo")
    counts = {}

    broken = list(fuzz.broken_upgrades(rng, 220, path="echo", host=relay.host, token=token))
    assert_refused((yield answers(relay, broken)))
    counts["broken upgrades"] = len(broken)
    yield bystander.check()

    methods = list(fuzz.wrong_methods(rng, path="echo", host=relay.host, token=token))
    assert_refused((yield answers(relay, methods)))
    counts["wrong or invalid methods"] = len(methods)

    garbage = list(fuzz.garbage_heads(rng, 150))
    # Garbage gets a 4xx, or (bytes that are not HTTP at all) just a closed connection.
    assert_refused((yield answers(relay, garbage)), lambda status: status is None or refused(status))
    counts["garbage heads"] = len(garbage)
    yield bystander.check()

    # A head over the limit in one piece, and one that never ends (written until cut off).
    results = yield answers(relay, [("huge header", b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")])
    assert status_of(results[0][1]) == 431
    endless = yield raw_connect(relay.port)
    endless.transport.write(b"GET /echo/x HTTP/1.1\r\nHost: a\r\n")
    lines = 0
    while not endless.closed.called and lines < 10000:
        endless.transport.write(b"X-Line-%d: %s\r\n" % (lines, b"v" * 50))
        lines += 1
        if lines % 100 == 0:
            yield sleep(0.001)
    assert status_of((yield endless.closed)) == 431
    counts["endless header lines written before the cut"] = lines
    yield bystander.check()

    assert failures.stop() == []
    yield bystander.stop()
    print("front door:", counts)


@pytest_twisted.inlineCallbacks
def test_thousands_of_bad_tokens_get_401_and_a_good_one_still_works(fuzz_relay):
    relay, rng, failures = fuzz_relay, random.Random(SEED + 1), fuzz.FailureLog()
    bystander = yield Bystander().start(relay)
    good = make_token(relay, "echo")
    tokens = list(fuzz.bad_tokens(rng, 2400, good=good))
    # HTTP senders: many requests pipelined on a few kept-alive connections.
    per_connection = 100
    http_tokens = tokens[:2000]
    clients = []
    for start in range(0, len(http_tokens), per_connection):
        client = yield raw_connect(relay.port)
        client.transport.write(b"".join(
            b"GET /echo/x HTTP/1.1\r\nHost: " + relay.host.encode() + b"\r\nServiceBusAuthorization: " + t.encode("utf-8") + b"\r\n\r\n"
            for _, t in http_tokens[start:start + per_connection]))
        clients.append((client, len(http_tokens[start:start + per_connection])))
    for client, sent in clients:
        yield client.wait_for(b"HTTP/1.1 401" , timeout=20)
        yield wait_until(lambda: client.data.count(b"HTTP/1.1 ") == sent or client.closed.called, timeout=20)
        assert client.data.count(b"HTTP/1.1 401 ") == sent, client.data.count(b"HTTP/1.1 ")
        client.transport.loseConnection()
    yield bystander.check()
    # WebSocket senders and listeners, one connection each.
    ws_tokens = tokens[2000:]
    cases = []
    for n, (label, t) in enumerate(ws_tokens):
        action = "" if n % 2 else "?sb-hc-action=listen"
        cases.append((label, fuzz.head(fuzz.upgrade_lines(f"/$hc/echo{action}", relay.host, t))))
    assert_refused((yield answers(relay, cases)), lambda status: status == 401)
    status, _, _, _ = yield fetch(relay, "GET", "/echo/x", headers={"ServiceBusAuthorization": good})
    assert status != 401  # (no HTTP application there: the listener's answer, not the relay's refusal)
    assert failures.stop() == []
    yield bystander.stop()
    print(f"bad tokens: {len(http_tokens)} over HTTP, {len(ws_tokens)} over WebSocket")


# -- frames on a relayed connection ------------------------------------------------------


@pytest.mark.parametrize("leg", ["sender", "control channel"])
@pytest_twisted.inlineCallbacks
def test_bad_frames_get_the_right_close_code(fuzz_relay, leg):
    relay, rng, failures = fuzz_relay, random.Random(SEED + 2), fuzz.FailureLog()
    bystander = yield Bystander().start(relay)
    frames = list(fuzz.bad_frames(rng, 45, max_message=MAX_MESSAGE))
    wrong = []
    for n, (label, data, codes) in enumerate(frames):
        if leg == "sender":
            target, path = "/$hc/echo", "echo"
        else:
            target, path = f"/$hc/frames{n}?sb-hc-action=listen", f"frames{n}"
            # The relay reads a control channel's text as commands: text that is not
            # UTF-8 is not a command either (1008, as test_relay_robustness shows); and a
            # binary message there is a body no command announced (1008), which the
            # relay may see in its first fragment, before the message outgrows the limit.
            if codes & {fuzz.INVALID_DATA, fuzz.TOO_BIG}:
                codes = codes | {1008}
        client = yield raw_connect(relay.port)
        client.transport.write(fuzz.head(fuzz.upgrade_lines(target, relay.host, make_token(relay, path))))
        yield client.wait_for(b"\r\n\r\n")
        assert client.data.startswith(b"HTTP/1.1 101 "), client.data[:200]
        # A client answers the close frame, and here goes: the test waits for no close handshake.
        client.on_data = lambda _, c=client: fuzz.server_close_code(c.data) is not None and c.transport.loseConnection()
        client.transport.write(data)
        answer = yield client.closed
        code = fuzz.server_close_code(answer)
        if code not in codes:
            wrong.append((label, code, codes))
        if n % 10 == 9:
            yield bystander.check()
    assert wrong == []
    assert failures.stop() == []
    yield bystander.stop()
    print(f"bad frames on a {leg}: {len(frames)}")


# -- the control channel, from a hostile listener --------------------------------------------


@pytest_twisted.inlineCallbacks
def test_valid_json_that_is_wrong_on_a_control_channel_gets_1008(fuzz_relay):
    relay, rng, failures = fuzz_relay, random.Random(SEED + 3), fuzz.FailureLog()
    bystander = yield Bystander().start(relay)
    commands = list(fuzz.wrong_listener_commands(rng, 70))
    wrong = []
    for n, (label, payload) in enumerate(commands):
        listener = yield RawListener(relay, f"ctl{n}").start()
        listener.control.sendMessage(payload, isBinary=False)
        _, code, reason = yield listener.control.closed
        if code != 1008 or not reason:
            wrong.append((label, code, reason))
    assert wrong == []
    yield bystander.check()
    assert failures.stop() == []
    yield bystander.stop()
    print(f"wrong control-channel commands: {len(commands)}")


@pytest_twisted.inlineCallbacks
def test_responses_for_unknown_request_ids_are_ignored_and_the_channel_serves_on(fuzz_relay):
    relay, rng, failures = fuzz_relay, random.Random(SEED + 4), fuzz.FailureLog()
    listener = yield RawListener(relay, "web").start()
    count = 200
    for n in range(count):
        # (well-formed ids: an id with a control character is a malformed command, 1008)
        request_id = rng.choice([str(rng.randrange(10**12)), "x" * 200, "caf\u00e9", "a b"])
        has_body = n % 4 == 0
        listener.control.sendMessage(json.dumps({"response": {
            "requestId": request_id, "statusCode": rng.choice([200, 404, 500]), "body": has_body}}).encode(), isBinary=False)
        if has_body:
            listener.control.sendMessage(fuzz.junk(rng, rng.randrange(0, 2000)), isBinary=True)
    status, _, _, body = yield fetch(relay, "GET", "/web/after", headers=token_header(relay, "web"))
    assert (status, body) == (200, b"hello ")
    assert listener.control.state == listener.control.STATE_OPEN
    assert failures.stop() == []
    yield listener.stop()
    print(f"responses for unknown request ids: {count}")


# -- the listener, from a hostile relay ---------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_listener_survives_hostile_commands_from_its_relay(fuzz_relay):
    relay, rng, failures = fuzz_relay, random.Random(SEED + 5), fuzz.FailureLog()
    bystander = yield Bystander().start(relay)
    channel = control_channel(relay, "echo")
    answers = Answers(channel)
    for request_id in ("smuggle-1", "smuggle-2"):
        answers.expect(request_id)
    commands = list(fuzz.hostile_relay_commands(rng, 80))
    for n, (label, payload, is_binary) in enumerate(commands):
        channel.proto.sendMessage(payload, isBinary=is_binary)
        if n % 20 == 19:
            yield bystander.check()
    # The two smuggling requests were answered 400, never passed to an application.
    yield wait_until(lambda: len(answers.got) == 2)
    assert answers.got == {"smuggle-1": 400, "smuggle-2": 400}
    # Still the same control channel: nothing above was worth a reconnect.
    assert list(relay.relay.registry.entities["echo"].listeners.values()) == [channel]
    # Invalid UTF-8 in a text message is worth one (RFC 6455 §8.1: fail with 1007): the
    # listener closes that channel and is back on a new one.
    channel.proto.sendMessage(b"\xff\xfe\xfd", isBinary=False)
    yield wait_until(lambda: channel.proto.state != channel.proto.STATE_OPEN)
    assert channel.proto.remoteCloseCode in (1007, None)  # (None: dropped after its close frame)
    yield wait_until(lambda: [c for c in relay.relay.registry.entities["echo"].listeners.values() if c is not channel])
    assert failures.stop() == [], [e.get("log_format") for e in failures.events]
    yield bystander.stop()
    print(f"hostile relay commands: {len(commands)}")


# -- slow peers ----------------------------------------------------------------------------


class Dribbler(RawClient):
    safety_timeout = 10.0

    def connectionLost(self, reason) -> None:
        self.reason = reason
        super().connectionLost(reason)


@pytest_twisted.inlineCallbacks
def test_slow_loris_heads_and_stalled_bodies_are_cut_off(fuzz_relay):
    relay, failures = fuzz_relay, fuzz.FailureLog()
    bystander = yield Bystander().start(relay)
    token = make_token(relay, "echo").encode()
    heads = [
        b"GET /echo/x HTTP/1.1\r\nHost: " + relay.host.encode() + b"\r\nServiceBusAuthorization: " + token + b"\r\n\r\n",
        fuzz.head(fuzz.upgrade_lines("/$hc/echo", relay.host, token.decode())),
    ]
    lorises = []
    for data in heads * 5:  # a byte every 50 ms: the whole head would take seconds
        client = yield raw_connect(relay.port, Dribbler)
        lorises.append((client, data))

    @defer.inlineCallbacks
    def dribble(client, data):
        for i in range(len(data)):
            if client.closed.called:
                return
            client.transport.write(data[i:i + 1])
            yield sleep(0.05)

    for client, data in lorises:
        dribble(client, data)
    yield bystander.check()
    for client, _ in lorises:
        assert status_of((yield client.closed)) == 408
    # A body announced and never finished: the relay answers 408 (inline: it waits for the
    # whole body before the listener hears of it) or its listener's answer, and lets go.
    stalled = []
    for length in (100, 70000):  # inline, and over a rendezvous
        client = yield raw_connect(relay.port, Dribbler)
        client.transport.write(b"POST /echo/x HTTP/1.1\r\nHost: " + relay.host.encode() + b"\r\nServiceBusAuthorization: " + token
                               + b"\r\nContent-Length: %d\r\n\r\n" % length + b"b" * 10)
        stalled.append(client)
    inline = yield stalled[0].closed
    streamed = yield stalled[1].closed
    assert status_of(inline) == 408 and b"body" in inline, inline[:300]
    assert status_of(streamed) in (408, 501, 504), streamed[:300]
    for client in stalled:  # closed by the relay, not by the test's safety net
        assert not client.reason.check(ConnectionAborted), client.reason
    assert failures.stop() == []
    yield bystander.stop()
