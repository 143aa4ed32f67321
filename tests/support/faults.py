"""Helpers of the fault tests: polling, a relay in a child process, its metrics."""
from __future__ import annotations

import http.client
import os
import socket

from twisted.internet import defer, reactor, task, threads

from tests.support.procs import ROOT, spawn


def wait_for(predicate, timeout: float = 15.0, step: float = 0.05, what: str = "condition") -> defer.Deferred:
    """Poll ``predicate`` on the reactor until true (a failure guard, not a timed assertion)."""
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if predicate():
            loop.stop()
            d.callback(True)
        elif reactor.seconds() > deadline:
            loop.stop()
            d.errback(AssertionError(f"{what} not reached within {timeout} s"))

    loop = task.LoopingCall(check)
    loop.start(step)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {"PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
           "HYCO_CONNECTION_STRING": "", "HYCO_RELAY_KEY": ""}
    env.update(extra)
    return env


class RelayProcess:
    """``txhyco relay`` in a child process on a fixed port and key, so that it can be SIGKILLed and restarted."""

    KEY_NAME = "FaultRule"
    KEY = "ZmF1bHQtdGVzdHMtZml4ZWQta2V5LTAxMjM0NTY3ODk="

    def __init__(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.child = None

    @defer.inlineCallbacks
    def start(self):
        self.child = spawn(
            ["-m", "txhyco.cli", "relay", "--listen", f"tcp:{self.port}:interface=127.0.0.1",
             "--key-name", self.KEY_NAME, "--metrics", f"tcp:{self.metrics_port}:interface=127.0.0.1"],
            env=child_env(HYCO_RELAY_KEY=self.KEY),
        )
        yield self.child.wait_for("Endpoint=", timeout=30)
        return self

    @defer.inlineCallbacks
    def kill(self):
        """SIGKILL: the kernel closes its sockets, nothing of the relay's own shutdown runs."""
        self.child.transport.signalProcess("KILL")
        yield self.child.ended

    def stop(self) -> defer.Deferred:
        if self.child is None or self.child.ended.called:
            return defer.succeed(None)
        return self.child.stop()

    def connection_string(self, port: int | None = None) -> str:
        """The connection string for the relay, or for a proxy in front of it at ``port``."""
        return (f"Endpoint=sb://127.0.0.1:{port or self.port}/;SharedAccessKeyName={self.KEY_NAME};"
                f"SharedAccessKey={self.KEY};UseDevelopmentEmulator=true")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rule(self):
        from txhyco.protocol.sas import SasRule

        return SasRule(self.KEY_NAME, self.KEY)

    def scrape(self) -> defer.Deferred:
        return scrape_metrics(self.metrics_port)


def scrape_metrics(port: int) -> defer.Deferred:
    """/metrics parsed into {'name{labels}': value}; {} while nothing answers."""
    def run():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples
    return threads.deferToThread(run)


def listeners_gauge(samples: dict, path: str) -> float:
    return samples.get(f'hyco_relay_listeners{{hybrid_connection="{path}"}}', 0.0)
