"""Keeps ``benchmarks/`` from rotting: a smoke run (tiny counts, no timing assertions).

``benchmarks/run.py --smoke --out DIR`` starts the relay, server, proxy and
client processes, runs every scenario in every arrangement with a handful of
messages, and must write a ``latest.json`` of the documented shape. The
numbers themselves are not checked: benchmarks are not tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"

SCENARIOS = {"ws_echo_1k_rtt", "ws_echo_1k_100", "ws_echo_1m", "http_get_small", "http_download", "ws_connect", "ws_idle_scale"}
ARRANGEMENTS = {"direct", "proxy", "relayed"}


@pytest.mark.timeout(240)
def test_smoke_run_writes_latest_json(tmp_path):
    pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")
    env = dict(os.environ)
    env.pop("BENCH_FULL", None)
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))

    assert doc["mode"] == "smoke"
    machine = doc["machine"]
    for key in ("cores_logical", "python", "versions"):
        assert key in machine
    assert {"twisted", "autobahn"} <= set(machine["versions"])

    results = doc["results"]
    seen = {(r["scenario"], r["arrangement"]) for r in results}
    assert seen >= {(s, a) for s in SCENARIOS for a in ARRANGEMENTS}
    for r in results:
        assert {"scenario", "arrangement", "metrics", "error", "samples"} <= set(r)
        assert r["error"] is None, r
        assert r["metrics"], r
        # the arrangements took turns in two rounds (the scale scenario runs once)
        assert r["rounds"] == (1 if r["scenario"] == "ws_idle_scale" else 2), r
        for summary in r["metrics"].values():
            assert {"median", "min", "max", "spread_pct"} <= set(summary)

    targets = doc["targets"]
    assert [t["issue"] for t in targets] == [7] * 8 + [18] * 6
    for t in targets:
        assert set(t) >= {"name", "value", "target", "met"}
        assert isinstance(t["met"], bool)
    assert all(t["value"] is not None for t in targets if t["issue"] == 18 and "hyco" not in t["name"])
    for r in results:  # CPU per unit of work, for the processes that served it
        per = r["cpu_ms_per_unit"]
        assert per["unit"] in ("connection", "message", "request", "MiB"), r
        assert per["server"] is not None and ("relay" in per) == (r["arrangement"] == "relayed"), r
        assert per.get("client") or r["scenario"] == "ws_idle_scale", r  # the scale client is stopped, not done
    assert (tmp_path / "latest.txt").exists()
    if _has_matplotlib():
        assert (tmp_path / "latest.png").stat().st_size > 0


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.timeout(240)
def test_smoke_run_with_microsofts_listeners(tmp_path):
    """The peer arrangements (node_echo_listener.js, node_http_listener.js) run and are compared."""
    pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")
    from tests.interop import nodeclients

    if nodeclients.unavailable_reason():
        pytest.fail(f"Microsoft's Node relay clients are not usable: {nodeclients.unavailable_reason()}. Run `make setup`.",
                    pytrace=False)
    env = dict(os.environ)
    env.pop("BENCH_FULL", None)
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--peer", "--out", str(tmp_path), "--only", "ws_echo_1k_rtt", "http_get_small",
         "http_download", "--arrangements", "relayed", "relayed-hyco-ws", "relayed-hyco-https"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    seen = {(r["scenario"], r["arrangement"]): r for r in doc["results"]}
    assert set(seen) == {("ws_echo_1k_rtt", "relayed"), ("ws_echo_1k_rtt", "relayed-hyco-ws"),
                         ("http_get_small", "relayed"), ("http_get_small", "relayed-hyco-https"),
                         ("http_download", "relayed"), ("http_download", "relayed-hyco-https")}
    for r in seen.values():
        assert r["error"] is None and r["metrics"], r
    assert seen[("http_get_small", "relayed-hyco-https")]["listener"] == "hyco-https"
    assert "hyco-https" in seen[("http_download", "relayed-hyco-https")]["rss"]  # its memory is sampled
    assert [c["name"] for c in doc["comparisons"]][:2] == [
        "HTTP small GET rps, txhyco ÷ hyco-https", "HTTP download MB/s, txhyco ÷ hyco-https"]


@pytest.mark.timeout(120)
def test_vary_heads_gives_every_get_a_fresh_head(tmp_path):
    pytest.importorskip("psutil", reason="the bench extra is not installed (pip install -e '.[bench]')")
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--only", "http_get_small", "--arrangements", "relayed", "--no-peer",
         "--no-cluster", "--vary-heads", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert doc["vary_heads"] is True
    (result,) = doc["results"]
    assert result["error"] is None and result["metrics"]["rps"]["median"] > 0
