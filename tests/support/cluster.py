"""Real parts of a relay cluster for tests: redis-server, haproxy (TCP mode) and relay nodes.

Each is started on free loopback ports with its configuration in a temporary
directory and stopped (or killed) by the test; a missing binary is a skip with
the reason. Relay nodes run in-process (:func:`start_node`, for routing tests)
or as ``txhyco relay`` child processes (:class:`NodeProcess`, for SIGKILL).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket

import pytest
from twisted.internet import defer, protocol, reactor, task

from tests.support import procs

REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY = "/usr/sbin/haproxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(binary: str, package: str) -> str:
    found = binary if os.path.exists(binary) else shutil.which(os.path.basename(binary))
    if not found:
        pytest.skip(f"{binary} is missing: install Debian's {package} (make cluster-tools)")
    return found


def sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_until(predicate, timeout: float = 20.0, step: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` (a failure guard, not a timing assertion)."""
    waited = 0.0
    while True:
        result = predicate()
        if isinstance(result, defer.Deferred):
            result = yield result
        if result:
            return result
        if waited >= timeout:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")
        yield sleep(step)
        waited += step


class Daemon(protocol.ProcessProtocol):
    """A child process (not Python) whose end can be waited for."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output = (self.output + data)[-20000:]

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)

    def signal(self, name: str) -> defer.Deferred:
        if not self.ended.called:
            try:
                self.transport.signalProcess(name)
            except Exception:
                pass
        return self.ended


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    def __init__(self, workdir: str, port: int | None = None) -> None:
        self.binary = require(REDIS_SERVER, "redis-server")
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: Daemon | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @defer.inlineCallbacks
    def start(self):
        self.proc = Daemon()
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.workdir]
        reactor.spawnProcess(self.proc, self.binary, args, env=dict(os.environ), path=self.workdir)
        yield wait_until(lambda: port_open(self.port) or self.proc.ended.called, 10, what="redis-server to listen")
        if self.proc.ended.called:
            raise AssertionError(f"redis-server did not start: {self.proc.output.decode(errors='replace')}")
        return self

    def kill(self) -> defer.Deferred:
        return self.proc.signal("KILL")

    def stop(self) -> defer.Deferred:
        return self.proc.signal("TERM") if self.proc is not None else defer.succeed(None)


class Haproxy:
    """haproxy in TCP mode: one public port, round robin over ``backends`` (ports)."""

    def __init__(self, workdir: str, backends: list[int], port: int | None = None) -> None:
        self.binary = require(HAPROXY, "haproxy")
        self.workdir = workdir
        self.backends = backends
        self.port = port or free_port()
        self.proc: Daemon | None = None

    def config(self) -> str:
        servers = "\n".join(f"    server node{i} 127.0.0.1:{p} check inter 500 fall 1 rise 1" for i, p in enumerate(self.backends, 1))
        return (
            "global\n    maxconn 2000\n"
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n"
            "    option redispatch\n    retries 2\n"
            f"frontend public\n    bind 127.0.0.1:{self.port}\n    default_backend nodes\n"
            f"backend nodes\n    balance roundrobin\n{servers}\n"
        )

    @defer.inlineCallbacks
    def start(self):
        path = os.path.join(self.workdir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(self.config())
        self.proc = Daemon()
        reactor.spawnProcess(self.proc, self.binary, [self.binary, "-db", "-f", path], env=dict(os.environ), path=self.workdir)
        yield wait_until(lambda: port_open(self.port) or self.proc.ended.called, 10, what="haproxy to listen")
        if self.proc.ended.called:
            raise AssertionError(f"haproxy did not start: {self.proc.output.decode(errors='replace')}")
        return self

    def stop(self) -> defer.Deferred:
        return self.proc.signal("TERM") if self.proc is not None else defer.succeed(None)


@dataclasses.dataclass
class NodeView:
    """What tests' clients need of a node (the ``relay`` fixture's shape): host and rule."""

    host: str
    rule: object
    port: int


class NodeProcess:
    """``txhyco relay --cluster ...`` as a child process (so it can be SIGKILLed)."""

    def __init__(self, redis_url: str, key: str, node_id: str, port: int | None = None, *, metrics_port: int | None = None,
                 extra: list[str] | None = None) -> None:
        self.redis_url = redis_url
        self.key = key
        self.node_id = node_id
        self.port = port or free_port()
        self.metrics_port = metrics_port
        self.extra = extra or []
        self.child: procs.Child | None = None

    @defer.inlineCallbacks
    def start(self):
        args = ["-m", "txhyco", "relay", "--listen", f"tcp:{self.port}:interface=127.0.0.1", "--key-file", "-",
                "--cluster", self.redis_url, "--advertise", f"127.0.0.1:{self.port}", "--node-id", self.node_id, *self.extra]
        if self.metrics_port:
            args += ["--metrics", f"tcp:{self.metrics_port}:interface=127.0.0.1"]
        self.child = procs.spawn(args, env={"PYTHONPATH": procs.ROOT})
        self.child.transport.write(self.key.encode() + b"\n")
        self.child.transport.closeStdin()
        yield self.child.wait_for("Endpoint=", 30)
        return self

    def kill(self) -> defer.Deferred:
        self.child.transport.signalProcess("KILL")
        return self.child.ended

    def stop(self) -> defer.Deferred:
        return self.child.stop() if self.child is not None else defer.succeed(None)
