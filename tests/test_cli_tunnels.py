"""``txhyco listen`` and ``txhyco connect`` as real processes through an in-process relay.

The children are driven from the reactor (tests/support/procs.py), never
blocking it: the relay they talk to runs in this process.
"""
from __future__ import annotations

import hashlib
import io
import os
import re

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.support.procs import ROOT, spawn
from txhyco.cli import main
from txhyco.cli.status import CONNECTING, ONLINE, Monitor, StatusSnapshot, render_status, use_live_display

# -- helpers (test_cli_request.py uses them too) ---------------------------------------


def cli(*args: str, cs=None, env: dict | None = None, cwd: str = ROOT):
    """``python -m txhyco.cli ARGS`` with HYCO_CONNECTION_STRING set to ``cs`` (or cleared)."""
    full = {"HYCO_CONNECTION_STRING": cs.format() if cs is not None else "", "HYCO_RELAY_KEY": "",
            "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    full.update(env or {})
    return spawn(["-m", "txhyco.cli", *args], env=full, cwd=cwd)


@defer.inlineCallbacks
def finished(child, timeout: float = 30):
    """(exit code, stdout text, stderr text) once ``child`` exits."""
    child.ended.addTimeout(timeout, reactor)
    code = yield child.ended
    lines = child.lines + ([child._partial.decode("utf-8", "replace")] if child._partial else [])
    return code, "\n".join(lines), child.stderr.decode("utf-8", "replace")


@defer.inlineCallbacks
def stopped(child):
    """SIGTERM ``child``; (exit code, stdout, stderr)."""
    child.stop()
    result = yield finished(child)
    return result


def assert_one_line_error(code, stderr: str, *words: str, status: int | None = None) -> None:
    assert code not in (0, None), stderr
    if status is not None:
        assert code == status, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_no_secrets(text: str, cs) -> None:
    assert cs.shared_access_key not in text
    assert "sig=" not in text and "SharedAccessSignature" not in text


class Collect(protocol.Protocol):
    """A TCP client: collects what arrives; ``done`` fires with it all at close."""

    def __init__(self, expect: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.expect = expect
        self.got_all: defer.Deferred = defer.Deferred()
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.expect is not None and self.size >= self.expect and not self.got_all.called:
            self.got_all.callback(b"".join(self.chunks))

    def connectionLost(self, reason) -> None:
        if not self.got_all.called:
            self.got_all.callback(b"".join(self.chunks))
        self.done.callback(b"".join(self.chunks))


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def echo_server():
    """A local TCP echo service on a free loopback port."""
    return reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")


def address(line: str) -> tuple[str, int]:
    host, port = line.strip().rsplit(":", 1)
    return host, int(port)


@defer.inlineCallbacks
def tunnel(cs, path: str, target_port: int, *extra: str):
    """A ``listen --forward`` and a ``connect --forward 0`` pair; (listen, connect, (host, port))."""
    listener = cli("listen", path, "--forward", f"127.0.0.1:{target_port}", *extra, cs=cs)
    yield listener.wait_for("listening on")
    sender = cli("connect", path, "--forward", "0", *extra, cs=cs)
    line = yield sender.wait_for("127.0.0.1:")
    return listener, sender, address(line)


@defer.inlineCallbacks
def exchange(host: str, port: int, payload: bytes):
    """Send ``payload`` to host:port and read the same number of bytes back."""
    client = Collect(expect=len(payload))
    yield connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
    client.transport.write(payload)
    data = yield client.got_all.addTimeout(30, reactor)
    client.transport.loseConnection()
    yield client.done
    return data


# -- listen --echo and the interactive connect -----------------------------------------------


@pytest_twisted.inlineCallbacks
def test_echo_listener_and_interactive_session(relay):
    cs = relay.connection_string
    listener = cli("listen", "echo", "--echo", cs=cs)
    yield listener.wait_for("listening on")
    session = cli("connect", "echo", cs=cs)
    session.transport.write(b"hello relay\n")
    yield session.wait_for("hello relay")
    session.transport.write("second line, ünïcode\n".encode())
    yield session.wait_for("second line")
    session.transport.write(b"last without newline")
    session.transport.closeStdin()  # EOF: close with 1000, exit 0
    code, out, err = yield finished(session)
    assert code == 0, err
    assert out.splitlines() == ["hello relay", "second line, ünïcode", "last without newline"]
    assert "Traceback" not in err

    code, _, log = yield stopped(listener)
    assert code == 0, log
    # Not a terminal: one structured line per event on stderr.
    assert re.search(r"\[txhyco\.listen#info\] status online", log), log
    assert re.search(r"connection #1 opened: WebSocket from 127\.0\.0\.1:\d+", log), log
    assert re.search(r"connection #1 closed after [\d.]+ s: 53 bytes in, 53 bytes out", log), log
    assert_no_secrets(log, cs)


@pytest_twisted.inlineCallbacks
def test_echo_listener_answers_http_requests(relay):
    cs = relay.connection_string
    listener = cli("listen", "echo", "--echo", cs=cs)
    yield listener.wait_for("listening on")
    code, out, err = yield finished(cli("request", "echo", "/x?y=1", "--data", "ping back", cs=cs))
    assert code == 0, err
    assert out.startswith("HTTP/1.1 200 OK") and "X-Echo-Method: POST" in out and "X-Echo-Path: /x?y=1" in out
    assert out.endswith("ping back")
    yield stopped(listener)


# -- listen --forward and connect --forward --------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_tcp_tunnel_concurrent_connections_and_10_mb(relay):
    cs = relay.connection_string
    service = echo_server()
    listener, sender, (host, port) = yield tunnel(cs, "db", service.getHost().port)
    try:
        # Several connections at once, each its own tunnel.
        payloads = [os.urandom(1000) + bytes([i]) * 50_000 for i in range(6)]
        echoed = yield defer.gatherResults([exchange(host, port, p) for p in payloads])
        assert echoed == payloads

        # 10 MB of binary both ways, checked by SHA-256.
        big = os.urandom(10 * 1024 * 1024)
        data = yield exchange(host, port, big)
        assert len(data) == len(big)
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(big).hexdigest()
    finally:
        code_c, _, log_c = yield stopped(sender)
        code_l, _, log_l = yield stopped(listener)
        yield service.stopListening()
    assert code_c == 0 and code_l == 0, log_c + log_l
    assert "connection #7 closed" in log_c, log_c
    assert f"{len(big)} bytes in, {len(big)} bytes out" in log_c
    assert f"{len(big)} bytes in, {len(big)} bytes out" in log_l
    assert "status listening (127.0.0.1:" in log_c
    assert_no_secrets(log_c + log_l, cs)


@pytest_twisted.inlineCallbacks
def test_http_server_through_the_tcp_tunnel(relay):
    """A real protocol end to end: twisted.web behind listen --forward, Agent at connect --forward."""
    from twisted.web.client import Agent, readBody
    from twisted.web.resource import Resource
    from twisted.web.server import Site
    from twisted.web.static import Data

    page = b"<h1>tunnelled</h1>" * 5000
    root = Resource()
    root.putChild(b"", Data(page, "text/html"))
    site = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    listener, sender, (host, port) = yield tunnel(relay.connection_string, "web-tcp", site.getHost().port)
    failure = None
    try:
        agent = Agent(reactor)
        for _ in range(3):  # fresh connections each time
            response = yield agent.request(b"GET", f"http://{host}:{port}/".encode())
            body = yield readBody(response)
            assert response.code == 200 and body == page
    except Exception as e:  # keep both sides' logs for the report
        failure = e
    finally:
        _, _, log_c = yield stopped(sender)
        _, _, log_l = yield stopped(listener)
        yield site.stopListening()
    assert failure is None, f"{failure!r}\nconnect:\n{log_c}\nlisten:\n{log_l}"


@pytest_twisted.inlineCallbacks
def test_tunnel_without_listener_closes_the_local_connection(relay):
    sender = cli("connect", "nobody", "--forward", "0", cs=relay.connection_string)
    host, port = address((yield sender.wait_for("127.0.0.1:")))
    client = Collect()
    yield connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
    data = yield client.done.addTimeout(30, reactor)
    assert data == b""
    code, _, log = yield stopped(sender)
    assert code == 0
    assert "404" in log and "no listeners" in log, log


@pytest_twisted.inlineCallbacks
def test_forward_to_a_closed_port_closes_the_relayed_connection(relay):
    spare = echo_server()
    dead_port = spare.getHost().port
    yield spare.stopListening()
    listener, sender, (host, port) = yield tunnel(relay.connection_string, "dead", dead_port)
    client = Collect()
    yield connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
    data = yield client.done.addTimeout(30, reactor)
    assert data == b""
    _, _, log = yield stopped(listener)
    yield stopped(sender)
    assert f"cannot connect to 127.0.0.1:{dead_port}" in log, log


# -- errors ------------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_errors_are_one_line(relay):
    cs = relay.connection_string
    from txhyco.protocol.connection_string import ConnectionString

    spare = echo_server()
    closed_port = spare.getHost().port
    yield spare.stopListening()
    unreachable = ConnectionString.parse(cs.format().replace(f":{relay.port}/", f":{closed_port}/"))
    bad_key = ConnectionString.parse(cs.format().replace(cs.shared_access_key, "d3Jvbmcta2V5"))
    runs = {
        "no-cs-listen": cli("listen", "x", "--echo"),
        "no-cs-connect": cli("connect", "x"),
        "bad-path": cli("listen", "bad path", "--echo", cs=cs),
        "bad-forward": cli("listen", "x", "--forward", "nohost", cs=cs),
        "two-kinds": cli("listen", "x", "--echo", "--forward", "a:1", cs=cs),
        "no-listener": cli("connect", "nobody", cs=cs),
        "unreachable-connect": cli("connect", "x", cs=unreachable),
        "unreachable-listen": cli("listen", "x", "--echo", cs=unreachable),
        "bad-key": cli("listen", "x", "--echo", cs=bad_key),
    }
    results = yield defer.gatherResults([finished(child) for child in runs.values()])
    got = dict(zip(runs, results))
    for name in ("no-cs-listen", "no-cs-connect"):
        assert_one_line_error(got[name][0], got[name][2], "HYCO_CONNECTION_STRING", status=2)
    assert_one_line_error(got["bad-path"][0], got["bad-path"][2], "PATH 'bad path'", status=2)
    assert_one_line_error(got["bad-forward"][0], got["bad-forward"][2], "HOST:PORT", status=2)
    assert_one_line_error(got["two-kinds"][0], got["two-kinds"][2], "not allowed with", status=2)
    assert_one_line_error(got["no-listener"][0], got["no-listener"][2], "404", "no listeners", status=1)
    assert_one_line_error(got["unreachable-connect"][0], got["unreachable-connect"][2], "cannot reach the relay", status=1)
    assert_one_line_error(got["unreachable-listen"][0], got["unreachable-listen"][2], "cannot reach the relay", status=1)
    assert_one_line_error(got["bad-key"][0], got["bad-key"][2], "401", status=1)
    for code, out, err in results:
        assert "d3Jvbmcta2V5" not in out + err and cs.shared_access_key not in out + err


def test_help_shows_examples(capsys):
    for command, example in (("listen", "txhyco listen db --forward 127.0.0.1:5432"),
                             ("connect", "txhyco connect db --forward 15432")):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "examples:" in out and example in out
    assert main(["--help"]) == 0
    assert "txhyco connect db --forward 15432" in capsys.readouterr().out


# -- the live status -------------------------------------------------------------------------


class FakeStream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_live_panel_only_on_a_terminal():
    assert use_live_display(FakeStream(True))
    assert not use_live_display(FakeStream(False))
    assert not use_live_display(FakeStream(True), plain=True)  # --log
    assert not use_live_display(io.StringIO())


def render(snapshot: StatusSnapshot) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=110, color_system=None, force_terminal=False)
    console.print(render_status(snapshot))
    return console.file.getvalue()


def test_status_panel_shows_state_retry_connections_and_rates():
    clock = [100.0]
    monitor = Monitor("txhyco listen db", namespace="test", clock=lambda: clock[0])
    monitor.set_state(CONNECTING, "cannot reach the relay: Connection refused.", detail="ws://relay/$hc/db")
    monitor.retry_source = lambda: 1_000_004.2
    number = monitor.opened("from a to b")
    monitor.opened("from c to d")
    monitor.count(inbound=2 * 1024 * 1024, outbound=1024)
    monitor.request("GET / -> 200 OK")
    monitor.closed(number, bytes_in=10, bytes_out=20, seconds=1.0)
    clock[0] = 102.0
    monitor.sample()
    text = render(monitor.snapshot(wall=1_000_000.0))
    assert "txhyco listen db" in text
    assert "connecting" in text and "ws://relay/$hc/db" in text
    assert "in 4 s" in text  # the retry countdown
    assert "Connection refused" in text
    assert "1 active, 2 total" in text
    assert "in 1.0 MiB/s" in text and "out 512 B/s" in text
    assert "0.5/s (1 total)" in text

    monitor.set_state(ONLINE)
    text = render(monitor.snapshot())
    assert "online" in text and "retry" not in text


# -- examples/tunnel/README.md, run as written (ports aside) --------------------------------


def readme_commands() -> list[str]:
    """The ``txhyco ...`` and ``export ...`` lines of the README's sh blocks, in order."""
    text = open(os.path.join(ROOT, "examples", "tunnel", "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_twisted.inlineCallbacks
def test_tunnel_readme_commands():
    import shlex

    from txhyco.protocol.connection_string import ConnectionString

    commands = readme_commands()
    relay_cmd, export, listen_cmd, connect_cmd, client_cmd = commands
    assert relay_cmd == "txhyco relay --listen tcp:9090:interface=127.0.0.1"
    assert listen_cmd == "txhyco listen db --forward 127.0.0.1:5432"
    assert connect_cmd == "txhyco connect db --forward 15432"
    assert client_cmd.startswith("psql -h 127.0.0.1 -p 15432")
    service = echo_server()
    ports = {"9090": str(free_port()), "5432": str(service.getHost().port), "15432": str(free_port())}

    def argv(command: str) -> list[str]:
        for old, new in ports.items():
            command = re.sub(rf"\b{old}\b", new, command)
        words = shlex.split(command)
        assert words[0] == "txhyco"
        return words[1:]

    relay_proc = cli(*argv(relay_cmd))
    children = [relay_proc]
    try:
        line = yield relay_proc.wait_for("Endpoint=")
        # The export line in the README has the relay's output shape.
        shown = export.split("=", 1)[1].strip("'")
        assert line.split("SharedAccessKey=")[0] == shown.split("SharedAccessKey=")[0].replace("9090", ports["9090"])
        cs = ConnectionString.parse(line)
        listener = cli(*argv(listen_cmd), cs=cs)
        children.append(listener)
        yield listener.wait_for("listening on")
        sender = cli(*argv(connect_cmd), cs=cs)
        children.append(sender)
        bound = yield sender.wait_for("127.0.0.1:")
        assert bound == f"127.0.0.1:{ports['15432']}"
        payload = os.urandom(300_000)
        echoed = yield exchange("127.0.0.1", int(ports["15432"]), payload)
        assert echoed == payload
    finally:
        for child in reversed(children):
            yield stopped(child)
        yield service.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_panel_on_a_real_terminal(relay):
    """With a pseudo-terminal for stdio, listen draws the rich panel instead of log lines."""
    import sys

    from tests.support.procs import Child

    child = Child()
    env = dict(os.environ, HYCO_CONNECTION_STRING=relay.connection_string.format(), PYTHONUNBUFFERED="1",
               PYTHONPATH=ROOT, COLUMNS="100", TERM="xterm")
    reactor.spawnProcess(child, sys.executable, [sys.executable, "-m", "txhyco.cli", "listen", "tty", "--echo"],
                         env=env, path=ROOT, usePTY=True)
    try:
        yield child.wait_for("txhyco listen tty")  # the panel's title
        line = yield child.wait_for("connections")
        assert "active" in line and "total" in line
        yield child.wait_for("online")
    finally:
        yield child.stop()
    text = "\n".join(child.lines)
    assert "[txhyco.listen#info]" not in text  # no plain log lines on a terminal
    assert relay.connection_string.shared_access_key not in text


def test_twisted_chatter_is_kept_out_of_the_status_output():
    from twisted.logger import PredicateResult

    from txhyco.cli.status import _not_noise

    def legacy(text):
        return {"log_format": "{log_text}", "log_text": text}

    assert _not_noise(legacy("Main loop terminated.")) is PredicateResult.no
    assert _not_noise({"log_format": "Starting factory {factory!r}"}) is PredicateResult.no
    assert _not_noise(legacy("control channel for wss://ns/$hc/x online")) is PredicateResult.maybe
