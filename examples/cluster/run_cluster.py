#!/usr/bin/env python3
"""A txhyco relay cluster on one machine: Redis, three relay nodes and haproxy in front.

    python examples/cluster/run_cluster.py

starts redis-server on 127.0.0.1:6390 (no persistence), three ``txhyco relay``
nodes on 127.0.0.1:9101..9103 sharing one key and that Redis, and haproxy on
127.0.0.1:9090 with ``haproxy.cfg`` beside this script. It prints the
connection string for the public port, then ``cluster ready``, and runs until
Ctrl-C (or SIGTERM), which stops everything. ``--public-port``,
``--redis-port`` and ``--node-ports`` pick other ports (the haproxy
configuration is rewritten to match, in a temporary directory).

Needs Debian's redis-server and haproxy (``make cluster-tools``) and txhyco
installed (``make setup``). Every node runs with the same key, from
``$HYCO_RELAY_KEY`` or made fresh for this run; it reaches the nodes on their
standard input, never on a command line.
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:g} s")


def haproxy_config(public: int, nodes: list[int]) -> str:
    """haproxy.cfg with its ports replaced by these."""
    with open(os.path.join(HERE, "haproxy.cfg")) as f:
        text = f.read()
    text = text.replace("bind 127.0.0.1:9090", f"bind 127.0.0.1:{public}")
    servers = "\n".join(f"    server node{i} 127.0.0.1:{p} check inter 500 fall 1 rise 2" for i, p in enumerate(nodes, 1))
    return re.sub(r"(    server node\d .*\n?)+", servers + "\n", text)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run Redis, three txhyco relay nodes and haproxy on this machine.")
    parser.add_argument("--public-port", type=int, default=9090)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--node-ports", default="9101,9102,9103", help="comma-separated, one per node")
    args = parser.parse_args()
    node_ports = [int(p) for p in args.node_ports.split(",")]
    for tool in ("redis-server", "haproxy"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: install Debian's {tool} (make cluster-tools).")
    key = os.environ.get("HYCO_RELAY_KEY") or base64.b64encode(os.urandom(32)).decode()
    workdir = tempfile.mkdtemp(prefix="txhyco-cluster-")
    procs: list[subprocess.Popen] = []

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(args.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )
        procs.append(redis)
        wait_port(args.redis_port, redis, "redis-server")
        redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("HYCO_RELAY_KEY", None)
        for i, port in enumerate(node_ports, 1):
            node = subprocess.Popen(
                [sys.executable, "-m", "txhyco", "relay", "--listen", f"tcp:{port}:interface=127.0.0.1", "--key-file", "-",
                 "--cluster", redis_url, "--advertise", f"127.0.0.1:{port}", "--node-id", f"node{i}"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
            )
            node.stdin.write(key.encode() + b"\n")
            node.stdin.close()
            procs.append(node)
        for i, (port, node) in enumerate(zip(node_ports, procs[1:]), 1):
            wait_port(port, node, f"relay node{i}")
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(haproxy_config(args.public_port, node_ports))
        haproxy_bin = shutil.which("haproxy") or "/usr/sbin/haproxy"
        haproxy = subprocess.Popen([haproxy_bin, "-db", "-f", config], stdout=subprocess.DEVNULL)
        procs.append(haproxy)
        wait_port(args.public_port, haproxy, "haproxy")
        print(f"Endpoint=sb://127.0.0.1:{args.public_port}/;SharedAccessKeyName=RootManageSharedAccessKey;"
              f"SharedAccessKey={key};UseDevelopmentEmulator=true", flush=True)
        print(f"cluster ready: {len(node_ports)} nodes behind 127.0.0.1:{args.public_port}, Redis at {redis_url}", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a process of the cluster exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
