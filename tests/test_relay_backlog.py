"""The relay's listen backlog: bursts of connections wait in the kernel instead of losing their SYNs."""
import socket

import pytest
import pytest_twisted
from twisted.internet.endpoints import serverFromString

from txhyco.relay.service import LISTEN_BACKLOG, with_backlog
from txhyco.testing import start_relay


@pytest.mark.parametrize("description, expected", [
    ("tcp:9090:interface=127.0.0.1", f"tcp:9090:interface=127.0.0.1:backlog={LISTEN_BACKLOG}"),
    ("tcp6:0", f"tcp6:0:backlog={LISTEN_BACKLOG}"),
    ("ssl:443:privateKey=k.pem:certKey=c\\:x.pem", f"ssl:443:privateKey=k.pem:certKey=c\\:x.pem:backlog={LISTEN_BACKLOG}"),
    ("unix:/run/relay.sock", f"unix:/run/relay.sock:backlog={LISTEN_BACKLOG}"),
    ("reuseport:9090:interface=0.0.0.0", f"reuseport:9090:interface=0.0.0.0:backlog={LISTEN_BACKLOG}"),
    # The user's own backlog wins, as a keyword or positionally (tcp:PORT:INTERFACE:BACKLOG).
    ("tcp:9090:backlog=10", "tcp:9090:backlog=10"),
    ("tcp:9090:127.0.0.1", "tcp:9090:127.0.0.1"),
    ("tcp:9090:127.0.0.1:20", "tcp:9090:127.0.0.1:20"),
    # An escaped colon is part of a value, not a field of its own.
    ("unix:/tmp/a\\:b", f"unix:/tmp/a\\:b:backlog={LISTEN_BACKLOG}"),
    # Kinds without a backlog, and garbage (serverFromString refuses it later, with its own error).
    ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ("", ""),
    ("nonsense", "nonsense"),
    ("\\", "\\"),
    ("tcp:0:interface=a\\", "tcp:0:interface=a\\"),  # a dangling escape would swallow an added colon
])
def test_a_backlog_is_added_only_where_the_kind_takes_one_and_none_is_named(description, expected):
    assert with_backlog(description) == expected


@pytest.mark.parametrize("description", ["tcp:0:interface=127.0.0.1", "unix:/tmp/x.sock:mode=600"])
def test_what_is_added_twisted_parses(description):
    serverFromString(None, with_backlog(description))  # parsing only: TypeError if backlog= were not taken


@pytest_twisted.inlineCallbacks
def test_more_connections_than_twisteds_default_backlog_wait_while_the_relay_is_busy():
    relay = yield start_relay()
    port = relay.service.port
    port.stopReading()  # a relay too busy to accept: connections queue in the kernel
    sockets = []
    try:
        for _ in range(3 * 50):  # Twisted's default backlog is 50: its 52nd SYN would be dropped
            s = socket.socket()
            sockets.append(s)
            s.settimeout(5)
            s.connect(("127.0.0.1", port.getHost().port))  # the handshake completes in the kernel
    finally:
        for s in sockets:
            s.close()
        port.startReading()
        yield relay.stop()
