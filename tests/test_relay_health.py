"""/healthz and /ready beside /metrics."""
from __future__ import annotations

import pytest_twisted

from tests.test_relay_metrics import get
from txhyco.relay.health import Readiness
from txhyco.testing import start_relay


@pytest_twisted.inlineCallbacks
def test_healthz_and_ready_answer_beside_metrics():
    relay = yield start_relay(metrics_endpoint="tcp:0:interface=127.0.0.1")
    try:
        port = relay.service.metrics_port.getHost().port
        status, content_type, body = yield get(port, "/healthz")
        assert (status, body) == (200, "ok\n") and content_type.startswith("text/plain")
        status, _, body = yield get(port, "/ready")
        assert (status, body) == (200, "ready\n")

        state = {"up": False}
        relay.service.readiness.add_check("store", lambda: (state["up"], "cannot reach redis://db:6379"))
        status, _, body = yield get(port, "/ready")
        assert (status, body) == (503, "not ready: store: cannot reach redis://db:6379\n")
        status, _, _ = yield get(port, "/healthz")
        assert status == 200  # alive though not ready
        state["up"] = True
        status, _, _ = yield get(port, "/ready")
        assert status == 200
    finally:
        yield relay.stop()


def test_readiness_before_listening_while_stopping_and_with_a_broken_check():
    readiness = Readiness()
    assert readiness.problems() == ["not listening yet"]
    readiness.listening = True
    assert readiness.problems() == []
    readiness.add_check("broken", lambda: 1 / 0)
    assert readiness.problems() == ["broken: ZeroDivisionError: division by zero"]
    readiness.stopping = True
    assert readiness.problems()[0] == "stopping"
