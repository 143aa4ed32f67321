"""Prometheus metrics of the local relay (served by ``--metrics ENDPOINT``).

Low-rate events (listeners coming and going, requests, rejects) use
prometheus_client's metric objects. Byte counts change on every frame, so the
hot path adds to plain integers that a collector reads at scrape time.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily


class _ByteCollector:
    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics

    def collect(self):
        family = CounterMetricFamily(
            "hyco_relay_bytes", "Payload bytes relayed, by direction.", labels=["direction"]
        )
        family.add_metric(["sender_to_listener"], self._metrics.bytes_to_listener[0])
        family.add_metric(["listener_to_sender"], self._metrics.bytes_to_sender[0])
        yield family


class RelayMetrics:
    """The relay's metrics, in a registry of their own (several relays may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.listeners = Gauge(
            "hyco_relay_listeners", "Listener control channels connected.", ["hybrid_connection"], registry=r
        )
        self.connections = Gauge("hyco_relay_connections", "Relayed WebSocket connections open.", registry=r)
        self.connections_total = Counter(
            "hyco_relay_relayed_connections", "Relayed WebSocket connections accepted.", ["hybrid_connection"], registry=r
        )
        self.http_requests = Counter(
            "hyco_relay_http_requests", "HTTP requests answered, by status.", ["hybrid_connection", "status"], registry=r
        )
        self.rejects = Counter(
            "hyco_relay_rejects", "Connections or requests refused, by status.", ["status"], registry=r
        )
        self.auth_failures = Counter(
            "hyco_relay_auth_failures", "Requests refused for a missing, bad or insufficient token.", ["status"], registry=r
        )
        #: one-element lists: Forwarders add to them without a method call
        self.bytes_to_listener = [0]
        self.bytes_to_sender = [0]
        r.register(_ByteCollector(self))
