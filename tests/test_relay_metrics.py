"""Prometheus metrics at /metrics: listeners, relayed connections, HTTP statuses, bytes, refusals."""
from __future__ import annotations

import http.client
import re

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support.rawlistener import RawListener, make_token
from tests.support.wsclient import HandshakeFailed, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url
from txhyco.testing import start_relay


@pytest.fixture
def metered():
    running = pytest_twisted.blockon(start_relay(metrics_endpoint="tcp:0:interface=127.0.0.1"))
    yield running
    pytest_twisted.blockon(running.stop())


def get(port: int, target: str, headers=None):
    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        content_type = resp.getheader("Content-Type", "")
        conn.close()
        return resp.status, content_type, body.decode()
    return threads.deferToThread(run)


@pytest_twisted.inlineCallbacks
def scrape(relay) -> dict[str, float]:
    """/metrics parsed into {'name{labels}': value}."""
    status, content_type, text = yield get(relay.service.metrics_port.getHost().port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest_twisted.inlineCallbacks
def test_metrics_follow_traffic(metered):
    before = yield scrape(metered)
    assert before['hyco_relay_bytes_total{direction="sender_to_listener"}'] == 0
    assert not any(k.startswith("hyco_relay_listeners{") for k in before)

    listener = yield RawListener(metered, "m").start()
    after_listen = yield scrape(metered)
    assert after_listen['hyco_relay_listeners{hybrid_connection="m"}'] == 1

    url = connect_url(Namespace.parse(metered.host, secure=False), "m")
    sender = yield ws_connect(url, headers={"ServiceBusAuthorization": make_token(metered, "m")})
    sender.sendMessage(b"x" * 1000, isBinary=True)
    assert (yield sender.messages.get()) == (b"x" * 1000, True)
    status, _, body = yield get(metered.port, "/m/hello", {"ServiceBusAuthorization": make_token(metered, "m")})
    assert status == 200 and body == "hello "
    with pytest.raises(HandshakeFailed):  # a bad token: an auth failure and a reject
        yield ws_connect(url, headers={"ServiceBusAuthorization": "SharedAccessSignature sr=x&sig=y&se=1&skn=z"})

    now = yield scrape(metered)
    assert now['hyco_relay_relayed_connections_total{hybrid_connection="m"}'] == 1
    assert now["hyco_relay_connections"] == 1
    assert now['hyco_relay_http_requests_total{hybrid_connection="m",status="200"}'] == 1
    assert now['hyco_relay_bytes_total{direction="sender_to_listener"}'] >= 1000
    assert now['hyco_relay_bytes_total{direction="listener_to_sender"}'] >= 1000
    assert now['hyco_relay_auth_failures_total{status="401"}'] == 1
    assert now['hyco_relay_rejects_total{status="401"}'] >= 1

    sender.sendClose(1000)
    yield sender.closed
    yield listener.stop()
    for _ in range(50):  # the relay notices the closes a moment later
        final = yield scrape(metered)
        if final['hyco_relay_listeners{hybrid_connection="m"}'] == 0 and final["hyco_relay_connections"] == 0:
            break
    assert final['hyco_relay_listeners{hybrid_connection="m"}'] == 0
    assert final["hyco_relay_connections"] == 0


@pytest_twisted.inlineCallbacks
def test_only_metrics_is_served(metered):
    status, _, _ = yield get(metered.service.metrics_port.getHost().port, "/")
    assert status == 404


@pytest_twisted.inlineCallbacks
def test_metrics_port_closes_with_the_relay():
    running = yield start_relay(metrics_endpoint="tcp:0:interface=127.0.0.1")
    port = running.service.metrics_port.getHost().port
    yield running.stop()
    with pytest.raises(OSError):
        yield get(port, "/metrics")


@pytest_twisted.inlineCallbacks
def test_relays_in_one_process_have_separate_registries(metered):
    other = yield start_relay()
    try:
        assert other.relay.metrics.registry is not metered.relay.metrics.registry
    finally:
        yield other.stop()


def test_metric_names_are_prometheus_names(metered):
    from prometheus_client.exposition import generate_latest

    text = generate_latest(metered.relay.metrics.registry).decode()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"hyco_relay_[a-z_]+(\{.*\})? \S+$", line), line
