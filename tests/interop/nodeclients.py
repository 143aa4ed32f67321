"""Drive Microsoft's Node relay clients (``hyco-ws``, ``hyco-https``) from pytest.

The Node side lives in ``tests/interop/node`` (pinned by package.json and
package-lock.json; ``make setup`` runs ``npm install`` there). Each script
prints JSON objects, one per line, each with an ``"event"`` member; listeners
print ``{"event": "ready"}`` once their control channel is open. Exit codes:
0 ok, 2 usage, 3 connect/refused, 4 verification failed, 5 the client library
crashed on its input. These scripts work around or report the quirks of Microsoft's Node
clients (Azure/azure-relay-node).

Two ways to run a script:

* ``spawn_node(...)`` — for tests under pytest-twisted. The process is started
  with ``reactor.spawnProcess`` and everything returns Deferreds, so the reactor
  (and the relay running in it, in the same process) keeps turning while the
  test waits. Never block inside such a test.
* ``NodeProcess`` / ``run_node(...)`` — ``subprocess.Popen`` with reader
  threads and blocking ``wait_ready(timeout)``; for plain tests or for a relay
  that runs in another thread or process.

Secrets: the SAS key is passed in the ``HYCO_KEY`` environment variable, never
in argv (process listings show argv), and every message this module builds is
passed through ``redact``. The scripts themselves never print the key or tokens.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

NODE_DIR = Path(__file__).resolve().parent / "node"
"""Directory holding package.json, node_modules and the scripts."""

PINNED_VERSIONS: Mapping[str, str] = {"hyco-ws": "1.0.5", "hyco-https": "1.4.5"}
"""The official client versions the interop suite is written against."""

SCRIPTS = ("hyco_ws_listener.js", "hyco_ws_sender.js", "hyco_https_listener.js")

KEY_ENV = "HYCO_KEY"
EXIT_OK, EXIT_USAGE, EXIT_CONNECT, EXIT_VERIFY, EXIT_CRASH = 0, 2, 3, 4, 5

_STDERR_CAP = 64 * 1024
_REDACTED = "<redacted>"

Args = Union[Sequence[str], Mapping[str, Any], None]
EventMatch = Union[str, Callable[[dict], bool]]


# --------------------------------------------------------------------------- setup


def node_executable() -> str | None:
    """Path of the ``node`` binary, or None when Node is not installed."""
    return shutil.which("node")


def installed_version(package: str) -> str | None:
    """Version of ``package`` in node_modules, read from its package.json."""
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


def node_available() -> bool:
    """True when node runs and the pinned clients are installed (``make setup``)."""
    if node_executable() is None:
        return False
    return all(installed_version(p) == v for p, v in PINNED_VERSIONS.items())


def unavailable_reason() -> str:
    """Why ``node_available()`` is False, for ``pytest.skip``."""
    if node_executable() is None:
        return "node is not installed"
    for package, version in PINNED_VERSIONS.items():
        found = installed_version(package)
        if found != version:
            return (f"{package} {version} is not installed in {NODE_DIR}/node_modules "
                    f"(found {found}); run: cd {NODE_DIR} && npm install")
    return ""


# --------------------------------------------------------------------------- helpers


def redact(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Hide SAS keys, tokens and signatures in text meant for logs or failures."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, _REDACTED)
    out = re.sub(r"(sb-hc-token=)[^&\s\"']*", r"\1" + _REDACTED, out, flags=re.I)
    out = re.sub(r"(sig(?:=|%3D))[^&\s\"']*", r"\1" + _REDACTED, out, flags=re.I)
    out = re.sub(r"SharedAccessSignature [^\s\"']*", "SharedAccessSignature " + _REDACTED, out)
    return out


def script_path(script: str) -> Path:
    """Absolute path of one of ``SCRIPTS`` (a bare name or a name without .js)."""
    name = script if script.endswith(".js") else script + ".js"
    if name not in SCRIPTS:
        raise ValueError(f"unknown interop script {script!r}; expected one of {SCRIPTS}")
    return NODE_DIR / name


def build_args(args: Args) -> list[str]:
    """Turn a mapping of options into ``--flag value`` argv (lists repeat, True is a bare flag).

    The key is refused here: it must travel in the environment (``build_env``).
    """
    if args is None:
        return []
    if not isinstance(args, Mapping):
        out = [str(a) for a in args]
        if any(a in ("--key", "--sas-key") or a.startswith("--key=") for a in out):
            raise ValueError("pass the SAS key via key=..., not on the command line")
        return out
    out: list[str] = []
    for name, value in args.items():
        flag = "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower().replace("_", "-")
        if flag in ("--key", "--sas-key"):
            raise ValueError("pass the SAS key via key=..., not on the command line")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                out += [flag, str(item)]
        elif isinstance(value, (dict,)):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out


def build_env(key: str | None, ca_file: str | os.PathLike | None = None,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a script: the key in HYCO_KEY, the relay's CA for TLS."""
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, "NODE_OPTIONS")}
    if key is not None:
        env[KEY_ENV] = key
    if ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = os.fspath(ca_file)
    env["HYCO_EXIT_ON_STDIN_EOF"] = "1"  # the script dies with its parent
    env.setdefault("NO_COLOR", "1")
    if extra:
        env.update(extra)
    return env


def parse_line(line: str) -> dict:
    """One stdout line as an event; a stray non-JSON line becomes a ``stdout`` event."""
    text = line.strip()
    try:
        value = json.loads(text)
    except ValueError:
        return {"event": "stdout", "text": text}
    if not isinstance(value, dict) or "event" not in value:
        return {"event": "stdout", "text": text}
    return value


def _matcher(match: EventMatch) -> Callable[[dict], bool]:
    if callable(match):
        return match
    return lambda event: event.get("event") == match


def _describe_match(match: EventMatch) -> str:
    return f"event {match!r}" if isinstance(match, str) else "the awaited event"


@dataclass(frozen=True)
class NodeResult:
    """What a finished script reported: exit code, JSON events, stderr (redacted)."""

    script: str
    exit_code: int | None
    signal: int | None
    events: tuple[dict, ...]
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def of(self, kind: str) -> list[dict]:
        """All events whose ``event`` member is ``kind``."""
        return [e for e in self.events if e.get("event") == kind]

    def last(self, kind: str) -> dict | None:
        found = self.of(kind)
        return found[-1] if found else None

    def describe(self, secrets: Sequence[str | None] = ()) -> str:
        """A short, redacted account for assertion messages."""
        tail = self.stderr.strip().splitlines()[-8:]
        events = [json.dumps(e) for e in self.events[-12:]]
        return redact(
            f"{self.script} exit={self.exit_code} signal={self.signal}\n"
            f"  events: {events}\n  stderr: {tail}", secrets)


class NodeScriptError(Exception):
    """A script exited, failed or stayed silent where the test needed an event."""

    def __init__(self, message: str, result: NodeResult | None = None,
                 secrets: Sequence[str | None] = ()):
        self.result = result
        text = message if result is None else f"{message}\n{result.describe(secrets)}"
        super().__init__(redact(text, secrets))


class _EventLog:
    """Events and stderr gathered from one script, shared by both runners."""

    def __init__(self, script: str, secrets: Sequence[str | None]):
        self.script = script
        self.secrets = tuple(s for s in secrets if s)
        self.events: list[dict] = []
        self.stderr = bytearray()
        self._partial = b""

    def feed_stdout(self, data: bytes) -> list[dict]:
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        new = [parse_line(line.decode("utf-8", "replace")) for line in lines if line.strip()]
        self.events.extend(new)
        return new

    def flush_stdout(self) -> list[dict]:
        rest, self._partial = self._partial, b""
        if not rest.strip():
            return []
        event = parse_line(rest.decode("utf-8", "replace"))
        self.events.append(event)
        return [event]

    def feed_stderr(self, data: bytes) -> None:
        room = _STDERR_CAP - len(self.stderr)
        if room > 0:
            self.stderr += data[:room]

    def result(self, exit_code: int | None, sig: int | None) -> NodeResult:
        return NodeResult(self.script, exit_code, sig, tuple(self.events),
                          redact(self.stderr.decode("utf-8", "replace"), self.secrets))


_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort: no Node process outlives the test run."""
    for proc in list(_LIVE):
        try:
            proc.kill_now()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# --------------------------------------------------------------------------- blocking runner


class NodeProcess:
    """A script under ``subprocess.Popen``; blocking waits, for threads or plain tests.

    Do not call the blocking methods from a pytest-twisted test whose relay runs in
    the same reactor: use ``spawn_node`` there.
    """

    def __init__(self, script: str, args: Args = None, *, key: str | None = None,
                 ca_file: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None):
        node = node_executable()
        if node is None:
            raise NodeScriptError("node is not installed")
        path = script_path(script)
        self._log = _EventLog(path.name, (key,))
        self._cond = threading.Condition()
        self._proc = subprocess.Popen(
            [node, str(path), *build_args(args)], cwd=str(NODE_DIR),
            env=build_env(key, ca_file, env), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _LIVE.add(self)
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def events(self) -> list[dict]:
        with self._cond:
            return list(self._log.events)

    def _read_stdout(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        for line in iter(stream.readline, b""):
            with self._cond:
                self._log.feed_stdout(line)
                self._cond.notify_all()
        with self._cond:
            self._log.flush_stdout()
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        for chunk in iter(lambda: stream.read1(4096), b""):
            with self._cond:
                self._log.feed_stderr(chunk)

    def _result(self) -> NodeResult:
        code = self._proc.returncode
        sig = -code if code is not None and code < 0 else None
        with self._cond:
            return self._log.result(code if sig is None else None, sig)

    def wait_for(self, match: EventMatch, timeout: float) -> dict:
        """Block until a matching event; NodeScriptError on exit or timeout."""
        pred = _matcher(match)
        seen = 0
        with self._cond:
            deadline = threading.TIMEOUT_MAX if timeout is None else timeout
            end = time.monotonic() + deadline
            while True:
                for event in self._log.events[seen:]:
                    if pred(event):
                        return event
                seen = len(self._log.events)
                if self._proc.poll() is not None and not self._readers[0].is_alive():
                    break
                left = end - time.monotonic()
                if left <= 0:
                    raise NodeScriptError(
                        f"no {_describe_match(match)} within {timeout}s",
                        self._log.result(None, None), self._log.secrets)
                self._cond.wait(min(left, 0.1))
        self._readers[1].join(1)
        raise NodeScriptError(f"script ended before {_describe_match(match)}",
                              self._result(), self._log.secrets)

    def wait_ready(self, timeout: float = 15.0) -> dict:
        """Block until the listener reports ``ready`` (its control channel is open)."""
        return self.wait_for("ready", timeout)

    def wait(self, timeout: float = 30.0) -> NodeResult:
        """Block until the script exits by itself (kill it after ``timeout``)."""
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_now()
            self._proc.wait(5)
            self._join()
            raise NodeScriptError(f"script still running after {timeout}s; killed",
                                  self._result(), self._log.secrets) from None
        self._join()
        return self._result()

    def stop(self, grace: float = 3.0) -> NodeResult:
        """SIGTERM (the script closes its relay connections), then SIGKILL."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill_now()
                self._proc.wait(5)
        self._join()
        return self._result()

    def kill_now(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()

    def _join(self) -> None:
        for t in self._readers:
            t.join(2)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        _LIVE.discard(self)

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def run_node(script: str, args: Args = None, *, key: str | None = None,
             ca_file: str | os.PathLike | None = None,
             env: Mapping[str, str] | None = None) -> Iterator[NodeProcess]:
    """Start a script with Popen and always stop it on exit from the block."""
    proc = NodeProcess(script, args, key=key, ca_file=ca_file, env=env)
    try:
        yield proc
    finally:
        proc.stop()


# --------------------------------------------------------------------------- Twisted runner

try:
    from twisted.internet import defer as _defer
    from twisted.internet.error import ProcessDone, ProcessTerminated
    from twisted.internet.protocol import ProcessProtocol as _ProcessProtocol
except ImportError:  # pragma: no cover - Twisted is a hard dependency of txhyco
    _ProcessProtocol = object  # type: ignore[assignment,misc]


@dataclass
class _Waiter:
    predicate: Callable[[dict], bool]
    description: str
    deferred: Any
    timer: Any = None


class NodeProcessProtocol(_ProcessProtocol):  # type: ignore[misc,valid-type]
    """Collects JSON events from a script and fires Deferreds on them."""

    def __init__(self, script: str, secrets: Sequence[str | None], reactor: Any):
        self._log = _EventLog(script, secrets)
        self._reactor = reactor
        self._waiters: list[_Waiter] = []
        self._exit_waiters: list[Any] = []
        self.result: NodeResult | None = None

    @property
    def events(self) -> list[dict]:
        return list(self._log.events)

    # ProcessProtocol ----------------------------------------------------
    def outReceived(self, data: bytes) -> None:
        for event in self._log.feed_stdout(data):
            self._dispatch(event)

    def errReceived(self, data: bytes) -> None:
        self._log.feed_stderr(data)

    def processEnded(self, reason: Any) -> None:
        for event in self._log.flush_stdout():
            self._dispatch(event)
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        if isinstance(value, ProcessDone):
            code = 0
        self.result = self._log.result(code, sig)
        _LIVE.discard(self)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            self._cancel_timer(w)
            w.deferred.errback(NodeScriptError(
                f"script ended before {w.description}", self.result, self._log.secrets))
        exits, self._exit_waiters = self._exit_waiters, []
        for d in exits:
            d.callback(self.result)

    # waiting --------------------------------------------------------------
    def _dispatch(self, event: dict) -> None:
        for w in list(self._waiters):
            if w.predicate(event):
                self._waiters.remove(w)
                self._cancel_timer(w)
                w.deferred.callback(event)

    @staticmethod
    def _cancel_timer(w: _Waiter) -> None:
        if w.timer is not None and w.timer.active():
            w.timer.cancel()

    def when(self, match: EventMatch, timeout: float | None) -> Any:
        """Deferred firing with the first matching event (already seen ones count)."""
        pred = _matcher(match)
        for event in self._log.events:
            if pred(event):
                return _defer.succeed(event)
        description = _describe_match(match)
        if self.result is not None:
            return _defer.fail(NodeScriptError(
                f"script ended before {description}", self.result, self._log.secrets))
        waiter = _Waiter(pred, description, _defer.Deferred())
        if timeout is not None:
            def expire() -> None:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    waiter.deferred.errback(NodeScriptError(
                        f"no {description} within {timeout}s",
                        self._log.result(None, None), self._log.secrets))
            waiter.timer = self._reactor.callLater(timeout, expire)
        self._waiters.append(waiter)
        return waiter.deferred

    def when_ended(self) -> Any:
        """Deferred firing with the NodeResult once the process has exited."""
        if self.result is not None:
            return _defer.succeed(self.result)
        d = _defer.Deferred()
        self._exit_waiters.append(d)
        return d

    def kill_now(self) -> None:
        if self.result is None and self.transport is not None:
            try:
                self.transport.signalProcess("KILL")
            except Exception:  # noqa: BLE001 - already gone
                pass


@dataclass
class SpawnedNode:
    """Handle on a script started with ``spawn_node``; every wait returns a Deferred."""

    protocol: NodeProcessProtocol
    reactor: Any
    script: str
    _secrets: tuple = field(default=(), repr=False)

    @property
    def events(self) -> list[dict]:
        return self.protocol.events

    @property
    def pid(self) -> int | None:
        transport = self.protocol.transport
        return getattr(transport, "pid", None)

    def wait_ready(self, timeout: float = 15.0) -> Any:
        """Deferred[dict]: the ``ready`` event; fails with NodeScriptError on exit/timeout."""
        return self.protocol.when("ready", timeout)

    def wait_event(self, match: EventMatch, timeout: float = 15.0) -> Any:
        """Deferred[dict]: first event named ``match`` (or satisfying a predicate)."""
        return self.protocol.when(match, timeout)

    def wait_exit(self, timeout: float = 30.0) -> Any:
        """Deferred[NodeResult] once the script exits by itself; killed after ``timeout``."""
        d = self.protocol.when_ended()
        if self.protocol.result is not None:
            return d
        out = _defer.Deferred()
        state = {"timed_out": False}

        def expire() -> None:
            state["timed_out"] = True
            self.protocol.kill_now()

        timer = self.reactor.callLater(timeout, expire)

        def done(result: NodeResult) -> None:
            if timer.active():
                timer.cancel()
            if state["timed_out"]:
                out.errback(NodeScriptError(
                    f"script still running after {timeout}s; killed", result, self._secrets))
            else:
                out.callback(result)

        d.addCallback(done)
        return out

    def stop(self, grace: float = 3.0) -> Any:
        """Deferred[NodeResult]: SIGTERM, SIGKILL after ``grace`` seconds."""
        d = self.protocol.when_ended()
        if self.protocol.result is not None:
            return d
        transport = self.protocol.transport
        try:
            transport.signalProcess("TERM")
        except Exception:  # noqa: BLE001 - exited meanwhile
            pass
        timer = self.reactor.callLater(grace, self.protocol.kill_now)

        def cancel(result: NodeResult) -> NodeResult:
            if timer.active():
                timer.cancel()
            return result

        return d.addCallback(cancel)


def spawn_node(script: str, args: Args = None, *, key: str | None = None,
               ca_file: str | os.PathLike | None = None,
               env: Mapping[str, str] | None = None, reactor: Any = None) -> SpawnedNode:
    """Start a script under the running reactor (pytest-twisted friendly).

    Typical use inside ``@pytest_twisted.inlineCallbacks``::

        node = spawn_node("hyco_ws_listener", {"base": url, "path": "hc1"}, key=key)
        try:
            yield node.wait_ready(15)
            ...
        finally:
            yield node.stop()
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    node = node_executable()
    if node is None:
        raise NodeScriptError("node is not installed")
    path = script_path(script)
    protocol = NodeProcessProtocol(path.name, (key,), reactor)
    argv = [node, str(path), *build_args(args)]
    reactor.spawnProcess(protocol, node, argv, env=build_env(key, ca_file, env),
                         path=str(NODE_DIR))
    _LIVE.add(protocol)
    return SpawnedNode(protocol, reactor, path.name, (key,))


def run_node_to_exit(script: str, args: Args = None, *, timeout: float = 30.0,
                     key: str | None = None, ca_file: str | os.PathLike | None = None,
                     env: Mapping[str, str] | None = None, reactor: Any = None) -> Any:
    """Deferred[NodeResult]: run a one-shot script (e.g. the sender) to its end."""
    spawned = spawn_node(script, args, key=key, ca_file=ca_file, env=env, reactor=reactor)
    return spawned.wait_exit(timeout)
