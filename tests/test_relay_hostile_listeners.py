"""Listeners that misbehave (authenticated, but buggy or hostile): the relay answers
their senders clearly and promptly, keeps its memory bounded, and goes on serving
everyone else."""
import json

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import RawClient, limited_config, raw_connect, relay_buffered, wait_until
from tests.support.wsclient import HandshakeFailed, ws_connect
from tests.test_relay_handshake_wait import Errors, client_frame
from tests.test_relay_http import fetch, token_header
from tests.test_relay_http_edges import ScriptedListener, response, send_json
from tests.test_relay_robustness import round_trip, upgrade_head
from tests.test_relay_websocket import auth, sender_url
from txhyco.relay import core
from txhyco.testing import start_relay

MIB = 1024 * 1024


# -- a response whose body never comes ------------------------------------------


def _head_then_silence(listener, request, body, channel):
    send_json(channel, response(request, 200, body=True))
    if request["requestTarget"].endswith("/partial"):
        channel.beginMessage(isBinary=True)  # one fragment, no FIN, then nothing
        channel.beginMessageFrame(7)
        channel.sendMessageFrameData(b"partial")


@pytest_twisted.inlineCallbacks
def test_a_control_channel_body_that_never_comes_gets_504():
    # The response deadline, still running while the body is awaited, cuts it off.
    relay = yield start_relay(limited_config(response_timeout=0.3))
    try:
        for path in ("/stall/none", "/stall/partial"):
            listener = yield ScriptedListener(relay, "stall", _head_then_silence).start()
            status, _, _, body = yield fetch(relay, "GET", path, headers=token_header(relay, "stall"))
            assert status == 504 and b"stalled" in body, (path, status, body)
            yield listener.stop()
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_a_control_channel_body_over_the_limit_gets_502_not_a_reset():
    relay = yield start_relay(limited_config(max_control_message_size=100000))

    def script(listener, request, body, channel):
        send_json(channel, response(request, 200, body=True))
        channel.sendMessage(b"y" * 100001, isBinary=True)

    try:
        yield ScriptedListener(relay, "fat", script).start()
        status, _, _, body = yield fetch(relay, "GET", "/fat/x", headers=token_header(relay, "fat"))
        assert status == 502 and b"The listener broke the protocol: received WebSocket message size 100001 exceeds" in body, (status, body)
        assert b"b'" not in body  # words, not a bytes repr
    finally:
        yield relay.stop()


# -- reject addresses -------------------------------------------------------------


@pytest.mark.parametrize("reject", ["statusCode=abc", "statusCode=0", "sb-hc-statusCode=101", "sb-hc-statusCode=100"])
@pytest_twisted.inlineCallbacks
def test_a_malformed_reject_fails_the_sender_at_once(reject):
    # Node's un-prefixed parameters, and interim statuses, are judged once the
    # address is used up; the listener cannot try again.
    # accept_timeout is long: the sender must hear from the reject, not the timer.
    relay = yield start_relay(limited_config(accept_timeout=20))
    try:
        listener = yield RawListener(relay, "rj", mode="ignore").start()
        attempt = ws_connect(sender_url(relay, "rj"), headers=auth(relay, "rj"))
        yield wait_until(lambda: listener.accepts)
        with pytest.raises(HandshakeFailed) as info:
            yield ws_connect(listener.accepts[0]["address"] + "&" + reject)
        assert info.value.status == 400
        with pytest.raises(HandshakeFailed) as info:
            yield attempt
        assert info.value.status == 502 and "reject" in info.value.reason
        assert relay.relay.registry.pending == {}
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_a_reject_address_that_does_not_parse_stays_valid_for_a_proper_answer(relay):
    listener = yield RawListener(relay, "rj", mode="ignore").start()
    attempt = ws_connect(sender_url(relay, "rj"), headers=auth(relay, "rj"))
    yield wait_until(lambda: listener.accepts)
    address = listener.accepts[0]["address"]
    for bad in ("sb-hc-statusCode=1000", "sb-hc-statusCode=abc"):
        with pytest.raises(HandshakeFailed) as info:
            yield ws_connect(address + "&" + bad)
        assert info.value.status == 400
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(address + "&sb-hc-statusCode=403&sb-hc-statusDescription=Not+you")
    assert info.value.status == 410
    with pytest.raises(HandshakeFailed) as info:
        yield attempt
    assert (info.value.status, info.value.reason) == (403, "Not you")


@pytest_twisted.inlineCallbacks
def test_a_rendezvous_address_used_for_the_wrong_action_stays_valid(relay):
    listener = yield RawListener(relay, "cross", mode="ignore").start()
    attempt = ws_connect(sender_url(relay, "cross"), headers=auth(relay, "cross"))
    yield wait_until(lambda: listener.accepts)
    address = listener.accepts[0]["address"]
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(address.replace("sb-hc-action=accept", "sb-hc-action=request"))
    assert info.value.status == 403
    leg = yield ws_connect(address)  # the real accept still works
    sender = yield attempt
    sender.sendMessage(b"hi", isBinary=False)
    assert (yield leg.messages.get()) == (b"hi", False)
    sender.sendClose(1000)
    yield leg.closed


# -- listeners that do not read ---------------------------------------------------


class Patient(RawClient):
    safety_timeout = 60.0


@defer.inlineCallbacks
def deaf_listener(relay, path):
    """A raw listener that reads its 101 and then nothing more."""
    deaf = yield raw_connect(relay.port, Patient)
    deaf.transport.write(upgrade_head(f"/$hc/{path}?sb-hc-action=listen", host=relay.host,
                                      extra=f"ServiceBusAuthorization: {make_token(relay, path)}\r\n"))
    yield deaf.wait_for(b"\r\n\r\n")
    deaf.transport.pauseProducing()
    yield wait_until(lambda: relay.relay.registry.entities.get(path) and relay.relay.registry.entities[path].listeners)
    return deaf


@pytest_twisted.inlineCallbacks
def test_a_listener_that_does_not_read_gets_no_more_work_than_the_relay_can_hold(relay, monkeypatch):
    monkeypatch.setattr(core, "CONTROL_BACKLOG_LIMIT", MIB)  # (8 MiB by default: fewer senders do here)
    deaf = yield deaf_listener(relay, "deaf")
    token = make_token(relay, "deaf").encode()
    request = (b"POST /deaf/x HTTP/1.1\r\nHost: 127.0.0.1\r\nServiceBusAuthorization: " + token
               + b"\r\nContent-Length: 60000\r\n\r\n" + b"q" * 60000)
    channel = next(iter(relay.relay.registry.entities["deaf"].listeners.values()))
    senders = []
    for _ in range(300):  # 18 MB of inline requests for a listener that reads none of them
        sender = yield raw_connect(relay.port, Patient)
        sender.transport.write(request)
        senders.append(sender)

    def refused():
        return [s for s in senders if b"HTTP/1.1 503 " in s.data]

    # Every request has been sent to the listener or refused.
    yield wait_until(lambda: len(channel.exchanges) + len(refused()) == len(senders), timeout=30)
    assert refused() and relay_buffered(relay) < 3 * MIB
    assert b"not keeping up with its control channel" in refused()[0].data
    # WebSocket senders are refused the same way.
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "deaf"), headers=auth(relay, "deaf"))
    assert info.value.status == 503
    # A listener that reads takes the work meanwhile.
    healthy = yield RawListener(relay, "deaf").start()
    for _ in range(5):
        status, _, _, body = yield fetch(relay, "POST", "/deaf/y", b"ok", headers=token_header(relay, "deaf"))
        assert (status, body) == (200, b"hello ok")
    for sender in senders:
        sender.transport.abortConnection()
    deaf.transport.abortConnection()
    yield healthy.stop()


@pytest_twisted.inlineCallbacks
def test_a_burst_of_inline_uploads_to_a_listener_that_reads_is_served_not_refused(relay):
    # 100 simultaneous 60 KB POSTs (6 MB, under the backlog limit however the reads interleave).
    listener = yield RawListener(relay, "busy", respond=lambda r, b: (200, {}, b"got %d" % len(b))).start()
    token = make_token(relay, "busy").encode()
    request = (b"POST /busy/x HTTP/1.1\r\nHost: 127.0.0.1\r\nServiceBusAuthorization: " + token
               + b"\r\nContent-Length: 60000\r\n\r\n" + b"q" * 60000)
    senders = []
    for _ in range(100):
        sender = yield raw_connect(relay.port, Patient)
        senders.append(sender)
    for sender in senders:
        sender.transport.write(request)
    yield wait_until(lambda: all(b"\r\n\r\ngot 60000" in s.data or b" 503 " in s.data for s in senders), timeout=60)
    assert [s for s in senders if b" 503 " in s.data] == []
    for sender in senders:
        sender.transport.abortConnection()
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_pings_from_a_listener_that_does_not_read_are_not_answered_without_limit(relay, monkeypatch):
    # A control channel may be up to CONTROL_BACKLOG_LIMIT behind and still be answered;
    # shortened here so that fewer Pings show the cap.
    assert core.ControlChannel.pong_backlog_limit > core.CONTROL_BACKLOG_LIMIT
    monkeypatch.setattr(core.ControlChannel, "pong_backlog_limit", 2 * MIB)
    deaf = yield deaf_listener(relay, "pinger")
    channel = next(iter(relay.relay.registry.entities["pinger"].listeners.values()))
    ping = client_frame(b"p" * 125, opcode=9)
    for _ in range(20):  # 16 MB of Pings, then a Close: once the relay is closing, it read them all
        deaf.transport.write(ping * 6400)
    deaf.transport.write(client_frame(b"\x03\xe8", opcode=8))
    yield wait_until(lambda: channel.proto.state != channel.proto.STATE_OPEN, timeout=30)
    assert relay_buffered(relay) < 3 * MIB
    deaf.transport.abortConnection()
    yield round_trip(relay)


# -- malformed commands ------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_deeply_nested_header_values_are_a_protocol_error(relay):
    errors = Errors()

    def script(listener, request, body, channel):
        headers = {"X-Deep": json.loads("[" * 900 + "]" * 900)}
        send_json(channel, response(request, 200, responseHeaders=headers))

    listener = yield ScriptedListener(relay, "deep", script).start()
    status, _, _, body = yield fetch(relay, "GET", "/deep/x", headers=token_header(relay, "deep"))
    assert status == 502 and b"broke the protocol" in body, (status, body)
    code, _ = (yield listener.control.closed)[1:]
    assert code == 1008
    assert errors.stop() == []
    yield round_trip(relay)


def test_a_pong_held_behind_a_forwarded_frame_answers_the_latest_ping_and_only_one_is_held():
    from txhyco.relay.websocket import RelayWebSocketProtocol

    leg = RelayWebSocketProtocol()
    leg.state = leg.STATE_OPEN
    leg.frame_in_progress = 1  # a frame is being forwarded into this leg piece by piece
    for n in range(1000):
        leg.onPing(b"ping %d" % n)
    assert [(frame[0], frame[1]) for frame in leg.held_frames] == [(10, b"ping 999")]
