"""``txhyco up FILE`` as a real process through an in-process relay: many entries, SIGHUP reloads."""
from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.test_cli_tunnels import assert_one_line_error, cli, echo_server, exchange, finished, stopped
from txhyco.cli.common import CliError
from txhyco.cli.upfile import load

V1 = """
[[listen]]
path = "a"
forward = "{a}"

[[listen]]
path = "b"
forward = "127.0.0.1:{b}"

[[connect]]
path = "a"
forward = "0"

[[connect]]
path = "b"
forward = "0"
"""

V2 = """
[[listen]]
path = "a"
forward = "{a}"

[[listen]]
name = "c-echo"
path = "c"
echo = true

[[connect]]
path = "a"
forward = "0"
"""


def listener_ids(relay, path: str) -> set:
    entity = relay.service.relay.registry.entities.get(path)
    return {id(proto) for proto in entity.listeners.values()} if entity else set()


@defer.inlineCallbacks
def event(child, name: str, entry: str | None = None):
    key = f'"event":"{name}"'
    while True:
        line = yield child.wait_for(key)
        obj = json.loads(line)
        child.lines.remove(line)  # consumed: the next wait finds the next one
        if entry is None or obj.get("entry") == entry:
            return obj


def address_of(started: dict) -> tuple[str, int]:
    host, port = started["address"].rsplit(":", 1)
    return host, int(port)


@pytest_twisted.inlineCallbacks
def test_two_exposures_and_a_reload_that_adds_one_and_removes_one(relay, tmp_path):
    cs = relay.connection_string
    service_a, service_b = echo_server(), echo_server()
    ports = {"a": service_a.getHost().port, "b": service_b.getHost().port}
    config = tmp_path / "tunnels.toml"
    config.write_text(V1.format(**ports))
    up = cli("up", str(config), "--json", cs=cs)
    try:
        applied = yield event(up, "applied")
        assert sorted(applied["started"]) == ["connect a", "connect b", "listen a", "listen b"]
        starts = {}
        for _ in range(4):
            obj = yield event(up, "started")
            starts[(obj["kind"], obj["entry"])] = obj
        for path in ("a", "b"):
            for _ in range(50):  # online is announced once the control channel is up
                if listener_ids(relay, path):
                    break
                yield _tick()
            data = yield exchange(*address_of(starts[("connect", path)]), path.encode() * 100)
            assert data == path.encode() * 100
        kept_listener = listener_ids(relay, "a")
        assert len(kept_listener) == 1

        config.write_text(V2.format(**ports))
        up.transport.signalProcess("HUP")
        applied = yield event(up, "applied")
        assert applied["started"] == ["listen c-echo"], applied
        assert sorted(applied["stopped"]) == ["connect b", "listen b"]
        assert sorted(applied["kept"]) == ["connect a", "listen a"] and applied["restarted"] == []
        for _ in range(100):
            if listener_ids(relay, "c") and not listener_ids(relay, "b"):
                break
            yield _tick()
        assert listener_ids(relay, "a") == kept_listener  # the same control channel: no reconnect
        assert not listener_ids(relay, "b") and len(listener_ids(relay, "c")) == 1
        data = yield exchange(*address_of(starts[("connect", "a")]), b"still here")  # the same local port
        assert data == b"still here"

        config.write_text(V2.format(**ports).replace("echo = true", "ecoh = true"))
        up.transport.signalProcess("HUP")
        failed = yield event(up, "reload_failed")
        assert "unknown setting 'ecoh' (did you mean 'echo'?)" in failed["message"]
    finally:
        code, out, err = yield stopped(up)
        yield service_a.stopListening()
        yield service_b.stopListening()
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    # "stopped" once every entry has stopped; only a relayed connection's own
    # "closed" may still be reported after it (its close handshake ends later
    # on some Twisted versions).
    kinds = [e["event"] for e in events]
    assert "stopped" in kinds and all("time" in e for e in events)
    last_stopped = len(kinds) - 1 - kinds[::-1].index("stopped")
    assert set(kinds[last_stopped + 1:]) <= {"closed"}, kinds
    assert "reload failed, nothing changed" in err
    assert cs.shared_access_key not in out + err


def _tick():
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, 0.05)


@pytest_twisted.inlineCallbacks
def test_an_unknown_key_fails_with_a_sentence(relay, tmp_path):
    config = tmp_path / "tunnels.toml"
    config.write_text('[[connect]]\npath = "db"\nforwrd = "15432"\n')
    code, _, err = yield finished(cli("up", str(config), cs=relay.connection_string))
    assert_one_line_error(code, err, "unknown setting 'forwrd' (did you mean 'forward'?)", status=2)


@pytest.mark.parametrize(
    "text, words",
    [
        ('[[listen]]\npath = "x"\n', "needs exactly one of 'echo = true', 'forward' or 'http'"),
        ('[[listen]]\npath = "x"\necho = true\nforward = "1"\n', "not 'echo' and 'forward'"),
        ('[[connect]]\npath = "x"\nforward = "bogus:a=b"\n', "[[connect]] 'x': 'forward'"),
        ('[[listen]]\npath = "x"\necho = true\n[[listen]]\npath = "x"\nforward = "1"\n', "two entries are named 'x'"),
        ('[[listen]]\npath = "x"\necho = true\nconnectionStringEnv = "no-such var"\n', "environment variable name"),
        ("relay = 1\n", "unknown setting 'relay'"),
        ("", "no [[listen]] or [[connect]] entry"),
        ('[[connect]]\npath = "x"\nforward = "1"\nudpIdle = 5\n', "'udpIdle' goes with"),
    ],
)
def test_bad_files(tmp_path, text, words):
    config = tmp_path / "t.toml"
    config.write_text(text)
    with pytest.raises(CliError) as e:
        load(str(config))
    assert words in e.value.message and e.value.exit_code == 2


def test_one_panel_for_all_entries():
    from rich.console import Console

    from txhyco.cli.status import ONLINE, Monitor, MonitorGroup, _render

    group = MonitorGroup()
    for name in ("web", "db"):
        monitor = group.monitors[name] = Monitor(f"listen {name}", namespace="t")
        monitor.set_state(ONLINE)
    console = Console(width=100, record=True, file=__import__("io").StringIO())
    console.print(_render(group))
    text = console.export_text()
    assert "listen web" in text and "listen db" in text and text.count("online") == 2


def test_the_readme_file_loads(tmp_path):
    import re

    from tests.test_readme import README

    text = re.search(r"```toml\n(# tunnels\.toml\n.*?)\n```", open(README, encoding="utf-8").read(), re.S).group(1)
    (tmp_path / "tunnels.toml").write_text(text)
    entries = load(str(tmp_path / "tunnels.toml"))
    assert sorted(entries) == [("connect", "db"), ("listen", "db-in"), ("listen", "echo"), ("listen", "web")]
    assert entries[("connect", "db")].connection_string_env == "OTHER_RELAY"
    assert entries[("listen", "web")].connection_string_env == "HYCO_CONNECTION_STRING"


@pytest_twisted.inlineCallbacks
def test_udp_entries(relay, tmp_path):
    from twisted.internet import reactor

    from tests.test_cli_targets import UdpClient, UdpEcho

    service = reactor.listenUDP(0, UdpEcho(), interface="127.0.0.1")
    config = tmp_path / "udp.toml"
    config.write_text(f'[[listen]]\npath = "dns"\nforward = "udp:127.0.0.1:{service.getHost().port}"\nudpIdle = 30\n'
                      '[[connect]]\npath = "dns"\nforward = "udp:0"\n')
    up = cli("up", str(config), "--json", cs=relay.connection_string)
    client = UdpClient()
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    try:
        started = yield event(up, "started", entry="dns")
        while started["kind"] != "connect":
            started = yield event(up, "started", entry="dns")
        yield event(up, "online", entry="dns")
        host, udp_port = started["address"].removeprefix("udp:").rsplit(":", 1)
        client.transport.write(b"query", (host, int(udp_port)))
        assert (yield client.received.get().addTimeout(30, reactor)) == b"QUERY"
    finally:
        code, _, err = yield stopped(up)
        yield port.stopListening()
        yield service.stopListening()
    assert code == 0, err


@pytest_twisted.inlineCallbacks
def test_an_entry_that_cannot_start_is_offline_with_its_reason_and_the_others_run(relay, tmp_path):
    busy = echo_server()
    config = tmp_path / "t.toml"
    config.write_text(f'[[connect]]\npath = "x"\nforward = "{busy.getHost().port}"\n'
                      '[[listen]]\npath = "y"\necho = true\n')
    up = cli("up", str(config), "--json", cs=relay.connection_string)
    try:
        offline = yield event(up, "offline", entry="x")
        assert f"cannot listen on 127.0.0.1:{busy.getHost().port}" in offline["error"]
        applied = yield event(up, "applied")
        assert applied["started"] == ["listen y"] and applied["failed"] == ["connect x"], applied
        yield event(up, "online", entry="y")
    finally:
        code, _, err = yield stopped(up)
        yield busy.stopListening()
    assert code == 0, err
    assert "1 running (started listen y; failed connect x)" in err
