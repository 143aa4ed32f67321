"""A cluster of TLS relays: the rendezvous address a node hands out is wss:// to its advertised name."""
from __future__ import annotations

import dataclasses

import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer

from tests.support.cluster import RedisServer, free_port, wait_until
from tests.test_websocket_factories import Client
from txhyco.relay.cluster.settings import cluster_settings
from txhyco.relay.config import RelayConfig
from txhyco.relay.service import RelayService
from txhyco.relay.tls import write_self_signed
from txhyco.websocket import RelayedServerFactory, connect_relay

KEY = "dGxzLWNsdXN0ZXItdGVzdC1rZXktbm90LXNlY3JldC0wMTIzNDU="


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


@pytest_twisted.inlineCallbacks
def test_wss_listener_on_one_node_sender_on_another(tmp_path):
    cert, key = write_self_signed(str(tmp_path / "tls"))  # for localhost and 127.0.0.1, shared by both nodes
    redis = yield RedisServer(str(tmp_path)).start()
    services = []
    try:
        for name in ("a", "b"):
            port = free_port()
            config = dataclasses.replace(
                RelayConfig.with_key(key=KEY),
                cluster=cluster_settings(redis=redis.url, advertise=f"127.0.0.1:{port}", node_id=name, ttl=3),
            )
            service = RelayService(config, f"tcp:{port}:interface=127.0.0.1", tls=(cert, key))
            service.startService()
            yield service.ready
            yield wait_until(lambda: service.cluster.link.up, 10, what="the node to reach Redis")
            services.append(service)
        a, b = services
        factory = RelayedServerFactory(a.connection_string().format(), path="secure", ca_file=cert)
        factory.protocol = Echo
        port = yield factory.listen()
        try:
            yield wait_until(lambda: (e := b.relay.registry.entities.get("secure")) is not None and len(e.remote) == 1, 10,
                             what="node b to know the listener on node a")
            sender = yield connect_relay(Client, b.connection_string().format(), path="secure", ca_file=cert)
            sender.sendMessage(b"over wss, across nodes", isBinary=True)
            assert (yield sender.messages.get()) == (b"over wss, across nodes", True)
            sender.sendClose(1000)
            yield sender.closed
            assert b.relay.metrics.bytes_to_listener[0] > 0 and a.relay.metrics.bytes_to_listener[0] == 0
        finally:
            yield port.stopListening()
    finally:
        for service in services:
            yield defer.maybeDeferred(service.stopService)
        yield redis.stop()
