"""``--forward`` as any Twisted endpoint and as UDP: unix sockets both sides, a UDP round trip."""
from __future__ import annotations

import os
import tempfile

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.task import deferLater

from tests.test_cli_tunnels import Collect, Echo, assert_one_line_error, cli, finished, stopped
from txhyco.cli.common import CliError
from txhyco.cli.targets import Target, parse_target


@pytest.mark.parametrize(
    "text, listening, expected",
    [
        ("16379", False, Target("tcp", "16379", "127.0.0.1", 16379)),
        ("16379", True, Target("tcp", "16379", "127.0.0.1", 16379)),
        ("db.local:5432", False, Target("tcp", "db.local:5432", "db.local", 5432)),
        ("[::1]:5432", True, Target("tcp", "[::1]:5432", "::1", 5432)),
        ("unix:path=/run/app.sock", False, Target("endpoint", "unix:path=/run/app.sock")),
        ("tcp:host=db:port=5432", False, Target("endpoint", "tcp:host=db:port=5432")),
        ("tcp6:5432:interface=\\:\\:1", True, Target("endpoint", "tcp6:5432:interface=\\:\\:1")),
        ("unix:/tmp/db.sock", True, Target("endpoint", "unix:/tmp/db.sock")),
        ("udp:127.0.0.1:53", False, Target("udp", "udp:127.0.0.1:53", "127.0.0.1", 53)),
        ("udp:0", True, Target("udp", "udp:0", "127.0.0.1", 0)),
    ],
)
def test_forward_forms(text, listening, expected):
    assert parse_target(text, listening=listening) == expected


@pytest.mark.parametrize(
    "text, listening, words",
    [
        ("0", False, "port 0"),
        ("udp:host:0", False, "port 0"),
        ("bogus:x=1", False, "neither [HOST:]PORT nor a Twisted client endpoint string"),
        ("unix:nosuchoption=1", True, "neither [HOST:]PORT nor a Twisted server endpoint string"),
        ("host:99999", False, "no valid port"),
    ],
)
def test_bad_forward_is_a_usage_error(text, listening, words):
    with pytest.raises(CliError) as e:
        parse_target(text, listening=listening)
    assert e.value.exit_code == 2 and words in e.value.message


@pytest.fixture
def sockdir():
    with tempfile.TemporaryDirectory(prefix="txhyco-") as path:  # short: AF_UNIX paths are limited
        yield path


@pytest_twisted.inlineCallbacks
def test_unix_sockets_on_both_sides(relay, sockdir):
    cs = relay.connection_string
    service_path, local_path = os.path.join(sockdir, "svc.sock"), os.path.join(sockdir, "local.sock")
    service = reactor.listenUNIX(service_path, protocol.Factory.forProtocol(Echo))
    listener = cli("listen", "sock", "--forward", f"unix:path={service_path}", "--log", cs=cs)
    sender = cli("connect", "sock", "--forward", f"unix:{local_path}", "--log", cs=cs)
    try:
        yield listener.wait_for("listening on")
        line = yield sender.wait_for("unix:")
        assert line.strip() == f"unix:{local_path}"
        client = Collect(expect=5)
        yield connectProtocol(UNIXClientEndpoint(reactor, local_path), client)
        client.transport.write(b"hello")
        assert (yield client.got_all.addTimeout(30, reactor)) == b"hello"
        client.transport.loseConnection()
        yield client.done
    finally:
        code_c, _, log_c = yield stopped(sender)
        code_l, _, log_l = yield stopped(listener)
        yield service.stopListening()
    assert code_c == 0 and code_l == 0, log_c + log_l
    assert f"to unix:path={service_path}" in log_l and "5 bytes in, 5 bytes out" in log_l


class UdpEcho(protocol.DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data.upper(), addr)


class UdpClient(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.received: defer.DeferredQueue = defer.DeferredQueue()

    def datagramReceived(self, data, addr):
        self.received.put(data)


@pytest_twisted.inlineCallbacks
def test_udp_round_trip_through_the_relay(relay):
    cs = relay.connection_string
    service = reactor.listenUDP(0, UdpEcho(), interface="127.0.0.1", maxPacketSize=65536)
    listener = cli("listen", "dns", "--forward", f"udp:127.0.0.1:{service.getHost().port}", "--log",
                   "--udp-idle", "1", cs=cs)
    sender = cli("connect", "dns", "--forward", "udp:0", "--log", cs=cs)
    clients = []
    try:
        yield listener.wait_for("listening on")
        line = yield sender.wait_for("udp:127.0.0.1:")
        port = int(line.strip().rsplit(":", 1)[1])
        for name in (b"a", b"b"):  # two senders: two flows, each gets its own replies
            client = UdpClient()
            clients.append(reactor.listenUDP(0, client, interface="127.0.0.1", maxPacketSize=65536))
            client.transport.connect("127.0.0.1", port)
            for i in range(3):
                client.transport.write(name + b"-datagram-%d" % i)
            got = set()
            for i in range(3):
                got.add((yield client.received.get().addTimeout(30, reactor)))
            assert got == {name.upper() + b"-DATAGRAM-%d" % i for i in range(3)}
        big = os.urandom(60000)
        clients[0].protocol.transport.write(big)  # one datagram, one message, boundaries kept
        assert (yield clients[0].protocol.received.get().addTimeout(30, reactor)) == big.upper()
        for _ in range(300):  # the listener's 1 s idle timeout closes the flows
            if b"(idle)" in listener.stderr:
                break
            yield deferLater(reactor, 0.1)
    finally:
        code_c, _, log_c = yield stopped(sender)
        code_l, _, log_l = yield stopped(listener)
        for port_ in clients:
            yield port_.stopListening()
        yield service.stopListening()
    assert code_c == 0 and code_l == 0, log_c + log_l
    assert "UDP flow from 127.0.0.1:" in log_c and "connection #2 opened" in log_c, log_c
    assert "connection #1 closed" in log_l and "(idle)" in log_l, log_l


@pytest_twisted.inlineCallbacks
def test_bad_endpoint_string_is_one_line(relay):
    child = cli("listen", "x", "--forward", "unix:nosuchoption=1=2", cs=relay.connection_string)
    code, _, err = yield finished(child)
    assert_one_line_error(code, err, "--forward", status=2)


def test_udp_idle_goes_with_udp(capsys):
    from txhyco.cli import main

    cs = "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0;UseDevelopmentEmulator=true"
    for argv in (["listen", "x", "--echo"], ["connect", "x", "--forward", "15432"]):
        assert main([*argv, "--udp-idle", "5", "--connection-string", cs]) == 2
        assert "--udp-idle goes with --forward udp:" in capsys.readouterr().err
    assert main(["listen", "x", "--forward", "udp:127.0.0.1:53", "--udp-idle", "0", "--connection-string", cs]) == 2
    assert "--udp-idle must be a positive number" in capsys.readouterr().err
