"""The client process: one load generator for every scenario and every arrangement.

Usage: ``client_proc.py SCENARIO TARGET_JSON PARAMS_JSON`` (the relay key, if
needed, in ``$BENCH_HYCO_KEY``). ``TARGET_JSON`` says where to connect:

* WebSocket: ``{"url": "ws://127.0.0.1:P/"}`` (direct or proxy: plain
  Autobahn ``WebSocketClientFactory``) or ``{"relay_port": P, "path": "echo"}``
  (txhyco's sender, ``connect_relay``). The client protocol class is the same.
* HTTP: ``{"port": P, "prefix": "/web", "relay": true}``; with ``relay`` the
  request carries a ``ServiceBusAuthorization`` token, otherwise it is identical.

It prints ``{"event": "sample", ...}`` per repeat and ``{"event": "done"}``;
the scale scenario prints ``{"event": "holding", ...}`` and keeps its
connections open until stdin closes.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import h11  # noqa: E402
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol  # noqa: E402
from twisted.internet import defer, protocol  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402

now = time.perf_counter

#: Units of work done in this run, warm-up included (connections, messages,
#: requests or MiB, as the scenario's ``done`` event says): the orchestrator
#: divides each process's CPU seconds by it.
DONE = {"units": 0, "unit": None}


def count(n=1, unit: str = "") -> None:
    DONE["units"] += n
    DONE["unit"] = unit


# ----------------------------------------------------------------- WebSocket


class BenchClient(WebSocketClientProtocol):
    """Records open/close and hands each message to ``on_message``."""

    def __init__(self):
        super().__init__()
        self.opened = defer.Deferred()
        self.closed = defer.Deferred()
        self.on_message = None

    def onOpen(self):
        if not self.opened.called:
            self.opened.callback(self)

    def onMessage(self, payload, isBinary):
        if self.on_message is not None:
            self.on_message(payload)

    def onClose(self, wasClean, code, reason):
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"closed before open: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback(code)


class RelayedBenchClient(BenchClient):
    """A ``BenchClient`` for ``connect_relay``, which reports a failed opening itself: ``opened`` is nobody's to wait on."""

    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda _: None)


def ws_connector(reactor, target: dict):
    """A function returning a Deferred that fires with an open ``BenchClient``."""
    if "url" in target:
        url = target["url"]
        factory = WebSocketClientFactory(url)
        factory.protocol = BenchClient
        factory.setProtocolOptions(openHandshakeTimeout=60)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0]), timeout=60)

        @defer.inlineCallbacks
        def connect():
            proto = yield endpoint.connect(factory)
            yield proto.opened
            return proto

        return connect

    from txhyco.websocket import connect_relay

    conn = (
        f"Endpoint=sb://127.0.0.1:{target['relay_port']}/;SharedAccessKeyName={common.KEY_NAME};"
        f"SharedAccessKey={os.environ[common.KEY_ENV]};UseDevelopmentEmulator=true"
    )

    def connect():
        return connect_relay(RelayedBenchClient, connection_string=conn, path=target["path"])

    return connect


def sleep(reactor, seconds):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@defer.inlineCallbacks
def ws_latency(reactor, connect, params):
    """One message in flight: round-trip times, p50 and p99."""
    proto = yield connect()
    payload = os.urandom(params.get("size", 1024))
    waiter = [None]

    def got(_):
        count(1, "message")
        d, waiter[0] = waiter[0], None
        d.callback(now())

    proto.on_message = got

    def one():
        waiter[0] = defer.Deferred()
        t0 = now()
        proto.sendMessage(payload, True)
        return waiter[0].addCallback(lambda t1: t1 - t0)

    for _ in range(params["warmup"]):
        yield one()
    for r in range(params["repeats"]):
        rtts = []
        for _ in range(params["count"]):
            rtts.append((yield one()))
        common.emit({"event": "sample", "repeat": r, "p50_ms": common.percentile(rtts, 50) * 1e3,
                     "p99_ms": common.percentile(rtts, 99) * 1e3, "count": len(rtts)})
    proto.dropConnection()


@defer.inlineCallbacks
def ws_stream(reactor, connect, params):
    """``inflight`` messages of ``size`` bytes always outstanding; msg/s and MB/s of echoed payload."""
    proto = yield connect()
    size, inflight = params["size"], params["inflight"]
    payload = os.urandom(size)
    state = {"received": 0, "stop_at": None, "sent": 0, "done": None}

    def got(data):
        count(1, "message")
        state["received"] += 1
        if state["done"] is not None:
            if now() >= state["stop_at"] or (params.get("count") and state["received"] >= params["count"]):
                d, state["done"] = state["done"], None
                proto.sendMessage(payload, True)  # keep the pipeline full
                d.callback(now())
                return
        proto.sendMessage(payload, True)

    proto.on_message = got
    for _ in range(inflight):
        proto.sendMessage(payload, True)
    # Warm up, then measure windows back to back while the pipeline stays full.
    yield sleep(reactor, params["warmup_s"])
    for r in range(params["repeats"]):
        start_n, t0 = state["received"], now()
        state["stop_at"] = t0 + params["duration"]
        state["done"] = defer.Deferred()
        if params.get("count"):
            state["received"] = 0
            start_n = 0
        t1 = yield state["done"]
        n = state["received"] - start_n
        secs = t1 - t0
        common.emit({"event": "sample", "repeat": r, "msgs": n, "seconds": secs, "msg_per_s": n / secs,
                     "mb_per_s": n * size / secs / 1e6})
    proto.on_message = None
    proto.dropConnection()


@defer.inlineCallbacks
def ws_connsetup(reactor, connect, params):
    """``concurrency`` loops of open → close handshake → closed; connections per second."""
    for r in range(-1, params["repeats"]):  # repeat -1 is the warm-up
        duration = params["warmup_s"] if r < 0 else params["duration"]
        t0 = now()
        stop = t0 + duration
        conns = [0]
        errors = [0]

        @defer.inlineCallbacks
        def worker():
            while now() < stop:
                try:
                    proto = yield connect()
                    proto.sendClose(1000)
                    yield proto.closed
                    conns[0] += 1
                    count(1, "connection")
                except Exception:
                    errors[0] += 1
                    yield sleep(reactor, 0.01)

        yield defer.DeferredList([worker() for _ in range(params["concurrency"])])
        secs = now() - t0
        if r >= 0:
            common.emit({"event": "sample", "repeat": r, "conns": conns[0], "errors": errors[0],
                         "seconds": secs, "conn_per_s": conns[0] / secs})


@defer.inlineCallbacks
def ws_scale(reactor, connect, params):
    """Open N idle connections (``concurrency`` opening at a time), report, hold until stdin closes."""
    n, conc = params["connections"], params["concurrency"]
    held, errors = [], [0]
    t0 = now()
    it = iter(range(n))

    @defer.inlineCallbacks
    def worker():
        for _ in it:
            try:
                held.append((yield connect()))
                count(1, "connection")
            except Exception as e:
                errors[0] += 1
                if errors[0] <= 3:
                    sys.stderr.write(f"scale connect failed: {e!r}\n")

    yield defer.DeferredList([worker() for _ in range(conc)])
    secs = now() - t0
    common.emit({"event": "holding", "open": len(held), "errors": errors[0], "seconds": secs,
                 "open_per_s": len(held) / secs if secs else None})
    yield defer.Deferred()  # until stdin closes and the reactor stops


# ----------------------------------------------------------------- HTTP


#: ``run.py --vary-heads``: every request carries a fresh X-Request-Id.
VARY_HEADS = os.environ.get("BENCH_VARY_HEADS") == "1"
_request_ids = itertools.count(1)


class HttpClient(protocol.Protocol):
    """Keep-alive HTTP/1.1 client on h11: ``get(path)`` fires with (status, body bytes, seconds)."""

    def __init__(self, host: str, headers: list):
        self.host, self.headers = host, headers
        self.conn = h11.Connection(h11.CLIENT)
        self.pending = None
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def get(self, path: str) -> defer.Deferred:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        self.pending = [defer.Deferred(), now(), 0, None]
        headers = [("Host", self.host)] + self.headers
        if VARY_HEADS:  # a head unlike the last one, as a tracing client sends
            headers.append(("X-Request-Id", f"{next(_request_ids):016x}"))
        req = h11.Request(method="GET", target=path, headers=headers)
        self.transport.write(self.conn.send(req) + self.conn.send(h11.EndOfMessage()))
        return self.pending[0]

    def dataReceived(self, data):
        self.conn.receive_data(data)
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if isinstance(ev, h11.Response):
                self.pending[3] = ev.status_code
            elif isinstance(ev, h11.Data):
                self.pending[2] += len(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                d, t0, nbytes, status = self.pending
                self.pending = None
                d.callback((status, nbytes, now() - t0))
                return
            elif isinstance(ev, h11.ConnectionClosed):
                return

    def connectionLost(self, reason=None):
        if self.pending is not None:
            d, self.pending = self.pending[0], None
            d.errback(ConnectionError("connection lost mid-response"))
        self.lost.callback(None)


def http_headers(target: dict) -> list:
    """The sender's token header for the relayed arrangement; nothing otherwise."""
    if not target.get("relay"):
        return []
    from txhyco.address import HybridConnection

    hc = HybridConnection.from_args(
        connection_string=f"Endpoint=sb://127.0.0.1:{target['port']}/;SharedAccessKeyName={common.KEY_NAME};"
        f"SharedAccessKey={os.environ[common.KEY_ENV]};UseDevelopmentEmulator=true",
        path=target["prefix"].strip("/"),
    )
    return [("ServiceBusAuthorization", common.sign_token(hc.audience, os.environ[common.KEY_ENV]))]


def http_connect(reactor, target: dict):
    headers = http_headers(target)
    host = f"127.0.0.1:{target['port']}"
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", target["port"], timeout=60)
    return lambda: connectProtocol(endpoint, HttpClient(host, headers))


@defer.inlineCallbacks
def http_get(reactor, target, params):
    """``clients`` keep-alive connections each GETting the small resource in a loop; rps and p99."""
    connect = http_connect(reactor, target)
    path = target["prefix"].rstrip("/") + "/small"
    clients = yield defer.gatherResults([connect() for _ in range(params["clients"])])
    for r in range(-1, params["repeats"]):
        duration = params["warmup_s"] if r < 0 else params["duration"]
        t0 = now()
        stop = t0 + duration
        lat, bad = [], [0]

        @defer.inlineCallbacks
        def loop(c):
            while now() < stop:
                status, nbytes, secs = yield c.get(path)
                count(1, "request")
                if status != 200:
                    bad[0] += 1
                lat.append(secs)

        yield defer.gatherResults([loop(c) for c in clients])
        secs = now() - t0
        if r >= 0:
            common.emit({"event": "sample", "repeat": r, "requests": len(lat), "non_200": bad[0], "seconds": secs,
                         "rps": len(lat) / secs, "p50_ms": common.percentile(lat, 50) * 1e3,
                         "p99_ms": common.percentile(lat, 99) * 1e3})
    for c in clients:
        c.transport.loseConnection()


@defer.inlineCallbacks
def http_download(reactor, target, params):
    """GET ``size`` bytes on a fresh connection per repeat; MB/s."""
    connect = http_connect(reactor, target)
    size = params["size"]
    path = target["prefix"].rstrip("/") + f"/big?size={size}"
    for r in range(params["repeats"]):
        c = yield connect()
        status, nbytes, secs = yield c.get(path)
        count(nbytes / 2**20, "MiB")
        c.transport.loseConnection()
        yield c.lost
        common.emit({"event": "sample", "repeat": r, "status": status, "bytes": nbytes, "seconds": secs,
                     "mb_per_s": nbytes / secs / 1e6})


# ----------------------------------------------------------------- main

WS = {"ws_latency": ws_latency, "ws_stream": ws_stream, "ws_connsetup": ws_connsetup, "ws_scale": ws_scale}
HTTP = {"http_get": http_get, "http_download": http_download}


def main() -> None:
    common.raise_nofile()
    from twisted.internet import reactor

    scenario, target, params = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    status = [0]

    def run():
        if scenario in WS:
            d = WS[scenario](reactor, ws_connector(reactor, target), params)
        else:
            d = HTTP[scenario](reactor, target, params)

        def ok(_):
            t = os.times()
            common.emit({"event": "done", "cpu_s": t.user + t.system, **DONE})

        def failed(f):
            status[0] = 1
            common.emit({"event": "error", "error": f.getErrorMessage() or repr(f.value)})
            sys.stderr.write(f.getTraceback())

        d.addCallbacks(ok, failed)
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.callWhenRunning(run)
    common.exit_on_stdin_eof(reactor)
    reactor.run()
    sys.exit(status[0])


if __name__ == "__main__":
    main()
