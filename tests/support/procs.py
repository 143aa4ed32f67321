"""Child processes for tests, driven from the reactor (never blocking it)."""
from __future__ import annotations

import os
import sys

from twisted.internet import defer, protocol, reactor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Child(protocol.ProcessProtocol):
    """Collects output lines; ``wait_for(text)`` fires with the first stdout line containing it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stderr = b""
        self._partial = b""
        self._waiters: list[tuple[str, defer.Deferred]] = []
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for waiter in list(self._waiters):
                if waiter[0] in line:
                    self._waiters.remove(waiter)
                    waiter[1].callback(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def wait_for(self, text: str, timeout: float = 30.0) -> defer.Deferred:
        for line in self.lines:
            if text in line:
                return defer.succeed(line)
        d = defer.Deferred()
        self._waiters.append((text, d))
        d.addTimeout(timeout, reactor)
        return d

    def processEnded(self, reason) -> None:
        code = reason.value.exitCode
        for _, d in self._waiters:
            if not d.called:
                d.errback(AssertionError(f"process ended ({code}) before the expected line; stderr:\n{self.stderr.decode(errors='replace')}"))
        self._waiters.clear()
        self.ended.callback(code)

    def stop(self) -> defer.Deferred:
        if not self.ended.called:
            try:
                self.transport.signalProcess("TERM")
            except Exception:
                pass
        return self.ended


def spawn(args: list[str], env: dict | None = None, cwd: str = ROOT) -> Child:
    """Run ``python args...`` (this interpreter) with ``env`` added to the environment."""
    child = Child()
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    reactor.spawnProcess(child, sys.executable, [sys.executable, *args], env=full_env, path=cwd)
    return child
