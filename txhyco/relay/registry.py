"""Which hybrid connections exist, who listens on them, and what is pending.

Pure bookkeeping with no I/O: the WebSocket and HTTP sides register control
channels here (:mod:`txhyco.relay.routing` picks one for each sender), and
park the state of connections and requests that wait for a listener's
rendezvous.
"""
from __future__ import annotations

import base64
import functools
import os
from dataclasses import dataclass, field
from typing import Any

from txhyco.protocol.addresses import entity_path_candidates

from .config import HybridConnectionConfig, RelayConfig

#: Random bytes in a rendezvous key (as ``secrets.token_urlsafe(18)``: 24 URL-safe characters).
_KEY_BYTES = 18
#: Keys drawn from the system's random source at a time: one read and one
#: base64 pass per batch rather than per key, on the path of every relayed
#: HTTP request. 18 bytes are a whole number of base64 groups, so each key is
#: exactly the encoding of its own bytes.
_KEYS_PER_BATCH = 256
_KEY_CHARS = _KEY_BYTES * 4 // 3


class _Keys:
    """Unguessable rendezvous keys, each from fresh ``os.urandom`` bytes, read in batches."""

    def __init__(self) -> None:
        self._batch = ""
        self._next = 0

    def reset(self) -> None:
        # A forked child must not hand out its parent's next keys.
        self._batch = ""
        self._next = 0

    def take(self) -> str:
        start = self._next
        if start >= len(self._batch):
            self._batch = base64.urlsafe_b64encode(os.urandom(_KEY_BYTES * _KEYS_PER_BATCH)).decode("ascii")
            start = 0
        self._next = start + _KEY_CHARS
        return self._batch[start:self._next]


class _RequestIds:
    """Ids for relayed HTTP requests: random version 4 UUIDs, as Azure's are,
    whose 122 random bits come from ``os.urandom`` read in batches.

    The id is not a secret (a sender may choose the tracking id of its own
    WebSocket connection; the rendezvous key is what an address grants), but
    it is random rather than counted: every listener sees the ids of its
    requests, and a counter would tell each one how many requests the relay
    serves for everybody.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # A forked child must not hand out its parent's next ids.
        self._batch = ""
        self._next = 0

    def take(self) -> str:
        start = self._next
        if start >= len(self._batch):
            self._batch = os.urandom(16 * _IDS_PER_BATCH).hex()
            start = 0
        self._next = start + 32
        h = self._batch[start:start + 32]
        # Version 4, variant 10xx (RFC 9562): the same shape as uuid.uuid4().
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: Request ids drawn per ``os.urandom`` call.
_IDS_PER_BATCH = 256
#: The variant nibble 10xx for each hex digit: its two low bits stay random.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


_keys = _Keys()
_request_ids = _RequestIds()
if hasattr(os, "register_at_fork"):  # (not on Windows)
    os.register_at_fork(after_in_child=lambda: (_keys.reset(), _request_ids.reset()))

#: A fresh id for a relayed HTTP request (``sb-hc-id`` of its rendezvous address, its command's ``id``).
request_id = _request_ids.take


@dataclass
class Entity:
    """One hybrid connection as the relay sees it at run time."""

    config: HybridConnectionConfig
    #: listener tracking id -> control channel protocol
    listeners: dict[str, Any] = field(default_factory=dict)
    #: listeners held by other cluster nodes (txhyco.relay.cluster.remote); empty without a cluster
    remote: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


# A sender's path's candidate entity names (pure; the same few paths come
# request after request). Long paths are split each time rather than kept.
_CANDIDATES_CACHEABLE = 1024


@functools.lru_cache(maxsize=512)
def _cached_candidates(path: str) -> tuple[str, ...]:
    return tuple(entity_path_candidates(path))


def _candidates(path: str):
    if len(path) <= _CANDIDATES_CACHEABLE:
        return _cached_candidates(path)
    return entity_path_candidates(path)


class Registry:
    """Entities by name, and rendezvous tokens handed out and not yet used."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.entities: dict[str, Entity] = {}
        #: rendezvous key -> pending connect or HTTP exchange (single use)
        self.pending: dict[str, Any] = {}

    def entity(self, name: str, *, create: bool) -> Entity | None:
        """The entity called ``name``; created on first use when the config allows."""
        found = self.entities.get(name)
        if found is not None or not create:
            return found
        hc = self.config.entity(name)
        if hc is None:
            return None
        found = self.entities[name] = Entity(hc)
        return found

    def resolve(self, path: str) -> tuple[Entity | None, str]:
        """Split a sender's path into (entity, suffix) by the longest known entity name.

        Known means configured or having a listener. When nothing matches
        and the relay serves any path, the whole path is a passing entity
        that is not kept (the sender learns that nobody listens there): a
        sender, authorized or not, never adds to the registry.
        """
        for candidate in _candidates(path):
            found = self.entities.get(candidate)
            if found is None and candidate in self.config.hybrid_connections:
                found = self.entity(candidate, create=True)
            if found is not None:
                return found, path[len(candidate):]
        if self.config.restrict:
            return None, ""
        hc = self.config.entity(path)
        return (Entity(hc) if hc is not None else None), ""

    def forget_if_idle(self, entity: Entity) -> None:
        """Drop an unconfigured entity once its last listener has gone."""
        if not entity.listeners and not entity.remote and entity.name not in self.config.hybrid_connections:
            self.entities.pop(entity.name, None)

    def park(self, item: Any) -> str:
        """Store ``item`` under a fresh unguessable key; the rendezvous URL carries it.

        The key is separate from ``sb-hc-id`` because a sender may choose its
        own tracking id, and a rendezvous URL is a capability.
        """
        key = _keys.take()
        self.pending[key] = item
        return key

    def claim(self, rid: str | None, kind: type) -> Any | None:
        """Take the ``kind`` of item parked under ``rid``: each rendezvous URL works once.

        An address used for the wrong action (an accept address opened as a
        request rendezvous, or the reverse) leaves the item where it was.
        """
        if rid is None or not isinstance(self.pending.get(rid), kind):
            return None
        return self.pending.pop(rid)

    def drop(self, rid: str) -> None:
        self.pending.pop(rid, None)
