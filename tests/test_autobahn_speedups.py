"""txhyco._twisted.autobahn_speedups: cheaper Autobahn protocols for txhyco's own legs, and only for them."""
import inspect
import os
import pkgutil
import pprint
import re
import subprocess
import sys
import textwrap
from importlib import import_module

import autobahn.twisted.websocket as ab_twisted
import autobahn.websocket.protocol as ab_protocol
import autobahn.websocket.xormasker as ab_xormasker
import pytest
import pytest_twisted
import txaio
from autobahn import util as ab_util
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

import txhyco
from txhyco._twisted import autobahn_speedups
from txhyco._twisted.autobahn_speedups import LeanClientProtocol, LeanServerProtocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_every_txhyco_module():
    for module in pkgutil.walk_packages(txhyco.__path__, "txhyco."):
        import_module(module.name)


def test_autobahn_itself_is_left_alone():
    import_every_txhyco_module()
    assert ab_protocol.pformat is pprint.pformat
    for module in (ab_protocol, ab_twisted):
        for name in ("hltype", "hlval"):  # Autobahn 22 and later
            assert getattr(module, name, None) is getattr(ab_util, name, None)
    assert ab_protocol.create_xor_masker is ab_xormasker.create_xor_masker
    str(ab_protocol.Timings())  # raised TypeError while pformat was patched process-wide
    for cls in (ab_twisted.WebSocketServerProtocol, ab_twisted.WebSocketClientProtocol):
        for klass in cls.__mro__:
            for value in vars(klass).values():
                if callable(value) and hasattr(value, "__globals__"):
                    assert value.__globals__["__name__"] == value.__module__  # not one of ours


def test_lean_methods_are_autobahns_own_code():
    colours = hasattr(ab_util, "hltype")  # Autobahn 22 and later
    masks_with_wsaccel = ab_xormasker.create_xor_masker.__module__ == "wsaccel.xormask"  # Autobahn before 24
    expected = {"no configuration dump"}
    expected |= {"lazy pformat", "lazy hltype/hlval"} if colours else set()  # pformat: in a client's handshake
    expected |= set() if masks_with_wsaccel else {"small-frame masker"}
    assert autobahn_speedups.ACTIVE == expected
    for lean, base in ((LeanServerProtocol, WebSocketServerProtocol), (LeanClientProtocol, ab_twisted.WebSocketClientProtocol)):
        remade = vars(lean.__mro__[2])
        assert ({"dataReceived", "sendData"} if colours else set()) | (set() if masks_with_wsaccel else {"processData"}) <= remade.keys()
        for name, function in remade.items():
            if inspect.isfunction(function):
                original = getattr(base, name)
                assert function.__code__ is original.__code__  # not a copy of Autobahn's code
                assert function.__globals__ is not original.__globals__
                assert (function.__module__, function.__qualname__) == (original.__module__, original.__qualname__)


def test_small_frames_are_unmasked_to_the_same_bytes():
    masker = autobahn_speedups._small_frame_masker(ab_xormasker.create_xor_masker)
    if masker is None:
        pytest.skip("this Autobahn masks with wsaccel already")
    for size in (0, 1, 125, 1000, 4096, 5000, 70000):
        mask, data = os.urandom(4), os.urandom(size)
        ours, reference = masker(mask, size), ab_xormasker.create_xor_masker(mask, size)
        assert ours.process(data[:7]) + ours.process(data[7:]) == reference.process(data)
        assert ours.pointer() == reference.pointer() == size


def client_frame(payload: bytes, opcode: int = 2) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def echo_session(base, inputs, lean_instance=False):
    """Run an echo server of class ``base`` over a StringTransport; (bytes written, debug log lines).

    With ``lean_instance``, the instance gets the speed-ups (as txhyco's
    accept bridge gives them to an application's protocol).
    """

    class Echo(base):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory("ws://example/chat")
    factory.protocol = Echo
    lines = []

    def observe(event):
        if event.get("log_namespace", "").startswith("autobahn") or "log_logger" in event:
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        proto = factory.buildProtocol(None)
        if lean_instance:
            assert autobahn_speedups.lean_instance(proto)
        transport = StringTransport()
        proto.makeConnection(transport)
        for data in inputs:
            proto.dataReceived(data)
        proto.connectionLost(Failure(ConnectionDone()))
    finally:
        globalLogPublisher.removeObserver(observe)
    return transport.value(), lines


def test_a_lean_protocol_speaks_and_logs_like_autobahns():
    payloads = [b"hi", os.urandom(200), os.urandom(5000), os.urandom(70000)]
    inputs = [UPGRADE] + [client_frame(p) for p in payloads]
    old_level = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        plain_bytes, plain_log = echo_session(WebSocketServerProtocol, inputs)
        lean_bytes, lean_log = echo_session(LeanServerProtocol, inputs)
    finally:
        txaio.set_global_log_level(old_level)
    assert lean_bytes == plain_bytes and all(p in plain_bytes for p in payloads)
    # The same debug text, formatted when read, except the configuration dump our legs skip.
    assert len(plain_log) > 10 and any("'openHandshakeTimeout'" in line for line in plain_log)
    config_dump = [i for i, line in enumerate(plain_log) if "'openHandshakeTimeout'" in line]
    assert len(config_dump) == 1 and lean_log[config_dump[0]] == "\n[]"
    del plain_log[config_dump[0]], lean_log[config_dump[0]]
    assert lean_log == plain_log


def test_a_lean_instance_speaks_and_logs_like_autobahns_and_its_class_stays_autobahns():
    payloads = [b"hi", os.urandom(200), os.urandom(5000), os.urandom(70000)]
    inputs = [UPGRADE] + [client_frame(p) for p in payloads]
    old_level = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        plain_bytes, plain_log = echo_session(WebSocketServerProtocol, inputs)
        lean_bytes, lean_log = echo_session(WebSocketServerProtocol, inputs, lean_instance=True)
        again_bytes, again_log = echo_session(WebSocketServerProtocol, inputs)  # other instances: Autobahn's
    finally:
        txaio.set_global_log_level(old_level)
    assert lean_bytes == plain_bytes == again_bytes and all(p in plain_bytes for p in payloads)
    addresses = re.compile(r" at 0x[0-9a-f]+")  # each factory's own option functions
    plain_log, lean_log, again_log = ([addresses.sub("", line) for line in log] for log in (plain_log, lean_log, again_log))
    assert again_log == plain_log
    config_dump = [i for i, line in enumerate(plain_log) if "'openHandshakeTimeout'" in line]
    assert len(config_dump) == 1 and lean_log[config_dump[0]] == "\n[]"
    del plain_log[config_dump[0]], lean_log[config_dump[0]]
    assert lean_log == plain_log
    test_autobahn_itself_is_left_alone()


def test_a_lean_instance_keeps_what_its_class_overrides():
    written = []

    class Recording(ab_twisted.WebSocketClientProtocol):
        def sendData(self, data, sync=False, chopsize=None):
            written.append(data)
            super().sendData(data, sync, chopsize)

    factory = ab_twisted.WebSocketClientFactory("ws://example/chat")
    factory.protocol = Recording
    proto = factory.buildProtocol(None)
    assert autobahn_speedups.lean_instance(proto)
    assert "sendData" not in vars(proto)  # the class's override runs
    assert ("dataReceived" in vars(proto)) == ("dataReceived" in vars(LeanClientProtocol.__mro__[2]))
    proto.makeConnection(StringTransport())
    assert written and written[0].startswith(b"GET /chat HTTP/1.1")  # the opening handshake, through the override
    assert "makeConnection" not in vars(proto) and "CONFIG_ATTRS" not in vars(proto)
    assert proto.openHandshakeTimeout == factory.openHandshakeTimeout
    # Our own legs are lean already; anything but an Autobahn protocol is left alone.
    assert not autobahn_speedups.lean_instance(LeanServerProtocol())
    assert not autobahn_speedups.lean_instance(object())


def test_each_speedup_is_left_out_when_autobahn_is_not_as_expected(monkeypatch):
    # Some internals as expected, some not: only those speed-ups go.
    monkeypatch.setattr(ab_protocol, "pformat", lambda *a, **k: pprint.pformat(*a, **k))
    active, server, _client = autobahn_speedups._build()
    assert "lazy pformat" not in active
    assert ("lazy hltype/hlval" in active) == hasattr(ab_util, "hltype")
    # None as expected: the lean classes are Autobahn's, unchanged.
    for module in (ab_protocol, ab_twisted):
        for name in ("hltype", "hlval"):
            if hasattr(ab_util, name):
                monkeypatch.setattr(module, name, lambda *a, _f=getattr(ab_util, name): _f(*a))
    monkeypatch.setattr(ab_protocol, "create_xor_masker", lambda *a: ab_xormasker.create_xor_masker(*a))
    made = ab_protocol.WebSocketProtocol._connectionMade
    monkeypatch.setattr(ab_protocol.WebSocketProtocol, "_connectionMade", lambda self: made(self))
    active, server, client = autobahn_speedups._build()
    assert active == frozenset()
    for lean in (server, client):
        assert [name for klass in lean.__mro__[:-len(WebSocketServerProtocol.__mro__)] for name in vars(klass)
                if not name.startswith("__")] == []


FALLBACK_ECHO = textwrap.dedent("""
    import pprint
    import autobahn.twisted.websocket as ab_twisted
    import autobahn.websocket.protocol as ab_protocol
    from autobahn import util

    # An Autobahn and a Twisted whose internals are not what the speed-ups
    # were written against (stand-ins doing the same work under other names).
    ab_protocol.pformat = lambda *a, **k: pprint.pformat(*a, **k)
    for module in (ab_protocol, ab_twisted):
        module.hltype = lambda obj: util.hltype(obj)
        module.hlval = lambda *a, **k: util.hlval(*a, **k)
    masker = ab_protocol.create_xor_masker
    ab_protocol.create_xor_masker = lambda *a: masker(*a)
    made = ab_protocol.WebSocketProtocol._connectionMade
    ab_protocol.WebSocketProtocol._connectionMade = lambda self: made(self)

    from txhyco._twisted import autobahn_speedups, eagerwrite
    assert autobahn_speedups.ACTIVE == frozenset(), autobahn_speedups.ACTIVE
    eagerwrite.internals_usable = lambda conn: False

    from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
    from twisted.internet import defer, task
    from txhyco import RelayedServerFactory, connect_relay
    from txhyco.testing import start_relay

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    class Client(WebSocketClientProtocol):
        def onOpen(self):
            self.messages = defer.DeferredQueue()
        def onMessage(self, payload, isBinary):
            self.messages.put(payload)

    @defer.inlineCallbacks
    def main(reactor):
        relay = yield start_relay()
        factory = RelayedServerFactory(relay.connection_string.format(), path="echo")
        factory.protocol = Echo
        port = yield factory.listen()
        client = yield connect_relay(Client, relay.connection_string.format(), path="echo")
        for payload in (b"hello", bytes(range(256)) * 300):
            client.sendMessage(payload, isBinary=True)
            assert (yield client.messages.get()) == payload
        assert "write" not in client.transport.__dict__  # Twisted's own writes
        assert "sendData" not in client.__dict__  # Autobahn's own methods on the application's protocols
        client.sendClose(1000)
        yield port.stopListening()
        yield relay.stop()
        print("echoed on the plain path")

    task.react(main)
""")


def test_a_relayed_echo_works_on_the_plain_path():
    """Every check failing (Autobahn's and Twisted's): the real local relay and a listener still echo."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", FALLBACK_ECHO], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "echoed on the plain path"


@pytest_twisted.inlineCallbacks
def test_the_application_protocols_txhyco_connects_are_lean_instances(relay):
    """A RelayedServerFactory's server and a RelayedClientFactory's client get the speed-ups on their instance only."""
    from txhyco import RelayedServerFactory, connect_relay
    from tests.support.wsclient import Leg

    servers = []

    class Echo(WebSocketServerProtocol):
        def onOpen(self):
            servers.append(self)

        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = RelayedServerFactory(relay.connection_string.format(), path="lean")
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        client = yield connect_relay(Leg, relay.connection_string.format(), path="lean")
        client.sendMessage(b"hello", isBinary=True)
        assert (yield client.messages.get().addTimeout(10, reactor)) == (b"hello", True)
        lean = "sendData" in vars(LeanServerProtocol.__mro__[2])
        assert ("sendData" in vars(client)) == ("sendData" in vars(servers[0])) == lean
        assert "sendData" not in vars(Echo) and "sendData" not in vars(Leg)  # the classes stay as written
        client.sendClose(1000)
        yield client.closed
    finally:
        yield port.stopListening()
