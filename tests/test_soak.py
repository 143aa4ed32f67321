"""The short soak: ``benchmarks/soak.py`` with 50 connections for about 10 s (``make soak`` runs 1,000).

A relay process (``python -m txhyco.cli relay``), two listener processes
replaced every 3 s, 50 relayed WebSockets exchanging numbered, checksummed
messages of varied sizes and a few HTTP POST loops. Every message must be
echoed or have its connection closed by a stopping listener; none may be lost
or altered; the relay's descriptors come back to their baseline exactly and
its memory does not grow beyond a generous bound between the rounds. No
timing is asserted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "benchmarks" / "soak.py"


@pytest.mark.timeout(240)
def test_short_soak_loses_nothing_and_leaks_no_descriptors(tmp_path):
    pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--connections", "50", "--duration", "10", "--rounds", "2",
         "--listeners", "2", "--churn", "3", "--interval", "0.5", "--http-loops", "2",
         "--settle", "1", "--rss-tolerance-mib", "48", "--out", str(out)],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=220,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    report = proc.stdout[-3000:] + proc.stderr[-3000:]

    messages = result["messages"]
    assert messages["sent"] > 0, report
    assert messages["lost"] == 0, report
    assert messages["mismatched"] == 0, report
    assert messages["closed_in_flight_other"] == 0, report
    assert messages["sent"] == messages["echoed"] + messages["closed_in_flight"], report
    assert result["counts"]["connections_opened"] >= 50, report
    assert result["counts"].get("listeners_replaced", 0) >= 1, report
    http = result["http"]
    assert http["echoed"] > 0 and http["lost"] == 0 and http["unanswered"] == 0 and http["corrupt"] == 0, report

    relay = result["relay"]
    assert all(r["relay_fds"] == relay["fds_with_listeners"] for r in result["rounds"]), report
    assert relay["fds_end"] == relay["fds_alone"], report
    assert relay["rss_growth_last_round_mib"] <= 48, report
    assert result["ok"], report
    assert proc.returncode == 0, report
