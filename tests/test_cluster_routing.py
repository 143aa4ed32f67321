"""The relay as a cluster, in-process: three nodes sharing a real redis-server.

Listeners on one node, senders on another: the command crosses through
Redis, the rendezvous and the data stay on the sender's node. One module-wide
cluster (redis-server and three relays in this process) keeps the wall time
small; each test uses its own hybrid connection names.
"""
from __future__ import annotations

import dataclasses
import json
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from tests.support.cluster import RedisServer, free_port, sleep, wait_until
from tests.support.httpclient import http_request
from tests.support.rawlistener import RawListener, make_token
from tests.support.wsclient import HandshakeFailed, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.relay.cluster.settings import cluster_settings
from txhyco.relay.config import Limits, RelayConfig
from txhyco.relay.service import RelayService
from txhyco.testing import RunningRelay

KEY = "Y2x1c3Rlci10ZXN0LWtleS1ub3Qtc2VjcmV0LTAxMjM0NTY3ODk="


def node_config(redis_url: str, port: int, node_id: str, **limits) -> RelayConfig:
    base = RelayConfig.with_key(key=KEY)
    settings = cluster_settings(redis=redis_url, advertise=f"127.0.0.1:{port}", node_id=node_id, ttl=3)
    return dataclasses.replace(base, cluster=settings, limits=Limits(**limits))


@defer.inlineCallbacks
def start_node(redis_url: str, node_id: str, **limits):
    port = free_port()
    service = RelayService(
        node_config(redis_url, port, node_id, **limits),
        f"tcp:{port}:interface=127.0.0.1",
        metrics_endpoint="tcp:0:interface=127.0.0.1",
    )
    service.startService()
    yield service.ready
    yield wait_until(lambda: service.cluster.link.up, 10, what=f"{node_id} to reach Redis")
    return RunningRelay(service, service.connection_string())


class Cluster:
    def __init__(self, redis, nodes) -> None:
        self.redis = redis
        self.nodes = nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("redis"))

    @defer.inlineCallbacks
    def up():
        redis = yield RedisServer(workdir).start()
        nodes = []
        for i in range(3):
            nodes.append((yield start_node(redis.url, f"n{i + 1}", max_listeners=5)))
        return Cluster(redis, nodes)

    running = pytest_twisted.blockon(up())
    yield running

    @defer.inlineCallbacks
    def down():
        for node in running.nodes:
            yield node.stop()
        yield running.redis.stop()

    pytest_twisted.blockon(down())


def knows(node, path: str, count: int) -> bool:
    entity = node.relay.registry.entities.get(path)
    if entity is None:
        return count == 0
    return len(entity.listeners) + len(entity.remote) == count


@defer.inlineCallbacks
def everyone_knows(cluster, path: str, count: int):
    for node in cluster.nodes:
        yield wait_until(lambda: knows(node, path, count), 10, what=f"{path} to have {count} listener(s) everywhere")


def in_redis(node, path: str):
    """Deferred[bool]: whether Redis holds one listener of ``path`` (False while unreachable)."""
    d = node.service.cluster.link.execute("HLEN", "txhyco:hc:" + path)
    return d.addCallbacks(lambda n: n == 1, lambda _: False)


def sender_url(node, path: str) -> str:
    return connect_url(Namespace.parse(node.host, secure=False), path)


@pytest_twisted.inlineCallbacks
def test_websocket_sender_on_another_node_reaches_listener(cluster):
    a, b, _ = cluster.nodes
    listener = yield RawListener(a, "wsx").start()
    try:
        yield everyone_knows(cluster, "wsx", 1)
        sender = yield ws_connect(sender_url(b, "wsx"), headers={"ServiceBusAuthorization": make_token(b, "wsx")})
        for payload in (b"", b"x", bytes(range(256)) * 600):
            sender.sendMessage(payload, isBinary=True)
            assert (yield sender.messages.get()) == (payload, True)
        sender.sendClose(1000)
        yield sender.closed
        # The accept named the sender's node: the data stayed there.
        address = listener.accepts[0]["address"]
        assert address.startswith(f"ws://{b.host}/")
        assert b.relay.metrics.bytes_to_listener[0] > 0 and a.relay.metrics.bytes_to_listener[0] == 0
        # A rendezvous address works once, and only on the node that issued it.
        for url in (address, address.replace(b.host, a.host)):
            with pytest.raises(HandshakeFailed) as refused:
                yield ws_connect(url)
            assert refused.value.status == 403
    finally:
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_http_sender_on_another_node_gets_address_only_request(cluster):
    a, _, c = cluster.nodes
    listener = yield RawListener(a, "webx", respond=lambda r, body: (200, {"X-Len": str(len(body))}, body[::-1])).start()
    try:
        yield everyone_knows(cluster, "webx", 1)
        for size in (0, 100, 100 * 1024):
            body = bytes(i % 251 for i in range(size))
            status, _, headers, got, _ = yield http_request(c.port, "POST", "/webx/p", body, {"ServiceBusAuthorization": make_token(c, "webx")})
            assert (status, got, headers["X-Len"]) == (200, body[::-1], str(size))
        # Address-only: the listener came to the sender's node for each request.
        assert all(request["address"].startswith(f"ws://{c.host}/") for request, _ in listener.requests)
    finally:
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_allowed_and_disallowed_listeners_across_nodes(cluster):
    a, b, c = cluster.nodes
    answer = lambda name: (lambda r, body: (200, {}, name))  # noqa: E731
    on_a = yield RawListener(a, "pick", tracking_id="left", respond=answer(b"left")).start()
    on_c = yield RawListener(c, "pick", tracking_id="right", respond=answer(b"right")).start()
    try:
        yield everyone_knows(cluster, "pick", 2)
        auth = {"ServiceBusAuthorization": make_token(b, "pick")}
        for headers, expected in (({"Microsoft-Relay-AllowedListeners": "right"}, b"right"),
                                  ({"Microsoft-Relay-DisallowedListeners": "right"}, b"left")):
            for _ in range(6):
                status, _, _, body, _ = yield http_request(b.port, "GET", "/pick", None, {**auth, **headers})
                assert (status, body) == (200, expected)
        status, _, _, body, _ = yield http_request(b.port, "GET", "/pick", None, {**auth, "Microsoft-Relay-AllowedListeners": "nobody"})
        assert status == 404 and b"AllowedListeners" in body
    finally:
        yield on_a.stop()
        yield on_c.stop()


@pytest_twisted.inlineCallbacks
def test_max_listeners_counts_across_nodes(cluster):
    listeners = []
    try:
        for i in range(5):
            listeners.append((yield RawListener(cluster.nodes[i % 3], "cap").start()))
        yield everyone_knows(cluster, "cap", 5)
        with pytest.raises(Exception) as refused:
            yield RawListener(cluster.nodes[2], "cap").start()
        assert "403" in str(refused.value) or "maximum" in str(refused.value).lower()
    finally:
        for listener in listeners:
            yield listener.stop()
    yield everyone_knows(cluster, "cap", 0)


@pytest_twisted.inlineCallbacks
def test_metrics_carry_node_id_and_cluster_counts(cluster):
    a, b, _ = cluster.nodes
    listener = yield RawListener(a, "metered").start()
    try:
        yield everyone_knows(cluster, "metered", 1)
        port = b.service.metrics_port.getHost().port
        text = yield threads.deferToThread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
        assert 'hyco_relay_cluster_listeners{hybrid_connection="metered",node="n2"} 1.0' in text
        assert 'hyco_relay_cluster_redis_up{node="n2"} 1.0' in text
        assert 'node="n2"' in text.split("hyco_relay_rejects", 1)[1] or "hyco_relay_rejects" in text
    finally:
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_garbage_on_a_nodes_channels_is_ignored(cluster):
    """Redis is shared infrastructure: whatever a stray publisher sends, the node keeps routing."""
    from txhyco.relay.cluster import wire
    from txhyco.relay.cluster.store import events_channel, node_channel

    a, b, _ = cluster.nodes
    listener = yield RawListener(a, "junk", respond=lambda r, body: (200, {}, b"fine")).start()
    try:
        yield everyone_knows(cluster, "junk", 1)
        node_a = a.service.cluster
        slot = next(iter(node_a.slots))
        garbage = [
            b"\xff\xfe", "not json", "[1,2]", '{"t":"command"}', '{"t":"gone","ref":"x","status":"404","why":"w"}',
            wire.encode(wire.ForwardedCommand(slot, "junk", "nobody/0", "ref", "{not a command")),
            wire.encode(wire.ForwardedCommand(slot, "junk", "nobody/0", "ref", '{"request":{"address":"wss://h/$hc/junk","id":"1","requestTarget":"/","method":"GET"}}')),
            wire.encode(wire.ForwardedCommand(slot, "junk", "nobody/0", "ref", '{"renewToken":{"token":"x"}}')),
            wire.encode(wire.ForwardedCommand("no-such-slot", "junk", "nobody/0", "ref", '{"accept":{"address":"wss://h/x","id":"1","connectHeaders":{}}}')),
            wire.encode(wire.Gone("no-such-ref", 404, "nothing waits for this")),
            wire.encode(wire.ListenerEvent(True, "junk", "no-bar-in-field", "x")),
        ]
        for message in garbage:
            yield b.service.cluster.link.execute("PUBLISH", node_channel(0, node_a.instance), message)
            yield b.service.cluster.link.execute("PUBLISH", events_channel(0), message)
        yield sleep(0.2)
        status, _, _, body, _ = yield http_request(b.port, "GET", "/junk", None, {"ServiceBusAuthorization": make_token(b, "junk")})
        assert (status, body) == (200, b"fine")
        assert len(listener.requests) == 1  # only the real one reached the listener
        assert knows(a, "junk", 1) and knows(b, "junk", 1)
    finally:
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_redis_lost_and_restarted_empty(cluster):
    """Without Redis a node serves its own listeners and refuses others with 503 and why;
    a restarted (empty) Redis is refilled by the nodes and routing across nodes heals.
    Last in this module: it restarts the module's redis-server."""
    a, b, _ = cluster.nodes
    respond = lambda r, body: (200, {}, b"from " + r["requestTarget"].encode())  # noqa: E731
    mine = yield RawListener(b, "mine", respond=respond).start()
    theirs = yield RawListener(a, "theirs", respond=respond).start()
    try:
        yield everyone_knows(cluster, "theirs", 1)
        yield cluster.redis.kill()
        for node in cluster.nodes:
            yield wait_until(lambda: not node.service.cluster.link.up, 10, what="nodes to notice Redis is gone")
        status, _, _, body, _ = yield http_request(b.port, "GET", "/mine/x", None, {"ServiceBusAuthorization": make_token(b, "mine")})
        assert (status, body) == (200, b"from /mine/x")
        status, reason, _, body, _ = yield http_request(b.port, "GET", "/theirs/x", None, {"ServiceBusAuthorization": make_token(b, "theirs")})
        assert status == 503 and b"Redis" in body, (status, reason, body)
        # A listener arriving meanwhile is served locally, and published later.
        late = yield RawListener(b, "late", respond=respond).start()
        yield cluster.redis.start()  # same port, no data
        for name in ("theirs", "late", "mine"):
            # The nodes write their listeners into the new Redis themselves.
            yield wait_until(lambda: in_redis(b, name), 10, what=f"{name} to be back in Redis")
        yield everyone_knows(cluster, "theirs", 1)
        yield everyone_knows(cluster, "late", 1)
        status, _, _, body, _ = yield http_request(b.port, "GET", "/theirs/y", None, {"ServiceBusAuthorization": make_token(b, "theirs")})
        assert (status, body) == (200, b"from /theirs/y")
        status, _, _, body, _ = yield http_request(a.port, "GET", "/late/z", None, {"ServiceBusAuthorization": make_token(a, "late")})
        assert (status, body) == (200, b"from /late/z")
        yield late.stop()
    finally:
        yield mine.stop()
        yield theirs.stop()
