"""Keeps the benchmark's cluster arrangements from rotting: a smoke run (no timing assertions).

``benchmarks/run.py --smoke --cluster`` starts a redis-server and two relay
processes as cluster nodes beside the single relay; the listener is on node A
and the sender on node B. Only the shape of the results is checked.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import REDIS_SERVER, require

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_cluster_arrangements_smoke(tmp_path):
    pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")
    require(REDIS_SERVER, "redis-server")
    env = dict(os.environ)
    env.pop("BENCH_FULL", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--cluster", "--no-peer", "--out", str(tmp_path),
         "--only", "ws_echo_1k_rtt", "ws_connect_side_by_side", "--arrangements", "relayed", "cluster", "one-relay", "two-nodes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    seen = {(r["scenario"], r["arrangement"]): r for r in doc["results"]}
    assert set(seen) == {("ws_echo_1k_rtt", "relayed"), ("ws_echo_1k_rtt", "cluster"),
                         ("ws_connect_side_by_side", "one-relay"), ("ws_connect_side_by_side", "two-nodes")}
    for r in seen.values():
        assert r["error"] is None and r["metrics"], r
    names = [c["name"] for c in doc["cluster_comparisons"]]
    assert any("RTT" in n for n in names) and any("side by side" in n for n in names)
    assert "cluster ÷ one relay" in (tmp_path / "latest.txt").read_text(encoding="utf-8")
