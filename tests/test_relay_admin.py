"""The relay's fault switch: each action through the admin HTTP API and the testing relay object.

A real relay, real listeners (RelayedServerFactory for WebSockets, the hyco:
endpoint with a twisted.web site for HTTP) and real senders; each test
observes what the fault does to them.
"""
import json

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.httpclient import http_request
from tests.support.rawlistener import make_token
from tests.support.wsclient import Echo, RelayLeg
from tests.test_endpoint import endpoint_string
from txhyco.errors import RelayHandshakeError
from txhyco.protocol.sas import Rights, SasRule, dotnet_audience, sign_token
from txhyco.relay.config import Limits, RelayConfig
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory, connect_relay

ADMIN = "tcp:0:interface=127.0.0.1"


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


def wait_for(predicate, timeout=15.0, step=0.02):
    """Poll a condition on the reactor (bounded): the failure guard, not a timing assertion."""
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if predicate():
            loop.stop()
            d.callback(True)
        elif reactor.seconds() > deadline:
            loop.stop()
            d.errback(AssertionError("condition not reached in time"))

    loop = task.LoopingCall(check)
    loop.start(step)
    return d


SEND_ONLY = SasRule(name="sendonly", primary_key="c2VuZC1vbmx5LWtleS1mb3ItdGhlLWFkbWluLXRlc3Q=", rights=Rights.SEND)


@pytest.fixture
def relay():
    base = RelayConfig.with_key()
    config = RelayConfig(rules={**base.rules, SEND_ONLY.name: SEND_ONLY}, limits=Limits(token_grace=1.0))
    running = pytest_twisted.blockon(start_relay(config, admin_endpoint=ADMIN))
    yield running
    pytest_twisted.blockon(running.stop())


def manage_token(relay, path=""):
    return make_token(relay, path)


def admin(relay, method, where="", body=None, token="manage", raw=None):
    """(status, parsed JSON) of an admin request; ``where`` follows /admin/hybridConnections."""
    headers = {}
    if token == "manage":
        token = manage_token(relay)
    if token is not None:
        headers["Authorization"] = token
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    port = relay.service.admin_port.getHost().port
    d = http_request(port, method, "/admin/hybridConnections" + where, body=data, headers=headers)
    return d.addCallback(lambda r: (r[0], json.loads(r[3]), r[2]))


@defer.inlineCallbacks
def echo_listener(relay, path, **options):
    factory = RelayedServerFactory(relay.connection_string.format(), path=path, **options)
    factory.protocol = Echo
    port = yield factory.listen()
    statuses = []
    port.add_status_observer(lambda status, error: statuses.append((status, str(error) if error else "")))
    return port, statuses


def channels(relay, path):
    """The control channels of ``path`` at the relay (a listener reconnects under the same id: compare these)."""
    entity = relay.relay.registry.entities.get(path)
    return set(entity.listeners.values()) if entity is not None else set()


def reconnected(statuses, since):
    later = [s for s, _ in statuses[since:]]
    return "connecting" in later and later[-1] == "online"


@defer.inlineCallbacks
def echo_once(relay, path, payload=b"ping"):
    client = yield connect_relay(RelayLeg, relay.connection_string.format(), path=path)
    client.sendMessage(payload)
    answer = yield client.messages.get()
    client.sendClose(1000)
    yield client.closed
    return answer


# -- each action through the HTTP API -------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_drop_clean_and_abortive_makes_the_listener_reconnect(relay):
    port, statuses = yield echo_listener(relay, "dropme")
    for body in ({"code": 1011, "reason": "NameRenewalFailed"}, {"abortive": True}):
        before, mark = channels(relay, "dropme"), len(statuses)
        status, answer, _ = yield admin(relay, "POST", "/dropme/drop", body)
        assert (status, answer["affected"]) == (200, 1), answer
        yield wait_for(lambda: reconnected(statuses, mark) and channels(relay, "dropme") - before)
        if not body.get("abortive"):
            assert any("1011" in error and "NameRenewalFailed" in error for _, error in statuses[mark:]), statuses
        assert (yield echo_once(relay, "dropme")) == (b"ping", False)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_refuse_answers_the_next_senders_then_lets_them_through(relay):
    port, _ = yield echo_listener(relay, "busy")
    status, answer, _ = yield admin(relay, "POST", "/busy/refuse", {"count": 2, "status": 503, "reason": "Try again soon"})
    assert status == 200 and answer["armed"] == {"action": "refuse", "senders": "any", "remaining": 2, "status": 503, "reason": "Try again soon"}
    for _ in range(2):
        with pytest.raises(RelayHandshakeError) as info:
            yield connect_relay(RelayLeg, relay.connection_string.format(), path="busy")
        assert info.value.status == 503 and "Try again soon" in info.value.reason
    assert (yield echo_once(relay, "busy")) == (b"ping", False)  # the third gets through
    assert not relay.relay.faults  # nothing armed any more
    yield port.stopListening()

    # HTTP senders, and a refusal for them only
    web = yield serverFromString(reactor, endpoint_string(relay, "web")).listen(Site(Hello()))
    status, _, _ = yield admin(relay, "POST", "/web/refuse", {"status": 429, "senders": "http"})
    assert status == 200
    token = {"ServiceBusAuthorization": make_token(relay, "web")}
    first = yield http_request(relay.port, "GET", "/web/x", headers=token)
    second = yield http_request(relay.port, "GET", "/web/x", headers=token)
    assert (first[0], second[0], second[3]) == (429, 200, b"hello")
    yield web.stopListening()


@pytest_twisted.inlineCallbacks
def test_delay_holds_the_next_accept_and_request(relay):
    port, _ = yield echo_listener(relay, "slow")
    status, answer, _ = yield admin(relay, "POST", "/slow/delay", {"count": 1, "seconds": 2, "senders": "websocket"})
    assert status == 200 and answer["armed"]["seconds"] == 2.0
    opened = []
    delayed = connect_relay(RelayLeg, relay.connection_string.format(), path="slow")
    delayed.addCallback(lambda client: opened.append("delayed") or client)
    prompt = yield connect_relay(RelayLeg, relay.connection_string.format(), path="slow")
    opened.append("prompt")
    late = yield delayed
    assert opened == ["prompt", "delayed"]  # the first sender waited, the second did not
    late.sendMessage(b"late")
    assert (yield late.messages.get()) == (b"late", False)
    for client in (prompt, late):
        client.sendClose(1000)
        yield client.closed
    yield port.stopListening()

    web = yield serverFromString(reactor, endpoint_string(relay, "web")).listen(Site(Hello()))
    yield admin(relay, "POST", "/web/delay", {"seconds": 0.3, "senders": "http"})
    answered = yield http_request(relay.port, "GET", "/web/x", headers={"ServiceBusAuthorization": make_token(relay, "web")})
    assert (answered[0], answered[3]) == (200, b"hello")
    assert not relay.relay.faults
    yield web.stopListening()


@pytest_twisted.inlineCallbacks
def test_cut_closes_relayed_connections_with_a_code_or_a_reset(relay):
    port, _ = yield echo_listener(relay, "cutme")
    cs = relay.connection_string.format()
    clients = []
    for _ in range(2):
        clients.append((yield connect_relay(RelayLeg, cs, path="cutme")))
    status, answer, _ = yield admin(relay, "POST", "/cutme/cut", {"code": 4000, "reason": "cut by test"})
    assert (status, answer["affected"]) == (200, 2)
    for client in clients:
        was_clean, code, reason = yield client.closed
        assert (was_clean, code, reason) == (True, 4000, "cut by test")
    client = yield connect_relay(RelayLeg, cs, path="cutme")
    status, answer, _ = yield admin(relay, "POST", "/cutme/cut", {"abortive": True})
    assert answer["affected"] == 1
    was_clean, code, _ = yield client.closed
    assert not was_clean and code is None  # a reset: no Close frame
    yield wait_for(lambda: relay.relay.metrics.connections._value.get() == 0)
    assert (yield echo_once(relay, "cutme")) == (b"ping", False)  # the listener is undisturbed
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_stall_makes_a_listener_with_keepalive_reconnect(relay):
    port, statuses = yield echo_listener(relay, "quiet", keepalive=1)
    (stalled,) = channels(relay, "quiet")
    mark = len(statuses)
    status, answer, _ = yield admin(relay, "POST", "/quiet/stall", {"seconds": 4})  # past the listener's 1 s ping and 1 s pong timeout
    assert (status, answer["affected"]) == (200, 1)
    _, listing, _ = yield admin(relay, "GET", "/quiet")
    assert [entry["id"] for entry in listing["listeners"] if "stalledForSeconds" in entry] == [stalled.key]
    # The listener's pings go unanswered: it gives up on the channel and opens another.
    yield wait_for(lambda: reconnected(statuses, mark) and channels(relay, "quiet") - {stalled})
    # Once the stall ends the relay reads the old channel's close and forgets it.
    yield wait_for(lambda: stalled not in channels(relay, "quiet"))
    assert (yield echo_once(relay, "quiet")) == (b"ping", False)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_stall_holds_what_the_relay_sends_until_it_ends(relay):
    # A listener with the default keep-alive (minutes) outlasts a short stall:
    # the accept offered meanwhile reaches it when the stall ends.
    port, statuses = yield echo_listener(relay, "pause")
    (channel,) = channels(relay, "pause")
    relay.stall_control_channels("pause", seconds=1)
    client = yield connect_relay(RelayLeg, relay.connection_string.format(), path="pause")
    # The accept could only reach the listener once the stall was over.
    assert not relay.relay.faults.stalls
    client.sendMessage(b"after the stall")
    assert (yield client.messages.get()) == (b"after the stall", False)
    assert channels(relay, "pause") == {channel} and statuses == []  # the same channel throughout
    client.sendClose(1000)
    yield client.closed
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_expire_token_closes_the_channel_with_1008(relay):
    port, statuses = yield echo_listener(relay, "expiring")
    mark = len(statuses)
    status, answer, _ = yield admin(relay, "POST", "/expiring/expireToken", {})
    assert (status, answer["affected"]) == (200, 1)
    yield wait_for(lambda: reconnected(statuses, mark))
    assert any("1008" in error and "token" in error for _, error in statuses[mark:]), statuses
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_list_shows_listeners_connections_and_armed_faults(relay):
    port, _ = yield echo_listener(relay, "seen")
    client = yield connect_relay(RelayLeg, relay.connection_string.format(), path="seen")
    yield admin(relay, "POST", "/seen/refuse", {"count": 5, "status": 500})
    status, listing, _ = yield admin(relay, "GET")
    assert status == 200
    (entry,) = [hc for hc in listing["hybridConnections"] if hc["path"] == "seen"]
    assert len(entry["listeners"]) == 1 and entry["relayedConnections"] == 1
    assert entry["armedFaults"] == [{"action": "refuse", "senders": "any", "remaining": 5, "status": 500, "reason": "Internal Server Error"}]
    status, cleared, _ = yield admin(relay, "POST", "/seen/clear")
    assert (status, cleared["disarmed"]) == (200, 1) and not relay.relay.faults
    client.sendClose(1000)
    yield client.closed
    yield port.stopListening()


# -- who may use it, and what it refuses ---------------------------------------------


@pytest_twisted.inlineCallbacks
def test_admin_needs_a_manage_token(relay):
    status, answer, headers = yield admin(relay, "GET", token=None)
    assert status == 401 and "Manage" in answer["error"] and headers["WWW-Authenticate"] == "SharedAccessSignature"
    forged = sign_token(dotnet_audience(f"http://{relay.host}/"), relay.rule.name, "d3Jvbmcta2V5", int(reactor.seconds()) + 60)
    status, answer, _ = yield admin(relay, "POST", "/x/drop", token=forged)
    assert status == 401 and "signature" in answer["error"]
    send_only = sign_token(dotnet_audience(f"http://{relay.host}/"), SEND_ONLY.name, SEND_ONLY.primary_key, int(reactor.seconds()) + 60)
    status, answer, _ = yield admin(relay, "POST", "/x/drop", token=send_only)
    assert status == 403 and "Manage" in answer["error"]
    # A token for one hybrid connection acts on that one only.
    status, _, _ = yield admin(relay, "POST", "/a/drop", token=manage_token(relay, "a"))
    assert status == 200
    status, answer, _ = yield admin(relay, "POST", "/b/drop", token=manage_token(relay, "a"))
    assert status == 401 and "does not cover" in answer["error"]
    status, _, _ = yield admin(relay, "GET", token=manage_token(relay, "a"))  # the list is namespace-wide
    assert status == 401
    yield admin(relay, "GET", "", token="SharedAccessSignature sr=x&sig=y&se=1&skn=z")
    assert relay.relay.metrics.auth_failures.labels("401")._value.get() >= 4


@pytest_twisted.inlineCallbacks
def test_unknown_actions_and_fields_are_errors(relay):
    cases = [
        ("POST", "/x/dorp", None, 400, "unknown action 'dorp' (did you mean 'drop'?)"),
        ("POST", "/x/refuse", {"cont": 3}, 400, "unknown field 'cont' (did you mean 'count'?)"),
        ("POST", "/x/refuse", {"count": "3"}, 400, "'count' must be a whole number"),
        ("POST", "/x/refuse", {"status": 200}, 400, "'status' must be a whole number from 400 to 599"),
        ("POST", "/x/stall", {}, 400, "stall needs the field 'seconds'"),
        ("POST", "/x/delay", {"seconds": -1}, 400, "'seconds' must be a number of seconds"),
        ("POST", "/x/cut", {"code": 1005}, 400, "not a close code that may be sent"),
        ("POST", "/x/refuse", {"senders": "smtp"}, 400, "'senders' must be one of"),
        ("POST", "/x/drop", {"listener": "nobody"}, 404, "No listener 'nobody'"),
        ("POST", "/x/drop", [1], 400, "must be a JSON object"),
        ("GET", "/x/drop", None, 405, "invoked with POST"),
        ("POST", "", {}, 405, "read with GET"),
        ("POST", "/x!/refuse", {}, 400, "is not a hybrid connection name"),
    ]
    for method, where, body, want_status, want_text in cases:
        status, answer, _ = yield admin(relay, method, where, body)
        assert status == want_status and want_text in answer["error"], (method, where, body, answer)
    for raw, want_status, want_text in [
        (b"{not json", 400, "not JSON"),
        (b"[" * 50000, 400, "not JSON"),  # nested too deeply for the parser
        (b'{"seconds": NaN}', 400, "'seconds' must be a number of seconds"),
        (b" " * (64 * 1024 + 1), 413, "larger than 65536 bytes"),
    ]:
        status, answer, _ = yield admin(relay, "POST", "/x/delay", raw=raw)
        assert status == want_status and want_text in answer["error"], (raw[:20], answer)
    assert not relay.relay.faults  # nothing was armed by a refused request


# -- the same on the testing relay object ---------------------------------------------


@pytest_twisted.inlineCallbacks
def test_fault_switch_on_the_testing_relay(relay):
    cs = relay.connection_string.format()
    port, _ = yield echo_listener(relay, "t")

    relay.refuse_senders("t", count=1, status=502, reason="no")
    with pytest.raises(RelayHandshakeError) as info:
        yield connect_relay(RelayLeg, cs, path="t")
    assert info.value.status == 502

    relay.delay_senders("t", seconds=0.2)
    assert (yield echo_once(relay, "t")) == (b"ping", False)

    client = yield connect_relay(RelayLeg, cs, path="t")
    assert relay.cut_connections("t", code=1001) == 1
    assert (yield client.closed)[1] == 1001

    # Each control-channel action on a listener of its own (a listener's
    # reconnects back off: 0 s, then 1 s, 2 s...).
    actions = {
        "dropped": lambda path: relay.drop_control_channels(path, abortive=True),
        "expired": lambda path: relay.expire_tokens(path),
        "stalled": lambda path: relay.stall_control_channels(path, seconds=4),
        "expired-after-grace": lambda path: relay.expire_tokens(path, grace=True),  # the grace is 1 s here
    }
    for path, act in actions.items():
        other, statuses = yield echo_listener(relay, path, keepalive=1)
        before, mark = channels(relay, path), len(statuses)
        assert act(path) == 1
        yield wait_for(lambda: reconnected(statuses, mark) and channels(relay, path) - before)
        if path.startswith("expired"):
            assert any("1008" in error for _, error in statuses[mark:]), statuses
        yield wait_for(lambda: len(channels(relay, path)) == 1)  # a stalled channel is forgotten once the stall ends
        yield other.stopListening()

    with pytest.raises(ValueError, match="'count' must be a whole number"):
        relay.refuse_senders("t", count=0)
    assert [hc["path"] for hc in relay.hybrid_connections()] == ["t"]  # the others' listeners have gone
    assert relay.clear_faults("t") == {"disarmed": 0, "stallsEnded": 0}
    yield port.stopListening()


# -- switching it on ------------------------------------------------------------------


def test_admin_endpoint_from_the_cli_and_the_config_file(tmp_path):
    from txhyco.cli.common import CliError
    from txhyco.cli.relay import relay_settings

    assert relay_settings(listen=ADMIN).admin is None  # off by default
    assert relay_settings(listen=ADMIN, admin="tcp:9091:interface=127.0.0.1").admin == "tcp:9091:interface=127.0.0.1"
    with pytest.raises(CliError, match="--admin 'nonsense:1' is not a Twisted server endpoint string .*like tcp:9091"):
        relay_settings(listen=ADMIN, admin="nonsense:1")
    config = tmp_path / "relay.toml"
    config.write_text('admin = "tcp:9091:interface=127.0.0.1"\n')
    assert relay_settings(listen=ADMIN, config_file=str(config)).admin == "tcp:9091:interface=127.0.0.1"
    assert relay_settings(listen=ADMIN, config_file=str(config), admin="tcp:0").admin == "tcp:0"  # the option wins
    config.write_text("admin = 9091\n")
    with pytest.raises(CliError, match="'admin' must be a string, not an integer"):
        relay_settings(listen=ADMIN, config_file=str(config))
    config.write_text('admni = "tcp:9091"\n')
    with pytest.raises(CliError, match="did you mean 'admin'"):
        relay_settings(listen=ADMIN, config_file=str(config))


@pytest_twisted.inlineCallbacks
def test_admin_interface_of_a_relay_made_from_cli_settings():
    """``txhyco relay --admin`` (and twistd hyco-relay) start the admin interface; the README's example runs the CLI itself."""
    from txhyco.cli.relay import admin_url, make_service, relay_settings

    settings = relay_settings(listen="tcp:0:interface=127.0.0.1", admin="tcp:0:interface=127.0.0.1")
    service = make_service(settings, announce=lambda line: None)
    service.startService()
    yield service.ready
    try:
        from txhyco.testing import RunningRelay

        relay = RunningRelay(service, service.connection_string())
        assert admin_url(service) == relay.admin_url
        port, statuses = yield echo_listener(relay, "myhc")
        mark = len(statuses)
        status, answer, _ = yield admin(relay, "POST", "/myhc/drop", {"abortive": True})
        assert (status, answer) == (200, {"path": "myhc", "action": "drop", "affected": 1})
        yield wait_for(lambda: reconnected(statuses, mark))
        yield port.stopListening()
    finally:
        yield service.stopService()
