"""A three-node relay cluster of real processes: redis-server, three ``txhyco relay --cluster``
and haproxy (TCP mode) in front of them.

Microsoft's Node clients (hyco-ws, hyco-https) and txhyco's own listener and
sender, each with the listener on one node and the sender on another; 25
listeners across the nodes and the 26th refused; a node SIGKILLed: its
listener reconnects through haproxy to another node and serves again, and
senders elsewhere see only 404/502 meanwhile. One cluster for the module
(the SIGKILL test is last: it kills a node).
"""
from __future__ import annotations

import re
import urllib.request

import pytest
import pytest_twisted
import txredisapi
from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.interop import nodeclients as nc
from tests.support.cluster import Haproxy, NodeProcess, NodeView, RedisServer, free_port, sleep, wait_until
from tests.support.httpclient import http_request
from tests.support.rawlistener import RawListener, make_token
from tests.test_interop_relay import WS_SIZES, Fleet, big_payload, messages_spec
from txhyco.protocol.sas import Rights, SasRule

KEY = "bm9kZXMtdGVzdC1rZXktbm90LXNlY3JldC0wMTIzNDU2Nzg5YWI="
RULE = SasRule(name="RootManageSharedAccessKey", primary_key=KEY, rights=Rights.LISTEN | Rights.SEND | Rights.MANAGE)


class Cluster:
    def __init__(self, redis, nodes, haproxy) -> None:
        self.redis = redis
        self.nodes = nodes
        self.haproxy = haproxy
        self.views = [NodeView(f"127.0.0.1:{n.port}", RULE, n.port) for n in nodes]
        self.public = NodeView(f"127.0.0.1:{haproxy.port}", RULE, haproxy.port)

    def metrics(self, i: int) -> defer.Deferred:
        port = self.nodes[i].metrics_port
        return threads.deferToThread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())

    @defer.inlineCallbacks
    def cluster_count(self, i: int, path: str):
        text = yield self.metrics(i)
        found = re.search(r'hyco_relay_cluster_listeners\{hybrid_connection="%s",node="[^"]+"\} ([0-9.]+)' % re.escape(path), text)
        return int(float(found.group(1))) if found else 0

    @defer.inlineCallbacks
    def holder(self, path: str, alive):
        """The index of the node holding ``path``'s listener (from each node's own gauge)."""
        for i in alive:
            text = yield self.metrics(i)
            if re.search(r'hyco_relay_listeners\{hybrid_connection="%s",node="[^"]+"\} 1\.0' % re.escape(path), text):
                return i
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not nc.node_available():
        pytest.skip(f"Microsoft's Node relay clients are not usable: {nc.unavailable_reason()} (make setup)")
    workdir = str(tmp_path_factory.mktemp("cluster"))
    redis = RedisServer(workdir)
    nodes = [NodeProcess(redis.url, KEY, f"n{i}", metrics_port=free_port()) for i in (1, 2, 3)]
    haproxy = Haproxy(workdir, [n.port for n in nodes])

    @defer.inlineCallbacks
    def up():
        yield redis.start()
        yield defer.gatherResults([n.start() for n in nodes], consumeErrors=True)
        yield haproxy.start()
        return Cluster(redis, nodes, haproxy)

    running = pytest_twisted.blockon(up())
    yield running

    @defer.inlineCallbacks
    def down():
        yield haproxy.stop()
        yield defer.DeferredList([n.stop() for n in nodes], consumeErrors=True)
        yield redis.stop()

    pytest_twisted.blockon(down())


@pytest.fixture
def fleets(cluster):
    made = []

    def fleet(view):
        f = Fleet(view)
        made.append(f)
        return f

    yield fleet
    pytest_twisted.blockon(defer.DeferredList([f.stop_all() for f in made], consumeErrors=True))


@defer.inlineCallbacks
def known_everywhere(cluster, path: str, count: int, nodes=(0, 1, 2)):
    for i in nodes:
        yield wait_until(lambda: cluster.cluster_count(i, path).addCallback(lambda n: n == count), 15, step=0.2,
                         what=f"node {i + 1} to count {count} listener(s) of {path}")


def auth(view, path):
    return {"ServiceBusAuthorization": make_token(view, path)}


# --------------------------------------------------------------------------- Microsoft's clients


@pytest_twisted.inlineCallbacks
def test_hyco_ws_listener_on_one_node_sender_on_another(cluster, fleets):
    n1, n2, _ = cluster.views
    listener_fleet, sender_fleet = fleets(n1), fleets(n2)
    yield listener_fleet.listener("hyco_ws_listener", "ws-sizes")
    yield known_everywhere(cluster, "ws-sizes", 1, nodes=(1,))
    result = yield sender_fleet.send("ws-sizes", messages=messages_spec(WS_SIZES), sequential=True)
    assert result.exit_code == 0, result.describe()
    expected = [("text" if k == "t" else "binary", n) for k in ("t", "b") for n in WS_SIZES]
    assert [(e["type"], e["size"]) for e in result.of("echo")] == expected
    assert all(e["ok"] for e in result.of("echo"))
    items = [("t" if i % 3 else "b") + f":{(i * 37) % 300}" for i in range(300)]
    result = yield sender_fleet.send("ws-sizes", messages=",".join(items))
    assert result.exit_code == 0, result.describe()
    assert [e["index"] for e in result.of("echo")] == list(range(300))


@pytest_twisted.inlineCallbacks
def test_hyco_https_listener_on_one_node_http_on_another(cluster, fleets):
    n1, _, n3 = cluster.views
    yield fleets(n1).listener("hyco_https_listener", "https-x")
    yield known_everywhere(cluster, "https-x", 1, nodes=(2,))
    status, reason, _, body, _ = yield http_request(n3.port, "GET", "/https-x/hello", None, auth(n3, "https-x"))
    assert (status, reason, body) == (200, "OK", b"Hello from hyco-https")
    for n in (0, 100 * 1024, 2 << 20):
        payload = big_payload(n)
        status, _, _, body, _ = yield http_request(n3.port, "POST", "/https-x/echo", payload, auth(n3, "https-x"))
        assert status == 200 and body == payload, (n, status)


# --------------------------------------------------------------------------- txhyco's own listener and sender


def endpoint_string(view, path):
    import os

    os.environ["TXHYCO_CLUSTER_TEST_KEY"] = KEY
    return f"hyco:127.0.0.1\\:{view.port}:{path}:keyName={RULE.name}:keyEnv=TXHYCO_CLUSTER_TEST_KEY:tls=no"


class Upper(LineReceiver):
    MAX_LENGTH = 1 << 22

    def lineReceived(self, line):
        self.sendLine(line.upper())


class Collect(LineReceiver):
    MAX_LENGTH = 1 << 22

    def connectionMade(self):
        self.lines = defer.DeferredQueue()

    def lineReceived(self, line):
        self.lines.put(line)


class Sized(Resource):
    isLeaf = True

    def render(self, request):
        body = request.content.read()
        return b"%s %d %s" % (request.method, len(body), body[-8:])


@pytest_twisted.inlineCallbacks
def test_txhyco_listener_and_sender_on_different_nodes(cluster):
    n1, n2, n3 = cluster.views
    stream = yield serverFromString(reactor, endpoint_string(n1, "lines")).listen(Factory.forProtocol(Upper))
    site = yield serverFromString(reactor, endpoint_string(n2, "site")).listen(Site(Sized()))
    try:
        yield known_everywhere(cluster, "lines", 1, nodes=(1,))
        client = yield clientFromString(reactor, endpoint_string(n2, "lines")).connect(Factory.forProtocol(Collect))
        for line in (b"hello", b"x" * 15000, b"y" * (1 << 20)):
            client.sendLine(line)
            assert (yield client.lines.get()) == line.upper()
        client.transport.loseConnection()
        yield known_everywhere(cluster, "site", 1, nodes=(2,))
        for n in (0, 100 * 1024, 2 << 20):
            payload = big_payload(n)
            status, _, _, body, _ = yield http_request(n3.port, "POST", "/site/p", payload, auth(n3, "site"))
            assert (status, body) == (200, b"POST %d %s" % (n, payload[-8:]))
    finally:
        yield stream.stopListening()
        yield site.stopListening()


# --------------------------------------------------------------------------- limits


@pytest_twisted.inlineCallbacks
def test_25_listeners_across_nodes_and_the_26th_refused(cluster):
    listeners = []
    try:
        for i in range(25):
            listeners.append((yield RawListener(cluster.views[i % 3], "full").start()))
        yield known_everywhere(cluster, "full", 25)
        with pytest.raises(Exception) as refused:
            yield RawListener(cluster.views[1], "full").start()
        assert "403" in str(refused.value) or "maximum" in str(refused.value).lower(), refused.value
    finally:
        yield defer.DeferredList([listener.stop() for listener in listeners], consumeErrors=True)


# --------------------------------------------------------------------------- node death (last: kills a node)


@pytest_twisted.inlineCallbacks
def test_node_killed_listener_moves_through_haproxy(cluster):
    port = yield serverFromString(reactor, endpoint_string(cluster.public, "failover")).listen(Site(Sized()))
    try:
        yield known_everywhere(cluster, "failover", 1)
        victim = yield cluster.holder("failover", (0, 1, 2))
        assert victim is not None
        survivors = [i for i in (0, 1, 2) if i != victim]
        yield cluster.nodes[victim].kill()
        statuses = []

        @defer.inlineCallbacks
        def served():
            view = cluster.views[survivors[len(statuses) % 2]]
            status, _, _, body, _ = yield http_request(view.port, "GET", "/failover/x", None, auth(view, "failover"), timeout=10)
            statuses.append(status)
            return status == 200

        # The listener reconnects (haproxy sends it to a live node) and serves again.
        yield wait_until(served, 30, step=0.2, what="the listener to serve again after its node died")
        assert set(statuses) <= {200, 404, 502}, statuses
        # Once the TTL has passed, the dead node's listener is gone everywhere, Redis included.
        yield known_everywhere(cluster, "failover", 1, nodes=survivors)
        redis = yield txredisapi.Connection("127.0.0.1", cluster.redis.port, dbid=0, reconnect=False)
        try:
            yield wait_until(lambda: redis.hlen("txhyco:hc:failover").addCallback(lambda n: n == 1), 15, step=0.2,
                             what="the dead node's listener to leave Redis")
        finally:
            yield redis.disconnect()
        for _ in range(4):
            assert (yield served())
    finally:
        yield port.stopListening()
