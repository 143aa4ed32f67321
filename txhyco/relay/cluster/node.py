"""One relay process's part in a cluster (see :mod:`txhyco.relay.cluster`).

A :class:`ClusterNode` is attached to a :class:`~txhyco.relay.core.Relay` as
``relay.cluster``. The relay calls it at three points: :meth:`admit` when a
listener's handshake has passed the local checks (the cluster-wide
``maxListeners`` is counted in Redis, atomically), :meth:`listener_online` and
:meth:`listener_offline` as control channels open and close. Everything else
is its own: it keeps this node's listeners published in Redis (refreshed with
a TTL, republished after Redis comes back, so a Redis restart heals within one
TTL), mirrors the other nodes' listeners into each entity's ``remote``
listeners for routing, and carries ``accept``/``request`` commands between
nodes.
"""
from __future__ import annotations

import secrets
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.logger import Logger

from txhyco.protocol.errors import ProtocolError, RemoteProtocolError
from txhyco.protocol.messages import Accept, Request, parse_command, serialize_command

from ..auth import host_only
from . import wire
from .remote import REDIS_DOWN, RemoteListener
from .store import HC_PREFIX, LIVE_PREFIX, REGISTER, SNAPSHOT, RedisLink, events_channel, instance_of, node_channel, require_client

log = Logger()

RENDEZVOUS_PARAM = "sb-hc-rendezvous="


class ClusterNode:
    def __init__(self, relay, settings) -> None:
        require_client()
        self.relay = relay
        self.settings = settings
        self.reactor = relay.reactor
        self.instance = f"{settings.node_id}/{secrets.token_hex(4)}"
        self.channel_name = node_channel(settings.redis_db, self.instance)
        self.events_name = events_channel(settings.redis_db)
        self.live_key = LIVE_PREFIX + self.instance
        #: this node's admitted control channels: slot -> channel, and channel -> field
        self.slots: dict[str, Any] = {}
        self.fields: dict[Any, str] = {}
        #: commands handed to local listeners for senders elsewhere: slot -> {ref: (origin instance, when)}
        self.forwarded: dict[str, dict[str, tuple[str, float]]] = {}
        #: instances found gone (a PUBLISH nobody heard) -> until when routing avoids them
        self.suspects: dict[str, float] = {}
        #: remote listeners by field, for events and snapshots
        self.remote: dict[str, RemoteListener] = {}
        self.link = RedisLink(
            settings,
            self.reactor,
            channels=[self.channel_name, self.events_name],
            on_up=self._link_up,
            on_down=self._link_down,
            on_message=self._message,
        )
        self._beat = None
        self._snapshot_running = False

    # -- lifecycle -------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between refreshes: a third of the TTL, so one lost refresh does not expire us."""
        return self.settings.ttl / 3

    def start(self) -> None:
        log.info(
            "cluster node {node} ({instance}) joining through {url}; rendezvous at {advertise}",
            node=self.settings.node_id, instance=self.instance, url=self.settings.redis_url, advertise=self.settings.advertise,
        )
        self.link.start()
        self._beat = self.reactor.callLater(self.interval, self._heartbeat)

    @defer.inlineCallbacks
    def stop(self):
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        self._beat = None
        if self.link.up:
            # Leave at once rather than after the TTL.
            try:
                for channel, field in list(self.fields.items()):
                    yield self.link.execute("HDEL", HC_PREFIX + channel.entity.name, field)
                    yield self.link.execute("PUBLISH", self.events_name, wire.encode(wire.ListenerEvent(False, channel.entity.name, field, channel.tracking_id)))
                yield self.link.execute("DEL", self.live_key)
            except Exception:
                pass  # the TTL cleans up
        yield self.link.stop()
        for field in list(self.remote):
            self._forget_remote(field)

    def _heartbeat(self) -> None:
        self._beat = self.reactor.callLater(self.interval, self._heartbeat)
        now = self.reactor.seconds()
        for inst, until in list(self.suspects.items()):
            if until <= now:
                del self.suspects[inst]
        horizon = now - self.relay.config.limits.accept_timeout - 1
        for slot, refs in list(self.forwarded.items()):
            for ref, (_, when) in list(refs.items()):
                if when < horizon:
                    del refs[ref]
        if self.link.up:
            self._publish_self().addErrback(self._redis_error, "refreshing this node's registration")
            self._snapshot()

    def _link_up(self) -> None:
        d = self._publish_self()
        d.addCallback(lambda _: self._snapshot())
        d.addErrback(self._redis_error, "publishing this node's listeners")

    def _link_down(self) -> None:
        pass  # remote listeners stay known, refused with REDIS_DOWN until Redis is back

    @defer.inlineCallbacks
    def _publish_self(self):
        """Mark this instance alive and (re)write its listeners: after a Redis restart this is the healing."""
        ttl_ms = int(self.settings.ttl * 1000)
        yield self.link.execute("SET", self.live_key, self.settings.advertise, "PX", ttl_ms)
        by_entity: dict[str, list[str]] = {}
        for channel, field in self.fields.items():
            by_entity.setdefault(channel.entity.name, []).extend((field, channel.tracking_id))
        for name, pairs in by_entity.items():
            yield self.link.execute("HSET", HC_PREFIX + name, *pairs)

    def _redis_error(self, failure, doing: str) -> None:
        import txredisapi

        if not failure.check(txredisapi.ConnectionError):
            log.warn("cluster: Redis error while {doing}: {why}", doing=doing, why=failure.getErrorMessage())

    # -- the mirror of other nodes' listeners -------------------------------------

    def _snapshot(self) -> None:
        if self._snapshot_running:
            return
        self._snapshot_running = True
        d = self.link.eval(SNAPSHOT, [], [HC_PREFIX, LIVE_PREFIX])
        d.addCallback(self._apply_snapshot)
        d.addErrback(self._redis_error, "reading the cluster's listeners")

        def done(result):
            self._snapshot_running = False
            return result

        d.addBoth(done)

    def _apply_snapshot(self, flat) -> None:
        seen: dict[str, tuple[str, str]] = {}
        if not isinstance(flat, list):
            return
        for i in range(0, len(flat) - 2, 3):
            key, field, tracking_id = flat[i], flat[i + 1], flat[i + 2]
            if isinstance(key, str) and key.startswith(HC_PREFIX) and isinstance(field, str) and isinstance(tracking_id, str):
                seen[field] = (key[len(HC_PREFIX):], tracking_id)
        for field in list(self.remote):
            if field not in seen:
                self._forget_remote(field)
        for field, (name, tracking_id) in seen.items():
            if field not in self.remote:
                self._learn_remote(name, field, tracking_id)

    def _learn_remote(self, name: str, field: str, tracking_id: str) -> None:
        instance = instance_of(field)
        if instance == self.instance or instance in self.suspects or field in self.remote or "|" not in field:
            return
        entity = self.relay.registry.entity(name, create=True)
        if entity is None:
            return  # a hybrid connection this node's configuration does not have
        remote = RemoteListener(self, entity, field, tracking_id)
        self.remote[field] = remote
        entity.remote[f"{tracking_id}_@{field}"] = remote

    def _forget_remote(self, field: str) -> None:
        remote = self.remote.pop(field, None)
        if remote is None:
            return
        entity = remote.entity
        entity.remote.pop(f"{remote.tracking_id}_@{field}", None)
        self.relay.registry.forget_if_idle(entity)

    def remote_counts(self) -> dict[str, int]:
        """Listeners per hybrid connection across the cluster, as this node knows them."""
        counts: dict[str, int] = {}
        # Called from the metrics endpoint's WSGI thread: list() copies the
        # entities in one step under the GIL, so the reactor cannot change it mid-loop.
        for name, entity in list(self.relay.registry.entities.items()):
            total = len(entity.listeners) + len(entity.remote)
            if total:
                counts[name] = total
        return counts

    # -- this node's listeners -------------------------------------------------

    def admit(self, channel):
        """None to admit the listener now, or a Deferred: the cluster-wide maxListeners is counted in Redis."""
        slot = secrets.token_urlsafe(9)
        field = f"{self.instance}|{slot}"
        if not self.link.up:
            # Serving local listeners is what a node does without Redis;
            # it is published (over the limit or not) once Redis is back.
            self._hold(channel, slot, field)
            return None
        limit = self.relay.config.limits.max_listeners
        d = self.link.eval(REGISTER, [HC_PREFIX + channel.entity.name], [LIVE_PREFIX, field, channel.tracking_id, str(limit)])

        def registered(added):
            if added != 1:
                self.relay.registry.forget_if_idle(channel.entity)
                raise self.relay.deny(
                    RemoteProtocolError(
                        f"The hybrid connection already has the maximum of {limit} listeners across the relay cluster "
                        "(MaximumListenersPerEndpoint); stop one or use another hybrid connection.",
                        403,
                    ),
                    host=host_only(channel.host_header),
                    path=channel.entity.name,
                )
            if channel.proto.state == channel.proto.STATE_CLOSED:
                # The listener left while Redis counted it: nothing will withdraw it later.
                self.link.execute("HDEL", HC_PREFIX + channel.entity.name, field).addErrback(self._redis_error, "withdrawing a listener")
                return None
            self._hold(channel, slot, field)

        def unreachable(failure):
            if failure.check(ConnectionDeny):
                return failure
            self._hold(channel, slot, field)
            return None

        d.addCallback(registered)
        d.addErrback(unreachable)
        return d

    def _hold(self, channel, slot: str, field: str) -> None:
        self.slots[slot] = channel
        self.fields[channel] = field

    def listener_online(self, channel) -> None:
        field = self.fields.get(channel)
        if field is None or not self.link.up:
            return
        name = channel.entity.name
        d = self.link.execute("HSET", HC_PREFIX + name, field, channel.tracking_id)
        d.addCallback(lambda _: self.link.execute("PUBLISH", self.events_name, wire.encode(wire.ListenerEvent(True, name, field, channel.tracking_id))))
        d.addErrback(self._redis_error, "publishing a listener")

    def listener_offline(self, channel) -> None:
        field = self.fields.pop(channel, None)
        if field is None:
            return
        slot = field.split("|", 1)[1]
        self.slots.pop(slot, None)
        name = channel.entity.name
        for ref, (origin, _) in self.forwarded.pop(slot, {}).items():
            self._answer(origin, wire.Gone(ref, 404, "The listener that was offered the connection went away before accepting it."))
        if self.link.up:
            d = self.link.execute("HDEL", HC_PREFIX + name, field)
            d.addCallback(lambda _: self.link.execute("PUBLISH", self.events_name, wire.encode(wire.ListenerEvent(False, name, field, channel.tracking_id))))
            d.addErrback(self._redis_error, "withdrawing a listener")

    # -- commands between nodes -----------------------------------------------

    def forward(self, remote: RemoteListener, command) -> None:
        """Send ``accept``/address-only ``request`` to the node holding ``remote``."""
        address = command.address
        ref = address.rsplit(RENDEZVOUS_PARAM, 1)[1] if RENDEZVOUS_PARAM in address else ""
        if not self.link.up:
            self._refuse_here(ref, 503, REDIS_DOWN)
            return
        message = wire.encode(wire.ForwardedCommand(remote.slot, remote.entity.name, self.instance, ref, serialize_command(command)))
        d = self.link.execute("PUBLISH", node_channel(self.settings.redis_db, remote.instance), message)

        def published(receivers):
            if receivers == 0:
                # Nobody subscribes there: the node is gone (its listeners
                # leave Redis at the TTL; routing avoids it until then).
                self.suspects[remote.instance] = self.reactor.seconds() + self.settings.ttl
                for field in [f for f, r in self.remote.items() if r.instance == remote.instance]:
                    self._forget_remote(field)
                self._refuse_here(ref, 404, "The listener's relay node is gone; its listener will reconnect to another node.")

        def failed(failure):
            self._refuse_here(ref, 503, REDIS_DOWN)

        d.addCallbacks(published, failed)

    def _refuse_here(self, ref: str, status: int, why: str) -> None:
        """A sender of this node whose command could not reach (or be used by) its listener hears why."""
        item = self.relay.registry.pending.get(ref)
        if item is None:
            return  # already answered, accepted, or given up
        from ..connect import PendingConnect

        self.relay.registry.drop(ref)
        if isinstance(item, PendingConnect):
            item.fail(status, why)
        else:
            item.listener_lost(item.listener, why)

    def _answer(self, origin: str, message) -> None:
        if not self.link.up:
            return
        d = self.link.execute("PUBLISH", node_channel(self.settings.redis_db, origin), wire.encode(message))
        d.addErrback(self._redis_error, "answering another node")

    def _message(self, channel, data) -> None:
        try:
            message = wire.decode(data)
        except wire.WireError as e:
            log.warn("cluster: ignored a message on {channel} that is not ours ({why})", channel=channel, why=str(e))
            return
        if isinstance(message, wire.ForwardedCommand):
            self._deliver(message)
        elif isinstance(message, wire.Gone):
            self._refuse_here(message.ref, message.status, message.why)
        elif message.added:
            self._learn_remote(message.hc, message.field, message.tracking_id)
        else:
            self._forget_remote(message.field)

    def _deliver(self, message: wire.ForwardedCommand) -> None:
        channel = self.slots.get(message.slot)
        try:
            command = parse_command(message.command)
        except ProtocolError as e:
            log.warn("cluster: ignored a forwarded command that does not parse: {why}", why=e.message)
            return
        if not isinstance(command, (Accept, Request)) or (isinstance(command, Request) and not command.address_only):
            log.warn("cluster: ignored a forwarded command that is neither accept nor an address-only request")
            return
        if channel is None or channel.key is None or channel.closing:
            self._answer(message.origin, wire.Gone(message.ref, 404, "The listener went away before it could be offered the connection."))
            return
        if channel.backlogged:
            from ..routing import NOT_READING

            self._answer(message.origin, wire.Gone(message.ref, 503, NOT_READING))
            return
        self.forwarded.setdefault(message.slot, {})[message.ref] = (message.origin, self.reactor.seconds())
        channel.send(command)
