"""Under twistd a mistake in a ``hyco:`` string, or a listen the relay refuses, is one line, no traceback."""
from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import reactor

from tests.support.procs import Child
from tests.test_twistd_web import TWISTD


def twistd_web(tmp_path, description: str, **env: str) -> Child:
    child = Child()
    reactor.spawnProcess(
        child, TWISTD,
        [TWISTD, "-n", "--pidfile=", "--logfile=-", "web", "--listen", description, "--path", str(tmp_path)],
        env=dict(os.environ, PYTHONUNBUFFERED="1", **env), path=str(tmp_path),
    )
    return child


@pytest_twisted.inlineCallbacks
def test_misspelt_option_stops_twistd_with_one_line(tmp_path):
    child = twistd_web(tmp_path, "hyco:127.0.0.1\\:9:webdir:keyEnv=HOME:tls=no:keepAlve=30")
    child.ended.addTimeout(30, reactor)
    code = yield child.ended
    stderr = child.stderr.decode(errors="replace")
    assert code == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("twistd: bad hyco: endpoint string: unknown option 'keepAlve' (did you mean 'keepAlive'?)")


@pytest_twisted.inlineCallbacks
def test_refused_listen_is_one_log_line(relay, tmp_path):
    description = f"hyco:127.0.0.1\\:{relay.port}:webdir:keyName={relay.rule.name}:keyEnv=WRONG_KEY:tls=no"
    child = twistd_web(tmp_path, description, WRONG_KEY="d3Jvbmcta2V5")
    try:
        line = yield child.wait_for("Couldn't listen")
    finally:
        yield child.stop()
    assert "[txhyco.endpoint#error]" in line and "401" in line, line
    output = "\n".join(child.lines) + child.stderr.decode(errors="replace")
    assert "Traceback" not in output and "Unhandled Error" not in output, output
