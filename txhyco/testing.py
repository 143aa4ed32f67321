"""An in-process local relay for your own tests (the model is treq's ``testing``).

>>> relay = yield start_relay()                 # inside a Twisted test
>>> relay.connection_string.format()            # 'Endpoint=sb://127.0.0.1:PORT/;...'
>>> yield relay.stop()

The relay listens on 127.0.0.1 on a free port, with a fresh namespace key,
and serves any hybrid connection path.
"""
from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.sas import SasRule
from txhyco.relay.config import RelayConfig
from txhyco.relay.service import RelayService


@dataclass
class RunningRelay:
    service: RelayService
    connection_string: ConnectionString

    @property
    def relay(self):
        return self.service.relay

    @property
    def port(self) -> int:
        return self.service.port.getHost().port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rule(self) -> SasRule:
        return self.service.config.root_rule

    def stop(self) -> defer.Deferred:
        return defer.maybeDeferred(self.service.stopService)


@defer.inlineCallbacks
def start_relay(config: RelayConfig | None = None, *, reactor=None, tls: tuple[str, str] | None = None, metrics_endpoint: str | None = None):
    """Start a relay on a free loopback port; fires with a :class:`RunningRelay`."""
    service = RelayService(
        config or RelayConfig.with_key(),
        "tcp:0:interface=127.0.0.1",
        tls=tls,
        metrics_endpoint=metrics_endpoint,
        reactor=reactor,
    )
    service.startService()
    yield service.ready
    return RunningRelay(service, service.connection_string())
