"""The relay as a Twisted service: listen, announce the connection string, stop cleanly."""
from __future__ import annotations

import sys

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from txhyco.protocol.addresses import Namespace
from txhyco.protocol.connection_string import ConnectionString

from .config import RelayConfig
from .core import Relay
from .frontdoor import FrontDoorFactory
from .health import HealthResource, ReadyResource, Readiness

log = Logger()

DEFAULT_LISTEN = "tcp:9090:interface=127.0.0.1"

#: The listen backlog of the relay's ports unless their description names one.
#: Twisted's default of 50 overflows when many senders and listeners' rendezvous
#: legs connect at once: the kernel drops their SYNs and each waits to resend
#: (1 s, then 3, 7, 15 s). ``BENCH_FULL=1 make bench``'s 10,000 relayed
#: connections, 100 opening at a time, overflowed it 244 times; none with 1024.
LISTEN_BACKLOG = 1024
#: Endpoint kinds whose ports take a ``backlog=`` (Twisted's and txhyco's reuseport).
_WITH_BACKLOG = frozenset({"tcp", "tcp6", "ssl", "unix", "reuseport"})


def with_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """``description`` (a server endpoint string) with ``:backlog=N`` added where its kind takes one and it
    names none itself (as a keyword or positionally, after the port); any other description as it is."""
    fields, field, escaped = [], [], False
    for char in description:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(field))
            field = []
            continue
        field.append(char)
    fields.append("".join(field))
    positional = [f for f in fields[1:] if "=" not in f]
    if (escaped or fields[0] not in _WITH_BACKLOG or len(positional) > 1  # escaped: a dangling backslash
            or any(f.startswith("backlog=") for f in fields[1:])):
        return description
    return f"{description}:backlog={backlog}"


class RelayService(Service):
    """A local Hybrid Connections relay listening on a Twisted server endpoint.

    :param announce: called with the connection string once listening
        (``txhyco relay`` prints it on stdout as a line of its own).
    """

    def __init__(
        self,
        config: RelayConfig,
        listen: str = DEFAULT_LISTEN,
        *,
        tls: tuple[str, str] | None = None,
        metrics_endpoint: str | None = None,
        admin_endpoint: str | None = None,
        reactor=None,
        announce=None,
        also_listen: tuple[str, ...] = (),
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.listen_description = listen
        #: more endpoints serving the same relay (a cluster node's own port beside a shared one)
        self.also_listen = tuple(also_listen)
        self.extra_ports: list = []
        self.tls = tls
        self.metrics_endpoint = metrics_endpoint
        #: the admin interface's endpoint (txhyco.relay.admin); None: no admin interface
        self.admin_endpoint = admin_endpoint if admin_endpoint is not None else config.admin
        self.announce = announce
        self.relay = Relay(config, reactor=reactor, secure=tls is not None)
        #: txhyco.relay.cluster.node.ClusterNode when the configuration has a cluster; None: a single relay
        self.cluster = None
        if config.cluster is not None:
            from .cluster.node import ClusterNode

            self.cluster = self.relay.cluster = ClusterNode(self.relay, config.cluster)
        self.port = None
        self.metrics_port = None
        self.admin_port = None
        self.ready: defer.Deferred = defer.Deferred()
        self.readiness = Readiness()

    def factory(self):
        factory = FrontDoorFactory(self.relay)
        if self.tls is not None:
            from .tls import server_context

            factory = TLSMemoryBIOFactory(server_context(*self.tls), False, factory)
        return factory

    @defer.inlineCallbacks
    def _start(self):
        endpoint = serverFromString(self.reactor, with_backlog(self.listen_description))
        self.port = yield endpoint.listen(self.factory())
        for description in self.also_listen:
            endpoint = serverFromString(self.reactor, with_backlog(description))
            self.extra_ports.append((yield endpoint.listen(self.factory())))
        self.readiness.listening = True
        if self.cluster is not None:
            self.cluster.start()
        if self.metrics_endpoint:
            from prometheus_client.twisted import MetricsResource
            from twisted.web.resource import Resource
            from twisted.web.server import Site

            root = Resource()
            registry = self.relay.metrics.registry
            if self.cluster is not None:
                from .cluster.metrics import ClusterCollector, NodeLabelledRegistry

                registry.register(ClusterCollector(self.cluster))
                registry = NodeLabelledRegistry(registry, self.cluster.settings.node_id)
            root.putChild(b"metrics", MetricsResource(registry=registry))
            root.putChild(b"healthz", HealthResource())
            root.putChild(b"ready", ReadyResource(self.readiness))
            self.metrics_port = yield serverFromString(self.reactor, self.metrics_endpoint).listen(Site(root))
        if self.admin_endpoint:
            from .admin import admin_site

            self.admin_port = yield serverFromString(self.reactor, self.admin_endpoint).listen(admin_site(self.relay))
        if self.announce is not None:
            self.announce(self.connection_string().format())
        return self

    def startService(self) -> None:
        super().startService()
        d = self._start()
        d.chainDeferred(self.ready)
        d.addErrback(lambda f: None)  # reported through self.ready

    def connection_string(self) -> ConnectionString:
        """What a client needs to reach this relay, with the real port."""
        host = self.port.getHost()
        address = host.host
        if address in ("0.0.0.0", "::", ""):
            address = "127.0.0.1"
        rule = self.config.root_rule
        namespace = Namespace(address, host.port, self.tls is not None)
        return ConnectionString.build(namespace, key_name=rule.name, key=rule.primary_key)

    def stopService(self):
        super().stopService()
        self.readiness.stopping = True
        ds = []
        if self.port is not None:
            ds.append(defer.maybeDeferred(self.port.stopListening))
        for port in self.extra_ports:
            ds.append(defer.maybeDeferred(port.stopListening))
        if self.metrics_port is not None:
            ds.append(defer.maybeDeferred(self.metrics_port.stopListening))
        if self.admin_port is not None:
            ds.append(defer.maybeDeferred(self.admin_port.stopListening))
        if self.cluster is not None:
            ds.append(self.cluster.stop())
        self.relay.close_all()
        return defer.DeferredList(ds)


def print_connection_string(line: str) -> None:
    """Write the connection string line, flushed, so a parent process can read it."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
