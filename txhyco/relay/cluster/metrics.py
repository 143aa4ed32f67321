"""A cluster node's Prometheus metrics: its node id on every sample, and cluster-wide counts.

:class:`NodeLabelledRegistry` stands in for the relay's registry at
``/metrics``: each metric family it yields carries a ``node`` label, so the
series of several nodes scraped into one Prometheus stay apart. The node adds
``hyco_relay_cluster_listeners`` (listeners per hybrid connection across the
cluster, as this node knows them: the same figure from any node) and
``hyco_relay_cluster_redis_up``.
"""
from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric


class ClusterCollector:
    def __init__(self, node) -> None:
        self.node = node

    def collect(self):
        listeners = GaugeMetricFamily(
            "hyco_relay_cluster_listeners",
            "Listener control channels per hybrid connection across the relay cluster.",
            labels=["hybrid_connection"],
        )
        for name, count in sorted(self.node.remote_counts().items()):
            listeners.add_metric([name], count)
        yield listeners
        yield GaugeMetricFamily("hyco_relay_cluster_redis_up", "1 while this node reaches the cluster's Redis.", value=1 if self.node.link.up else 0)


class NodeLabelledRegistry:
    """A read-only view of a CollectorRegistry whose samples all carry ``node="<id>"``."""

    def __init__(self, registry, node_id: str) -> None:
        self.registry = registry
        self.node_id = node_id

    def collect(self):
        for family in self.registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, "node": self.node_id}) for sample in family.samples
            ]
            yield labelled

    def restricted_registry(self, names):
        return self  # prometheus_client asks for this when a scrape names series; all are served
