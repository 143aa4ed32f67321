"""Senders (and listeners) that try to make the relay do too much: each is answered
promptly, costs bounded memory, and leaves the relay serving others."""
import json

import pytest_twisted
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost

from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import RawClient, limited_config, raw_connect, relay_buffered, wait_until
from tests.test_relay_http import fetch, token_header
from tests.test_relay_http_edges import ScriptedListener, response, send_json
from txhyco.protocol.addresses import MAX_ENTITY_PATH, entity_path_candidates
from txhyco.testing import start_relay


def test_entity_candidates_of_a_deep_path_are_few_and_short():
    deep = "a/" * 16000  # 32 KB of one-letter segments
    candidates = entity_path_candidates(deep)
    assert candidates and all(len(c) <= MAX_ENTITY_PATH for c in candidates)
    assert len(candidates) == (MAX_ENTITY_PATH + 1) // 2  # a, a/a, ... up to 260 characters
    assert entity_path_candidates("x" * (MAX_ENTITY_PATH + 1)) == []
    assert entity_path_candidates("a//b") == ["a//b", "a"]


@pytest_twisted.inlineCallbacks
def test_senders_never_add_to_the_registry_and_cannot_shadow_a_listener(relay):
    from tests.support.wsclient import HandshakeFailed, ws_connect
    from txhyco.protocol.addresses import Namespace, connect_url, listen_url

    ns = Namespace.parse(relay.host, secure=False)
    deep = "/shop/" + "a/" * 16000
    status, _, _, _ = yield fetch(relay, "GET", deep)  # no token
    assert status == 401
    status, _, _, _ = yield fetch(relay, "GET", "/shop/api")  # no token
    assert status == 401
    status, _, _, _ = yield fetch(relay, "GET", "/nobody/here", headers=token_header(relay, "nobody"))
    assert status in (404, 502)
    try:
        yield ws_connect(connect_url(ns, "ghost/" + "b/" * 3000))
    except HandshakeFailed:
        pass
    assert relay.relay.registry.entities == {}
    try:  # nor does a listener whose name is longer than Azure allows
        yield ws_connect(listen_url(ns, "n" * (MAX_ENTITY_PATH + 1)), headers=token_header(relay, "n" * (MAX_ENTITY_PATH + 1)))
        raise AssertionError("a 261-character name was accepted")
    except HandshakeFailed as e:
        assert e.status == 400
    assert relay.relay.registry.entities == {}
    # A listener that comes online afterwards gets its senders' requests.
    listener = yield RawListener(relay, "shop").start()
    status, _, _, body = yield fetch(relay, "GET", "/shop/api/orders", headers=token_header(relay, "shop"))
    assert (status, body) == (200, b"hello ")
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(relay):
    listener = yield RawListener(relay, "web").start()
    client = yield raw_connect(relay.port)
    client.transport.write(
        b"POST /web/x HTTP/1.1\r\nHost: 127.0.0.1\r\nServiceBusAuthorization: " + make_token(relay, "web").encode()
        + b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        + b"GET /web/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    answer = yield client.closed
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1") == 1
    assert listener.requests == []  # the listener never saw either
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_a_listener_answering_with_an_interim_status_gives_502_and_keeps_its_channel(relay):
    def script(listener, request, body, channel):
        status = 150 if request["requestTarget"].endswith("/interim") else 200
        send_json(channel, response(request, status))

    listener = yield ScriptedListener(relay, "odd", script).start()
    status, _, _, body = yield fetch(relay, "GET", "/odd/interim", headers=token_header(relay, "odd"))
    assert status == 502 and b"interim status 150" in body
    status, _, _, _ = yield fetch(relay, "GET", "/odd/fine", headers=token_header(relay, "odd"))
    assert status == 200  # the same control channel goes on
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_headers_that_outgrow_a_command_once_escaped_get_431(relay):
    listener = yield RawListener(relay, "web").start()
    headers = dict(token_header(relay, "web"), **{"X-Big": "\u00e9" * 14000})  # 28 KB, 84 KB as JSON
    for body in (None, b"x" * 70000):  # inline, and over a rendezvous
        status, _, _, answer = yield fetch(relay, "POST" if body else "GET", "/web/big", body, headers)
        assert status == 431 and b"request command" in answer
    status, _, _, _ = yield fetch(relay, "GET", "/web/small", headers=token_header(relay, "web"))
    assert status == 200 and listener.requests and listener.requests[-1][0]["requestTarget"] == "/web/small"
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_a_kept_alive_connection_must_send_its_next_head_in_time():
    relay = yield start_relay(limited_config(stream_idle_timeout=0.3))
    try:
        listener = yield RawListener(relay, "web").start()
        client = yield raw_connect(relay.port, RecordsWhoClosed)
        request = b"GET /web/a HTTP/1.1\r\nHost: 127.0.0.1\r\nServiceBusAuthorization: " + make_token(relay, "web").encode() + b"\r\n\r\n"
        client.transport.write(request)
        yield client.wait_for(b"hello ")
        client.transport.write(b"GET /web/b HTTP/1.1\r\n")  # a head that never ends
        answer = yield client.closed  # the relay lets go of it
        assert answer.count(b"HTTP/1.1 200") == 1
        # closed (reset: it might not be reading) by the relay, not by the test's safety net
        assert client.reason.check(ConnectionDone, ConnectionLost) and not client.reason.check(ConnectionAborted)
        yield listener.stop()
    finally:
        yield relay.stop()


class RecordsWhoClosed(RawClient):
    def connectionLost(self, reason) -> None:
        self.reason = reason
        super().connectionLost(reason)


class NotReading(RawClient):
    safety_timeout = 60.0

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.pauseProducing()


@pytest_twisted.inlineCallbacks
def test_a_sender_that_does_not_read_its_answers_is_not_answered_faster_than_it_reads(relay):
    body = b"z" * 60000
    listener = yield RawListener(relay, "web", respond=lambda request, _: (200, {"Content-Type": "x/y"}, body)).start()
    client = yield raw_connect(relay.port, NotReading)
    request = b"GET /web/f HTTP/1.1\r\nHost: 127.0.0.1\r\nServiceBusAuthorization: " + make_token(relay, "web").encode() + b"\r\n\r\n"
    count = 150  # 9 MB of answers
    client.transport.write(request * count)
    yield wait_until(lambda: len(listener.requests) >= 3)
    yield _settle()
    # Only a few answers are held for it, not all 150 (the kernel's buffers hold some more).
    assert relay_buffered(relay) < 2 * 1024 * 1024
    assert len(listener.requests) < count
    client.transport.resumeProducing()  # now it reads: every answer arrives, in order, whole
    # all the heads, and the last body to its end (every answer is the same body)
    yield wait_until(lambda: client.data.count(b"HTTP/1.1 200") == count and client.data.endswith(b"\r\n\r\n" + body), timeout=30)
    assert len(client.data) > count * len(body)
    client.transport.loseConnection()
    yield listener.stop()


def _settle(seconds: float = 0.5):
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_a_sender_that_stops_reading_between_requests_gets_everything_later_without_errors(relay):
    from tests.test_relay_handshake_wait import Errors

    small, big = b"s" * 60000, b"b" * 200000  # inline, and streamed over a rendezvous
    listener = yield RawListener(relay, "web", respond=lambda request, _: (
        200, {"Content-Type": "x/y"}, big if request["requestTarget"].endswith("/big") else small)).start()
    errors = Errors()
    client = yield raw_connect(relay.port, NotReading)
    token = make_token(relay, "web").encode()

    def request(path):
        return b"GET /web/" + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nServiceBusAuthorization: " + token + b"\r\n\r\n"

    sent = 0
    for _ in range(300):  # one at a time, each after the last was answered, until the relay stops taking more
        client.transport.write(request(b"f"))
        sent += 1
        try:
            yield wait_until(lambda: len(listener.requests) == sent, timeout=1.0)
        except AssertionError:
            break
    client.transport.write(request(b"big"))  # must wait its turn, not collide with the drain wait
    sent += 1
    yield _settle()
    client.transport.resumeProducing()
    # every answer, the last (streamed, chunked) one to its end
    yield wait_until(lambda: client.data.count(b"HTTP/1.1 200") == sent and client.data.endswith(b"\r\n0\r\n\r\n"), timeout=30)
    assert client.data.count(b"b") >= len(big)
    client.transport.loseConnection()
    yield listener.stop()
    assert errors.stop() == []
