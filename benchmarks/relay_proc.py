"""The relay process: txhyco's local relay (``RelayService``) on a free loopback port.

Prints ``{"event": "ready", "port": N}`` once listening; the key comes from
``$BENCH_HYCO_KEY``. Runs until its stdin closes. Equivalent to
``txhyco relay --listen tcp:0:interface=127.0.0.1`` with the open-file limit
raised for the scale scenario. ``relay_proc.py PORT REDIS_URL NODE_ID`` runs a
cluster node on PORT instead (``txhyco relay --cluster ... --advertise``).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> None:
    nofile = common.raise_nofile()
    from twisted.internet import reactor

    from txhyco.relay.config import RelayConfig
    from txhyco.relay.service import RelayService

    config = RelayConfig.with_key(key=os.environ[common.KEY_ENV])
    port = 0
    if len(sys.argv) == 4:
        # relay_proc.py PORT REDIS_URL NODE_ID: a cluster node (run.py's cluster arrangements)
        import dataclasses

        from txhyco.relay.cluster.settings import cluster_settings

        port = int(sys.argv[1])
        cluster = cluster_settings(redis=sys.argv[2], advertise=f"127.0.0.1:{port}", node_id=sys.argv[3])
        config = dataclasses.replace(config, cluster=cluster)
    service = RelayService(config, f"tcp:{port}:interface=127.0.0.1", reactor=reactor)

    def ready(_):
        common.emit({"event": "ready", "port": service.port.getHost().port, "nofile": nofile})

    def failed(f):
        sys.stderr.write(f"relay failed to start: {f.getErrorMessage()}\n")
        reactor.stop()

    service.ready.addCallbacks(ready, failed)
    reactor.callWhenRunning(service.startService)
    common.exit_on_stdin_eof(reactor)
    reactor.run()


if __name__ == "__main__":
    main()
