"""A real HTTP CONNECT proxy for tests: Debian's tinyproxy on a free loopback port.

Its outgoing connections leave from :data:`PROXY_SOURCE` (tinyproxy's ``Bind``),
so a relay that records its peers can tell tunnelled connections (from that
address) from direct ones (from 127.0.0.1).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import pytest

TINYPROXY = "/usr/bin/tinyproxy"
#: The loopback address tinyproxy connects from (any 127/8 address is local on Linux).
PROXY_SOURCE = "127.0.0.5"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyProxy:
    """One tinyproxy process; :meth:`connects` reads which ``host:port`` it was asked to CONNECT to."""

    def __init__(self, directory: str, *, auth: tuple[str, str] | None = None, connect_ports=(), port: int | None = None) -> None:
        if not os.access(TINYPROXY, os.X_OK):
            pytest.skip(f"{TINYPROXY} is missing: make setup installs Debian's tinyproxy")
        self.directory = directory
        self.port = port or free_port()
        self.log_path = os.path.join(directory, "tinyproxy.log")
        self.auth = auth
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            f"Bind {PROXY_SOURCE}",
            "Allow 127.0.0.1",
            f'LogFile "{self.log_path}"',
            "LogLevel Connect",
            "Timeout 60",
            "MaxClients 200",
        ]
        # No ConnectPort line: CONNECT to any port (the relay's is a free one).
        lines += [f"ConnectPort {p}" for p in connect_ports]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        self.conf = os.path.join(directory, "tinyproxy.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.process = None

    @property
    def url(self) -> str:
        if self.auth:
            return f"http://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TinyProxy:
        self.process = subprocess.Popen(
            [TINYPROXY, "-d", "-c", self.conf],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.directory, "stderr"), "wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tinyproxy did not start; stderr: {open(os.path.join(self.directory, 'stderr')).read()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def connects(self) -> list[str]:
        """Every ``host:port`` tinyproxy was asked to CONNECT to, in order (refused ones included)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        return re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP/1\.[01]", text)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def record_peers(running_relay) -> list[str]:
    """The addresses every TCP connection to ``running_relay`` comes from, as they arrive."""
    peers: list[str] = []
    factory = running_relay.service.port.factory
    build = factory.buildProtocol

    def recording(addr):
        peers.append(addr.host)
        return build(addr)

    factory.buildProtocol = recording  # this relay's own factory only
    return peers
