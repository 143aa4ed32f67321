"""Helpers shared by the benchmark processes: file limits, JSON lines, statistics.

Every benchmark process (relay, server, proxy, client) is a separate Python
process started by ``run.py``; they talk to it with one JSON object per line
on stdout (``{"event": "ready", ...}``, ``{"event": "result", ...}``) and are
told to stop by the end of their stdin.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

KEY_ENV = "BENCH_HYCO_KEY"
"""The relay's SAS key travels in the environment, never in argv."""

KEY_NAME = "RootManageSharedAccessKey"


def raise_nofile(want: int = 65536) -> int:
    """Raise this process's open-file limit as far as allowed (the scale scenario needs it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emit(obj: dict) -> None:
    """One JSON line on stdout, flushed (the orchestrator reads line by line)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def exit_on_stdin_eof(reactor) -> None:
    """Stop the reactor when the parent closes our stdin (or dies)."""
    from twisted.internet import stdio
    from twisted.internet.protocol import Protocol

    class Watch(Protocol):
        def connectionLost(self, reason=None):
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Watch(), stdout=os.open(os.devnull, os.O_WRONLY), reactor=reactor)


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = max(0, min(len(data) - 1, int(round(q / 100.0 * len(data) + 0.5)) - 1))
    return data[k]


def summarize(samples: list[float]) -> dict:
    """Median and spread of repeated measurements (min, max, relative IQR-ish spread)."""
    clean = [s for s in samples if s is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "samples": samples}
    med = statistics.median(clean)
    lo, hi = min(clean), max(clean)
    spread = (hi - lo) / med * 100.0 if med else 0.0
    return {"median": med, "min": lo, "max": hi, "spread_pct": spread, "samples": clean}


def sign_token(audience: str, key: str, key_name: str = KEY_NAME, ttl: int = 24 * 3600) -> str:
    """A SAS token for ``audience`` (txhyco's own signer)."""
    import time

    from txhyco.protocol.sas import sign_token as sign

    return sign(audience, key_name, key, int(time.time()) + ttl)
