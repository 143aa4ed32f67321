"""Which listener gets a sender, or why none does.

WebSocket senders (:mod:`txhyco.relay.core`) and HTTP senders
(:mod:`txhyco.relay.httprequest`) are routed alike: a random listener of the
hybrid connection, honouring the sender's Allowed/DisallowedListeners headers
and skipping listeners that do not keep up with their control channel or
have left the relay's Ping unanswered for half its timeout; when
none can take the sender, a refusal with the status and sentence that .NET
and Java senders expect.
"""
from __future__ import annotations

import random

from txhyco.protocol.errors import RemoteProtocolError

from .registry import Entity, Registry

NOT_READING = "The listener is not keeping up with its control channel; try again later."

_ALLOWED = "microsoft-relay-allowedlisteners"
_DISALLOWED = "microsoft-relay-disallowedlisteners"


def listener_filter(lower_headers: dict[str, str]) -> tuple[list[str] | None, list[str]]:
    """The Microsoft-Relay-Allowed/DisallowedListeners lists of a request
    (Azure/azure-relay-node issue #55)."""
    def split(value: str | None) -> list[str]:
        return [v.strip() for v in (value or "").split(",") if v.strip()]

    allowed = lower_headers.get(_ALLOWED)
    return (split(allowed) if allowed is not None else None), split(lower_headers.get(_DISALLOWED))


def choose_listener(registry: Registry, entity: Entity, lower_headers: dict[str, str], *, no_listener_status: int):
    """The control channel that gets this sender, or a :class:`ProtocolError` saying why none does.

    A random listener, honouring the Allowed/DisallowedListeners headers in
    ``lower_headers`` (the sender's request headers by lower-case name);
    ``no_listener_status`` is the status when the hybrid connection has no
    listener at all (WebSocket and HTTP senders are told differently).
    """
    listeners = entity.listeners
    if entity.remote:  # a cluster node: other nodes' listeners are candidates too
        listeners = {**listeners, **entity.remote}
    if _ALLOWED in lower_headers or _DISALLOWED in lower_headers:
        allowed, disallowed = listener_filter(lower_headers)
        allow = None if allowed is None else {a.lower() for a in allowed}
        deny = {d.lower() for d in disallowed}
        candidates = [
            ch for lid, ch in listeners.items()
            if (allow is None or _base_id(lid) in allow) and _base_id(lid) not in deny
        ]
    elif len(listeners) == 1:
        candidates = list(listeners.values())
        choice = candidates[0]  # (most hybrid connections have one listener: no draw)
        if not (choice.closing or choice.backlogged or choice.unanswered):
            return choice
    else:
        candidates = list(listeners.values())
    if not candidates:
        registry.forget_if_idle(entity)
        if listeners:
            raise RemoteProtocolError("None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria.", 404)
        raise RemoteProtocolError("There are no listeners connected for the endpoint.", no_listener_status)
    # A channel already closing (its Close sent or received; it leaves the
    # registry when the handshake ends) gets nothing. Listeners that keep up
    # come first; a backlogged one is refused only if none does. One whose
    # Ping has long gone unanswered (probably gone, and dropped at the ping
    # timeout) gets work only if no other can take it. Usually the first pick
    # is fine, and the others are not looked at.
    choice = random.choice(candidates)
    if choice.closing or choice.backlogged or choice.unanswered:
        open_channels = [ch for ch in candidates if not ch.closing]
        if not open_channels:
            raise RemoteProtocolError("There are no listeners connected for the endpoint.", no_listener_status)
        ready = [ch for ch in open_channels if not ch.backlogged]
        if not ready:
            raise RemoteProtocolError(getattr(open_channels[0], "busy_reason", NOT_READING), 503)
        answering = [ch for ch in ready if not ch.unanswered]
        choice = random.choice(answering or ready)
    return choice


def _base_id(tracking_id: str) -> str:
    """A listener's tracking id without the service's ``_G<n>`` suffix."""
    return tracking_id.split("_", 1)[0].lower()
