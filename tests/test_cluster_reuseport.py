"""N cluster nodes on one host sharing one public port with SO_REUSEPORT (``reuseport:``),
each also listening on the port it advertises (``--also-listen``)."""
from __future__ import annotations

import dataclasses

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString

from tests.support.cluster import RedisServer, free_port, wait_until
from tests.support.httpclient import http_request
from tests.support.rawlistener import RawListener, make_token
from txhyco.cli.common import CliError
from txhyco.cli.relay import relay_settings
from txhyco.relay.cluster.settings import cluster_settings
from txhyco.relay.config import RelayConfig
from txhyco.relay.service import RelayService
from txhyco.testing import RunningRelay

KEY = "cmV1c2Vwb3J0LXRlc3Qta2V5LW5vdC1zZWNyZXQtMDEyMzQ1Njc="


@pytest_twisted.inlineCallbacks
def test_two_nodes_share_one_public_port(tmp_path):
    redis = yield RedisServer(str(tmp_path)).start()
    public = free_port()
    services = []
    try:
        for name in ("left", "right"):
            own = free_port()
            config = dataclasses.replace(
                RelayConfig.with_key(key=KEY),
                cluster=cluster_settings(redis=redis.url, advertise=f"127.0.0.1:{own}", node_id=name, ttl=3),
            )
            service = RelayService(config, f"reuseport:{public}:interface=127.0.0.1", also_listen=(f"tcp:{own}:interface=127.0.0.1",))
            service.startService()
            yield service.ready
            services.append(service)
        for service in services:
            yield wait_until(lambda: service.cluster.link.up, 10, what="the nodes to reach Redis")
        shared = RunningRelay(services[0], services[0].connection_string())
        assert shared.port == public
        listener = yield RawListener(shared, "shared", respond=lambda r, body: (200, {}, b"ok")).start()
        try:
            def known_everywhere():
                return all(
                    (e := s.relay.registry.entities.get("shared")) is not None and len(e.listeners) + len(e.remote) == 1
                    for s in services
                )

            yield wait_until(known_everywhere, 10, what="both nodes to know the listener")
            # Whichever node the kernel hands each connection to, it is served.
            for _ in range(8):
                status, _, _, body, _ = yield http_request(public, "GET", "/shared", None, {"ServiceBusAuthorization": make_token(shared, "shared")})
                assert (status, body) == (200, b"ok")
        finally:
            yield listener.stop()
    finally:
        for service in services:
            yield defer.maybeDeferred(service.stopService)
        yield redis.stop()


@pytest.mark.parametrize("text", ["reuseport:", "reuseport:x", "reuseport:70000", "reuseport:1:backlog=0",
                                  "reuseport:1:colour=red", "reuseport:1:2"])
def test_bad_reuseport_strings(text):
    with pytest.raises(ValueError):
        serverFromString(reactor, text)


def test_also_listen_is_checked():
    assert relay_settings(key=KEY, also_listen=["tcp:9101:interface=127.0.0.1"]).also_listen == ("tcp:9101:interface=127.0.0.1",)
    with pytest.raises(CliError, match="--also-listen"):
        relay_settings(key=KEY, also_listen=["nonsense:1"])
