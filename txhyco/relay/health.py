"""``/healthz`` and ``/ready`` for operators, served beside ``/metrics``.

``/healthz`` (liveness) answers ``200 ok`` whenever the process can answer at
all: a supervisor restarts the relay only when it stops answering.

``/ready`` (readiness) answers ``200 ready`` once the relay listens for
clients and every configured dependency check passes, and ``503`` with one
line per failing check otherwise (before listening, while stopping, or with a
dependency down): a load balancer sends clients only to a ready relay.

A dependency check is a callable returning ``(ok, detail)``; services add
theirs with :meth:`Readiness.add_check` (the relay has none of its own today).
"""
from __future__ import annotations

from typing import Callable

from twisted.web.resource import Resource

Check = Callable[[], "tuple[bool, str]"]


class Readiness:
    """Whether a relay should be sent clients: listening, not stopping, dependencies up."""

    def __init__(self) -> None:
        self.listening = False
        self.stopping = False
        self._checks: list[tuple[str, Check]] = []

    def add_check(self, name: str, check: Check) -> None:
        """Make readiness depend on ``check()`` (``(ok, detail)``), reported as ``name``."""
        self._checks.append((name, check))

    def problems(self) -> list[str]:
        """One sentence per reason the relay is not ready; empty when it is."""
        found = []
        if self.stopping:
            found.append("stopping")
        elif not self.listening:
            found.append("not listening yet")
        for name, check in self._checks:
            try:
                ok, detail = check()
            except Exception as e:  # a broken check means not ready, never a 500
                ok, detail = False, f"{e.__class__.__name__}: {e}"
            if not ok:
                found.append(f"{name}: {detail}" if detail else name)
        return found


class _PlainText(Resource):
    isLeaf = True

    def answer(self, request, status: int, text: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return text.encode("utf-8")


class HealthResource(_PlainText):
    """``GET /healthz``: 200 while the process answers."""

    def render_GET(self, request) -> bytes:
        return self.answer(request, 200, "ok\n")

    render_HEAD = render_GET


class ReadyResource(_PlainText):
    """``GET /ready``: 200 when :class:`Readiness` has no problems, else 503 listing them."""

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request) -> bytes:
        problems = self.readiness.problems()
        if problems:
            return self.answer(request, 503, "".join(f"not ready: {p}\n" for p in problems))
        return self.answer(request, 200, "ready\n")

    render_HEAD = render_GET
