"""The relay's WebSocket side against a hand-written listener and Autobahn senders."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.support.rawlistener import RawListener, make_token
from tests.support.wsclient import HandshakeFailed, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url


def sender_url(relay, path, suffix="", query="", token=None):
    return connect_url(Namespace.parse(relay.host, secure=False), path, suffix=suffix, query=query, token=token)


def auth(relay, path, **kw):
    return {"ServiceBusAuthorization": make_token(relay, path, **kw)}


@pytest_twisted.inlineCallbacks
def test_echo_text_and_binary_through_relay(relay):
    listener = yield RawListener(relay, "echo").start()
    sender = yield ws_connect(sender_url(relay, "echo"), headers=auth(relay, "echo"))
    for payload, binary in [(b"hello", False), (b"\x00\x01\xff", True), (b"", True), (b"", False), (b"x" * 70000, True), ("\u00f8".encode() * 1000, False)]:
        sender.sendMessage(payload, isBinary=binary)
        got = yield sender.messages.get()
        assert got == (payload, binary)
    sender.sendClose(1000)
    yield sender.closed
    yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_large_fragmented_message_keeps_boundaries(relay):
    yield RawListener(relay, "big").start()
    sender = yield ws_connect(sender_url(relay, "big"), headers=auth(relay, "big"))
    payload = bytes(range(256)) * 4096  # 1 MiB
    sender.sendMessage(payload, isBinary=True, fragmentSize=10000)
    sender.sendMessage(b"after", isBinary=False)
    assert (yield sender.messages.get()) == (payload, True)
    assert (yield sender.messages.get()) == (b"after", False)


@pytest_twisted.inlineCallbacks
def test_accept_carries_headers_path_query_and_peer(relay):
    listener = yield RawListener(relay, "app").start()
    headers = auth(relay, "app")
    headers["X-Custom"] = "Some value here; other-value/here."
    sender = yield ws_connect(sender_url(relay, "app", suffix="/room/1", query="x=1&y=%20z"), headers=headers)
    accept = listener.accepts[0]
    assert "ServiceBusAuthorization" not in accept["connectHeaders"]
    assert accept["connectHeaders"]["X-Custom"] == "Some value here; other-value/here."
    assert "Sec-WebSocket-Key" in accept["connectHeaders"]
    assert accept["remoteEndpoint"]["address"] == "127.0.0.1"
    assert "/$hc/app/room/1?x=1&y=%20z&sb-hc-action=accept" in accept["address"]
    assert accept["id"]
    sender.sendMessage(b"ok")
    assert (yield sender.messages.get()) == (b"ok", False)


@pytest_twisted.inlineCallbacks
def test_sender_tracking_id_and_query_token(relay):
    listener = yield RawListener(relay, "q").start()
    token = make_token(relay, "q")
    url = sender_url(relay, "q", token=token) + "&sb-hc-id=my-tracking-id"
    sender = yield ws_connect(url)
    assert listener.accepts[0]["id"] == "my-tracking-id"
    assert "sb-hc-token" not in listener.accepts[0]["address"]
    sender.sendMessage(b"via query token")
    assert (yield sender.messages.get()) == (b"via query token", False)


@pytest_twisted.inlineCallbacks
def test_subprotocol_passes_through(relay):
    yield RawListener(relay, "proto").start()
    sender = yield ws_connect(sender_url(relay, "proto"), headers=auth(relay, "proto"), protocols=["chat", "superchat"])
    assert sender.websocket_protocol_in_use == "chat"


@pytest_twisted.inlineCallbacks
def test_close_code_and_reason_pass_both_ways(relay):
    yield RawListener(relay, "cl").start()
    sender = yield ws_connect(sender_url(relay, "cl"), headers=auth(relay, "cl"))
    sender.sendMessage(b"close-me")  # the echo listener closes with 4000 "bye"
    was_clean, code, reason = yield sender.closed
    assert (code, reason) == (4000, "bye")

    listener = yield RawListener(relay, "cl2").start()
    sender2 = yield ws_connect(sender_url(relay, "cl2"), headers=auth(relay, "cl2"))
    sender2.sendClose(4001, "sender says bye")
    was_clean, code, reason = yield sender2.closed
    assert was_clean
    assert code == 1000  # the listener's answer: Autobahn replies 1000 by default
    assert (yield listener.legs[0].closed) == (True, 4001, "sender says bye")


@pytest_twisted.inlineCallbacks
def test_reject_reaches_sender_with_status_and_description(relay):
    yield RawListener(relay, "rej", mode="reject", reject_status=(403, "Go away now")).start()
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "rej"), headers=auth(relay, "rej"))
    assert info.value.status == 403
    assert info.value.reason == "Go away now"


@pytest_twisted.inlineCallbacks
def test_no_listener_is_404(relay):
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "nobody"), headers=auth(relay, "nobody"))
    assert info.value.status == 404
    assert "There are no listeners connected for the endpoint." in info.value.reason
    assert "TrackingId:" in info.value.reason


@pytest_twisted.inlineCallbacks
def test_missing_bad_and_insufficient_tokens(relay):
    yield RawListener(relay, "auth").start()
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "auth"))
    assert info.value.status == 401
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "auth"), headers=auth(relay, "auth", key="wrong-key"))
    assert info.value.status == 401
    assert "invalid signature" in info.value.reason
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "auth"), headers=auth(relay, "auth", expiry=1000))
    assert info.value.status == 401
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "auth"), headers=auth(relay, "other"))
    assert info.value.status == 401
    with pytest.raises(HandshakeFailed) as info:
        yield RawListener(relay, "auth2", token="garbage").start()
    assert info.value.status == 401


@pytest_twisted.inlineCallbacks
def test_accept_address_is_single_use(relay):
    listener = yield RawListener(relay, "once").start()
    yield ws_connect(sender_url(relay, "once"), headers=auth(relay, "once"))
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(listener.accepts[0]["address"])
    assert info.value.status == 403


@pytest_twisted.inlineCallbacks
def test_listener_limit(relay):
    listeners = []
    for _ in range(25):
        listeners.append((yield RawListener(relay, "crowd").start()))
    with pytest.raises(HandshakeFailed) as info:
        yield RawListener(relay, "crowd").start()
    assert info.value.status == 403
    assert "MaximumListenersPerEndpoint" in info.value.reason
    yield listeners[0].stop()
    yield task.deferLater(reactor, 0.05, lambda: None)
    yield RawListener(relay, "crowd").start()


@pytest_twisted.inlineCallbacks
def test_load_is_balanced_and_survives_a_listener_leaving(relay):
    a = yield RawListener(relay, "lb").start()
    b = yield RawListener(relay, "lb").start()
    for _ in range(40):
        s = yield ws_connect(sender_url(relay, "lb"), headers=auth(relay, "lb"))
        s.sendClose(1000)
    assert a.accepts and b.accepts
    yield a.stop()
    yield task.deferLater(reactor, 0.05, lambda: None)
    before = len(b.accepts)
    for _ in range(5):
        s = yield ws_connect(sender_url(relay, "lb"), headers=auth(relay, "lb"))
        s.sendMessage(b"still here")
        assert (yield s.messages.get()) == (b"still here", False)
    assert len(b.accepts) == before + 5
