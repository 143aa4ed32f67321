"""Which listener gets a sender, or why none does.

WebSocket senders (:mod:`txhyco.relay.core`) and HTTP senders
(:mod:`txhyco.relay.httprequest`) are routed alike: a random listener of the
hybrid connection, honouring the sender's Allowed/DisallowedListeners headers
and skipping listeners that do not keep up with their control channel; when
none can take the sender, a refusal with the status and sentence that .NET
and Java senders expect.
"""
from __future__ import annotations

from txhyco.protocol.errors import ProtocolError

from .registry import Entity, Registry

NOT_READING = "The listener is not keeping up with its control channel; try again later."

_ALLOWED = "microsoft-relay-allowedlisteners"
_DISALLOWED = "microsoft-relay-disallowedlisteners"


def listener_filter(lower_headers: dict[str, str]) -> tuple[list[str] | None, list[str]]:
    """The Microsoft-Relay-Allowed/DisallowedListeners lists of a request (§2.7)."""
    def split(value: str | None) -> list[str]:
        return [v.strip() for v in (value or "").split(",") if v.strip()]

    allowed = lower_headers.get(_ALLOWED)
    return (split(allowed) if allowed is not None else None), split(lower_headers.get(_DISALLOWED))


def choose_listener(registry: Registry, entity: Entity, lower_headers: dict[str, str], *, no_listener_status: int):
    """The control channel that gets this sender, or a :class:`ProtocolError` saying why none does.

    ``lower_headers`` are the sender's request headers by lower-case name;
    ``no_listener_status`` is the status when the hybrid connection has no
    listener at all (WebSocket and HTTP senders are told differently).
    """
    if _ALLOWED in lower_headers or _DISALLOWED in lower_headers:
        allowed, disallowed = listener_filter(lower_headers)
        listener = entity.choose_listener(allowed, disallowed)
    else:
        listener = entity.choose_listener()
    if listener is None:
        registry.forget_if_idle(entity)
        if entity.listeners:
            raise ProtocolError("None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria.", 404)
        raise ProtocolError("There are no listeners connected for the endpoint.", no_listener_status)
    if listener.backlogged:
        raise ProtocolError(NOT_READING, 503)
    return listener
