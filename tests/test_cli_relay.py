"""``txhyco relay`` and ``twistd -n hyco-relay`` as real processes on loopback."""
from __future__ import annotations

import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from tests.support.rawlistener import RawListener, make_token
from tests.support.wsclient import ws_connect
from txhyco.cli import main
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.sas import SasRule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPBACK = "tcp:0:interface=127.0.0.1"
STARTUP = 20  # seconds; a loaded CI machine may take a while to import Twisted


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: the project importable whatever the install mode."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.pop("HYCO_RELAY_KEY", None)
    env.pop("HYCO_CONNECTION_STRING", None)
    env.update(extra)
    return env


def twistd_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [script] if os.path.exists(script) else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class Process:
    """A child process whose stdout/stderr lines are collected by threads."""

    def __init__(self, argv: list[str], *, cwd: str, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            argv, cwd=cwd, env=env or child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: dict[str, queue.Queue] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, "stderr"), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream, name: str) -> None:
        for line in stream:
            self.lines[name].put(line.rstrip("\n"))
        self.lines[name].put(None)

    def wait_for(self, name: str, predicate, timeout: float = STARTUP) -> str:
        """The first line of ``name`` matching ``predicate``; fails on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting on {name}; saw {self.seen}")
            try:
                line = self.lines[name].get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines[name].put(None)
                raise AssertionError(f"{name} ended (exit {self.popen.poll()}); saw {self.seen}")
            self.seen[name].append(line)
            if predicate(line):
                return line

    def connection_string(self) -> ConnectionString:
        line = self.wait_for("stdout", lambda text: text.startswith("Endpoint="))
        return ConnectionString.parse(line)

    def finish(self, timeout: float = STARTUP) -> tuple[int, str, str]:
        """Wait for exit; (status, all stdout, all stderr)."""
        status = self.popen.wait(timeout)
        for t in self._threads:
            t.join(5)
        out = {}
        for name in ("stdout", "stderr"):
            while True:
                line = self.lines[name].get_nowait() if not self.lines[name].empty() else None
                if line is None:
                    break
                self.seen[name].append(line)
            out[name] = "\n".join(self.seen[name])
        return status, out["stdout"], out["stderr"]

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        for stream in (self.popen.stdout, self.popen.stderr):
            stream.close()


@pytest.fixture
def spawn(tmp_path):
    """spawn(*args) → a Process of ``python -m txhyco.cli *args``, killed at teardown.

    The children get SIGINT's default action even when this test process
    ignores it (a shell starts background jobs so: ``pytest &``): an ignored
    signal stays ignored across exec, and a relay that ignores SIGINT, as it
    then rightly does, would not stop when a test sends it one.
    """
    started: list[Process] = []
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # children start with SIG_DFL

    def start(*args: str, command: list[str] | None = None, env=None) -> Process:
        argv = (command or [sys.executable, "-m", "txhyco.cli"]) + list(args)
        proc = Process(argv, cwd=str(tmp_path), env=env)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_cli(spawn, *args: str, env=None) -> tuple[int, str, str]:
    return spawn(*args, env=env).finish()


@dataclass(frozen=True)
class RelayAddress:
    """What RawListener and make_token need of a relay, from a connection string."""

    host: str
    port: int
    rule: SasRule

    @classmethod
    def of(cls, cs: ConnectionString) -> RelayAddress:
        ns = cs.namespace
        return cls(ns.authority, ns.effective_port, SasRule(cs.shared_access_key_name, cs.shared_access_key))


@defer.inlineCallbacks
def round_trip(cs: ConnectionString, path: str = "cli"):
    """A RawListener echoes what an Autobahn sender sends through the relay at ``cs``."""
    relay = RelayAddress.of(cs)
    listener = yield RawListener(relay, path).start()
    url = connect_url(Namespace.parse(relay.host, secure=False), path)
    sender = yield ws_connect(url, headers={"ServiceBusAuthorization": make_token(relay, path)})
    sender.sendMessage(b"through a real process", isBinary=True)
    assert (yield sender.messages.get()) == (b"through a real process", True)
    sender.sendClose(1000)
    yield sender.closed
    yield listener.stop()


def assert_one_line_error(status: int, stderr: str, *words: str, code: int | None = None) -> None:
    assert status != 0
    if code is not None:
        assert status == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- serving -------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_relay_prints_connection_string_serves_and_stops_on_sigterm(spawn):
    proc = spawn("relay", "--listen", LOOPBACK)
    cs = yield threads.deferToThread(proc.connection_string)
    assert cs.use_development_emulator
    assert cs.shared_access_key_name == "RootManageSharedAccessKey" and cs.shared_access_key
    ns = cs.namespace
    assert ns.host == "127.0.0.1" and ns.port not in (None, 0, 9090)
    yield round_trip(cs)
    proc.popen.send_signal(signal.SIGTERM)
    status, stdout, stderr = yield threads.deferToThread(proc.finish)
    assert status == 0, stderr
    assert stdout.splitlines() == [cs.format()]  # the string alone, nothing else on stdout
    assert cs.shared_access_key not in stderr  # logs never show the key
    assert "<redacted>" in stderr
    with socket.socket() as s:  # the port is closed
        assert s.connect_ex(("127.0.0.1", ns.port)) != 0


def test_given_key_is_in_the_connection_string_and_sigint_stops(spawn):
    proc = spawn("relay", "--listen", LOOPBACK, "--key-name", "Mine", "--key", "c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    cs = proc.connection_string()
    assert (cs.shared_access_key_name, cs.shared_access_key) == ("Mine", "c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    proc.popen.send_signal(signal.SIGINT)
    status, _, stderr = proc.finish()
    assert status == 0
    assert "c2VjcmV0LWtleS1mb3ItdGVzdHM=" not in stderr


def test_key_from_file_and_from_environment(spawn, tmp_path):
    key_file = tmp_path / "relay.key"
    key_file.write_text("ZmlsZS1rZXk=\n")
    proc = spawn("relay", "--listen", LOOPBACK, "--key-file", str(key_file))
    assert proc.connection_string().shared_access_key == "ZmlsZS1rZXk="
    proc = spawn("relay", "--listen", LOOPBACK, env=child_env(HYCO_RELAY_KEY="ZW52LWtleQ=="))
    assert proc.connection_string().shared_access_key == "ZW52LWtleQ=="


def test_generated_key_is_stored_and_reused_until_new_key(spawn, tmp_path):
    """Connection strings survive a restart: the generated key is kept (0600) in the config dir."""
    env = child_env(XDG_CONFIG_HOME=str(tmp_path / "config"))
    stored = tmp_path / "config" / "txhyco" / "relay.key"

    def run_relay(*extra: str) -> tuple[str, str]:
        proc = spawn("relay", "--listen", LOOPBACK, *extra, env=env)
        key = proc.connection_string().shared_access_key
        proc.popen.send_signal(signal.SIGTERM)
        status, _, stderr = proc.finish()
        assert status == 0, stderr
        assert key not in stderr
        return key, stderr

    first, stderr = run_relay()
    assert f"stored it in {stored}" in stderr
    assert stored.read_text() == first + "\n"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    again, stderr = run_relay()
    assert again == first and f"using the key stored in {stored}" in stderr
    fresh, stderr = run_relay("--new-key")
    assert fresh != first and stored.read_text() == fresh + "\n"
    status, _, stderr = run_cli(spawn, "relay", "--new-key", "--key", "a2V5", env=env)
    assert_one_line_error(status, stderr, "--new-key", code=2)


@pytest_twisted.inlineCallbacks
def test_config_file_is_used(spawn, tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text('[[hybridConnections]]\nname = "only"\n')
    proc = spawn("relay", "--listen", LOOPBACK, "--config", str(config), "--key", "a2V5")
    cs = yield threads.deferToThread(proc.connection_string)
    assert cs.shared_access_key == "a2V5"
    yield round_trip(cs, "only")
    line = proc.wait_for("stderr", lambda text: "serving" in text)
    assert "hybrid connections only" in line


def test_self_signed_tls(spawn, tmp_path):
    import ssl

    proc = spawn("relay", "--listen", LOOPBACK, "--self-signed", str(tmp_path / "tls"))
    cs = proc.connection_string()
    assert not cs.use_development_emulator and "UseDevelopmentEmulator" not in cs.format()
    pem = str(tmp_path / "tls" / "relay-cert.pem")
    assert pem in proc.wait_for("stderr", lambda text: "relay-cert.pem" in text)
    port = cs.namespace.port
    trusting = ssl.create_default_context(cafile=pem)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_metrics_endpoint(spawn):
    import http.client

    proc = spawn("relay", "--listen", LOOPBACK, "--metrics", LOOPBACK)
    proc.connection_string()
    line = proc.wait_for("stderr", lambda text: "/metrics" in text)
    url = line[line.index("http://"):].split()[0]
    host, port = url[len("http://"):].split("/")[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    assert "hyco_relay_connections 0.0" in body


# -- errors ----------------------------------------------------------------------


def test_bad_listen_string_is_a_usage_error(spawn):
    status, stdout, stderr = run_cli(spawn, "relay", "--listen", "nonsense:1234")
    assert_one_line_error(status, stderr, "--listen", "nonsense:1234", code=2)
    assert stdout == ""


def test_missing_config_file(spawn, tmp_path):
    status, _, stderr = run_cli(spawn, "relay", "--listen", LOOPBACK, "--config", str(tmp_path / "absent.toml"))
    assert_one_line_error(status, stderr, "absent.toml", "No such file", code=1)


def test_invalid_toml(spawn, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("rules = [\n")
    status, _, stderr = run_cli(spawn, "relay", "--listen", LOOPBACK, "--config", str(bad))
    assert_one_line_error(status, stderr, "bad.toml", "not valid TOML", code=1)


def test_bad_config_value(spawn, tmp_path):
    bad = tmp_path / "limits.toml"
    bad.write_text("[limits]\nmaxListeners = -1\n")
    status, _, stderr = run_cli(spawn, "relay", "--listen", LOOPBACK, "--config", str(bad))
    assert_one_line_error(status, stderr, "maxListeners", code=1)


# The security bug of issue 14: a misspelt key was ignored and the rule got every right.
MISSPELT_CONFIGS = {
    "rule": ('[[rules]]\nname = "x"\nkey = "abc"\nrigths = ["Listen"]\n',
             ["[[rules]] 'x'", "unknown setting 'rigths'", "did you mean 'rights'?", "known settings: key, name"]),
    "hybrid connection": ('[[hybridConnections]]\nname = "open"\nrequiresClientAuthorisation = false\n',
                          ["[[hybridConnections]] 'open'", "'requiresClientAuthorisation'",
                           "did you mean 'requiresClientAuthorization'?"]),
    "nested rule": ('[[hybridConnections]]\nname = "hc"\n[[hybridConnections.rules]]\nname = "r"\nkey = "abc"\n'
                    'rigths = ["Send"]\n',
                    ["[[hybridConnections.rules]] 'r' of [[hybridConnections]] 'hc'", "'rigths'", "did you mean 'rights'?"]),
}


@pytest.mark.parametrize("where", list(MISSPELT_CONFIGS))
def test_misspelt_setting_stops_the_relay(spawn, tmp_path, where):
    text, words = MISSPELT_CONFIGS[where]
    config = tmp_path / "c.toml"
    config.write_text(text)
    status, stdout, stderr = run_cli(spawn, "relay", "--listen", LOOPBACK, "--config", str(config))
    assert_one_line_error(status, stderr, str(config), *words, code=1)
    assert stdout == ""  # no connection string: the relay never started
    assert "abc" not in stderr  # the rule's key is not repeated


@pytest.mark.parametrize("text, words", [
    ("[limits]\nacceptTimeout = \"30\"\n", ["[limits]", "'acceptTimeout'", "not a string"]),
    ("[limits]\nacceptTimeout = 0\n", ["[limits]", "'acceptTimeout'", "greater than 0"]),
    ("restrict = \"false\"\n", ["the top level", "'restrict'", "true or false"]),
    ('[[rules]]\nname = "x"\nkey = "abc"\nrights = []\n', ["[[rules]] 'x'", "'rights'", "grants nothing"]),
    ('[[rules]]\nname = "x"\nkey = "abc"\n', ["[[rules]] 'x' needs 'rights'"]),
])
def test_bad_config_types_and_ranges_stop_the_settings(tmp_path, text, words):
    """What `txhyco relay` and `twistd hyco-relay` check before the reactor runs (exit status 1)."""
    from txhyco.cli.common import CliError
    from txhyco.cli.relay import relay_settings

    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(CliError) as info:
        relay_settings(listen=LOOPBACK, config_file=str(config))
    assert info.value.exit_code == 1 and "\n" not in info.value.message
    for word in [str(config), *words]:
        assert word in info.value.message


def test_twistd_plugin_refuses_a_misspelt_setting(spawn, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(MISSPELT_CONFIGS["rule"][0])
    status, stdout, stderr = spawn("-n", "--pidfile=", "hyco-relay", "--listen", LOOPBACK, "--config", str(config),
                                   command=twistd_command()).finish()
    assert status != 0
    assert "did you mean 'rights'?" in stdout + stderr and "Traceback" not in stdout + stderr
    assert "Endpoint=" not in stdout


def test_port_in_use(spawn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        status, stdout, stderr = run_cli(spawn, "relay", "--listen", f"tcp:{port}:interface=127.0.0.1")
    assert_one_line_error(status, stderr, f"127.0.0.1:{port}", "in use", code=1)
    assert stdout == ""


def test_usage_errors(spawn, tmp_path):
    status, _, stderr = run_cli(spawn, "relay", "--bogus")
    assert_one_line_error(status, stderr, "--bogus", "txhyco relay --help", code=2)
    status, _, stderr = run_cli(spawn, "relay", "--tls-cert", "x.pem")
    assert_one_line_error(status, stderr, "--tls-key", code=2)
    status, _, stderr = run_cli(spawn, "relay", "--key-file", str(tmp_path / "missing.key"))
    assert_one_line_error(status, stderr, "missing.key", code=1)


def test_errors_in_process(capsys, tmp_path):
    """main() returns the status instead of exiting, with the same one-line message."""
    assert main(["relay", "--listen", "tcp:notaport"]) == 2
    assert main(["relay", "--self-signed", str(tmp_path), "--tls-cert", "a", "--tls-key", "b"]) == 2
    assert main(["relay", "--key", "k", "--key-file", "f"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 3 and "Traceback" not in err
    assert main(["relay", "--key", "a;b"]) == 2  # it would not fit in the printed connection string
    err = capsys.readouterr().err
    assert "--key" in err and "';'" in err and "connection string's" not in err


def test_help_shows_examples(capsys):
    assert main(["relay", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "txhyco relay --listen tcp:0" in out
    assert "process listings" in out
    assert main(["--help"]) == 0
    assert "txhyco relay" in capsys.readouterr().out


def test_console_script_help(spawn):
    script = os.path.join(os.path.dirname(sys.executable), "txhyco")
    if not os.path.exists(script):
        pytest.skip("the txhyco console script is not installed in this environment")
    status, stdout, _ = spawn("relay", "--help", command=[script]).finish()
    assert status == 0 and "examples:" in stdout


# -- twistd ----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_twistd_plugin_starts_the_relay(spawn, tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text("dHdpc3RkLWtleQ==")
    proc = spawn("-n", "--pidfile=", "hyco-relay", "--listen", LOOPBACK, "--key-file", str(key_file),
                 command=twistd_command())
    cs = yield threads.deferToThread(proc.connection_string)
    assert cs.shared_access_key == "dHdpc3RkLWtleQ=="
    yield round_trip(cs, "twistd")
    proc.popen.send_signal(signal.SIGTERM)
    status, stdout, _ = yield threads.deferToThread(proc.finish)
    assert status in (0, -signal.SIGTERM)  # twistd re-raises the signal it stopped on
    assert stdout.count("dHdpc3RkLWtleQ==") == 1  # only the connection string line, not the log


@pytest_twisted.inlineCallbacks
def test_twistd_plugin_also_listens(spawn, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        second = probe.getsockname()[1]
    proc = spawn("-n", "--pidfile=", "hyco-relay", "--listen", LOOPBACK, "--also-listen", f"tcp:{second}:interface=127.0.0.1",
                 command=twistd_command())
    cs = yield threads.deferToThread(proc.connection_string)
    yield round_trip(ConnectionString.parse(cs.format().replace(f":{cs.namespace.port}/", f":{second}/")), "second")
    proc.popen.send_signal(signal.SIGTERM)
    yield threads.deferToThread(proc.finish)


def test_twistd_plugin_refuses_a_bad_also_listen(spawn):
    status, stdout, stderr = spawn("-n", "--pidfile=", "hyco-relay", "--also-listen", "nonsense:1",
                                   command=twistd_command()).finish()
    assert "--also-listen" in stdout + stderr and "Traceback" not in stdout + stderr


def test_twistd_plugin_bad_config(spawn, tmp_path):
    status, stdout, stderr = spawn("-n", "--pidfile=", "hyco-relay", "--config", str(tmp_path / "nope.toml"),
                                   command=twistd_command()).finish()
    assert status != 0
    assert "nope.toml" in stdout + stderr and "Traceback" not in stdout + stderr


def test_twistd_plugin_port_in_use_ends_with_a_message(spawn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = spawn("-n", "--pidfile=", "hyco-relay", "--listen", f"tcp:{port}:interface=127.0.0.1",
                     command=twistd_command())
        _, stdout, stderr = proc.finish()  # twistd has no exit status for this; it must not hang
    assert f"cannot listen on 127.0.0.1:{port}" in stdout + stderr
    assert "Traceback" not in stdout + stderr
