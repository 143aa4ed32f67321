"""examples/cluster/run_cluster.py as a user runs it: Redis, three nodes, haproxy; then traffic."""
from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.cluster import HAPROXY, REDIS_SERVER, free_port, require, wait_until
from tests.support.httpclient import http_request
from tests.support.procs import spawn
from txhyco.protocol.connection_string import ConnectionString


class Hello(Resource):
    isLeaf = True

    def render(self, request):
        return b"hello from behind the cluster"


@pytest_twisted.inlineCallbacks
def test_example_cluster_serves_across_nodes():
    require(REDIS_SERVER, "redis-server")
    require(HAPROXY, "haproxy")
    public, redis_port, nodes = free_port(), free_port(), [free_port() for _ in range(3)]
    script = spawn(["examples/cluster/run_cluster.py", "--public-port", str(public), "--redis-port", str(redis_port),
                    "--node-ports", ",".join(map(str, nodes))])
    try:
        line = yield script.wait_for("Endpoint=sb://", 60)
        yield script.wait_for("cluster ready", 30)
        cs = ConnectionString.parse(line.strip())
        assert f"127.0.0.1:{public}" in cs.endpoint
        import os

        os.environ["TXHYCO_EXAMPLE_CLUSTER_KEY"] = cs.shared_access_key
        endpoint = f"hyco:127.0.0.1\\:{public}:hello:keyName={cs.shared_access_key_name}:keyEnv=TXHYCO_EXAMPLE_CLUSTER_KEY:tls=no"
        port = yield serverFromString(reactor, endpoint).listen(Site(Hello()))
        try:
            from tests.support.rawlistener import make_token
            from tests.support.cluster import NodeView
            from txhyco.protocol.sas import Rights, SasRule

            rule = SasRule(name=cs.shared_access_key_name, primary_key=cs.shared_access_key, rights=Rights.SEND)
            # Whichever node holds the listener, every node (one of them another) serves its senders.
            for node in nodes:
                view = NodeView(f"127.0.0.1:{node}", rule, node)

                @defer.inlineCallbacks
                def served(view=view):
                    status, _, _, body, _ = yield http_request(view.port, "GET", "/hello", None,
                                                               {"ServiceBusAuthorization": make_token(view, "hello")})
                    return (status, body) == (200, b"hello from behind the cluster")

                yield wait_until(served, 20, step=0.2, what=f"node on {node} to route to the listener")
        finally:
            yield port.stopListening()
    finally:
        code = yield script.stop()
    assert code == 0, script.stderr.decode(errors="replace")
