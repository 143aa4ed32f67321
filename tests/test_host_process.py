"""txhyco is a good citizen in its host process: Autobahn code that is not txhyco's runs exactly as without it."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unrelated_pair(mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "tests.support.unrelated_pair", mode], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_unrelated_autobahn_pair_sees_no_difference():
    """Same frames and same debug log (text and field types) beside an active txhyco listener as without txhyco.

    The pair (a plain WebSocketServerFactory and WebSocketClientFactory on
    127.0.0.1) runs once in a process where every txhyco module was imported
    and a listener serves through a local relay, with a relayed message
    exchanged (and ``str(Timings())`` checked), and once in a process without
    txhyco.
    """
    with_txhyco = run_unrelated_pair("with-txhyco")
    without = run_unrelated_pair("without-txhyco")
    assert "HTTP/1.1 101" in with_txhyco["server wrote"] and "Sec-WebSocket-Key: KEY" in with_txhyco["client wrote"]
    assert with_txhyco["server wrote"] == without["server wrote"]
    assert with_txhyco["client wrote"] == without["client wrote"]  # masks seeded alike
    assert any("'openHandshakeTimeout'" in line for line in without["log"])  # debug lines were captured
    assert with_txhyco["log"] == without["log"]
