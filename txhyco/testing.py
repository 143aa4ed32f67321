"""An in-process local relay for your own tests (the model is treq's ``testing``).

>>> relay = yield start_relay()                 # inside a Twisted test
>>> relay.connection_string.format()            # 'Endpoint=sb://127.0.0.1:PORT/;...'
>>> yield relay.stop()

The relay listens on 127.0.0.1 on a free port, with a fresh namespace key,
and serves any hybrid connection path. Its fault switch is at hand for
testing your reconnect and retry logic: ``relay.drop_control_channels(path)``,
``refuse_senders``, ``delay_senders``, ``cut_connections``,
``stall_control_channels``, ``expire_tokens`` and ``clear_faults`` (see
:mod:`txhyco.relay.faults`); ``start_relay(admin_endpoint=...)`` also serves
them over HTTP (:mod:`txhyco.relay.admin`).
"""
from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.sas import SasRule
from txhyco.relay.config import RelayConfig
from txhyco.relay.faults import FaultSwitch, SenderFault
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

    @property
    def admin_url(self) -> str | None:
        """``http://127.0.0.1:PORT/admin/hybridConnections`` when started with an admin endpoint."""
        port = self.service.admin_port
        if port is None:
            return None
        host = port.getHost()
        return f"http://{host.host}:{host.port}/admin/hybridConnections"

    def stop(self) -> defer.Deferred:
        return defer.maybeDeferred(self.service.stopService)

    # -- the fault switch (txhyco.relay.faults); bad arguments raise ValueError --

    @property
    def _faults(self) -> FaultSwitch:
        return FaultSwitch(self.service.relay)

    def drop_control_channels(self, path: str, *, abortive: bool = False, code: int = 1001,
                              reason: str | None = None, listener: str | None = None) -> int:
        """Close the listeners' control channels of ``path`` (a TCP reset if ``abortive``); how many."""
        return self._faults.drop(path, abortive=abortive, code=code, reason=reason, listener=listener)

    def refuse_senders(self, path: str, *, count: int = 1, status: int = 503, reason: str | None = None,
                       senders: str = "any") -> SenderFault:
        """Answer the next ``count`` senders (``"websocket"``, ``"http"`` or ``"any"``) of ``path`` with ``status``."""
        return self._faults.refuse(path, count=count, status=status, reason=reason, senders=senders)

    def delay_senders(self, path: str, *, seconds: float, count: int = 1, senders: str = "any") -> SenderFault:
        """Hold the next ``count`` accepts or requests for listeners of ``path`` for ``seconds``."""
        return self._faults.delay(path, seconds=seconds, count=count, senders=senders)

    def cut_connections(self, path: str, *, abortive: bool = False, code: int = 1001, reason: str | None = None) -> int:
        """End the relayed WebSocket connections of ``path`` (reset, or closed with ``code``); how many."""
        return self._faults.cut(path, abortive=abortive, code=code, reason=reason)

    def stall_control_channels(self, path: str, *, seconds: float, listener: str | None = None) -> int:
        """Neither read nor write the control channels of ``path`` for ``seconds``; how many."""
        return self._faults.stall(path, seconds=seconds, listener=listener)

    def expire_tokens(self, path: str, *, listener: str | None = None, grace: bool = False) -> int:
        """Expire the listeners' tokens of ``path`` now: closed with 1008 at once, or after the grace."""
        return self._faults.expire_token(path, listener=listener, grace=grace)

    def clear_faults(self, path: str) -> dict:
        """Disarm refusals and delays for ``path`` and end its stalls."""
        return self._faults.clear(path)

    def hybrid_connections(self) -> list[dict]:
        """What the admin interface's ``GET /admin/hybridConnections`` shows."""
        return self._faults.describe()


@defer.inlineCallbacks
def start_relay(config: RelayConfig | None = None, *, reactor=None, tls: tuple[str, str] | None = None,
                metrics_endpoint: str | None = None, admin_endpoint: str | None = None):
    """Start a relay on a free loopback port; fires with a :class:`RunningRelay`.

    ``admin_endpoint`` (e.g. ``"tcp:0:interface=127.0.0.1"``) serves the admin
    interface there (``relay.admin_url``).
    """
    service = RelayService(
        config or RelayConfig.with_key(),
        "tcp:0:interface=127.0.0.1",
        tls=tls,
        metrics_endpoint=metrics_endpoint,
        admin_endpoint=admin_endpoint,
        reactor=reactor,
    )
    service.startService()
    yield service.ready
    return RunningRelay(service, service.connection_string())
