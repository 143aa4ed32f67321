"""Every way a token can be wrong, against a running relay, for each of the three doors
a token opens: listening, sending over WebSocket, sending plain HTTP.

Each is refused with the status Azure gives (401 for a token that does not prove
who you are or is not for this entity, 403 for a valid one whose rule lacks the
right), and the refusal never repeats the token's signature. SAS tokens carry only
an expiry (``se``), no start time, so "not yet valid" does not exist for them.
"""
from __future__ import annotations

import hmac
import tomllib
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from tests.support.rawlistener import RawListener
from tests.support.wsclient import HandshakeFailed, ws_connect
from tests.test_relay_http import fetch
from txhyco.protocol import sas
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights, SasRule, dotnet_audience, sign_token, verify_token
from txhyco.relay.config import parse_config
from txhyco.testing import start_relay

KEYS = {"admin": "YWRtaW4ta2V5LWZvci10ZXN0cw==", "listen-only": "bGlzdGVuLW9ubHk=", "send-only": "c2VuZC1vbmx5"}

CONFIG = f"""
[[rules]]
name = "admin"
key = "{KEYS['admin']}"
rights = ["Listen", "Send", "Manage"]

[[rules]]
name = "listen-only"
key = "{KEYS['listen-only']}"
rights = ["Listen"]

[[rules]]
name = "send-only"
key = "{KEYS['send-only']}"
rights = ["Send"]

[[hybridConnections]]
name = "a"

[[hybridConnections]]
name = "b"
"""


@pytest.fixture
def guarded():
    running = pytest_twisted.blockon(start_relay(parse_config(tomllib.loads(CONFIG))))
    yield running
    pytest_twisted.blockon(running.stop())


def token(relay, path="b", *, rule="admin", key=None, expiry=None, host=None):
    audience = dotnet_audience(f"http://{host or relay.host}/{path}")
    return sign_token(audience, rule, key or KEYS.get(rule, "unknown-rule-key"), expiry or int(reactor.seconds()) + 3600)


def bad_tokens(relay, door):
    """(case, token, expected status) for ``door`` (listen / send): the token is for path b."""
    right_rule, wrong_rule = ("listen-only", "send-only") if door == "listen" else ("send-only", "listen-only")
    good = token(relay)
    signature = good.split("sig=")[1].split("&")[0]
    return [
        ("missing", None, 401),
        ("not a SAS token", "garbage", 401),
        ("JWT-shaped", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", 401),
        ("no signature", good.replace("sig=" + signature, "sig="), 401),
        ("no expiry", good.split("&se=")[0] + "&skn=admin", 401),
        ("expiry not a number", good.replace("&se=", "&se=soon"), 401),
        ("field twice", good + "&sig=" + signature, 401),
        ("wrong key", token(relay, key="d3Jvbmcta2V5"), 401),
        ("a key of another rule", token(relay, rule="admin", key=KEYS["send-only"]), 401),
        ("unknown rule name", token(relay, rule="no-such-rule", key=KEYS["admin"]), 401),
        ("token for /a used on /b", token(relay, "a"), 401),
        ("token for /b/deeper used on /b", token(relay, "b/deeper"), 401),
        ("another host", token(relay, host="elsewhere.example"), 401),
        ("expired beyond the grace", token(relay, expiry=int(reactor.seconds()) - 3600), 401),
        ("signature of another expiry", good.replace("&se=", "&se=1"), 401),
        ("wrong rights", token(relay, rule=wrong_rule), 403),
        ("right rights (control)", token(relay, rule=right_rule), None),
    ]


def _sigs(*tokens):
    return [t.split("sig=")[1].split("&")[0] for t in tokens if t and "sig=" in t and t.split("sig=")[1].split("&")[0]]


@defer.inlineCallbacks
def _listen_status(relay, tok):
    try:
        listener = yield RawListener(relay, "b", token=tok or "").start()
    except HandshakeFailed as e:
        return e.status, e.reason
    yield listener.stop()
    return None, ""


@defer.inlineCallbacks
def _ws_send_status(relay, tok):
    url = connect_url(Namespace.parse(relay.host, secure=False), "b")
    try:
        sender = yield ws_connect(url, headers={"ServiceBusAuthorization": tok} if tok else {})
    except HandshakeFailed as e:
        return e.status, e.reason
    sender.sendClose(1000)
    yield sender.closed
    return None, ""


@defer.inlineCallbacks
def _http_send_status(relay, tok):
    status, reason, _, body = yield fetch(relay, "GET", "/b/x", headers={"ServiceBusAuthorization": tok} if tok else {})
    return (None if status == 200 else status), reason + " " + body.decode("utf-8", "replace")


@defer.inlineCallbacks
def _ws_send_in_query_status(relay, tok):
    url = connect_url(Namespace.parse(relay.host, secure=False), "b", token=tok)
    try:
        sender = yield ws_connect(url)
    except HandshakeFailed as e:
        return e.status, e.reason
    sender.sendClose(1000)
    yield sender.closed
    return None, ""


@defer.inlineCallbacks
def _http_send_in_query_status(relay, tok):
    status, reason, _, body = yield fetch(relay, "GET", "/b/x" + ("?sb-hc-token=" + quote(tok, safe="") if tok else ""))
    return (None if status == 200 else status), reason + " " + body.decode("utf-8", "replace")


DOORS = {"listen": _listen_status, "ws-send": _ws_send_status, "http-send": _http_send_status,
         "ws-send, token in the query": _ws_send_in_query_status, "http-send, token in the query": _http_send_in_query_status}


@pytest.mark.parametrize("door", list(DOORS))
@pytest_twisted.inlineCallbacks
def test_every_wrong_token_is_refused_with_the_right_status(guarded, door):
    attempt = DOORS[door]
    if door != "listen":  # a listener to send to: only the token can stand in the way
        yield RawListener(guarded, "b", token=token(guarded)).start()
    outcomes = []
    cases = bad_tokens(guarded, "listen" if door == "listen" else "send")
    for case, tok, expected in cases:
        status, reason = yield attempt(guarded, tok)
        outcomes.append((case, status, expected))
        for sig in _sigs(tok):
            assert sig not in reason, (case, reason)
    assert [(c, s) for c, s, _ in outcomes] == [(c, e) for c, _, e in outcomes]


# -- the signature comparison ---------------------------------------------------------


def test_signatures_are_compared_in_constant_time_with_every_key(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sas.hmac, "compare_digest", recording)
    rule = SasRule("r", "primary-key", "secondary-key", Rights.LISTEN | Rights.SEND)
    audience = "http://h/x"
    for key, ok in (("primary-key", True), ("secondary-key", True), ("forged", False)):
        calls.clear()
        presented = sign_token(audience, "r", key, 2_000_000_000)
        if ok:
            verify_token(presented, rules={"r": rule}, hosts=None, entity_path="x", required=Rights.SEND, now=0)
        else:
            with pytest.raises(ProtocolError, match="invalid signature"):
                verify_token(presented, rules={"r": rule}, hosts=None, entity_path="x", required=Rights.SEND, now=0)
        # Both keys compared every time, even when the first one matched: no early exit.
        assert len(calls) == 2, key
        signature = sas.SasToken.parse(presented).signature.encode()
        assert all(b == signature for _, b in calls)
