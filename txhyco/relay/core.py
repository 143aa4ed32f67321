"""The relay's routing: who may connect, which listener gets what, and control channels.

:class:`Relay` is the one object behind a relay port. The front door
(:mod:`txhyco.relay.frontdoor`) hands it WebSocket upgrades (through
Autobahn) and plain HTTP requests (through :mod:`txhyco.relay.httpsender`); it
authorizes them with the core's verifier, picks a listener
(:mod:`txhyco.relay.routing`), sends ``accept`` or ``request`` on that
listener's :class:`ControlChannel` and pairs the listener's rendezvous with
the waiting sender (:mod:`txhyco.relay.connect`, :mod:`txhyco.relay.http`).
"""
from __future__ import annotations

import uuid
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from txhyco._twisted.commandsink import CommandSink
from txhyco._twisted.eagerwrite import tcp_wire, unsent_bytes
from txhyco.protocol.addresses import MAX_ENTITY_PATH, Namespace, encode_component, encode_entity_path, parse_relay_target, query_value, reject_parameters, rendezvous_url
from txhyco.protocol.channel import ROLE_RELAY, BodyData, BodyEnded, ChannelReader, CommandReceived
from txhyco.protocol.errors import ProtocolError, RemoteProtocolError
from txhyco.protocol.grammar import field_text
from txhyco.protocol.http import connect_headers_for_listener, sanitize_reason
from txhyco.protocol.messages import Accept, RemoteEndpoint, RenewToken, Response
from txhyco.protocol.sas import Rights

from .auth import TokenCache, azure_reason, find_token, grace_for, host_only
from .config import RelayConfig
from .connect import PendingConnect
from .controlframes import read_quickly
from .faults import WEBSOCKET, ArmedFaults
from .http import RelayedHttpExchange
from .liveness import PingWatch
from .metrics import RelayMetrics
from .registry import Entity, Registry
from .routing import choose_listener
from .websocket import RelayWebSocketFactory

log = Logger()

RENDEZVOUS_PARAM = "sb-hc-rendezvous"

#: Bytes waiting in the relay to go out on a control channel past which its
#: listener gets no new accept or request: one that does not read (or cannot
#: keep up) would otherwise make the relay buffer every sender's command and
#: inline body without limit. Large enough that a burst of hundreds of inline
#: uploads to a healthy listener queues rather than being refused (1 MiB
#: refused half of 200 simultaneous 60 KB POSTs); the kernel's socket buffer
#: comes before it.
CONTROL_BACKLOG_LIMIT = 8 * 1024 * 1024


def header_pairs(raw_headers) -> list[tuple[str, str]]:
    """A request's (name, value) byte pairs as text, names as they were written."""
    pairs = []
    for name, value in raw_headers:
        text = field_text(value)
        pairs.append((name.decode("ascii"), text))
    return pairs


class Relay:
    """A Hybrid Connections relay: state and routing, independent of how it listens."""

    def __init__(self, config: RelayConfig, *, reactor=None, secure: bool = False, metrics: RelayMetrics | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.secure = secure
        self.metrics = metrics or RelayMetrics()
        self.registry = Registry(config)
        self.tokens = TokenCache(config)
        self.ws_factory = RelayWebSocketFactory(self)
        self._http_counters: dict[tuple[str, int], Any] = {}
        #: front doors (one per TCP connection), for a clean shutdown
        self.connections: set[Any] = set()
        #: refusals and delays armed through the fault switch (txhyco.relay.faults); empty (false) unless one is
        self.faults = ArmedFaults()
        #: txhyco.relay.cluster.node.ClusterNode when this relay is a cluster node (set by the service)
        self.cluster = None

    def now(self) -> float:
        return self.reactor.seconds()

    def count_http(self, entity_name: str, status: int) -> None:
        """Count one answered HTTP request (the labelled child is looked up once)."""
        key = (entity_name, status)
        child = self._http_counters.get(key)
        if child is None:
            if len(self._http_counters) >= 4096:
                self._http_counters.clear()
            child = self._http_counters[key] = self.metrics.http_requests.labels(entity_name, str(status))
        child.inc()

    def deny(self, error: ProtocolError, *, host: str, path: str) -> ConnectionDeny:
        """The handshake answer for ``error``, counted and with an Azure-shaped reason."""
        if error.status in (401, 403):
            self.metrics.auth_failures.labels(str(error.status)).inc()
        self.metrics.rejects.labels(str(error.status)).inc()
        return ConnectionDeny(error.status, azure_reason(error.message, host=host, path=path, now=self.now()))

    # -- WebSocket upgrades on /$hc/ (Hybrid Connections protocol, "Protocol reference")

    def websocket_connect(self, proto, request):
        host = host_only(request.host)  # Autobahn's request.host has no port
        try:
            target = parse_relay_target(proto.http_request_uri)
        except ProtocolError as e:
            raise self.deny(e, host=host, path="") from None
        if not target.hybrid:
            raise self.deny(
                ProtocolError("WebSocket connections go to /$hc/{hybrid connection}; plain paths take HTTP requests.", 404),
                host=host,
                path=target.path,
            )
        action = target.action or "connect"
        handler = getattr(self, "_" + action)
        try:
            return handler(proto, request, target, host)
        except ProtocolError as e:
            raise self.deny(e, host=host, path=target.path) from None

    def _lower_headers(self, proto) -> tuple[list[tuple[str, str]], dict[str, str]]:
        pairs = header_pairs(proto.front_headers)
        return pairs, {name.lower(): value for name, value in pairs}

    def _listen(self, proto, request, target, host):
        path = target.path.strip("/")
        if not path:
            raise RemoteProtocolError("The listen address names no hybrid connection: use /$hc/{name}.", 404)
        if len(path) > MAX_ENTITY_PATH:
            raise RemoteProtocolError(f"A hybrid connection name has at most {MAX_ENTITY_PATH} characters.", 400)
        entity = self.registry.entity(path, create=True)
        if entity is None:
            raise RemoteProtocolError("Endpoint does not exist.", 404)
        try:
            _, lower = self._lower_headers(proto)
            token = find_token(lower, target.token, http=False, consume_authorization=False)
            sas = self.tokens.check(entity, token, host=host, required=Rights.LISTEN, now=self.now())
            limit = self.config.limits.max_listeners
            if len(entity.listeners) >= limit:
                raise RemoteProtocolError(
                    f"The hybrid connection already has the maximum of {limit} listeners "
                    "(MaximumListenersPerEndpoint); stop one or use another hybrid connection.",
                    403,
                )
        except ProtocolError:
            self.registry.forget_if_idle(entity)
            raise
        channel = ControlChannel(self, entity, proto, target.tracking_id or str(uuid.uuid4()), sas.expiry, lower.get("host"))
        channel.grace = grace_for(sas, self.config)
        proto.role = channel
        proto.sink = CommandSink(ChannelReader(ROLE_RELAY), channel)
        proto.maxMessagePayloadSize = self.config.limits.max_control_message_size
        if self.cluster is not None:
            return self.cluster.admit(channel)  # maxListeners counts across the cluster
        return None

    def _connect(self, proto, request, target, host):
        entity, _ = self.registry.resolve(target.path)
        if entity is None:
            raise RemoteProtocolError("Endpoint does not exist.", 404)
        pairs, lower = self._lower_headers(proto)
        if entity.config.requires_client_authorization:
            token = find_token(lower, target.token, http=False, consume_authorization=False)
            self.tokens.check(entity, token, host=host, required=Rights.SEND, now=self.now())
        listener = choose_listener(self.registry, entity, lower, no_listener_status=404)
        if self.faults:
            self.faults.refuse_if_armed(entity.name, WEBSOCKET)
        pending = PendingConnect(self, proto, entity, request.protocols or [], listener)
        tracking_id = target.tracking_id or str(uuid.uuid4())
        address = listener.rendezvous_address("accept", tracking_id, raw_suffix(target.raw_path, entity.name), target.app_query, pending.key)
        pending.issued_query = address.split("?", 1)[1]
        peer = proto.transport.getPeer()
        accept = Accept(
            address=address,
            id=tracking_id,
            connect_headers=connect_headers_for_listener(pairs),
            remote_endpoint=RemoteEndpoint(getattr(peer, "host", ""), getattr(peer, "port", 0)),
        )
        listener.send(accept)
        # The listener has the accept timeout to answer; Autobahn's opening
        # handshake timer would cut the sender off sooner.
        if proto.openHandshakeTimeoutCall is not None:
            proto.openHandshakeTimeoutCall.cancel()
            proto.openHandshakeTimeoutCall = None
        proto.role = pending
        return pending.deferred

    def _accept(self, proto, request, target, host):
        pending = self.registry.claim(query_value(target.query, RENDEZVOUS_PARAM), PendingConnect)
        if pending is None or pending.deferred.called:
            raise RemoteProtocolError("The rendezvous address is invalid, expired or already used.", 403)
        try:
            rejected = reject_parameters(pending.issued_query, target.query)
            if rejected is not None and rejected[0] < 200:
                raise RemoteProtocolError(f"A reject needs a final status (200 to 999), not the interim status {rejected[0]}.", 400)
        except ProtocolError as e:
            # The listener meant to refuse and its address is used up: the
            # sender hears so now, not at the accept timeout.
            pending.fail(502, f"The listener's reject was malformed: {e.message}")
            raise
        if rejected is not None:
            status, description = rejected
            pending.reject(status, sanitize_reason(description, status))
            # 410 Gone is how a rejecting listener learns it worked
            # (Hybrid Connections protocol, "Rejecting the socket").
            raise ConnectionDeny(410, "Gone: the connection was rejected as asked.")
        chosen = request.protocols[0] if request.protocols else None
        if chosen is not None and chosen not in pending.offered_protocols:
            pending.fail(502, f"The listener chose the sub-protocol {chosen!r}, which the sender did not offer.")
            raise ConnectionDeny(400, f"The sub-protocol {chosen!r} was not offered by the sender.")
        pending.accept(proto, chosen)
        return chosen

    def _request(self, proto, request, target, host):
        exchange = self.registry.claim(query_value(target.query, RENDEZVOUS_PARAM), RelayedHttpExchange)
        if exchange is None or exchange.finished:
            raise RemoteProtocolError("The rendezvous address is invalid, expired or already used.", 403)
        exchange.rendezvous_claimed(proto)
        proto.role = exchange
        proto.sink = CommandSink(ChannelReader(ROLE_RELAY, accept=[Response]), exchange)
        # A response body is one message of any size (a 100 MiB download is
        # one message); the sink caps the commands.
        proto.maxMessagePayloadSize = 0
        return None

    # -- shutdown -----------------------------------------------------------

    def close_all(self) -> None:
        for door in list(self.connections):
            door.transport.abortConnection()


def raw_suffix(raw_path: str, entity: str) -> str:
    """The part of a raw ``/$hc/...`` path after the entity name, as the sender wrote it."""
    rest = raw_path.split("/", 2)[2] if raw_path.count("/") >= 2 else ""
    encoded = encode_entity_path(entity)
    if rest.startswith(encoded):
        return rest[len(encoded):]
    if rest.lower().startswith(encoded.lower()):
        return rest[len(encoded):]
    return ""


class ControlChannel:
    """A listener's control channel (Hybrid Connections protocol, "Listener protocol"):
    commands out, responses and renewals in."""

    #: (See websocket.PONG_BACKLOG_LIMIT.) A listener merely behind keeps its
    #: keep-alive answered up to the backlog it may legitimately have.
    pong_backlog_limit = CONTROL_BACKLOG_LIMIT + 2 * 1024 * 1024
    #: requests with small bodies go inline (a listener on another cluster node takes none)
    takes_inline = True

    def __init__(self, relay: Relay, entity: Entity, proto, tracking_id: str, expiry: int, host_header: str | None) -> None:
        self.relay = relay
        self.entity = entity
        self.proto = proto
        self.tracking_id = tracking_id
        self.expiry = expiry
        #: seconds past ``expiry`` before the channel is closed (SAS: tokenGrace; Entra ID: its leeway)
        self.grace = relay.config.limits.token_grace
        self.key: str | None = None
        self.host_header = host_header or "localhost"
        #: request id -> RelayedHttpExchange waiting for (or receiving) its response here
        self.exchanges: dict[str, Any] = {}
        #: senders whose ``accept`` went out here and that still wait
        self.pending_connects: set[PendingConnect] = set()
        self._body_owner = None
        self._expiry_call = None
        self._broken: str | None = None
        self._ns: Namespace | None = None
        self._request_prefix: str | None = None
        #: the channel's TCP connection (eagerwrite.tcp_wire), False without one; None until needed
        self._wire = None
        limits = relay.config.limits
        self.pings = PingWatch(
            proto, relay.reactor, interval=limits.listener_ping_interval, timeout=limits.listener_ping_timeout, silent=self._went_silent
        )

    # role interface
    def leg_opened(self, proto) -> None:
        read_quickly(proto)  # its responses and bodies without Autobahn's per-frame work
        self.key = self._unique_key()
        self.entity.listeners[self.key] = self
        self.relay.metrics.listeners.labels(self.entity.name).inc()
        self._schedule_expiry()
        self.pings.start()
        if self.relay.cluster is not None:
            self.relay.cluster.listener_online(self)
        log.info("listener {id} online for {path}", id=self.tracking_id, path=self.entity.name)

    def leg_closed(self, proto, was_clean, code, reason) -> None:
        self.pings.stop()
        if self._expiry_call is not None and self._expiry_call.active():
            self._expiry_call.cancel()
        if self.key is not None and self.entity.listeners.pop(self.key, None) is not None:
            self.relay.metrics.listeners.labels(self.entity.name).dec()
            log.info("listener {id} offline for {path}", id=self.tracking_id, path=self.entity.name)
        if self.relay.cluster is not None:
            self.relay.cluster.listener_offline(self)
        self.relay.registry.forget_if_idle(self.entity)
        if self._broken is None and proto.failedByMe and proto.localCloseReason:
            # Autobahn failed the channel (say, a message over the limit):
            # the senders waiting here hear why.
            reason = proto.localCloseReason
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            self._broken = f"The listener broke the protocol: {reason}"
        for exchange in list(self.exchanges.values()):
            exchange.listener_lost(self, self._broken)
        self.exchanges.clear()
        # A listener that is gone will not accept: its senders hear so now,
        # not after the accept timeout.
        for pending in list(self.pending_connects):
            pending.listener_gone()

    def _unique_key(self) -> str:
        n = 0
        while f"{self.tracking_id}_G{n}" in self.entity.listeners:
            n += 1
        return f"{self.tracking_id}_G{n}"

    # liveness (see txhyco.relay.liveness)
    @property
    def closing(self) -> bool:
        """Whether the channel's closing handshake has begun: it takes no more work."""
        return self.proto.state != self.proto.STATE_OPEN

    def pong_received(self) -> None:
        self.pings.heard()

    @property
    def unanswered(self) -> bool:
        """Whether the relay's Ping waited past half its timeout (routing then prefers others)."""
        return self.pings.unanswered

    def _went_silent(self) -> None:
        log.warn("listener {id} of {path} answered no Ping in time; dropping its control channel", id=self.tracking_id, path=self.entity.name)
        self._broken = "The listener stopped answering the relay's pings; its connection is gone."

    # sending
    @property
    def backlogged(self) -> bool:
        """Whether the listener is too far behind reading to be given more (CONTROL_BACKLOG_LIMIT)."""
        wire = self._wire
        if wire is None:  # looked up once: the channel's TCP connection stays the same
            wire = self._wire = tcp_wire(self.proto.transport) or False
        return wire is not False and unsent_bytes(wire) > CONTROL_BACKLOG_LIMIT

    def send(self, command, body: bytes | None = None) -> None:
        """Send ``command`` (and its inline body, one write for both)."""
        if self.relay.faults and self.relay.faults.hold_command(self, command, body):
            return  # a delay armed through the fault switch sends it later
        self.proto.send_command(command, body)

    def send_request(self, exchange, body: bytes | None = None) -> None:
        """Send ``exchange``'s whole request (and its inline body), its JSON written straight
        from its values; as a :class:`Request` for :meth:`send` while the fault switch is armed
        (it judges commands)."""
        if self.relay.faults:
            self.send(exchange.full_request(body is not None), body)
        else:
            self.proto.send_command_text(exchange.request_text(body is not None), body)

    def send_body(self, body: bytes) -> None:
        self.proto.sendMessage(body, isBinary=True)

    def _namespace(self) -> Namespace:
        ns = self._ns
        if ns is None:
            host, _, port = self.host_header.rpartition(":") if not self.host_header.endswith("]") else (self.host_header, "", "")
            if not host or not port.isdigit():
                host, port = self.host_header, ""
            ns = self._ns = Namespace(host=host.strip("[]").lower(), port=int(port) if port else None, secure=self.relay.secure)
        return ns

    def rendezvous_address(self, action: str, tracking_id: str, suffix: str, query: str, key: str) -> str:
        """A rendezvous URL on this relay, reachable the way the listener reached us."""
        if action == "request" and not suffix and not query:
            # Every HTTP request: the same URL but for the id, built once per channel.
            prefix = self._request_prefix
            if prefix is None:
                prefix = rendezvous_url(self._namespace(), self.entity.name, action=action, rendezvous_id="")
                self._request_prefix = prefix = prefix if prefix.endswith("&sb-hc-id=") else ""
            if prefix:
                return f"{prefix}{encode_component(tracking_id)}&{RENDEZVOUS_PARAM}={key}"
        address = rendezvous_url(self._namespace(), self.entity.name, action=action, rendezvous_id=tracking_id, suffix=suffix, query=query)
        return f"{address}&{RENDEZVOUS_PARAM}={key}"

    # CommandSink handler interface
    def channel_event(self, event) -> None:
        pings = self.pings
        if pings.ping_sent_at is not None:  # (heard() does nothing otherwise: skipped for every message)
            pings.heard()
        kind = event.__class__
        if kind is CommandReceived:
            command = event.command
            if command.__class__ is RenewToken:
                self._renew(command.token)
                return
            exchange = self.exchanges.get(command.request_id)
            self._body_owner = exchange if command.body else None
            if exchange is None:
                log.info("response for unknown or finished request {id} ignored", id=command.request_id)
            else:
                exchange.response_received(command, self)
        elif kind is BodyData:
            if self._body_owner is not None:
                self._body_owner.response_body(event.data)
        elif kind is BodyEnded:
            owner, self._body_owner = self._body_owner, None
            if owner is not None:
                owner.response_body_end()

    def framing_error(self, error: ProtocolError) -> None:
        log.warn("closing control channel of {id}: {why}", id=self.tracking_id, why=error.message)
        # Senders waiting here learn why (not a vague "disconnected").
        self._broken = f"The listener broke the protocol: {error.message}"
        self.proto.close_with(1008, error.message[:120])

    # token lifetime (Hybrid Connections protocol, "Listener token renewal"; README,
    # "Compared with Microsoft's clients")
    def _renew(self, token: str) -> None:
        try:
            sas = self.relay.tokens.check(self.entity, token, host=host_only(self.host_header), required=Rights.LISTEN, now=self.relay.now())
        except ProtocolError as e:
            self.relay.metrics.auth_failures.labels(str(e.status)).inc()
            self.proto.close_with(1008, ("renewToken refused: " + e.message)[:120])
            return
        self.expiry = sas.expiry
        self.grace = grace_for(sas, self.relay.config)
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        if self._expiry_call is not None and self._expiry_call.active():
            self._expiry_call.cancel()
        delay = max(0.0, self.expiry + self.grace - self.relay.now())
        self._expiry_call = self.relay.reactor.callLater(delay, self._expired)

    def _expired(self) -> None:
        self._expiry_call = None
        self.proto.close_with(1008, "The token of this control channel expired; send renewToken before it does.")
