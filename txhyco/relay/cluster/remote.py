"""A listener held by another cluster node, as this node's routing sees it.

Routing (:func:`txhyco.relay.routing.choose_listener`) picks among a hybrid
connection's local control channels and these alike. A :class:`RemoteListener`
has what a sender's path uses of a control channel: the rendezvous address it
hands out names *this* node (its advertised address), so the listener's
rendezvous and all data stay here; ``send`` forwards the ``accept`` or
address-only ``request`` to the listener's node through Redis.
"""
from __future__ import annotations

from typing import Any

from txhyco.protocol.addresses import Namespace, rendezvous_url

#: why a remote listener gets nothing while this node cannot reach Redis
REDIS_DOWN = (
    "The relay node that received this request cannot reach the cluster's Redis, and the hybrid "
    "connection's listeners are on other nodes; try again shortly."
)


class RemoteListener:
    """One listener on another node (``field`` is its Redis hash field, ``{instance}|{slot}``)."""

    #: requests are sent address-only: a response on the listener's control
    #: channel would be on the other node
    takes_inline = False
    closing = False
    unanswered = False

    def __init__(self, node, entity, field: str, tracking_id: str) -> None:
        self.node = node
        self.entity = entity
        self.field = field
        self.instance, _, self.slot = field.partition("|")
        self.tracking_id = tracking_id
        self.key = f"{tracking_id}@{self.instance}"
        #: request id -> RelayedHttpExchange sent here and not finished
        self.exchanges: dict[str, Any] = {}
        #: PendingConnects whose accept went out here
        self.pending_connects: set = set()

    def __repr__(self) -> str:
        return f"<RemoteListener {self.tracking_id!r} of {self.entity.name!r} on {self.instance!r}>"

    @property
    def backlogged(self) -> bool:
        """Nothing can be forwarded while Redis is away (routing then prefers local listeners)."""
        return not self.node.link.up

    busy_reason = REDIS_DOWN

    def rendezvous_address(self, action: str, tracking_id: str, suffix: str, query: str, key: str) -> str:
        settings = self.node.settings
        ns = Namespace(host=settings.advertise_host.strip("[]"), port=settings.advertise_port, secure=self.node.relay.secure)
        address = rendezvous_url(ns, self.entity.name, action=action, rendezvous_id=tracking_id, suffix=suffix, query=query)
        return f"{address}&sb-hc-rendezvous={key}"

    def send(self, command, body: bytes | None = None) -> None:
        self.node.forward(self, command)
