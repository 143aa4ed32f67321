"""The relay front door's quick path for WebSocket upgrades (httptools) takes nothing h11 would refuse."""
import random

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import fuzz
from txhyco.relay.frontdoor import _is_websocket_upgrade, websocket_upgrade_headers

UPGRADE = fuzz.head(fuzz.upgrade_lines("/$hc/echo?sb-hc-action=connect", "relay.example:9000", "SharedAccessSignature sr=a&sig=b"))


def h11_reading(head: bytes):
    """h11's Request for ``head``, or None where it refuses it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


def assert_h11_agrees(head: bytes) -> None:
    quick = websocket_upgrade_headers(head)
    if quick is None:
        return
    request = h11_reading(head)
    assert request is not None, head
    assert _is_websocket_upgrade(request) and request.http_version == b"1.1", head
    assert list(request.headers.raw_items()) == quick, head


def test_a_plain_upgrade_takes_the_quick_path_with_h11s_headers():
    headers = websocket_upgrade_headers(UPGRADE)
    assert headers is not None and headers[0] == (b"Host", b"relay.example:9000")
    assert headers == list(h11_reading(UPGRADE).headers.raw_items())
    spaced = UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: \t websocket \t")
    assert websocket_upgrade_headers(spaced) == list(h11_reading(spaced).headers.raw_items())


@pytest.mark.parametrize("change", [
    (b"GET ", b"POST "), (b"GET ", b"GET  "), (b" HTTP/1.1", b"  HTTP/1.1"), (b"GET ", b"\r\nGET "),
    (b"HTTP/1.1", b"HTTP/1.0"), (b"Upgrade: websocket", b"Upgrade: h2c"),
    (b"Host: relay.example:9000\r\n", b""), (b"Host: relay.example:9000\r\n", b"Host: a\r\nHost: b\r\n"),
    (b"Connection: Upgrade\r\n", b"Connection: Upgrade\r\nContent-Length: 0\r\n"),
    (b"Connection: Upgrade\r\n", b"Connection: Upgrade\r\nTransfer-Encoding: chunked\r\n"),
    (b"Connection: Upgrade\r\n", b"Connection: Upgrade\r\nX-Folded: a\r\n b\r\n"),
    (b"Connection: Upgrade\r\n", b"Connection: Upgrade\r\nX Bad: 1\r\n"),
    (b"Connection: Upgrade\r\n", b"Connection: Upgrade\r\nX-Bad: a\x01b\r\n"),
    (b"Connection: Upgrade\r\n", b"Connection: Upgrade\nX-B: 1\r\n"),
])
def test_anything_else_is_left_to_h11(change):
    head = UPGRADE.replace(*change)
    assert head != UPGRADE and websocket_upgrade_headers(head) is None


def test_the_fuzzers_heads_taken_quickly_are_heads_h11_takes_alike():
    rng = random.Random(18)
    heads = [head for _, head in fuzz.broken_upgrades(rng, 400, path="echo", host="relay.example", token="t")]
    heads += [head for _, head in fuzz.wrong_methods(rng, path="echo", host="relay.example", token="t")]
    heads += [head for _, head in fuzz.garbage_heads(rng, 300)]
    taken = 0
    for head in heads:
        assert_h11_agrees(head)
        taken += websocket_upgrade_headers(head) is not None
    assert taken > 50  # the heads broken beyond HTTP (a bad key, an unknown action) are still read quickly


_LINE_BYTES = st.sampled_from([b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"\x80", b"\xff", b"(", b",",
                               b"/", b"=", b"websocket", b"Host", b"Upgrade", b"Content-Length", b"1"])


@given(st.lists(st.lists(_LINE_BYTES, max_size=8).map(b"".join), max_size=4), st.sampled_from([0, 1, 2, 3, 4, 5, 6]))
@settings(max_examples=400, deadline=None)
def test_hypothesis_heads_taken_quickly_are_heads_h11_takes_alike(extra_lines, at):
    lines = fuzz.upgrade_lines("/$hc/echo", "relay.example", None)
    lines[at:at] = extra_lines
    assert_h11_agrees(fuzz.head(lines))
