#!/usr/bin/env python3
"""``make soak``: many relayed connections exchanging messages while listeners come and go.

Processes::

    soak.py (this driver: the senders, in one reactor; samples the relay with psutil)
    ├── python -m txhyco.cli relay      the relay under test, as `txhyco relay` runs it
    └── soak_listener.py ID             LISTENERS of them at a time; every CHURN seconds a
                                        new one starts and the oldest gets SIGTERM

Each of CONNECTIONS senders holds one relayed WebSocket to hybrid connection
``soak`` and keeps up to WINDOW numbered messages in flight, one every INTERVAL
seconds or so, of varied sizes (binary, and every fourth one text). A message
carries its sender, sequence number, size and CRC-32; its echo must come back
byte-identical, with its type, in order. A sender whose connection closes
reconnects (to whichever listener the relay picks) and carries on numbering.
A few HTTP loops POST bodies to ``soakweb/echo`` through the relay as well.

Every message ends up in exactly one of:

* **echoed**: came back identical and in order;
* **closed in flight**: its connection closed (with a close code) before the echo,
  split by whether the closing connection's listener had been told to stop;
* **lost**: its connection was still open and no echo came within the drain
  timeout at the end of the round (the goal: zero).

The run is split in ROUNDS; each ends with no new messages, a drain, every
connection closed with 1000, and a settle. The relay's open descriptors are
then compared with those it had with the same number of listeners and no
senders (they must be equal), and at the very end, with every listener gone,
with those it had right after starting. Its memory (RSS) after the last round
is compared with its RSS after the round before: the first rounds grow the
allocator's pools to their working size, and a leak shows as growth in every
round; the last may add at most ``--rss-tolerance-mib`` (the relay's memory
is "flat"). Growth from the first round to the last is reported too.

Usage::

    python benchmarks/soak.py                      # what `make soak` runs: 1,000 connections, 3 minutes
    python benchmarks/soak.py --connections 50 --duration 10 --rounds 2 --out /tmp/soak.json

Prints a summary and writes it as JSON (``--out``, default
``benchmarks/results/soak.json``). Exits 1 if a check failed.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import platform
import random
import re
import statistics
import sys
import time
import warnings
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from autobahn.twisted.websocket import WebSocketClientProtocol  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402

BENCH = common.BENCH_DIR
KEY_NAME = "RootManageSharedAccessKey"
WS_PATH = "soak"
HTTP_PATH = "soakweb"
MiB = 1024 * 1024

# Twisted warns that readBody cannot abort a non-persistent pool's transport; harmless here.
warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)

# ----------------------------------------------------------------- parameters


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1000, help="relayed WebSocket connections (default 1000)")
    p.add_argument("--duration", type=float, default=180.0, help="seconds of traffic, all rounds together (default 180)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each ends with every connection closed (default 3)")
    p.add_argument("--listeners", type=int, default=4, help="listener processes online at a time (default 4)")
    p.add_argument("--churn", type=float, default=15.0, help="seconds between listener replacements, 0 for none (default 15)")
    p.add_argument("--interval", type=float, default=2.0, help="mean seconds between a sender's messages (default 2)")
    p.add_argument("--window", type=int, default=2, help="messages a sender may have in flight (default 2)")
    p.add_argument("--sizes", default="16,256,2048,16384,131072", help="message sizes in bytes")
    p.add_argument("--weights", default="40,30,20,8,2", help="relative frequency of each size")
    p.add_argument("--http-loops", type=int, default=4, help="concurrent HTTP POST loops (default 4, 0 for none)")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the last echoes of a round")
    p.add_argument("--settle", type=float, default=3.0, help="seconds to let the relay settle before measuring it")
    p.add_argument("--settle-timeout", type=float, default=30.0, help="seconds to wait for descriptors to come back")
    p.add_argument("--rss-tolerance-mib", type=float, default=8.0,
                   help="allowed RSS growth over the last round, from the end of the one before (default 8 MiB)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=os.path.join(BENCH, "results", "soak.json"))
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.weights = [float(w) for w in args.weights.split(",")]
    if len(args.sizes) != len(args.weights):
        p.error("--sizes and --weights need the same number of entries")
    for name in ("connections", "rounds", "listeners", "window"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.duration <= 0 or args.interval <= 0:
        p.error("--duration and --interval must be positive")
    return args


# ----------------------------------------------------------------- messages

_RANDOM = random.Random(7)
BINARY_POOL = bytes(_RANDOM.getrandbits(8) for _ in range(300 * 1024))
TEXT_POOL = "".join(_RANDOM.choice("abcdefghijklmnopqrstuvwxyzÅéß€ 0123456789") for _ in range(300 * 1024)).encode()
HEADER = re.compile(rb"^(\d+):(\d+):(\d+):([0-9a-f]{8}):")


def make_message(sender: int, seq: int, size: int) -> tuple[bytes, bool]:
    """``sender:seq:size:crc32:`` then ``size`` bytes; every fourth message is text (valid UTF-8)."""
    is_text = seq % 4 == 3
    pool = TEXT_POOL if is_text else BINARY_POOL
    start = (seq * 7919 + sender * 104729) % (len(pool) - size - 8)
    if is_text:
        # Start and end on character boundaries: the pool's non-ASCII letters are 2-3 bytes.
        while pool[start] & 0xC0 == 0x80:
            start += 1
        end = start + size
        while end < len(pool) and pool[end] & 0xC0 == 0x80:
            end += 1
        body = pool[start:end]
    else:
        body = pool[start:start + size]
    header = b"%d:%d:%d:%08x:" % (sender, seq, len(body), zlib.crc32(body))
    return header + body, not is_text


def message_is_intact(payload: bytes) -> bool:
    """Its own header's size and checksum match its body."""
    m = HEADER.match(payload)
    if m is None:
        return False
    body = payload[m.end():]
    return len(body) == int(m.group(3)) and zlib.crc32(body) == int(m.group(4), 16)


# ----------------------------------------------------------------- processes


class Child(protocol.ProcessProtocol):
    """A child process: stdout lines, stderr kept (last 20 KB), ``ended`` fires with the exit code."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stderr = b""
        self._partial = b""
        self._waiters: list[tuple[str, defer.Deferred]] = []
        self.ended = defer.Deferred()
        self.pid = None

    def connectionMade(self):
        self.pid = self.transport.pid

    def outReceived(self, data):
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            self._notify(line)

    def errReceived(self, data):
        self.stderr = (self.stderr + data)[-20000:]
        for line in data.decode("utf-8", "replace").splitlines():
            self._notify(line)

    def _notify(self, line):
        for waiter in list(self._waiters):
            if waiter[0] in line:
                self._waiters.remove(waiter)
                waiter[1].callback(line)

    def wait_for(self, text: str, reactor, timeout: float = 60.0) -> defer.Deferred:
        d = defer.Deferred()
        self._waiters.append((text, d))
        d.addTimeout(timeout, reactor)
        return d

    def processEnded(self, reason):
        for _, d in self._waiters:
            if not d.called:
                d.errback(RuntimeError(f"{self.name} ended; stderr:\n{self.stderr.decode(errors='replace')[-3000:]}"))
        self._waiters.clear()
        self.ended.callback(reason.value.exitCode)

    def signal(self, name: str) -> None:
        if not self.ended.called:
            try:
                self.transport.signalProcess(name)
            except Exception:
                pass


def spawn(reactor, name: str, args: list[str], env: dict) -> Child:
    child = Child(name)
    full = dict(os.environ)
    full.update(env)
    full["PYTHONUNBUFFERED"] = "1"
    reactor.spawnProcess(child, sys.executable, [sys.executable, *args], env=full, path=common.ROOT)
    return child


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def sleep(reactor, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


# ----------------------------------------------------------------- senders


class SoakClient(WebSocketClientProtocol):
    """Hands everything to its :class:`Sender` (messages that arrive before it is attached wait)."""

    sender = None

    def onOpen(self):
        self.early = []

    def onMessage(self, payload, isBinary):
        if self.sender is None:
            self.early.append((payload, isBinary))
        else:
            self.sender.on_message(self, payload, isBinary)

    def onClose(self, wasClean, code, reason):
        if self.sender is not None:
            self.sender.on_close(self, code, reason)


class Tally:
    """Counts for the whole run (and a copy per round)."""

    def __init__(self) -> None:
        self.c = collections.Counter()
        self.by_code = collections.Counter()
        self.connect_failures = collections.Counter()
        self.connect_failure_examples: list[str] = []
        self.http_status = collections.Counter()
        self.http_errors = collections.Counter()

    def as_dict(self) -> dict:
        out = dict(sorted(self.c.items()))
        out["closures_by_code"] = {str(k): v for k, v in sorted(self.by_code.items(), key=lambda kv: str(kv[0]))}
        out["connect_failures"] = dict(self.connect_failures)
        out["connect_failure_examples"] = self.connect_failure_examples
        out["http_status"] = {str(k): v for k, v in sorted(self.http_status.items())}
        out["http_errors"] = dict(self.http_errors)
        return out


class Soak:
    """The senders, the listener pool and the measurements."""

    def __init__(self, reactor, args) -> None:
        self.reactor = reactor
        self.args = args
        self.rng = random.Random(args.seed)
        self.tally = Tally()
        self.running = False
        self.senders: list[Sender] = []
        self.listeners: list[tuple[str, Child]] = []
        self.stopping: set[str] = set()
        self.listener_events: list[dict] = []
        self.next_listener = 0
        self.relay: Child | None = None
        self.conn = ""
        self.relay_port = 0
        self.metrics_url = None
        self.peak = {"rss": 0, "fds": 0, "open_connections": 0}
        self.key = os.environ.get("HYCO_RELAY_KEY") or os.urandom(24).hex()

    # -- relay and listeners

    @defer.inlineCallbacks
    def start_relay(self):
        self.relay = spawn(self.reactor, "relay", ["-m", "txhyco.cli", "relay", "--listen", "tcp:0:interface=127.0.0.1",
                                                    "--key-name", KEY_NAME, "--metrics", "tcp:0:interface=127.0.0.1"],
                           {"HYCO_RELAY_KEY": self.key})
        metrics = self.relay.wait_for("Prometheus metrics at", self.reactor)
        self.conn = (yield self.relay.wait_for("Endpoint=", self.reactor)).strip()
        self.relay_port = int(re.search(r"sb://127\.0\.0\.1:(\d+)/", self.conn).group(1))
        line = yield metrics
        self.metrics_url = re.search(r"(http://\S+/metrics)", line).group(1)

    @defer.inlineCallbacks
    def start_listener(self):
        self.next_listener += 1
        lid = f"L{self.next_listener}"
        child = spawn(self.reactor, f"listener {lid}", [os.path.join(BENCH, "soak_listener.py"), lid],
                      {"HYCO_CONNECTION_STRING": self.conn, "HYCO_RELAY_KEY": self.key})
        t0 = time.monotonic()
        yield child.wait_for('"ready"', self.reactor)
        self.listeners.append((lid, child))
        self.listener_events.append({"event": "started", "id": lid, "at": self.elapsed(), "seconds": time.monotonic() - t0})

    @defer.inlineCallbacks
    def stop_listener(self, lid: str, child: Child, timeout: float = 60.0):
        """SIGTERM; SIGKILL if it has not exited within ``timeout`` (counted)."""
        self.listeners.remove((lid, child))
        self.stopping.add(lid)
        t0 = time.monotonic()
        child.signal("TERM")
        killer = self.reactor.callLater(timeout, child.signal, "KILL")
        code = yield child.ended
        if killer.active():
            killer.cancel()
        else:
            self.tally.c["listeners_killed_after_timeout"] += 1
        self.listener_events.append({"event": "stopped", "id": lid, "at": self.elapsed(),
                                     "seconds": time.monotonic() - t0, "exit": code})

    @defer.inlineCallbacks
    def churn_once(self):
        if not self.running:
            return
        yield self.start_listener()
        lid, child = self.listeners[0]
        self.tally.c["listeners_replaced"] += 1
        yield self.stop_listener(lid, child)

    # -- measurement

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t_start, 2)

    def sample(self):
        pid = self.relay.pid
        try:
            self.peak["rss"] = max(self.peak["rss"], rss_bytes(pid))
            self.peak["fds"] = max(self.peak["fds"], open_fds(pid))
        except Exception:
            pass
        held = sum(1 for s in self.senders if s.ready)
        self.peak["open_connections"] = max(self.peak["open_connections"], held)

    @defer.inlineCallbacks
    def settled_fds(self, want: int):
        """The relay's descriptor count once it equals ``want`` (or after the settle timeout) and the wait."""
        t0 = time.monotonic()
        yield sleep(self.reactor, self.args.settle)
        while True:
            n = open_fds(self.relay.pid)
            if n == want or time.monotonic() - t0 > self.args.settle_timeout:
                return n, round(time.monotonic() - t0, 2)
            yield sleep(self.reactor, 0.5)

    @defer.inlineCallbacks
    def scrape_gauges(self):
        from twisted.web.client import Agent, readBody

        response = yield Agent(self.reactor).request(b"GET", self.metrics_url.encode())
        body = (yield readBody(response)).decode()
        gauges = {}
        for line in body.splitlines():
            m = re.match(r"^(hyco_relay_connections|hyco_relay_listeners)(\{[^}]*\})? ([0-9.e+-]+)$", line)
            if m:
                gauges[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return gauges

    # -- HTTP

    @defer.inlineCallbacks
    def http_loop(self, index: int):
        from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
        from twisted.web.http_headers import Headers

        from txhyco.address import HybridConnection

        hc = HybridConnection.from_args(connection_string=self.conn, path=HTTP_PATH)
        token = common.sign_token(hc.audience, self.key, KEY_NAME)
        agent = Agent(self.reactor, pool=HTTPConnectionPool(self.reactor, persistent=False))
        url = f"http://127.0.0.1:{self.relay_port}/{HTTP_PATH}/echo".encode()
        n = 0
        while self.running:
            n += 1
            size = self.rng.choice([0, 100, 4000, 60000, 100000])
            body = BINARY_POOL[n % 1000:n % 1000 + size]
            self.tally.c["http_sent"] += 1
            response = None
            try:
                d = agent.request(b"POST", url, Headers({b"ServiceBusAuthorization": [token.encode()]}),
                                  FileBodyProducer(io.BytesIO(body)))
                d.addTimeout(90, self.reactor)
                response = yield d
                got = yield readBody(response).addTimeout(90, self.reactor)
            except defer.TimeoutError:
                self.tally.c["http_lost"] += 1
            except Exception as e:
                # No status at all is a failure (the relay owes every sender one);
                # a response cut after its head is what a listener stopping mid-response leaves.
                self.tally.c["http_unanswered" if response is None else "http_cut_mid_response"] += 1
                self.tally.http_errors[type(e).__name__] += 1
            else:
                self.tally.http_status[response.code] += 1
                if response.code == 200:
                    if got == body:
                        self.tally.c["http_echoed"] += 1
                    else:
                        self.tally.c["http_corrupt"] += 1
                else:
                    self.tally.c["http_refused"] += 1
            yield sleep(self.reactor, 0.1 + self.rng.random() * 0.2)

    # -- rounds

    @defer.inlineCallbacks
    def run_round(self, number: int, seconds: float):
        before = collections.Counter(self.tally.c)
        self.running = True
        for s in self.senders:
            s.start()
        http = [self.http_loop(i) for i in range(self.args.http_loops)]
        churn = churn_done = None
        if self.args.churn > 0:
            churn = task.LoopingCall(lambda: self.churn_once().addErrback(self.log_failure, "churn"))
            churn_done = churn.start(self.args.churn, now=False)
        held = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            yield sleep(self.reactor, 1.0)
            self.sample()
            held.append(sum(1 for s in self.senders if s.ready))
        self.running = False
        if churn is not None:
            churn.stop()
            yield churn_done
        # Let a replacement in progress finish: churn_once is a deferred chain of its own.
        while len(self.listeners) < self.args.listeners:
            yield self.start_listener()
        while len(self.listeners) > self.args.listeners:
            lid, child = self.listeners[0]
            yield self.stop_listener(lid, child)
        # Drain: no new messages; every sender waits for its outstanding echoes.
        yield defer.DeferredList([s.drain(self.args.drain_timeout) for s in self.senders])
        yield defer.DeferredList(http)
        yield defer.DeferredList([s.close() for s in self.senders])
        gauges = yield self.scrape_gauges()
        fds, waited = yield self.settled_fds(self.fds_listeners)
        rss = rss_bytes(self.relay.pid)
        delta = self.tally.c - before
        return {"round": number, "seconds": seconds, "connections_held_min": min(held, default=0),
                "connections_held_median": statistics.median(held) if held else 0,
                "connections_held_max": max(held, default=0), "messages_sent": delta["sent"],
                "echoed": delta["echoed"], "closed_in_flight": delta["closed_in_flight"], "lost": delta["lost"],
                "relay_fds": fds, "relay_fds_waited_s": waited, "relay_rss_mib": round(rss / MiB, 2),
                "relay_gauges": gauges}

    def log_failure(self, failure, what):
        self.tally.c[f"{what}_errors"] += 1
        sys.stderr.write(f"{what} failed: {failure.getTraceback()}\n")

    @defer.inlineCallbacks
    def run(self):
        a = self.args
        self.t_start = time.monotonic()
        load_before = os.getloadavg()
        yield self.start_relay()
        yield sleep(self.reactor, a.settle)
        fds_alone = open_fds(self.relay.pid)
        rss_alone = rss_bytes(self.relay.pid)
        for _ in range(a.listeners):
            yield self.start_listener()
        yield sleep(self.reactor, a.settle)
        self.fds_listeners = open_fds(self.relay.pid)
        rss_listeners = rss_bytes(self.relay.pid)
        self.senders = [Sender(self, i) for i in range(a.connections)]
        rounds = []
        for r in range(1, a.rounds + 1):
            rounds.append((yield self.run_round(r, a.duration / a.rounds)))
            print(f"round {r}: {json.dumps(rounds[-1])}", flush=True)
        # The end: every listener stops; the relay must be back to where it started.
        for lid, child in list(self.listeners):
            yield self.stop_listener(lid, child)
        fds_end, fds_end_waited = yield self.settled_fds(fds_alone)
        rss_end = rss_bytes(self.relay.pid)
        t = self.tally
        rss_growth = rounds[-1]["relay_rss_mib"] - rounds[0]["relay_rss_mib"]
        rss_last_round = rounds[-1]["relay_rss_mib"] - (rounds[-2]["relay_rss_mib"] if len(rounds) > 1 else rss_listeners / MiB)
        fds_rounds_ok = all(r["relay_fds"] == self.fds_listeners for r in rounds)
        gauges_ok = all(v == 0 for r in rounds for k, v in r["relay_gauges"].items() if k == "hyco_relay_connections")
        checks = {
            "no_message_lost": t.c["lost"] == 0,
            "no_message_corrupt_or_out_of_order": t.c["mismatched"] == 0,
            "closures_only_from_stopping_listeners": t.c["closed_in_flight_other"] == 0,
            "every_http_request_answered_intact": not (t.c["http_lost"] or t.c["http_unanswered"] or t.c["http_corrupt"]),
            "relay_fds_back_after_each_round": fds_rounds_ok,
            "relay_fds_back_to_baseline": fds_end == fds_alone,
            "relay_connection_gauge_zero": gauges_ok,
            "relay_rss_flat": rss_last_round <= a.rss_tolerance_mib,
        }
        return {
            "params": {k: v for k, v in vars(a).items() if k != "out"},
            "machine": {"cores_logical": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "connections": a.connections,
            "connections_held_peak": self.peak["open_connections"],
            "messages": {"sent": t.c["sent"], "echoed": t.c["echoed"], "closed_in_flight": t.c["closed_in_flight"],
                         "closed_in_flight_on_stopping_listener": t.c["closed_in_flight_stopping"],
                         "closed_in_flight_other": t.c["closed_in_flight_other"], "lost": t.c["lost"],
                         "mismatched": t.c["mismatched"], "bytes_echoed": t.c["bytes_echoed"]},
            "http": {"sent": t.c["http_sent"], "echoed": t.c["http_echoed"], "refused_with_status": t.c["http_refused"],
                     "cut_mid_response": t.c["http_cut_mid_response"], "unanswered": t.c["http_unanswered"],
                     "lost": t.c["http_lost"], "corrupt": t.c["http_corrupt"],
                     "status": {str(k): v for k, v in t.http_status.items()}, "errors": dict(t.http_errors)},
            "counts": t.as_dict(),
            "relay": {"fds_alone": fds_alone, "fds_with_listeners": self.fds_listeners, "fds_end": fds_end,
                      "fds_end_waited_s": fds_end_waited, "fds_peak": self.peak["fds"],
                      "rss_alone_mib": round(rss_alone / MiB, 2), "rss_with_listeners_mib": round(rss_listeners / MiB, 2),
                      "rss_peak_mib": round(self.peak["rss"] / MiB, 2), "rss_end_mib": round(rss_end / MiB, 2),
                      "rss_growth_first_to_last_round_mib": round(rss_growth, 2),
                      "rss_growth_last_round_mib": round(rss_last_round, 2)},
            "rounds": rounds,
            "listener_events": self.listener_events,
            "checks": checks,
            "ok": all(checks.values()),
            "seconds": round(time.monotonic() - self.t_start, 1),
        }

    @defer.inlineCallbacks
    def shutdown(self):
        for lid, child in list(self.listeners):
            child.signal("KILL")
        if self.relay is not None and not self.relay.ended.called:
            self.relay.signal("TERM")
            killer = self.reactor.callLater(20, self.relay.signal, "KILL")
            yield self.relay.ended
            if killer.active():
                killer.cancel()


class Sender:
    """One logical sender: a relayed WebSocket (reopened when it closes) and its numbered messages."""

    def __init__(self, soak: Soak, index: int) -> None:
        self.soak = soak
        self.index = index
        self.seq = 0
        self.outstanding: collections.deque = collections.deque()
        self.proto = None
        self.ready = False
        self.listener_id = None
        self.connecting = None
        self.timer = None
        self.drained = None
        #: set while this side closes its connection (the end of a round), and what fires when it has
        self.closing_ourselves = False
        self.closed = None

    @property
    def reactor(self):
        return self.soak.reactor

    def start(self):
        delay = self.soak.rng.random() * min(2.0, self.soak.args.interval)  # spread the opening handshakes
        self.reactor.callLater(delay, self.connect)

    def connect(self):
        from txhyco.websocket import connect_relay

        if not self.soak.running or self.connecting is not None or self.proto is not None:
            return
        self.connecting = connect_relay(SoakClient, connection_string=self.soak.conn, path=WS_PATH)
        self.connecting.addCallbacks(self.opened, self.connect_failed)

    def opened(self, proto):
        self.connecting = None
        self.proto = proto
        self.soak.tally.c["connections_opened"] += 1
        proto.sender = self
        for payload, is_binary in proto.early:
            self.on_message(proto, payload, is_binary)
        if not self.soak.running and self.proto is proto:
            self.closing_ourselves = True  # opened as the round ended; close() waits for it
            proto.sendClose(1000)

    def connect_failed(self, failure):
        self.connecting = None
        e = failure.value
        key = str(getattr(e, "status", None) or type(e).__name__)
        failures = self.soak.tally.connect_failures
        failures[key] += 1
        if failures[key] <= 2:  # what the relay said, in the summary
            self.soak.tally.connect_failure_examples.append(f"{key}: {getattr(e, 'reason', None) or e}")
        if self.soak.running:
            self.reactor.callLater(0.2 + self.soak.rng.random() * 0.8, self.connect)

    def schedule(self):
        if self.timer is None and self.soak.running and self.ready:
            gap = self.soak.args.interval * (0.5 + self.soak.rng.random())
            self.timer = self.reactor.callLater(gap, self.send)

    def send(self):
        self.timer = None
        if not (self.soak.running and self.ready) or self.proto.state != self.proto.STATE_OPEN:
            return  # a closing connection: on_close accounts for it and reconnects
        if len(self.outstanding) < self.soak.args.window:
            size = self.soak.rng.choices(self.soak.args.sizes, self.soak.args.weights)[0]
            payload, is_binary = make_message(self.index, self.seq, size)
            self.seq += 1
            self.outstanding.append((payload, is_binary))
            self.soak.tally.c["sent"] += 1
            self.proto.sendMessage(payload, isBinary=is_binary)
        self.schedule()

    def on_message(self, proto, payload, is_binary):
        if proto is not self.proto:
            return
        if self.listener_id is None:
            if not is_binary and payload.startswith(b"listener "):
                self.listener_id = payload[9:].decode()
                self.ready = True
                self.schedule()
            else:
                self.soak.tally.c["mismatched"] += 1
            return
        t = self.soak.tally.c
        if self.outstanding and self.outstanding[0] == (payload, is_binary):
            self.outstanding.popleft()
            t["echoed"] += 1
            t["bytes_echoed"] += len(payload)
        else:
            t["mismatched"] += 1
            t["mismatched_corrupt" if not message_is_intact(payload) else "mismatched_out_of_order"] += 1
            if (payload, is_binary) in self.outstanding:
                self.outstanding.remove((payload, is_binary))
        self.check_drained()

    def on_close(self, proto, code, reason):
        if proto is not self.proto:
            return
        t = self.soak.tally
        t.by_code[code] += 1
        if self.closing_ourselves:
            t.c["closures_requested_by_sender"] += 1
            if code != 1000:
                t.c["closures_requested_by_sender_unclean"] += 1
                if t.c["closures_requested_by_sender_unclean"] <= 3:
                    sys.stderr.write(f"sender {self.index}: our close ended {code} {reason!r} ({proto.wasClean}, "
                                     f"{proto.wasNotCleanReason!r})\n")
        stopping = self.listener_id in self.soak.stopping
        t.c["closures_on_stopping_listener" if stopping else "closures_other"] += 1
        if not stopping and not self.closing_ourselves:
            t.c["closures_other_unrequested"] += 1
            if t.c["closures_other_unrequested"] <= 5:
                sys.stderr.write(f"sender {self.index}: closed {code} {reason!r} on listener {self.listener_id}\n")
        n = len(self.outstanding)
        t.c["closed_in_flight"] += n
        t.c["closed_in_flight_stopping" if stopping else "closed_in_flight_other"] += n
        self.outstanding.clear()
        self.proto, self.ready, self.listener_id = None, False, None
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.check_drained()
        if self.closed is not None and not self.closed.called:
            self.closed.callback(None)
        if self.soak.running:
            self.reactor.callLater(0.1 + self.soak.rng.random() * 0.4, self.connect)

    def check_drained(self):
        if self.drained is not None and not self.drained.called and not self.outstanding:
            self.drained.callback(None)

    @defer.inlineCallbacks
    def drain(self, timeout: float):
        """Wait for the outstanding echoes; what is still missing on an open connection is lost."""
        if self.connecting is not None:
            yield defer.DeferredList([self.connecting])  # opened() closes it at once
        if self.outstanding:
            self.drained = defer.Deferred()
            self.drained.addTimeout(timeout, self.reactor)
            try:
                yield self.drained
            except defer.TimeoutError:
                pass
            self.drained = None
        if self.outstanding and self.proto is not None:
            self.soak.tally.c["lost"] += len(self.outstanding)
            sys.stderr.write(f"sender {self.index}: {len(self.outstanding)} lost on listener {self.listener_id}\n")
            self.outstanding.clear()

    @defer.inlineCallbacks
    def close(self):
        """Close with 1000 and wait (dropping it after 30 s, counted)."""
        if self.proto is None:
            return
        proto = self.proto
        self.closing_ourselves = True
        self.closed = defer.Deferred()
        proto.sendClose(1000)
        self.closed.addTimeout(30, self.reactor)
        try:
            yield self.closed
        except defer.TimeoutError:
            self.soak.tally.c["close_timeouts"] += 1
            proto.dropConnection(abort=True)
        self.closed, self.closing_ourselves = None, False


# ----------------------------------------------------------------- main


def summary_text(result: dict) -> str:
    m, h, r = result["messages"], result["http"], result["relay"]
    lines = [
        f"soak: {result['connections']} connections ({result['connections_held_peak']} held at peak), "
        f"{result['params']['duration']:.0f} s in {len(result['rounds'])} rounds, "
        f"{result['counts'].get('listeners_replaced', 0)} listener replacements, {result['seconds']} s in all",
        f"  messages: sent {m['sent']}, echoed {m['echoed']}, closed in flight {m['closed_in_flight']} "
        f"({m['closed_in_flight_on_stopping_listener']} on a stopping listener, {m['closed_in_flight_other']} other), "
        f"lost {m['lost']}, mismatched {m['mismatched']}",
        f"  closures by code: {result['counts']['closures_by_code']}; reconnect failures: {result['counts']['connect_failures']}"
        + "".join(f"\n    {example}" for example in result["counts"]["connect_failure_examples"]),
        f"  http: sent {h['sent']}, echoed {h['echoed']}, refused {h['refused_with_status']} {h['status']}, "
        f"cut mid-response {h['cut_mid_response']}, unanswered {h['unanswered']} {h['errors']}, "
        f"lost {h['lost']}, corrupt {h['corrupt']}",
        f"  relay fds: alone {r['fds_alone']}, with listeners {r['fds_with_listeners']}, peak {r['fds_peak']}, "
        f"after rounds {[x['relay_fds'] for x in result['rounds']]}, end {r['fds_end']}",
        f"  relay RSS MiB: alone {r['rss_alone_mib']}, with listeners {r['rss_with_listeners_mib']}, peak {r['rss_peak_mib']}, "
        f"after rounds {[x['relay_rss_mib'] for x in result['rounds']]}, end {r['rss_end_mib']} "
        f"(growth over the last round: {r['rss_growth_last_round_mib']} MiB, round 1 to last: "
        f"{r['rss_growth_first_to_last_round_mib']} MiB)",
        f"  load average before/after: {result['machine']['loadavg_before']} / {result['machine']['loadavg_after']}",
        "  checks: " + ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in result["checks"].items()),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    nofile = common.raise_nofile(max(65536, 4 * args.connections + 1024))
    if nofile < 3 * args.connections + 256:
        sys.stderr.write(f"open-file limit {nofile} is too low for {args.connections} connections\n")
        return 2
    from twisted.internet import reactor

    soak = Soak(reactor, args)
    outcome = {}

    @defer.inlineCallbacks
    def go():
        try:
            outcome["result"] = yield soak.run()
        except Exception:
            import traceback

            traceback.print_exc()
            outcome["error"] = True
        finally:
            yield soak.shutdown()
            reactor.stop()

    reactor.callWhenRunning(go)
    reactor.run()
    result = outcome.get("result")
    if result is None:
        return 1
    print(summary_text(result), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
