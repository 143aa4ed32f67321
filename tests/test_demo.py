"""`make demo` runs the demo script: it must tell the story and exit 0."""
import pytest_twisted

from tests.support.procs import spawn


@pytest_twisted.inlineCallbacks
def test_demo_runs_to_completion():
    child = spawn(["examples/demo.py"])
    code = yield child.ended
    assert code == 0, child.stderr.decode(errors="replace")
    text = "\n".join(child.lines)
    assert "GET http://127.0.0.1:" in text and "-> 200 OK" in text
    assert "messages echoed upper-cased" in text
    assert "SharedAccessKey=<redacted>" in text
    assert "shut down cleanly" in text
    assert b"Traceback" not in child.stderr
