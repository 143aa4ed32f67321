"""What the client library owes the real service (README, "Staying up"): one test per item the
relay side cannot show."""
import re
import uuid

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, reactor, task

from tests.support.wsclient import Leg
from txhyco.address import HybridConnection
from txhyco.errors import RelayError, RelayHandshakeError
from txhyco.listener.control import BACKOFF, KEEPALIVE, STABLE_AFTER, HybridConnectionListener
from txhyco.listener.reconnect import ReconnectSchedule
from txhyco.protocol.addresses import Namespace
from txhyco.websocket import RelayedServerFactory, connect_relay


class Capture(WebSocketServerProtocol):
    """A stand-in relay that records the listen upgrade and refuses it."""

    seen = []

    def onConnect(self, request):
        Capture.seen.append((self.http_request_uri, dict(request.headers)))
        raise ConnectionDeny(404, "Endpoint does not exist.")


@pytest_twisted.inlineCallbacks
def test_listen_upgrade_uses_header_token_and_a_guid_tracking_id():
    factory = WebSocketServerFactory()
    factory.protocol = Capture
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        cs = f"Endpoint=sb://127.0.0.1:{port.getHost().port}/;SharedAccessKeyName=k;SharedAccessKey=s3cret;EntityPath=hc;UseDevelopmentEmulator=true"
        with pytest.raises(RelayHandshakeError):
            yield RelayedServerFactory(cs).listen()
        uri, headers = Capture.seen[-1]
        assert uri.startswith("/$hc/hc?")
        assert "sb-hc-action=listen" in uri
        assert "sb-hc-token" not in uri
        tracking = re.search(r"sb-hc-id=([^&]+)", uri).group(1)
        uuid.UUID(tracking)
        assert headers["servicebusauthorization"].startswith("SharedAccessSignature sr=")
    finally:
        yield port.stopListening()


def test_keepalive_default_is_below_azure_idle_cut():
    assert 0 < KEEPALIVE <= 210


def test_backoff_schedule_with_jitter_and_reset():
    clock = task.Clock()
    schedule = ReconnectSchedule(clock, jitter=0.25)
    delays = []
    for _ in range(8):
        delay = schedule.schedule(lambda: None)
        assert schedule.next_at - clock.seconds() == delay
        delays.append(delay)
        schedule.cancel()
        assert schedule.next_at is None
    expected = list(BACKOFF) + [BACKOFF[-1]] * 2
    for got, want in zip(delays, expected):
        assert want * 0.75 <= got <= want * 1.25
    schedule.online()  # online, but dropped at once (a relay accepting and closing): still backing off
    assert schedule.schedule(lambda: None) >= BACKOFF[-1] * 0.75
    schedule.cancel()
    schedule.online()  # online long enough to count as stable: the schedule starts over
    clock.advance(STABLE_AFTER)
    assert schedule.schedule(lambda: None) == 0


def test_a_listener_retries_on_its_schedule():
    clock = task.Clock()
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    listener = HybridConnectionListener(clock, hc, on_accept=lambda a: None, jitter=0.25)
    attempts = []
    listener._connect = lambda: attempts.append(clock.seconds())  # observe the schedule only
    listener.start()
    listener._online(None)
    listener._retry_later(RelayError("down"))
    clock.advance(0)  # the first retry is at once (BACKOFF[0] == 0)
    listener._retry_later(RelayError("down"))
    assert listener.status == "connecting" and listener.last_error.args == ("down",)
    retry_at = listener.next_retry_at
    assert retry_at is not None and BACKOFF[1] * 0.75 <= retry_at - clock.seconds() <= BACKOFF[1] * 1.25
    clock.advance(retry_at - clock.seconds())
    assert len(attempts) == 3 and listener.next_retry_at is None


def test_404_is_terminal_401_is_not():
    clock = task.Clock()
    hc = HybridConnection(Namespace.parse("127.0.0.1:1", secure=False), "x")
    listener = HybridConnectionListener(clock, hc, on_accept=lambda a: None)
    listener._connect = lambda: None
    listener.start()
    listener._retry_later(RelayHandshakeError(401, "bad token"))
    assert listener.next_retry_at is not None and listener.status == "connecting"
    listener._retry_later(RelayHandshakeError(404, "Endpoint does not exist."))
    assert listener.status == "offline"
    assert listener.last_error.status == 404


class Gate(WebSocketServerProtocol):
    def onConnect(self, request):
        raise ConnectionDeny(451, "Unavailable here")


class Client(Leg):
    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda failure: None)


@pytest_twisted.inlineCallbacks
def test_reject_uses_prefixed_parameters(relay, monkeypatch):
    import txhyco.relay.core as core

    seen = []
    original = core.reject_parameters

    def spy(issued, received):
        seen.append(received[len(issued):])
        return original(issued, received)

    monkeypatch.setattr(core, "reject_parameters", spy)
    factory = RelayedServerFactory(relay.connection_string.format(), path="gate")
    factory.protocol = Gate
    port = yield factory.listen()
    with pytest.raises(RelayHandshakeError) as info:
        yield connect_relay(Client, relay.connection_string.format(), path="gate")
    assert (info.value.status, info.value.reason) == (451, "Unavailable here")
    assert seen[-1] == "&sb-hc-statusCode=451&sb-hc-statusDescription=Unavailable+here"
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_unknown_commands_are_ignored(relay):
    factory = RelayedServerFactory(relay.connection_string.format(), path="odd")
    factory.protocol = type("E", (WebSocketServerProtocol,), {"onMessage": lambda self, p, b: self.sendMessage(p, b)})
    port = yield factory.listen()
    (channel,) = relay.relay.registry.entities["odd"].listeners.values()
    channel.proto.sendMessage(b'{"injectFault": {"delay": "00:01:00"}}', isBinary=False)
    channel.proto.sendMessage(b"not json at all", isBinary=False)
    client = yield connect_relay(Client, relay.connection_string.format(), path="odd")
    client.sendMessage(b"still fine")
    assert (yield client.messages.get()) == (b"still fine", False)
    assert port.status == "online"
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_sender_token_in_header_by_default_and_query_on_request(relay, monkeypatch):
    import txhyco.relay.core as core

    seen = []
    original = core.find_token

    def spy(headers, query_token, **kw):
        seen.append(("header" if headers.get("servicebusauthorization") else "query" if query_token else "none"))
        return original(headers, query_token, **kw)

    monkeypatch.setattr(core, "find_token", spy)
    factory = RelayedServerFactory(relay.connection_string.format(), path="tok")
    factory.protocol = type("E", (WebSocketServerProtocol,), {})
    port = yield factory.listen()
    yield connect_relay(Client, relay.connection_string.format(), path="tok")
    yield connect_relay(Client, relay.connection_string.format(), path="tok", token_in_query=True)
    assert seen[-2:] == ["header", "query"]
    yield port.stopListening()
