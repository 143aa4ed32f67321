"""UDP forwarding through a hybrid connection, as azbridge does it.

``txhyco connect PATH --forward udp:[HOST:]PORT`` binds a local UDP port. Each
sender address seen there is a *flow*: the first datagram from it opens a
relayed WebSocket connection, and every datagram, either way, is one binary
WebSocket message on it (a datagram's boundaries are kept; its payload is not
touched). Replies go back to the address the flow belongs to.

``txhyco listen PATH --forward udp:HOST:PORT`` gives each relayed connection
(each flow) a UDP socket of its own, connected to HOST:PORT, so the service's
replies find their way back to the right flow.

A flow with no datagram either way for ``--udp-idle`` seconds (default
:data:`DEFAULT_IDLE`) is closed with 1000 "idle" on both sides; the next
datagram from the same address opens a new one. UDP stays lossy: datagrams
arriving while a flow's connection is still being opened are held (up to
:data:`MAX_HELD`) and sent once it is open, further ones are dropped.
"""
from __future__ import annotations

import ipaddress
import sys

from .common import CliError

#: Seconds a flow may carry nothing before it is closed.
DEFAULT_IDLE = 60.0
#: Datagrams held per flow while its relayed connection opens.
MAX_HELD = 64
#: The largest UDP payload (IPv4: 65535 - 8 - 20); Twisted reads only 8192 bytes unless told.
MAX_DATAGRAM = 65507


def add_idle_option(parser) -> None:
    parser.add_argument(
        "--udp-idle", metavar="SECONDS", type=float, default=None,
        help=f"with --forward udp:...: close a UDP flow after this many idle seconds (default {DEFAULT_IDLE:g})",
    )


def idle_seconds(args) -> float:
    """``--udp-idle`` (default :data:`DEFAULT_IDLE`); a usage error unless positive."""
    idle = getattr(args, "udp_idle", None)
    if idle is None:
        return DEFAULT_IDLE
    if not idle > 0:
        raise CliError("--udp-idle must be a positive number of seconds.", 2)
    return idle


class IdleTimer:
    """Calls ``expire`` once nothing has ``touch``-ed it for ``seconds``."""

    def __init__(self, reactor, seconds: float, expire) -> None:
        self.call = reactor.callLater(seconds, expire)
        self.seconds = seconds

    def touch(self) -> None:
        if self.call.active():
            self.call.reset(self.seconds)

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


def refuse_idle_without_udp(args) -> None:
    if getattr(args, "udp_idle", None) is not None:
        raise CliError("--udp-idle goes with --forward udp:...", 2)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- listen side ------------------------------------------------------------------------


def udp_listener_factory(reactor, monitor, hc, target, idle: float):
    """A relayed WebSocket server factory: each connection a flow to ``target`` (``udp:HOST:PORT``)."""
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from twisted.internet import defer
    from twisted.internet.protocol import DatagramProtocol

    from txhyco.websocket import RelayedServerFactory

    where = target.describe()

    class ServiceSide(DatagramProtocol):
        def __init__(self, flow) -> None:
            self.flow = flow

        def datagramReceived(self, data, addr) -> None:
            self.flow.from_service(data)

        def connectionRefused(self) -> None:  # an ICMP "port unreachable": UDP carries on
            pass

    class Flow(WebSocketServerProtocol):
        number = None

        def onOpen(self):
            self.number = monitor.opened(f"UDP flow to {where}")
            self.started = reactor.seconds()
            self.counts = [0, 0]
            self.held: list[bytes] = []
            self.udp = None
            self.why = ""
            self.idle = IdleTimer(reactor, idle, self._idle)
            d = defer.succeed(target.host) if _is_ip(target.host) else reactor.resolve(target.host)
            d.addCallbacks(self._bind, self._unresolved)

        def _bind(self, address: str) -> None:
            if self.state != self.STATE_OPEN:
                return
            interface = "::" if ":" in address else "0.0.0.0"
            self.udp = reactor.listenUDP(0, ServiceSide(self), interface=interface, maxPacketSize=MAX_DATAGRAM + 1)
            self.udp.connect(address, target.port)
            for datagram in self.held:
                self.udp.write(datagram)
            self.held = []

        def _unresolved(self, failure) -> None:
            self.why = f"cannot resolve {target.host}: {failure.getErrorMessage()}"
            monitor.error(f"connection #{self.number}: {self.why}")
            self.sendClose(1011, self.why[:120])

        def _idle(self) -> None:
            self.why = "idle"
            self.sendClose(1000, "idle")

        def onMessage(self, payload, isBinary):
            self.idle.touch()
            self.counts[0] += len(payload)
            monitor.count(len(payload), 0)
            if self.udp is not None:
                self.udp.write(payload)
            elif len(self.held) < MAX_HELD:
                self.held.append(payload)

        def from_service(self, data: bytes) -> None:
            if self.state != self.STATE_OPEN:
                return
            self.idle.touch()
            self.counts[1] += len(data)
            monitor.count(0, len(data))
            self.sendMessage(data, isBinary=True)

        def onClose(self, wasClean, code, reason):
            if self.number is None:
                return
            self.idle.cancel()
            if self.udp is not None:
                self.udp.stopListening()
                self.udp = None
            why = self.why or (f"close {code}" if code else "")
            monitor.closed(self.number, bytes_in=self.counts[0], bytes_out=self.counts[1],
                           seconds=reactor.seconds() - self.started, why=why)
            self.number = None

    ws = RelayedServerFactory(namespace=hc.namespace, path=hc.path, token_provider=hc.token_provider, ca_file=hc.ca_file,
                              proxy=hc.proxy)
    ws.protocol = Flow
    ws.setProtocolOptions(maxMessagePayloadSize=MAX_DATAGRAM, maxFramePayloadSize=MAX_DATAGRAM)
    return ws


# -- connect side ----------------------------------------------------------------------


class UdpBinding:
    """A bound local UDP port whose senders are carried as flows; ``stopListening`` ends them all."""

    def __init__(self, port, flows: dict) -> None:
        self.port = port
        self.flows = flows
        bound = port.getHost()
        self.address = f"udp:[{bound.host}]:{bound.port}" if ":" in bound.host else f"udp:{bound.host}:{bound.port}"

    def getHost(self):
        return self.port.getHost()

    def stopListening(self):
        for flow in list(self.flows.values()):
            if flow.ws is not None:
                flow.ws.sendClose(1000)
        return self.port.stopListening()


def bind_udp(reactor, monitor, hc, target, idle: float) -> UdpBinding:
    """Bind ``target`` (``udp:[HOST:]PORT``) and carry each sender's datagrams in a flow of its own.

    Raises :class:`CliError` when the port cannot be bound.
    """
    from autobahn.twisted.websocket import WebSocketClientProtocol
    from twisted.internet.error import CannotListenError
    from twisted.internet.protocol import DatagramProtocol

    from txhyco._twisted.handshake import KEEPALIVE
    from txhyco.websocket import RelayedClientFactory

    from .common import describe_relay_error

    flows: dict = {}

    class Flow:
        """One sender address: its relayed connection, held datagrams and idle timer."""

        def __init__(self, addr) -> None:
            self.addr = addr
            self.peer = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
            self.held: list[bytes] = []
            self.ws = None
            self.counts = [0, 0]
            self.why = ""
            self.started = reactor.seconds()
            self.number = monitor.opened(f"UDP flow from {self.peer} through {hc.address}")
            self.idle = IdleTimer(reactor, idle, self.expire)
            flow = self

            class Leg(WebSocketClientProtocol):
                def onMessage(self, payload, isBinary):
                    flow.from_relay(payload)

                def onClose(self, wasClean, code, reason):
                    if not flow.why and code not in (None, 1000):
                        flow.why = f"close {code}{' ' + reason if reason else ''}"
                    elif not flow.why and reason:
                        flow.why = reason
                    flow.finish()

            factory = RelayedClientFactory(namespace=hc.namespace, path=hc.path, token_provider=hc.token_provider,
                                           ca_file=hc.ca_file, proxy=hc.proxy, reactor=reactor)
            factory.protocol = Leg
            factory.setProtocolOptions(maxMessagePayloadSize=MAX_DATAGRAM, maxFramePayloadSize=MAX_DATAGRAM,
                                       autoPingInterval=KEEPALIVE, autoPingTimeout=0)
            factory.connect().addCallbacks(self.opened, self.refused)

        def opened(self, leg) -> None:
            if self.addr not in flows:  # expired while connecting
                leg.sendClose(1000, "idle")
                return
            self.ws = leg
            for datagram in self.held:
                leg.sendMessage(datagram, isBinary=True)
            self.held = []

        def refused(self, failure) -> None:
            self.why = describe_relay_error(failure.value, "the relay refused the flow")
            monitor.error(f"connection #{self.number}: {self.why}")
            self.finish()

        def to_relay(self, data: bytes) -> None:
            self.idle.touch()
            self.counts[0] += len(data)
            monitor.count(len(data), 0)
            if self.ws is not None:
                self.ws.sendMessage(data, isBinary=True)
            elif len(self.held) < MAX_HELD:
                self.held.append(data)

        def from_relay(self, data: bytes) -> None:
            self.idle.touch()
            self.counts[1] += len(data)
            monitor.count(0, len(data))
            local.transport.write(data, self.addr)

        def expire(self) -> None:
            self.why = "idle"
            if self.ws is not None:
                self.ws.sendClose(1000, "idle")
            else:
                self.finish()

        def finish(self) -> None:
            if self.number is None:
                return
            self.idle.cancel()
            if flows.get(self.addr) is self:
                del flows[self.addr]
            monitor.closed(self.number, bytes_in=self.counts[0], bytes_out=self.counts[1],
                           seconds=reactor.seconds() - self.started, why=self.why)
            self.number = None

    class Local(DatagramProtocol):
        def datagramReceived(self, data, addr) -> None:
            addr = tuple(addr[:2])
            flow = flows.get(addr)
            if flow is None:
                flow = flows[addr] = Flow(addr)
            flow.to_relay(data)

    local = Local()
    try:
        port = reactor.listenUDP(target.port, local, interface=target.host, maxPacketSize=MAX_DATAGRAM + 1)
    except CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
        raise CliError(f"cannot listen on {target.describe()} ({reason}); choose another port (0 picks a free one).") from None
    return UdpBinding(port, flows)


def connect_udp(reactor, args, hc, target):
    """``txhyco connect PATH --forward udp:...``: :func:`bind_udp` until SIGINT/SIGTERM."""
    from twisted.internet import defer

    from .events import monitor_events
    from .status import LISTENING, Monitor, start_display

    idle = idle_seconds(args)
    monitor = Monitor(f"txhyco connect {hc.path} --forward {target.describe()}", namespace="txhyco.connect")
    emit = monitor_events(args, monitor, command="connect", path=hc.path)

    @defer.inlineCallbacks
    def go():
        binding = bind_udp(reactor, monitor, hc, target, idle)
        monitor.detail = f"{binding.address} -> {hc.address}"
        reactor.addSystemEventTrigger("before", "shutdown", binding.stopListening)
        if emit is None:
            sys.stdout.write(binding.address + "\n")
            sys.stdout.flush()
        else:
            emit("started", address=binding.address, target=str(hc.address))
            reactor.addSystemEventTrigger("before", "shutdown", emit, "stopped")
        start_display(reactor, monitor, plain=args.log or emit is not None)
        monitor.set_state(LISTENING)
        yield defer.Deferred()  # until SIGINT/SIGTERM

    return go()
