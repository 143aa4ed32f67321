"""Control-channel lifetime, keep-alives, closes, rejects, listener pinning and secrets (issue 3)."""
import json
import uuid

import pytest
import pytest_twisted
import txaio
from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher

from tests.support.rawlistener import RawListener, make_token
from tests.support.rawtcp import limited_config, sleep, wait_until
from tests.support.wsclient import HandshakeFailed, Leg, ws_connect
from tests.test_relay_http import fetch, token_header
from tests.test_relay_websocket import auth, sender_url
from txhyco.testing import start_relay


def channel_of(relay, path):
    entity = relay.relay.registry.entities[path]
    (channel,) = entity.listeners.values()
    return channel


# -- token lifetime (Hybrid Connections protocol, "Listener token renewal") ------------


@pytest_twisted.inlineCallbacks
def test_renewal_keeps_a_channel_and_expiry_closes_one_with_1008():
    relay = yield start_relay(limited_config(token_grace=0.3))
    try:
        soon = int(reactor.seconds()) + 1
        renewing = yield RawListener(relay, "renew", token=make_token(relay, "renew", expiry=soon)).start()
        lapsing = yield RawListener(relay, "lapse", token=make_token(relay, "lapse", expiry=soon)).start()
        channel = channel_of(relay, "renew")
        assert channel.expiry == soon
        later = int(reactor.seconds()) + 3600
        renewing.control.sendMessage(json.dumps({"renewToken": {"token": make_token(relay, "renew", expiry=later)}}).encode())
        yield wait_until(lambda: channel.expiry == later)
        was_clean, code, reason = yield lapsing.control.closed
        assert code == 1008
        assert "expired" in reason
        # The renewed channel outlived the first token and still works.
        assert renewing.control.state == renewing.control.STATE_OPEN
        assert channel_of(relay, "renew") is channel
        sender = yield ws_connect(sender_url(relay, "renew"), headers=auth(relay, "renew"))
        sender.sendMessage(b"after renewal")
        assert (yield sender.messages.get()) == (b"after renewal", False)
    finally:
        yield relay.stop()


@pytest_twisted.inlineCallbacks
def test_bad_renewal_closes_the_channel_with_1008(relay):
    for bad in ["garbage", make_token(relay, "badrenew", key="wrong-key"), make_token(relay, "elsewhere"), make_token(relay, "badrenew", expiry=1000)]:
        listener = yield RawListener(relay, "badrenew").start()
        listener.control.sendMessage(json.dumps({"renewToken": {"token": bad}}).encode())
        was_clean, code, reason = yield listener.control.closed
        assert code == 1008, bad
        assert reason.startswith("renewToken refused")
        assert bad not in reason
        yield wait_until(lambda: "badrenew" not in relay.relay.registry.entities)


@pytest_twisted.inlineCallbacks
def test_expired_token_within_grace_is_accepted_then_expires():
    relay = yield start_relay(limited_config(token_grace=0.4))
    try:
        just_expired = int(reactor.seconds())  # se in the past, within the grace
        listener = yield RawListener(relay, "graced", token=make_token(relay, "graced", expiry=just_expired)).start()
        was_clean, code, reason = yield listener.control.closed
        assert code == 1008
        with pytest.raises(HandshakeFailed) as info:
            yield RawListener(relay, "graced", token=make_token(relay, "graced", expiry=just_expired - 5)).start()
        assert info.value.status == 401
    finally:
        yield relay.stop()


# -- pings and pongs (Hybrid Connections protocol, "Ping operation"; RFC 6455 §5.5.2–5.5.3)


class PingLeg(Leg):
    """Records pings and pongs it receives; answers pings (Autobahn's default)."""

    def __init__(self):
        super().__init__()
        self.pings = []
        self.pongs = defer.DeferredQueue()

    def onPing(self, payload):
        self.pings.append(payload)
        super().onPing(payload)

    def onPong(self, payload):
        self.pongs.put(payload)


def _ping_control_class(owner):
    from tests.support.rawlistener import ControlLeg

    return type("PingControl", (PingLeg, ControlLeg), {"owner": owner})


class PingListener(RawListener):
    """Control channel and every rendezvous are PingLegs; HTTP rendezvous ping before answering."""

    def __init__(self, *a, **kw):
        kw.setdefault("accept_class", PingLeg)
        super().__init__(*a, **kw)
        self.request_legs = []

    @defer.inlineCallbacks
    def start(self):
        self.control = yield ws_connect(self.url(), headers={"ServiceBusAuthorization": self.token}, cls=_ping_control_class(self))
        return self

    rendezvous_leg_class = PingLeg

    @defer.inlineCallbacks
    def _rendezvous_opened(self, leg):
        self.request_legs.append(leg)
        leg.sendPing(b"rv")
        assert (yield leg.pongs.get()) == b"rv"
        leg.sendPong(b"unsolicited")


@pytest_twisted.inlineCallbacks
def test_pings_are_answered_on_every_socket_and_never_forwarded(relay):
    listener = yield PingListener(relay, "pp").start()
    control = listener.control
    control.sendPing(b"control")
    assert (yield control.pongs.get()) == b"control"
    control.sendPong(b"unsolicited")  # ignored: no reply, no close

    sender = yield ws_connect(sender_url(relay, "pp"), headers=auth(relay, "pp"), cls=PingLeg)
    yield wait_until(lambda: listener.legs)
    rendezvous = listener.legs[0]
    sender.sendPing(b"from sender")
    assert (yield sender.pongs.get()) == b"from sender"
    rendezvous.sendPing(b"from listener")
    assert (yield rendezvous.pongs.get()) == b"from listener"
    sender.sendPong(b"stray")
    rendezvous.sendPong(b"stray too")
    sender.sendMessage(b"data still flows")
    assert (yield rendezvous.messages.get()) == (b"data still flows", False)
    rendezvous.sendMessage(b"both ways", isBinary=True)
    assert (yield sender.messages.get()) == (b"both ways", True)
    # Nothing crossed: each side saw only its own pongs, and no pings.
    assert sender.pings == [] and rendezvous.pings == [] and control.pings == []
    assert sender.pongs.pending == [] and rendezvous.pongs.pending == [] and control.pongs.pending == []

    status, _, _, body = yield fetch(relay, "POST", "/pp/x", body=b"z" * 70000, headers=token_header(relay, "pp"))
    assert status == 200 and body == b"hello " + b"z" * 70000
    assert len(listener.request_legs) == 1
    assert control.state == control.STATE_OPEN


# -- closes (Hybrid Connections protocol, "Accepting the socket") ----------------------


class HalfCloseLeg(Leg):
    """Like .NET's stream: a received Close is not answered until ``finish``."""

    def __init__(self):
        super().__init__()
        self.close_seen = defer.Deferred()

    def onCloseFrame(self, code, reasonRaw):
        if self.state == self.STATE_OPEN and not self.close_seen.called:
            self.seen = (code, reasonRaw.decode() if reasonRaw else None)
            self.close_seen.callback(self.seen)
            return None
        return super().onCloseFrame(code, reasonRaw)

    def finish(self, code, reason):
        received_code, received_reason = self.seen
        self.remoteCloseCode, self.remoteCloseReason = received_code, received_reason
        self.wasClean = True
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode(), isReply=True)


@pytest_twisted.inlineCallbacks
def test_half_close_keeps_the_other_direction_open(relay):
    listener = yield RawListener(relay, "half", accept_class=HalfCloseLeg).start()
    sender = yield ws_connect(sender_url(relay, "half"), headers=auth(relay, "half"))
    yield wait_until(lambda: listener.legs)
    leg = listener.legs[0]
    sender.sendClose(1000, "Shutdown")
    assert (yield leg.close_seen) == (1000, "Shutdown")
    for i in range(3):
        leg.sendMessage(b"late %d" % i, isBinary=True)
    leg.sendMessage(b"tail text", isBinary=False)
    leg.finish(1000, "CloseAsync")
    got = []
    for _ in range(4):
        got.append((yield sender.messages.get()))
    assert got == [(b"late 0", True), (b"late 1", True), (b"late 2", True), (b"tail text", False)]
    assert (yield sender.closed) == (True, 1000, "CloseAsync")
    assert (yield leg.closed) == (True, 1000, "Shutdown")


@pytest_twisted.inlineCallbacks
def test_listener_side_half_close_too(relay):
    listener = yield RawListener(relay, "half2", accept_class=Leg).start()
    sender = yield ws_connect(sender_url(relay, "half2"), headers=auth(relay, "half2"), cls=HalfCloseLeg)
    yield wait_until(lambda: listener.legs)
    leg = listener.legs[0]
    leg.sendCloseFrame(code=1001, reasonUtf8=b"listener going")  # sendClose refuses 1001
    assert (yield sender.close_seen) == (1001, "listener going")
    sender.sendMessage(b"last words")
    assert (yield leg.messages.get()) == (b"last words", False)
    sender.finish(1000, "ok")
    assert (yield leg.closed) == (True, 1000, "ok")
    assert (yield sender.closed) == (True, 1001, "listener going")


@pytest_twisted.inlineCallbacks
def test_listener_abort_is_an_unclean_close_for_the_sender(relay):
    listener = yield RawListener(relay, "abort", accept_class=Leg).start()
    sender = yield ws_connect(sender_url(relay, "abort"), headers=auth(relay, "abort"))
    yield wait_until(lambda: listener.legs)
    listener.legs[0].transport.abortConnection()
    was_clean, code, reason = yield sender.closed
    assert not was_clean or code in (1001, 1011), (was_clean, code, reason)
    assert code != 1000
    # And the other way round.
    sender = yield ws_connect(sender_url(relay, "abort"), headers=auth(relay, "abort"))
    yield wait_until(lambda: len(listener.legs) == 2)
    sender.transport.abortConnection()
    was_clean, code, reason = yield listener.legs[1].closed
    assert not was_clean or code in (1001, 1011), (was_clean, code, reason)
    assert code != 1000


# -- rejects (Hybrid Connections protocol, "Rejecting the socket"; Azure/azure-relay-node)


class NodeRejectListener(RawListener):
    """Rejects the way hyco-ws/hyco-websocket do: un-prefixed statusCode/statusDescription."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reject_answers = []

    @defer.inlineCallbacks
    def _on_accept(self, accept):
        try:
            yield ws_connect(accept["address"] + "&statusCode=401&statusDescription=Nope")
        except HandshakeFailed as e:
            self.reject_answers.append(e.status)


@pytest_twisted.inlineCallbacks
def test_node_style_reject_reaches_the_sender(relay):
    listener = yield NodeRejectListener(relay, "node").start()
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "node"), headers=auth(relay, "node"))
    assert (info.value.status, info.value.reason) == (401, "Nope")
    yield wait_until(lambda: listener.reject_answers)
    assert listener.reject_answers == [410]
    # A sender's own statusCode query parameter does not turn an accept into a reject.
    echo = yield RawListener(relay, "nodeq").start()
    sender = yield ws_connect(sender_url(relay, "nodeq", query="statusCode=500"), headers=auth(relay, "nodeq"))
    sender.sendMessage(b"accepted")
    assert (yield sender.messages.get()) == (b"accepted", False)
    assert echo.accepts


# -- listener pinning (Azure/azure-relay-node issue #55) -------------------------------


@pytest_twisted.inlineCallbacks
def test_allowed_and_disallowed_listeners(relay):
    ida, idb = str(uuid.uuid4()), str(uuid.uuid4())
    respond_a = lambda r, b: (200, {}, b"A")  # noqa: E731
    respond_b = lambda r, b: (200, {}, b"B")  # noqa: E731
    a = yield RawListener(relay, "pin", tracking_id=ida, respond=respond_a).start()
    b = yield RawListener(relay, "pin", tracking_id=idb, respond=respond_b).start()
    tok = token_header(relay, "pin")
    for _ in range(6):
        status, _, _, body = yield fetch(relay, "GET", "/pin", headers={**tok, "Microsoft-Relay-AllowedListeners": ida})
        assert (status, body) == (200, b"A")
        status, _, _, body = yield fetch(relay, "GET", "/pin", headers={**tok, "Microsoft-Relay-DisallowedListeners": ida.upper()})
        assert (status, body) == (200, b"B")
    status, _, _, body = yield fetch(relay, "GET", "/pin", headers={**tok, "Microsoft-Relay-AllowedListeners": f" {idb} , nobody"})
    assert (status, body) == (200, b"B")
    status, reason, headers, _ = yield fetch(relay, "GET", "/pin", headers={**tok, "Microsoft-Relay-AllowedListeners": str(uuid.uuid4())})
    assert status == 404
    assert reason.startswith("None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria")
    assert "Via" not in headers
    status, reason, _, _ = yield fetch(relay, "GET", "/pin", headers={**tok, "Microsoft-Relay-DisallowedListeners": f"{ida},{idb}"})
    assert status == 404 and reason.startswith("None of the connected listeners")
    # The relay's own headers do not reach the listener.
    assert all("Microsoft-Relay-AllowedListeners" not in r["requestHeaders"] for r, _ in a.requests + b.requests)

    for _ in range(4):
        sender = yield ws_connect(sender_url(relay, "pin"), headers={**auth(relay, "pin"), "Microsoft-Relay-AllowedListeners": idb})
        sender.sendClose(1000)
    assert len(b.accepts) == 4 and not a.accepts
    with pytest.raises(HandshakeFailed) as info:
        yield ws_connect(sender_url(relay, "pin"), headers={**auth(relay, "pin"), "Microsoft-Relay-DisallowedListeners": f"{ida}, {idb}"})
    assert info.value.status == 404
    assert info.value.reason.startswith("None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria")


# -- secrets never logged ----------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_tokens_and_keys_never_appear_in_logs(relay):
    events = []
    globalLogPublisher.addObserver(events.append)
    txaio.set_global_log_level("trace")
    try:
        header_token = make_token(relay, "secret")
        listener = yield RawListener(relay, "secret", token=header_token, respond=lambda r, b: (200, {}, b"ok")).start()
        query_token = make_token(relay, "secret", expiry=int(reactor.seconds()) + 7200)
        sender = yield ws_connect(sender_url(relay, "secret", token=query_token))
        sender.sendMessage(b"hi")
        yield sender.messages.get()
        sender.sendClose(1000)
        yield sender.closed
        http_tokens = [make_token(relay, "secret", expiry=int(reactor.seconds()) + 100 + i) for i in range(3)]
        status, _, _, _ = yield fetch(relay, "GET", "/secret?sb-hc-token=" + _quote(http_tokens[0]))
        assert status == 200
        status, _, _, _ = yield fetch(relay, "GET", "/secret", headers={"ServiceBusAuthorization": http_tokens[1]})
        assert status == 200
        status, _, _, _ = yield fetch(relay, "POST", "/secret", body=b"x" * 70000, headers={"Authorization": http_tokens[2]})
        assert status == 200
        bad = make_token(relay, "secret", key="wrong-key")
        status, _, _, _ = yield fetch(relay, "GET", "/secret", headers={"ServiceBusAuthorization": bad})
        assert status == 401
        with pytest.raises(HandshakeFailed):
            yield ws_connect(sender_url(relay, "secret", token=bad))
        renewed = make_token(relay, "secret", expiry=int(reactor.seconds()) + 9000)
        listener.control.sendMessage(json.dumps({"renewToken": {"token": renewed}}).encode())
        listener.control.sendMessage(json.dumps({"renewToken": {"token": bad}}).encode())
        yield listener.control.closed
        yield sleep(0.05)
    finally:
        txaio.set_global_log_level("info")
        globalLogPublisher.removeObserver(events.append)
    secrets = [relay.rule.primary_key]
    for token in [header_token, query_token, *http_tokens, bad, renewed]:
        secrets += [token, token.split("sig=")[1].split("&")[0], _quote(token)]
    # The test's own Autobahn clients log their requests, tokens included,
    # at debug level; that is the client's business. Everything else —
    # the relay's own events, Autobahn's server side, Twisted — must be clean.
    relay_events = [e for e in events if "WebSocketClientProtocol" not in (e.get("log_namespace") or "")]
    assert len(relay_events) > 10  # the logging really was on
    assert any((e.get("log_namespace") or "").startswith("txhyco.relay") for e in relay_events)
    texts = []
    for event in relay_events:
        texts.append(formatEvent(event) or "")
        texts.append(repr(event))
    for text in texts:
        for secret in secrets:
            assert secret not in text, text[:500]


def _quote(text):
    from urllib.parse import quote

    return quote(text, safe="")
