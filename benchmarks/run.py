#!/usr/bin/env python3
"""``make bench``: what the relay costs, measured side by side (issue 7).

Each scenario runs in three arrangements in the same run, with the same client
and server code and the same processes, differing only in the path:

* **direct**   client ──TCP──▶ server
* **proxy**    client ──▶ proxy (byte-forwarding, Twisted) ──▶ server
* **relayed**  client (txhyco sender) ──▶ relay ◀── server (txhyco listener)

plus, for the WebSocket echo scenarios, **relayed-hyco-ws**: the same relay
with Microsoft's ``hyco-ws`` Node listener instead of txhyco's, and for the
HTTP scenarios **relayed-hyco-https**: Microsoft's ``hyco-https`` listener
serving the same two resources (no target; it shows what the relay costs with
another listener, and what Microsoft's listener holds for a large response).

With a cluster (``make bench``'s quick and full modes, or ``--cluster``; it needs
Debian's redis-server), the WebSocket echo RTT, the small GET and connection
set-up also run as **cluster**: two relay processes sharing a redis-server, the
listener on node A and the sender on node B, so every sender crosses nodes (the
command through Redis, the data on B); reported beside **relayed** (one relay)
from the same run. A set-up-rate run, ``ws_connect_side_by_side``, puts two
client processes on **one-relay** against one each on **two-nodes** (listeners
on both nodes; routing picks among all of them).

Process layout (every box is its own OS process; the machine may have only
2 cores, so in the proxy/relayed arrangements three busy processes share two
cores — that is part of what is measured, and the same for proxy and relay)::

    run.py (orchestrator: spawns, samples RSS/CPU with psutil, idle while measuring)
    ├── relay_proc.py   txhyco RelayService on 127.0.0.1:free
    ├── server_proc.py  echo WebSocket server + twisted.web site, on TCP
    │                   and through the relay (RelayedServerFactory / hyco: endpoint)
    ├── proxy_proc.py   Twisted TCP proxy to the server's two TCP ports
    ├── node node_echo_listener.js   hyco-ws echo listener (peer comparison)
    ├── node node_http_listener.js   hyco-https listener (peer comparison)
    └── client_proc.py  one per scenario × arrangement (load generator)

Usage::

    python benchmarks/run.py            # quick (< 5 min on 2 cores)
    BENCH_FULL=1 python benchmarks/run.py   # longer, larger (10,000 idle connections)
    python benchmarks/run.py --smoke --out /tmp/x   # seconds; for tests

Writes ``OUT/latest.json`` (``machine``, ``mode``, ``results``, ``targets``),
``OUT/latest.txt`` (the printed table) and ``OUT/latest.png`` (the chart).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BENCH = common.BENCH_DIR
PY = sys.executable
KiB, MiB = 1024, 1024 * 1024

# ----------------------------------------------------------------- modes

MODES = {
    "smoke": dict(
        repeats=2, lat_warmup=10, lat_count=50, stream_warmup=0.1, stream_duration=0.2,
        bulk_inflight=2, get_duration=0.2, download_size=1 * MiB, download_repeats=2,
        setup_duration=0.3, setup_concurrency=4, scale_connections=20, scale_concurrency=10,
        client_timeout=60, rounds=2,  # two: the smoke test covers merging rounds
    ),
    "quick": dict(
        repeats=5, lat_warmup=200, lat_count=2000, stream_warmup=0.5, stream_duration=1.5,
        bulk_inflight=4, get_duration=1.5, download_size=100 * MiB, download_repeats=6,
        setup_duration=2.0, setup_concurrency=8, scale_connections=1000, scale_concurrency=50,
        client_timeout=180, rounds=3,
    ),
    "full": dict(
        repeats=10, lat_warmup=500, lat_count=10000, stream_warmup=1.0, stream_duration=4.0,
        bulk_inflight=4, get_duration=4.0, download_size=100 * MiB, download_repeats=7,
        setup_duration=5.0, setup_concurrency=16, scale_connections=10000, scale_concurrency=100,
        client_timeout=900, rounds=5,
    ),
}
SCALE_TARGET_CONNECTIONS = 10000
#: Microsoft's listeners compared with txhyco's: arrangement → process name (= npm package).
PEERS = {"relayed-hyco-ws": "hyco-ws", "relayed-hyco-https": "hyco-https"}
#: scenarios that also run across a two-node cluster (listener on node A, sender on node B)
CLUSTER_SCENARIOS = ("ws_echo_1k_rtt", "http_get_small", "ws_connect")
#: arrangement -> (middle, server) processes whose CPU the table shows
CLUSTER_CPU = {"cluster": ("node-b", "server-a"), "one-relay": ("relay", "server"), "two-nodes": ("node-b", "server-b")}
#: the cluster's processes (besides its redis-server), stopped with the others
CLUSTER_PROCS = ("server-b", "server-a2", "server-a", "node-b", "node-a")


# ----------------------------------------------------------------- processes


class Proc:
    """A child process speaking JSON lines on stdout; stopped by closing its stdin."""

    def __init__(self, name: str, argv: list[str], env: dict) -> None:
        self.name = name
        self.events: queue.Queue = queue.Queue()
        self.stderr_tail: list[str] = []
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=common.ROOT,
            text=True, bufsize=1,
        )
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read_out(self):
        for line in self.popen.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "text", "text": line})
        self.events.put({"event": "eof"})

    def _read_err(self):
        for line in self.popen.stderr:
            self.stderr_tail.append(line.rstrip())
            del self.stderr_tail[:-40]

    def next_event(self, timeout: float) -> dict:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return {"event": "timeout"}

    def wait_for(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.01, deadline - time.monotonic()))
            if ev["event"] == name:
                return ev
            if ev["event"] in ("eof", "timeout", "error"):
                raise RuntimeError(f"{self.name}: waiting for {name!r} got {ev}; stderr: "
                                   + " | ".join(self.stderr_tail[-8:]))

    def stop(self, timeout: float = 10.0) -> None:
        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class Sampler:
    """Samples RSS of some processes every 20 ms in a thread; records the peak."""

    def __init__(self, procs: dict) -> None:
        import psutil

        self.ps = {name: psutil.Process(pid) for name, pid in procs.items()}
        self.peak = {name: 0 for name in procs}
        self.start_rss = {name: p.memory_info().rss for name, p in self.ps.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for name, p in self.ps.items():
                try:
                    self.peak[name] = max(self.peak[name], p.memory_info().rss)
                except Exception:
                    pass
            self._stop.wait(0.02)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {name: {"start_mib": self.start_rss[name] / MiB, "peak_mib": self.peak[name] / MiB,
                       "growth_mib": max(0, self.peak[name] - self.start_rss[name]) / MiB} for name in self.ps}


def cpu_seconds(pids: dict) -> dict:
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
        except Exception:
            out[name] = None
    return out


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


# ----------------------------------------------------------------- machine


def node_package_version(name: str) -> str | None:
    try:
        with open(os.path.join(common.ROOT, "tests/interop/node/node_modules", name, "package.json")) as f:
            return json.load(f)["version"]
    except Exception:
        return None


def machine_info() -> dict:
    import psutil

    versions = {}
    for mod in ("twisted", "autobahn", "h11", "psutil", "matplotlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    try:
        import importlib.metadata as md

        versions["txhyco"] = md.version("txhyco")
    except Exception:
        versions["txhyco"] = None
    cpu_model = None
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    accel = {}
    for mod in ("wsaccel", "ujson", "_cffi_backend"):
        try:
            __import__(mod)
            accel[mod] = True
        except ImportError:
            accel[mod] = False
    node = shutil.which("node")
    node_version = None
    if node:
        try:
            node_version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            pass
    hyco_ws, hyco_https = (node_package_version(name) for name in ("hyco-ws", "hyco-https"))
    try:
        from twisted.internet import reactor

        reactor_name = type(reactor).__name__
    except Exception:
        reactor_name = None
    return {
        "cores_logical": os.cpu_count(), "cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(), "python": platform.python_version(),
        "python_implementation": platform.python_implementation(), "versions": versions,
        "accelerators": accel, "node": node_version, "hyco_ws": hyco_ws,
        "hyco_https": hyco_https, "reactor": reactor_name,
        "nofile_limit": common.raise_nofile(),
    }


# ----------------------------------------------------------------- scenarios
#
# Each scenario: (name, client scenario, kind, params(mode), main metric, unit, higher-is-better)

def scenarios(m: dict) -> list[dict]:
    r = m["repeats"]
    return [
        dict(name="ws_echo_1k_rtt", title="WS echo 1 KiB, 1 in flight", client="ws_latency", kind="ws", peer=True,
             params=dict(size=1 * KiB, warmup=m["lat_warmup"], count=m["lat_count"], repeats=r),
             metrics=[("p50_ms", "ms", False), ("p99_ms", "ms", False)]),
        dict(name="ws_echo_1k_100", title="WS echo 1 KiB, 100 in flight", client="ws_stream", kind="ws", peer=True,
             params=dict(size=1 * KiB, inflight=100, warmup_s=m["stream_warmup"], duration=m["stream_duration"], repeats=r),
             metrics=[("msg_per_s", "msg/s", True)]),
        dict(name="ws_echo_1m", title="WS echo 1 MiB messages", client="ws_stream", kind="ws", peer=True,
             params=dict(size=1 * MiB, inflight=m["bulk_inflight"], warmup_s=m["stream_warmup"],
                         duration=m["stream_duration"], repeats=r),
             metrics=[("mb_per_s", "MB/s", True)]),
        dict(name="http_get_small", title="HTTP GET 256 B, 16 clients", client="http_get", kind="http", peer=True,
             params=dict(clients=16, warmup_s=m["stream_warmup"], duration=m["get_duration"], repeats=r),
             metrics=[("rps", "req/s", True), ("p99_ms", "ms", False)]),
        dict(name="http_download", title=f"HTTP download {m['download_size'] // MiB} MiB", client="http_download",
             kind="http", peer=True, params=dict(size=m["download_size"], repeats=m["download_repeats"]),
             metrics=[("mb_per_s", "MB/s", True)], sample_rss=True),
        dict(name="ws_connect", title="WS connection open+close", client="ws_connsetup", kind="ws",
             params=dict(concurrency=m["setup_concurrency"], warmup_s=m["stream_warmup"],
                         duration=m["setup_duration"], repeats=max(3, r // 2)),
             metrics=[("conn_per_s", "conn/s", True)]),
        dict(name="ws_connect_side_by_side", title="WS open+close, 2 clients", client="ws_connsetup", kind="ws",
             params=dict(concurrency=m["setup_concurrency"], warmup_s=m["stream_warmup"],
                         duration=m["setup_duration"], repeats=max(3, r // 2)),
             metrics=[("conn_per_s", "conn/s", True)], cluster_only=True),
        dict(name="ws_idle_scale", title=f"{m['scale_connections']} idle WS connections", client="ws_scale", kind="ws",
             params=dict(connections=m["scale_connections"], concurrency=m["scale_concurrency"]),
             metrics=[("open_per_s", "conn/s", True), ("middle_kib_per_conn", "KiB/conn", False),
                      ("server_kib_per_conn", "KiB/conn", False)], scale=True),
    ]


class Bench:
    def __init__(self, mode: str, out: str, peer: bool, only: list[str] | None, profile: dict | None = None,
                 arrangements: list[str] | None = None, inspect: bool = False, cluster: bool = False) -> None:
        self.mode, self.out, self.want_peer, self.only = mode, out, peer, only
        self.inspect = inspect
        self.want_cluster = cluster
        self.cluster = False
        self.redis = None
        self.profile = profile or {}
        self.only_arrangements = arrangements
        self.m = MODES[mode]
        self.procs: dict[str, Proc] = {}
        self.results: list[dict] = []
        self.notes: list[str] = []

    # -- process management ------------------------------------------------

    def start(self) -> None:
        from txhyco.relay.config import generate_key

        self.key = generate_key()
        self.env = dict(os.environ, **{common.KEY_ENV: self.key, "PYTHONUNBUFFERED": "1"})
        self.env.pop("BENCH_FULL", None)
        self.env.pop("BENCH_INSPECT", None)
        if self.inspect:  # the relayed HTTP scenarios' listener captures everything (server_proc.py)
            self.env["BENCH_INSPECT"] = "1"
        relay = self.spawn("relay", [PY, os.path.join(BENCH, "relay_proc.py")])
        self.relay_port = relay.wait_for("ready", 30)["port"]
        server = self.spawn("server", [PY, os.path.join(BENCH, "server_proc.py"), str(self.relay_port)])
        ev = server.wait_for("ready", 30)
        self.ws_port, self.http_port = ev["ws_port"], ev["http_port"]
        proxy = self.spawn("proxy", [PY, os.path.join(BENCH, "proxy_proc.py"), str(self.ws_port), str(self.http_port)])
        ports = proxy.wait_for("ready", 30)["ports"]
        self.proxy_ws, self.proxy_http = ports[str(self.ws_port)], ports[str(self.http_port)]
        self.peer = self.peer_http = False
        if self.want_peer:
            self.peer = self.start_node("hyco-ws", "node_echo_listener.js", "echo-node")
            self.peer_http = self.start_node("hyco-https", "node_http_listener.js", "web-node")
        if self.want_cluster:
            self.cluster = self.start_cluster()

    def start_cluster(self) -> bool:
        """redis-server, relay nodes A and B, listeners: ``-x`` on A; ``-pair`` on A and on B."""
        import socket

        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            self.notes.append("cluster arrangements skipped: redis-server is not installed (make cluster-tools)")
            return False

        def free_port() -> int:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return sock.getsockname()[1]

        redis_port = free_port()
        self.redis = subprocess.Popen([binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", redis_port)) == 0:
                    break
            if time.monotonic() > deadline or self.redis.poll() is not None:
                self.notes.append("cluster arrangements skipped: redis-server did not start")
                return False
            time.sleep(0.05)
        url = f"redis://127.0.0.1:{redis_port}/0"
        self.node_ports = {}
        for name in ("node-a", "node-b"):
            port = free_port()
            self.spawn(name, [PY, os.path.join(BENCH, "relay_proc.py"), str(port), url, name]).wait_for("ready", 30)
            self.node_ports[name] = port
        for name, node, suffix in (("server-a", "node-a", "-x"), ("server-a2", "node-a", "-pair"), ("server-b", "node-b", "-pair")):
            self.spawn(name, [PY, os.path.join(BENCH, "server_proc.py"), str(self.node_ports[node]), suffix]).wait_for("ready", 30)
        time.sleep(2.5)  # every node learns the others' listeners (within a third of the TTL)
        return True

    def start_node(self, package: str, script: str, path: str) -> bool:
        """Start a Microsoft listener (``package``'s ``script``) on hybrid connection ``path``."""
        node = shutil.which("node")
        mod = os.path.join(common.ROOT, "tests/interop/node/node_modules", package)
        if not node or not os.path.isdir(mod):
            self.notes.append(f"peer comparison skipped: node or {package} not installed (make setup runs npm install)")
            return False
        env = dict(self.env, HYCO_KEY=self.key)
        env.pop(common.KEY_ENV, None)
        p = self.spawn(package, [node, os.path.join(BENCH, script),
                                 f"ws://127.0.0.1:{self.relay_port}", path, common.KEY_NAME], env=env)
        try:
            p.wait_for("ready", 30)
            return True
        except RuntimeError as e:
            self.notes.append(f"peer comparison skipped: {package} listener did not start: {e}")
            return False

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        if self.profile.get(name):  # cProfile the process; written when it exits cleanly
            argv = [argv[0], "-m", "cProfile", "-o", self.profile[name]] + argv[1:]
        p = Proc(name, argv, env or self.env)
        self.procs[name] = p
        return p

    def stop(self) -> None:
        for name in (*PEERS.values(), *CLUSTER_PROCS, "proxy", "server", "relay"):
            if name in self.procs:
                self.procs[name].stop()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)

    # -- arrangements -------------------------------------------------------

    def arrangements(self, sc: dict) -> list[tuple[str, dict, str | None]]:
        """(arrangement, client target, name of the middle process); a list of targets: one client each, at once."""
        if sc.get("cluster_only"):
            relay = {"relay_port": self.relay_port, "path": "echo"}
            nodes = [{"relay_port": self.node_ports[n], "path": "echo-pair"} for n in ("node-a", "node-b")]
            return [("one-relay", [relay, relay], "relay"), ("two-nodes", nodes, "node-b")]
        out = self._arrangements(sc)
        if self.cluster and sc["name"] in CLUSTER_SCENARIOS:
            node_b = self.node_ports["node-b"]
            target = ({"relay_port": node_b, "path": "echo-x"} if sc["kind"] == "ws"
                      else {"port": node_b, "prefix": "/web-x", "relay": True})
            out.append(("cluster", target, "node-b"))
        return out

    def _arrangements(self, sc: dict) -> list[tuple[str, dict, str | None]]:
        if sc["kind"] == "ws":
            out = [("direct", {"url": f"ws://127.0.0.1:{self.ws_port}/"}, None),
                   ("proxy", {"url": f"ws://127.0.0.1:{self.proxy_ws}/"}, "proxy"),
                   ("relayed", {"relay_port": self.relay_port, "path": "echo"}, "relay")]
            if sc.get("scale"):
                # Per-connection RSS is growth past the process's high-water
                # mark, so order matters: the relayed arrangement (the one
                # with a target) runs first, on fresh-ish processes.
                out.reverse()
            if sc.get("peer") and self.peer:
                out.append(("relayed-hyco-ws", {"relay_port": self.relay_port, "path": "echo-node"}, "relay"))
            return out
        out = [("direct", {"port": self.http_port, "prefix": "/"}, None),
               ("proxy", {"port": self.proxy_http, "prefix": "/"}, "proxy"),
               ("relayed", {"port": self.relay_port, "prefix": "/web", "relay": True}, "relay")]
        if sc.get("peer") and self.peer_http:
            out.append(("relayed-hyco-https", {"port": self.relay_port, "prefix": "/web-node", "relay": True}, "relay"))
        return out

    def service_pids(self) -> dict:
        return {name: p.pid for name, p in self.procs.items()}

    # -- running ------------------------------------------------------------

    def run_parallel(self, sc: dict, arrangement: str, targets: list[dict], middle: str | None) -> dict:
        """One client process per target, all at once; each repeat's rates are added up."""
        res = {"scenario": sc["name"], "title": sc["title"], "arrangement": arrangement, "listener": "txhyco",
               "params": sc["params"], "metrics": {}, "error": None}
        pids = self.service_pids()
        cpu0 = cpu_seconds(pids)
        t0 = time.monotonic()
        clients = [Proc(f"client {sc['name']} {arrangement} {i}",
                        [PY, os.path.join(BENCH, "client_proc.py"), sc["client"], json.dumps(t), json.dumps(sc["params"])],
                        self.env) for i, t in enumerate(targets)]
        per_client: list[list[dict]] = []
        deadline = t0 + self.m["client_timeout"]
        try:
            for client in clients:
                samples = []
                while True:
                    ev = client.next_event(max(0.01, deadline - time.monotonic()))
                    if ev["event"] == "sample":
                        samples.append(ev)
                    elif ev["event"] == "done":
                        break
                    else:
                        res["error"] = (ev.get("error") or ev["event"]) + " | " + " | ".join(client.stderr_tail[-3:])
                        break
                per_client.append(samples)
        finally:
            for client in clients:
                client.stop(30)
        res["seconds"] = time.monotonic() - t0
        cpu1 = cpu_seconds(pids)
        res["cpu_s"] = {k: (cpu1[k] - cpu0[k]) if cpu0.get(k) is not None and cpu1.get(k) is not None else None
                        for k in pids}
        keys = [k for k, _, _ in sc["metrics"]]
        res["samples"] = [{k: sum(s[k] for s in group) for k in keys}
                          for group in zip(*per_client)] if per_client else []
        res["metrics"] = metrics_of(sc, res["samples"])
        return res

    def run_one(self, sc: dict, arrangement: str, target: dict, middle: str | None) -> dict:
        if isinstance(target, list):
            return self.run_parallel(sc, arrangement, target, middle)
        listener = {"relayed": "txhyco", "cluster": "txhyco", **PEERS}.get(arrangement)
        server_name = PEERS.get(arrangement, "server")
        res = {"scenario": sc["name"], "title": sc["title"], "arrangement": arrangement, "listener": listener,
               "params": sc["params"], "metrics": {}, "error": None}
        pids = self.service_pids()
        cpu0 = cpu_seconds(pids)
        sampled = ("relay", "proxy", "server", *PEERS.values())
        sampler = Sampler({k: pids[k] for k in sampled if k in pids}) if sc.get("sample_rss") else None
        rss0 = {k: rss(pid) for k, pid in pids.items()} if sc.get("scale") else None
        t0 = time.monotonic()
        profile = ["-m", "cProfile", "-o", self.profile["client"]] if self.profile.get("client") else []
        client = Proc(f"client {sc['name']} {arrangement}",
                      [PY, *profile, os.path.join(BENCH, "client_proc.py"), sc["client"], json.dumps(target),
                       json.dumps(sc["params"])],
                      self.env)
        samples: list[dict] = []
        deadline = t0 + self.m["client_timeout"]
        try:
            while True:
                ev = client.next_event(max(0.01, deadline - time.monotonic()))
                kind = ev["event"]
                if kind == "sample":
                    samples.append(ev)
                elif kind == "holding":
                    time.sleep(1.0)  # let the relay and listener settle
                    rss1 = {k: rss(pid) for k, pid in pids.items()}
                    n = max(1, ev["open"])
                    grow = {k: (rss1[k] - rss0[k]) / n / KiB for k in pids}
                    sample = {"open": ev["open"], "errors": ev["errors"], "open_seconds": ev["seconds"],
                              "open_per_s": ev["open_per_s"],
                              "server_kib_per_conn": grow[server_name],
                              "middle_kib_per_conn": grow[middle] if middle else None,
                              "rss_mib": {k: v / MiB for k, v in rss1.items()},
                              "kib_per_conn": grow}
                    if ev["errors"]:  # the client names its first three failures
                        sample["first_errors"] = [line for line in client.stderr_tail if "failed" in line][:3]
                    samples.append(sample)
                    client.stop(60)
                    break
                elif kind == "done":
                    res["client_cpu_s"] = ev.get("cpu_s")
                    res["units"], res["unit"] = ev.get("units"), ev.get("unit")
                    break
                elif kind in ("error", "eof", "timeout"):
                    res["error"] = ev.get("error") or kind
                    if kind != "error" or True:
                        res["error"] += " | " + " | ".join(client.stderr_tail[-3:])
                    break
        finally:
            client.stop(30)
        res["seconds"] = time.monotonic() - t0
        cpu1 = cpu_seconds(pids)
        res["cpu_s"] = {k: (cpu1[k] - cpu0[k]) if cpu0.get(k) is not None and cpu1.get(k) is not None else None
                        for k in pids}
        if sc.get("scale") and samples:
            res["units"], res["unit"] = samples[0]["open"], "connection"
        res["cpu_ms_per_unit"] = cpu_per_unit(res)
        if sampler is not None:
            res["rss"] = sampler.stop()
        res["samples"] = samples
        res["metrics"] = metrics_of(sc, samples)
        if sc.get("scale") and samples:
            s = samples[0]
            res["scale"] = s
            if middle == "relay" and listener == "txhyco":
                base = rss0["relay"] / MiB
                res["relay_rss_projected_10k_mib"] = base + s["middle_kib_per_conn"] * SCALE_TARGET_CONNECTIONS / 1024
                res["relay_rss_mib"] = s["rss_mib"]["relay"]
        return res

    def run(self) -> None:
        for sc in scenarios(self.m):
            if self.only and sc["name"] not in self.only:
                continue
            if sc.get("cluster_only") and not self.cluster:
                continue
            plan = [a for a in self.arrangements(sc) if not self.only_arrangements or a[0] in self.only_arrangements]
            # The arrangements take turns, a few repeats each per round, so
            # that a machine whose speed drifts (shared hosts do) slows all of
            # them alike and the ratios compare like with like. The
            # scale scenario runs once, in its fixed order.
            rounds = 1 if sc.get("scale") else min(self.m["rounds"], sc["params"].get("repeats", 1))
            per_round = dict(sc, params=dict(sc["params"]))
            if "repeats" in sc["params"]:
                per_round["params"]["repeats"] = -(-sc["params"]["repeats"] // rounds)
            runs: dict[str, list[dict]] = {a[0]: [] for a in plan}
            for r in range(rounds):
                turn = plan[r % len(plan):] + plan[:r % len(plan)] if plan else []
                for arrangement, target, middle in turn:
                    runs[arrangement].append(self.run_one(per_round, arrangement, target, middle))
                    if sc.get("scale"):
                        time.sleep(2.0)  # closed connections drain before the next arrangement
            for arrangement, _, _ in plan:
                res = merge_runs(sc, runs[arrangement])
                self.results.append(res)
                print(f"  {sc['title']:<34} {arrangement:<16}", end="")
                if res["error"]:
                    print(f" ERROR {res['error'][:200]}", flush=True)
                else:
                    main_k, unit, _ = sc["metrics"][0]
                    med = res["metrics"].get(main_k, {}).get("median")
                    print(f" {fmt(med)} {unit}  ({res['seconds']:.1f} s, {len(runs[arrangement])} round{'s' if len(runs[arrangement]) != 1 else ''})", flush=True)


def merge_runs(sc: dict, runs: list[dict]) -> dict:
    """One result from an arrangement's rounds: samples pooled, CPU and time added up, worst RSS."""
    if len(runs) == 1:
        return dict(runs[0], rounds=1)
    res = dict(runs[0], params=sc["params"], rounds=len(runs))
    res["error"] = next((r["error"] for r in runs if r["error"]), None)
    res["samples"] = [s for r in runs for s in r["samples"]]
    res["seconds"] = sum(r["seconds"] for r in runs)
    res["cpu_s"] = {k: (None if any(r["cpu_s"].get(k) is None for r in runs) else sum(r["cpu_s"][k] for r in runs))
                    for k in runs[0]["cpu_s"]}
    if all(r.get("client_cpu_s") is not None for r in runs):
        res["client_cpu_s"] = sum(r["client_cpu_s"] for r in runs)
    res["units"] = None if any(r.get("units") is None for r in runs) else sum(r["units"] for r in runs)
    res["cpu_ms_per_unit"] = cpu_per_unit(res)
    if all(r.get("rss") for r in runs):
        res["rss"] = {name: {"start_mib": runs[0]["rss"][name]["start_mib"],
                             "peak_mib": max(r["rss"][name]["peak_mib"] for r in runs),
                             "growth_mib": max(r["rss"][name]["growth_mib"] for r in runs)}
                      for name in runs[0]["rss"]}
    res["metrics"] = metrics_of(sc, res["samples"])
    return res


def cpu_per_unit(res: dict) -> dict | None:
    """Each process's CPU milliseconds per unit of work (connection, message, request, MiB), warm-up included.

    The client is the load generator (its own start-up included); the
    relay's and the listener's figures say where a gain or a loss comes from.
    """
    units = res.get("units")
    if not units:
        return None
    arrangement = res["arrangement"]
    serving = [PEERS.get(arrangement, "server")]
    serving += ["relay"] if arrangement.startswith("relayed") else ["proxy"] if arrangement == "proxy" else []
    cpu_s = res.get("cpu_s", {})
    out = {name: (cpu_s[name] * 1e3 / units if cpu_s.get(name) is not None else None) for name in serving}
    if res.get("client_cpu_s") is not None:
        out["client"] = res["client_cpu_s"] * 1e3 / units
    out["unit"] = res.get("unit")
    return out


def metrics_of(sc: dict, samples: list[dict]) -> dict:
    out = {}
    keys = [k for k, _, _ in sc["metrics"]]
    for k in keys + [x for x in ("msg_per_s", "mb_per_s", "p50_ms") if x not in keys]:
        vals = [s[k] for s in samples if s.get(k) is not None]
        if vals:
            out[k] = common.summarize(vals)
    return out


# ----------------------------------------------------------------- reporting


def fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def find(results, scenario, arrangement):
    for r in results:
        if r["scenario"] == scenario and r["arrangement"] == arrangement:
            return r
    return None


def median(results, scenario, arrangement, key):
    r = find(results, scenario, arrangement)
    if r is None or r.get("error"):
        return None
    return (r["metrics"].get(key) or {}).get("median")


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def compute_targets(results, mode: dict) -> list[dict]:
    """Issue 7's targets, then issue 18's goals, each computed from this run (``issue`` says whose)."""
    t = []
    issue = [7]

    def row(name, value, target, met, **details):
        t.append({"name": name, "value": value, "target": target, "met": bool(met) if value is not None else False,
                  "issue": issue[0], **({"details": details} if details else {})})

    v = ratio(median(results, "ws_echo_1k_100", "relayed", "msg_per_s"), median(results, "ws_echo_1k_100", "direct", "msg_per_s"))
    row("1 KiB echo, 100 in flight (relayed ÷ direct msg/s)", v, "≥ 0.50", v is not None and v >= 0.5)
    v = ratio(median(results, "ws_echo_1m", "relayed", "mb_per_s"), median(results, "ws_echo_1m", "direct", "mb_per_s"))
    row("1 MiB throughput (relayed ÷ direct MB/s)", v, "≥ 0.50", v is not None and v >= 0.5)
    v = ratio(median(results, "ws_echo_1k_rtt", "relayed", "p50_ms"), median(results, "ws_echo_1k_rtt", "direct", "p50_ms"))
    row("1 KiB round-trip latency p50 (relayed ÷ direct)", v, "≤ 2.5× direct", v is not None and v <= 2.5)
    v = ratio(median(results, "http_get_small", "relayed", "rps"), median(results, "http_get_small", "direct", "rps"))
    row("HTTP small GET rps (relayed ÷ direct)", v, "≥ 0.40", v is not None and v >= 0.4)
    v = ratio(median(results, "http_download", "relayed", "mb_per_s"), median(results, "http_download", "direct", "mb_per_s"))
    r = find(results, "http_download", "relayed")
    growth = r["rss"]["relay"]["growth_mib"] if r and r.get("rss") else None
    row(f"HTTP {mode['download_size'] // MiB} MiB download (relayed ÷ direct MB/s; relay RSS growth)", v,
        "≥ 0.50, relay RSS growth < 64 MiB", v is not None and v >= 0.5 and growth is not None and growth < 64,
        relay_rss_growth_mib=growth)
    v = median(results, "ws_connect", "relayed", "conn_per_s")
    row("relayed connection set-up (conn/s)", v, "≥ 300 per second", v is not None and v >= 300)
    r = find(results, "ws_idle_scale", "relayed")
    n = mode["scale_connections"]
    if r and not r.get("error") and r.get("scale"):
        measured = r["relay_rss_mib"] if n >= SCALE_TARGET_CONNECTIONS else r["relay_rss_projected_10k_mib"]
        row("10,000 idle relayed connections: relay RSS (MiB)", measured, "relay RSS ≤ 1 GiB", measured <= 1024,
            connections_measured=n, projected=n < SCALE_TARGET_CONNECTIONS,
            relay_kib_per_conn=r["scale"]["middle_kib_per_conn"], listener_kib_per_conn=r["scale"]["server_kib_per_conn"],
            open_seconds=r["scale"]["open_seconds"], opened=r["scale"]["open"])
    else:
        row("10,000 idle relayed connections: relay RSS (MiB)", None, "relay RSS ≤ 1 GiB", False)
    per = {}
    for sc, key, higher in (("ws_echo_1k_rtt", "p50_ms", False), ("ws_echo_1k_100", "msg_per_s", True), ("ws_echo_1m", "mb_per_s", True)):
        ours, theirs = median(results, sc, "relayed", key), median(results, sc, "relayed-hyco-ws", key)
        per[sc] = ratio(ours, theirs) if higher else ratio(theirs, ours)
    vals = [x for x in per.values() if x is not None]
    v = min(vals) if len(vals) == len(per) else None
    row("txhyco listener ÷ hyco-ws listener, same relay (worst echo scenario; latency as hyco-ws p50 ÷ txhyco p50)",
        v, "≥ 1.0 on every echo scenario", v is not None and v >= 1.0, per_scenario=per)
    issue[0] = 18
    _issue_18_goals(results, row)
    return t


def _issue_18_goals(results, row) -> None:
    """Issue 18's goals (the txhyco ÷ hyco-ws goal is issue 7's last target, above)."""
    def relayed_over(scenario, key, other):
        return ratio(median(results, scenario, "relayed", key), median(results, scenario, other, key))

    v = relayed_over("http_get_small", "rps", "direct")
    peer = relayed_over("http_get_small", "rps", "relayed-hyco-https")
    row("HTTP GET 256 B, 16 clients (relayed ÷ direct rps; txhyco ÷ hyco-https listener)", v,
        "≥ 0.45, and ≥ 1.10 × hyco-https", v is not None and v >= 0.45 and peer is not None and peer >= 1.10,
        over_hyco_https=peer)
    v = relayed_over("http_get_small", "p99_ms", "direct")
    row("HTTP GET 256 B p99 (relayed ÷ direct)", v, "≤ 2.0× direct", v is not None and v <= 2.0)
    v = relayed_over("ws_connect", "conn_per_s", "direct")
    row("relayed WebSocket set-up (relayed ÷ direct conn/s)", v, "≥ 0.45", v is not None and v >= 0.45)
    v = relayed_over("ws_echo_1m", "mb_per_s", "proxy")
    row("1 MiB echo (relayed ÷ proxy MB/s)", v, "≥ 1.0", v is not None and v >= 1.0)
    v = relayed_over("http_download", "mb_per_s", "proxy")
    r = find(results, "http_download", "relayed")
    spread = (r["metrics"].get("mb_per_s") or {}).get("spread_pct") if r and not r.get("error") else None
    row("HTTP download (relayed ÷ proxy MB/s; spread of the relayed runs)", v, "≥ 1.0, spread < 20 %",
        v is not None and v >= 1.0 and spread is not None and spread < 20, spread_pct=spread)
    v = relayed_over("ws_echo_1k_100", "msg_per_s", "proxy")
    row("1 KiB echo, 100 in flight (relayed ÷ proxy msg/s)", v, "≥ 1.0", v is not None and v >= 1.0)


def compare_http_peer(results) -> list[dict]:
    """txhyco's listener ÷ hyco-https's through the same relay, where both ran (no target)."""
    out = []
    for sc, key, name in (("http_get_small", "rps", "HTTP small GET rps, txhyco ÷ hyco-https"),
                          ("http_download", "mb_per_s", "HTTP download MB/s, txhyco ÷ hyco-https")):
        ours, theirs = median(results, sc, "relayed", key), median(results, sc, "relayed-hyco-https", key)
        if ours is not None and theirs is not None:
            out.append({"name": name, "value": ratio(ours, theirs), "txhyco": ours, "hyco_https": theirs})
    r = find(results, "http_download", "relayed-hyco-https")
    if r and r.get("rss") and "hyco-https" in r["rss"]:
        out.append({"name": "HTTP download: hyco-https listener RSS growth (MiB)",
                    "value": r["rss"]["hyco-https"]["growth_mib"], "txhyco": None, "hyco_https": None})
    return out


def compare_cluster(results) -> list[dict]:
    """What crossing nodes costs: the cluster arrangement ÷ the single relay; two nodes ÷ one for set-up."""
    out = []
    for sc, key, name in (("ws_echo_1k_rtt", "p50_ms", "WS 1 KiB RTT p50, cluster ÷ one relay (lower is better)"),
                          ("http_get_small", "rps", "HTTP small GET rps, cluster ÷ one relay"),
                          ("ws_connect", "conn_per_s", "WS connection set-up rate, cluster ÷ one relay"),
                          ("ws_connect_side_by_side", "conn_per_s", "WS set-up rate, two nodes side by side ÷ one relay")):
        base, other = ("one-relay", "two-nodes") if sc == "ws_connect_side_by_side" else ("relayed", "cluster")
        ours, theirs = median(results, sc, other, key), median(results, sc, base, key)
        if ours is not None and theirs is not None:
            out.append({"name": name, "value": ratio(ours, theirs), "cluster": ours, "single": theirs})
    return out


def table(results, targets, machine, mode_name) -> str:
    lines = []
    m = machine
    lines.append(f"txhyco benchmarks — mode {mode_name} — {time.strftime('%Y-%m-%d %H:%M:%S')}")
    lines.append(f"machine: {m['cores_logical']} logical cores ({m['cores_physical']} physical, affinity {m['cpu_affinity']}), "
                 f"{m['cpu_model']}, {m['memory_gib']} GiB; {m['platform']}")
    v = m["versions"]
    lines.append(f"python {m['python']} ({m['reactor']}), twisted {v['twisted']}, autobahn {v['autobahn']}, h11 {v['h11']}, "
                 f"node {m['node']}, hyco-ws {m['hyco_ws']}, hyco-https {m.get('hyco_https')}; accelerators {m['accelerators']}")
    lines.append("")
    hdr = f"{'scenario':<34} {'arrangement':<16} {'metric':<20} {'median':>10} {'min':>10} {'max':>10} {'spread':>7} {'÷direct':>8}  {'CPU s cli/srv/mid':>18}"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r in results:
        if r.get("error"):
            lines.append(f"{r['title']:<34} {r['arrangement']:<16} ERROR: {r['error'][:120]}")
            continue
        for k, s in r["metrics"].items():
            if k not in ("p50_ms", "p99_ms", "msg_per_s", "mb_per_s", "rps", "conn_per_s", "open_per_s",
                         "middle_kib_per_conn", "server_kib_per_conn"):
                continue
            if r["scenario"] in ("ws_echo_1m", "http_download") and k not in ("mb_per_s",):
                continue
            if r["scenario"] == "ws_echo_1k_100" and k != "msg_per_s":
                continue
            if r["scenario"] == "ws_echo_1k_rtt" and k not in ("p50_ms", "p99_ms"):
                continue
            if r["scenario"] == "http_get_small" and k not in ("rps", "p99_ms"):
                continue
            d = median(results, r["scenario"], "direct", k)
            rt = ratio(s["median"], d) if r["arrangement"] != "direct" else None
            mid = "proxy" if r["arrangement"] == "proxy" else "relay" if r["arrangement"].startswith("relayed") else None
            srv = PEERS.get(r["arrangement"], "server")
            mid, srv = CLUSTER_CPU.get(r["arrangement"], (mid, srv))
            cpu = "/".join(fmt(x) for x in (r.get("client_cpu_s"), r["cpu_s"].get(srv), r["cpu_s"].get(mid) if mid else None))
            lines.append(f"{r['title']:<34} {r['arrangement']:<16} {k:<20} {fmt(s['median']):>10} {fmt(s['min']):>10} "
                         f"{fmt(s['max']):>10} {fmt(s['spread_pct']) + '%':>7} {fmt(rt):>8}  {cpu:>18}")
        per = r.get("cpu_ms_per_unit")
        if per:
            lines.append(f"{'':<34} {'':<16} CPU ms per {per['unit']}: "
                         + ", ".join(f"{name} {fmt(v)}" for name, v in per.items() if name != "unit" and v is not None))
        if r.get("rss"):
            for name, x in r["rss"].items():
                lines.append(f"{'':<34} {'':<16} rss {name:<8} start {x['start_mib']:.0f} MiB, peak {x['peak_mib']:.0f} MiB, growth {x['growth_mib']:.1f} MiB")
        if r.get("scale"):
            s = r["scale"]
            lines.append(f"{'':<34} {'':<16} opened {s['open']} ({s['errors']} errors) in {s['open_seconds']:.2f} s; "
                         "KiB/conn " + ", ".join(f"{k} {v:.1f}" for k, v in s["kib_per_conn"].items()))
    lines.append("")
    lines.append("targets (from this run)")
    for t in targets:
        det = ""
        if t.get("details"):
            det = "  " + ", ".join(f"{k}={fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v}"
                                   for k, v in t["details"].items() if not isinstance(v, dict))
            for k, v in t["details"].items():
                if isinstance(v, dict):
                    det += f"  {k}: " + ", ".join(f"{a}={fmt(b)}" for a, b in v.items())
        lines.append(f"  [{'met' if t['met'] else 'MISSED'}] #{t['issue']} {t['name']}: {fmt(t['value'])} (target {t['target']}){det}")
    return "\n".join(lines)


def chart(results, path: str, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no chart"
    panels = [("ws_echo_1k_rtt", "p50_ms", "WS 1 KiB RTT p50 (ms, lower better)"),
              ("ws_echo_1k_100", "msg_per_s", "WS 1 KiB ×100 in flight (msg/s)"),
              ("ws_echo_1m", "mb_per_s", "WS 1 MiB echo (MB/s)"),
              ("http_get_small", "rps", "HTTP small GET, 16 clients (req/s)"),
              ("http_download", "mb_per_s", "HTTP download (MB/s)"),
              ("ws_connect", "conn_per_s", "WS open+close (conn/s)"),
              ("ws_idle_scale", "middle_kib_per_conn", "idle conn: middle hop KiB/conn"),
              ("ws_idle_scale", "server_kib_per_conn", "idle conn: server/listener KiB/conn")]
    colors = {"direct": "#4c72b0", "proxy": "#8c8c8c", "relayed": "#dd8452", "relayed-hyco-ws": "#55a868",
              "relayed-hyco-https": "#55a868"}
    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (sc, key, label) in zip(axes.flat, panels):
        names, meds, lo, hi, cols = [], [], [], [], []
        for r in results:
            if r["scenario"] != sc or r.get("error") or key not in r["metrics"]:
                continue
            s = r["metrics"][key]
            if s["median"] is None:
                continue
            names.append(r["arrangement"].replace("relayed-", "relayed\n"))
            meds.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
            cols.append(colors.get(r["arrangement"], "#999999"))
        ax.bar(range(len(meds)), meds, yerr=[lo, hi], color=cols, capsize=4)
        ax.set_xticks(range(len(meds)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


# ----------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny counts, a few seconds (for tests)")
    ap.add_argument("--full", action="store_true", help="longer and larger (same as BENCH_FULL=1)")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"), help="directory for latest.json/.txt/.png")
    ap.add_argument("--no-peer", action="store_true", help="skip the hyco-ws and hyco-https listener comparisons")
    ap.add_argument("--peer", action="store_true", help="run those comparisons in a smoke run too (for tests)")
    ap.add_argument("--only", nargs="*", help="run only these scenarios (names as in latest.json)")
    ap.add_argument("--arrangements", nargs="*", help="run only these arrangements (direct proxy relayed relayed-hyco-ws relayed-hyco-https)")
    ap.add_argument("--profile-relay", metavar="FILE", help="run the relay under cProfile, stats to FILE")
    ap.add_argument("--profile-server", metavar="FILE", help="run the server/listener under cProfile, stats to FILE")
    ap.add_argument("--profile-client", metavar="FILE",
                    help="run the load generator under cProfile, stats to FILE (its last run's)")
    ap.add_argument("--scale-connections", type=int, help="override the idle-connection count")
    ap.add_argument("--inspect", action="store_true",
                    help="put a traffic inspector on the relayed HTTP listener (compare with a run without)")
    ap.add_argument("--cluster", action="store_true", help="run the cluster arrangements in a smoke run too (quick and full always do)")
    ap.add_argument("--vary-heads", action="store_true",
                    help="every HTTP GET carries a fresh X-Request-Id header, so no two request heads are alike")
    ap.add_argument("--no-cluster", action="store_true", help="skip the cluster arrangements")
    args = ap.parse_args(argv)
    mode = "smoke" if args.smoke else "full" if (args.full or os.environ.get("BENCH_FULL") not in (None, "", "0")) else "quick"
    MODES[mode] = dict(MODES[mode])
    os.environ["BENCH_VARY_HEADS"] = "1" if args.vary_heads else "0"  # read by client_proc.py, which inherits it
    if args.scale_connections:
        MODES[mode]["scale_connections"] = args.scale_connections
    os.makedirs(args.out, exist_ok=True)
    machine = machine_info()
    print(f"txhyco benchmarks, mode {mode}: {machine['cores_logical']} cores, Python {machine['python']}, "
          f"Twisted {machine['versions']['twisted']}, Autobahn {machine['versions']['autobahn']}", flush=True)
    bench = Bench(mode, args.out, peer=not args.no_peer and (mode != "smoke" or args.peer), only=args.only,
                  profile={"relay": args.profile_relay, "server": args.profile_server, "client": args.profile_client}, arrangements=args.arrangements,
                  inspect=args.inspect, cluster=not args.no_cluster and (mode != "smoke" or args.cluster))
    if args.vary_heads:
        bench.notes.append("--vary-heads: every HTTP GET carried a fresh X-Request-Id header")
    wanted = 2 * MODES[mode]["scale_connections"] + 200
    if machine["nofile_limit"] < wanted:
        # A relay (and the proxy) holds two descriptors per idle relayed connection:
        # past the limit, Twisted closes the connections it accepts (EMFILE).
        bench.notes.append(f"open-file limit {machine['nofile_limit']} (ulimit -Hn) is below the {wanted} the relay needs "
                           f"for {MODES[mode]['scale_connections']} idle relayed connections: the last ones fail")
    if args.inspect:
        bench.notes.append("--inspect: a traffic inspector captured the relayed HTTP listener's exchanges (no page viewer)")
    t0 = time.monotonic()
    try:
        bench.start()
        bench.run()
    finally:
        bench.stop()
    elapsed = time.monotonic() - t0
    targets = compute_targets(bench.results, bench.m)
    comparisons = compare_http_peer(bench.results)
    text = table(bench.results, targets, machine, mode)
    if comparisons:
        text += "\n\nbeside Microsoft's hyco-https listener, same relay (no target)\n" + "\n".join(
            f"  {c['name']}: {fmt(c['value'])} (txhyco {fmt(c['txhyco'])}, hyco-https {fmt(c['hyco_https'])})" for c in comparisons)
    cluster_comparisons = compare_cluster(bench.results)
    if cluster_comparisons:
        text += "\n\nthe relay as a cluster (two relay processes sharing a redis-server), same run\n" + "\n".join(
            f"  {c['name']}: {fmt(c['value'])} (cluster {fmt(c['cluster'])}, single {fmt(c['single'])})" for c in cluster_comparisons)
    if bench.notes:
        text += "\n\nnotes:\n" + "\n".join("  " + n for n in bench.notes)
    if mode != "full":
        text += (f"\n\nmode {mode}: idle-connection scale measured with {bench.m['scale_connections']} connections; the "
                 f"10,000-connection relay RSS is projected from the per-connection growth (BENCH_FULL=1 measures 10,000).")
    text += f"\nelapsed {elapsed:.0f} s"
    print()
    print(text)
    doc = {"mode": mode, "inspect": args.inspect, "vary_heads": args.vary_heads, "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": elapsed, "machine": machine,
           "process_layout": {"orchestrator": "run.py (samples RSS/CPU with psutil; idle while measuring)",
                              "relay": "relay_proc.py (txhyco RelayService)",
                              "server": "server_proc.py (echo WebSocket + twisted.web; TCP and through the relay)",
                              "proxy": "proxy_proc.py (Twisted byte-forwarding TCP proxy)",
                              "hyco-ws": "node node_echo_listener.js (peer listener)" if bench.peer else None,
                              "hyco-https": "node node_http_listener.js (peer listener)" if bench.peer_http else None,
                              "cluster": ("redis-server; node-a, node-b: relay_proc.py as cluster nodes; server-a (echo-x, "
                                          "web-x) and server-a2 (echo-pair) on node A, server-b (echo-pair) on node B")
                                         if bench.cluster else None,
                              "client": "client_proc.py, one process per scenario × arrangement"},
           "params": bench.m, "notes": bench.notes, "results": bench.results, "targets": targets,
           "comparisons": comparisons, "cluster_comparisons": cluster_comparisons}
    with open(os.path.join(args.out, "latest.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, default=str)
    with open(os.path.join(args.out, "latest.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    problem = chart(bench.results, os.path.join(args.out, "latest.png"), f"txhyco benchmarks ({mode}) — median, bars min..max")
    if problem:
        print(problem)
    print(f"\nwrote {os.path.join(args.out, 'latest.json')}, latest.txt, latest.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
