"""Faults switched on at the local relay, so users can test their own reconnect and retry logic.

A :class:`FaultSwitch` acts on a running :class:`~txhyco.relay.core.Relay`;
the admin HTTP API (:mod:`txhyco.relay.admin`) and the relay object of
:func:`txhyco.testing.start_relay` are its two faces. What it can do, per
hybrid connection:

- ``drop``: close its listeners' control channels, cleanly (a Close frame
  with a code) or abortively (a TCP reset, as a crashed relay would);
- ``refuse``: answer the next N senders that a listener would have been
  offered with a chosen status and reason, instead of offering them;
- ``delay``: hold the next N ``accept`` or ``request`` commands for a number
  of seconds before they go to the listener (the sender's accept or response
  timeout runs meanwhile, as with a slow relay);
- ``cut``: end its relayed WebSocket connections, abortively or with a close
  code sent to both ends;
- ``stall``: stop reading and writing a control channel for N seconds, as a
  silent network would (what arrives waits in the kernel, what the relay
  sends is held and goes out when the stall ends);
- ``expireToken``: treat a listener's token as expired now. By default the
  relay closes the channel at once with 1008, as it does when a token's grace
  has run out; with ``grace`` the token expires now and the usual grace
  (``tokenGrace``) follows, during which a ``renewToken`` saves the channel.

Refusals and delays are armed per hybrid connection in :class:`ArmedFaults`
(``relay.faults``), which is empty, and so false, unless one is armed: that
test is all they cost the relay's routing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

from txhyco.protocol.addresses import check_entity_name, query_value
from txhyco.protocol.errors import LocalProtocolError, RemoteProtocolError
from txhyco.protocol.http import sanitize_reason
from txhyco.protocol.messages import Accept, Request

from .connect import RelaySplice
from .schema import Invalid, boolean, text, whole
from .schema import seconds as seconds_within

WEBSOCKET = "websocket"
HTTP = "http"
#: Which senders a refusal or delay applies to.
SENDER_KINDS = ("any", WEBSOCKET, HTTP)

#: The longest a delay or a stall may last (seconds).
MAX_FAULT_SECONDS = 3600.0
#: The most senders one refusal or delay may count.
MAX_COUNT = 1_000_000

_RENDEZVOUS_PARAM = "sb-hc-rendezvous"
_DEFAULT_DROP_REASON = "The relay's admin interface dropped this control channel."
_DEFAULT_CUT_REASON = "The relay's admin interface cut this connection."


@dataclass
class SenderFault:
    """A refusal or delay armed for the next ``remaining`` senders of one kind."""

    action: str  # "refuse" or "delay"
    senders: str  # one of SENDER_KINDS
    remaining: int
    status: int = 0
    reason: str = ""
    seconds: float = 0.0

    def applies_to(self, kind: str) -> bool:
        return self.senders == "any" or self.senders == kind

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"action": self.action, "senders": self.senders, "remaining": self.remaining}
        if self.action == "refuse":
            shown.update(status=self.status, reason=self.reason)
        else:
            shown["seconds"] = self.seconds
        return shown


class ArmedFaults(dict):
    """Hybrid connection name -> its armed :class:`SenderFault` list, oldest first.

    Empty (false) when nothing is armed; the relay's hooks test just that.
    ``stalls`` maps a stalled control channel to its :class:`Stall`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stalls: dict[Any, Stall] = {}

    def arm(self, name: str, fault: SenderFault) -> None:
        self.setdefault(name, []).append(fault)

    def _take(self, name: str, action: str, kind: str) -> SenderFault | None:
        armed = self.get(name)
        if not armed:
            return None
        for fault in armed:
            if fault.action == action and fault.applies_to(kind):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    armed.remove(fault)
                    if not armed:
                        del self[name]
                return fault
        return None

    # -- the relay's hooks ----------------------------------------------------

    def refuse_if_armed(self, entity_name: str, kind: str) -> None:
        """Raise the armed refusal for a ``kind`` sender of ``entity_name``, if one is armed."""
        fault = self._take(entity_name, "refuse", kind)
        if fault is not None:
            raise RemoteProtocolError(fault.reason, fault.status)

    def hold_command(self, channel, command, body: bytes | None) -> bool:
        """Whether an armed delay takes this command to ``channel``; it then goes out later."""
        if isinstance(command, Accept):
            kind = WEBSOCKET
        elif isinstance(command, Request):
            kind = HTTP
        else:
            return False
        fault = self._take(channel.entity.name, "delay", kind)
        if fault is None:
            return False
        channel.relay.reactor.callLater(fault.seconds, _send_late, channel, command, body)
        return True


def _send_late(channel, command, body: bytes | None) -> None:
    """Send a delayed command, unless its listener or its sender has gone meanwhile."""
    if channel.entity.listeners.get(channel.key) is not channel:
        return  # the listener left: its senders were told so already
    if isinstance(command, Request):
        wanted = command.id in channel.exchanges
    else:
        key = query_value(command.address.partition("?")[2], _RENDEZVOUS_PARAM)
        wanted = key in channel.relay.registry.pending
    if wanted:
        channel.send(command, body)


class Stall:
    """A control channel that neither reads nor writes until :meth:`end`, as over a silent network."""

    def __init__(self, faults: ArmedFaults, channel, seconds: float) -> None:
        self.faults = faults
        self.channel = channel
        self.transport = transport = channel.proto.transport
        self.until = channel.relay.now() + seconds
        self.held: list[bytes] = []
        # The transport may have its own write methods already (eagerwrite's):
        # they come back when the stall ends.
        self._own = {name: transport.__dict__[name] for name in ("write", "writeSequence") if name in transport.__dict__}
        transport.pauseProducing()
        transport.write = self.held.append
        transport.writeSequence = self.held.extend
        self._call = channel.relay.reactor.callLater(seconds, self.end)
        faults.stalls[channel] = self

    def end(self) -> None:
        """Resume reading and send what was held (nothing, if the channel has closed meanwhile)."""
        if self.faults.stalls.get(self.channel) is self:
            del self.faults.stalls[self.channel]
        if self._call.active():
            self._call.cancel()
        transport = self.transport
        for name in ("write", "writeSequence"):
            if name in self._own:
                setattr(transport, name, self._own[name])
            else:
                transport.__dict__.pop(name, None)
        held, self.held = self.held, []
        proto = self.channel.proto
        if proto.state == proto.STATE_CLOSED or getattr(transport, "disconnected", False):
            return
        transport.resumeProducing()
        if held:
            transport.writeSequence(held)


def _check(name: str, check, value: Any) -> Any:
    try:
        return check(value, name)
    except Invalid as e:
        raise LocalProtocolError(f"{name!r} {e}.") from None


def _close_code(value: Any) -> int:
    code = _check("code", whole(1000, 4999), value)
    if code not in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED and not 3000 <= code <= 4999:
        raise LocalProtocolError(
            f"'code' {code} is not a close code that may be sent (RFC 6455 §7.4): use 1000, 1001, 1008, 1011 or 3000-4999."
        )
    return code


def _reason(value: Any, default: str) -> str:
    if value is None:
        return default
    return _check("reason", text(max_length=120, valid=lambda s: None if s.isprintable() else "must be printable text"), value)


class FaultSwitch:
    """The fault actions on one relay; see the module docstring. Bad arguments raise :class:`LocalProtocolError`."""

    def __init__(self, relay) -> None:
        self.relay = relay

    @property
    def faults(self) -> ArmedFaults:
        return self.relay.faults

    # -- finding things ---------------------------------------------------------

    def hybrid_connection(self, path: Any) -> str:
        """The hybrid connection name ``path`` stands for (404 if this relay serves no such one)."""
        if not isinstance(path, str):
            raise LocalProtocolError(f"A hybrid connection path is a string, not {type(path).__name__}.")
        name = check_entity_name(path)
        if self.relay.config.entity(name) is None:
            raise LocalProtocolError(f"This relay serves no hybrid connection named {name!r}.", 404)
        return name

    def channels(self, path: str, listener: Any = None) -> list:
        """The control channels of ``path``; only the one with id or tracking id ``listener`` if given."""
        name = self.hybrid_connection(path)
        entity = self.relay.registry.entities.get(name)
        found = list(entity.listeners.values()) if entity is not None else []
        if listener is None:
            return found
        wanted = _check("listener", text(max_length=256), listener).lower()
        chosen = [ch for ch in found if wanted in (ch.key.lower(), ch.tracking_id.lower())]
        if not chosen:
            known = ", ".join(ch.key for ch in found) or "none"
            raise LocalProtocolError(f"No listener {listener!r} is connected to {name!r} (listeners: {known}).", 404)
        return chosen

    def relayed_legs(self, name: str) -> list[tuple[Any, Any]]:
        """The relayed WebSocket connections of hybrid connection ``name``, as (leg, leg) pairs."""
        pairs = {}
        for door in self.relay.connections:
            leg = getattr(door, "_delegate", None)
            role = getattr(leg, "role", None)
            if isinstance(role, RelaySplice) and role.entity.name == name and leg.partner is not None:
                pairs.setdefault(role, (leg, leg.partner))
        return list(pairs.values())

    # -- actions ----------------------------------------------------------------

    def drop(self, path: str, *, abortive: bool = False, code: int = 1001, reason: str | None = None, listener: Any = None) -> int:
        """Close the control channels of ``path`` (a reset if ``abortive``); how many."""
        abortive = _check("abortive", boolean(), abortive)
        code = _close_code(code)
        reason = _reason(reason, _DEFAULT_DROP_REASON)
        chosen = self.channels(path, listener)
        for channel in chosen:
            stall = self.faults.stalls.get(channel)
            if stall is not None:
                stall.end()
            if abortive:
                channel.proto.transport.abortConnection()
            else:
                channel.proto.close_with(code, reason)
        return len(chosen)

    def refuse(self, path: str, *, count: int = 1, status: int = 503, reason: str | None = None, senders: str = "any") -> SenderFault:
        """Refuse the next ``count`` senders of ``path`` with ``status`` and ``reason``."""
        count = _check("count", whole(1, MAX_COUNT), count)
        status = _check("status", whole(400, 599), status)
        reason = sanitize_reason(_reason(reason, ""), status)
        fault = SenderFault("refuse", self._senders(senders), count, status=status, reason=reason)
        self.faults.arm(self.hybrid_connection(path), fault)
        return fault

    def delay(self, path: str, *, seconds: float, count: int = 1, senders: str = "any") -> SenderFault:
        """Hold the next ``count`` accept or request commands to listeners of ``path`` for ``seconds``."""
        count = _check("count", whole(1, MAX_COUNT), count)
        delay = _check("seconds", seconds_within(0, MAX_FAULT_SECONDS), seconds)
        fault = SenderFault("delay", self._senders(senders), count, seconds=delay)
        self.faults.arm(self.hybrid_connection(path), fault)
        return fault

    def cut(self, path: str, *, abortive: bool = False, code: int = 1001, reason: str | None = None) -> int:
        """End the relayed WebSocket connections of ``path`` (a reset to both ends if ``abortive``); how many."""
        abortive = _check("abortive", boolean(), abortive)
        code = _close_code(code)
        reason = _reason(reason, _DEFAULT_CUT_REASON)
        pairs = self.relayed_legs(self.hybrid_connection(path))
        for pair in pairs:
            for leg in pair:
                if abortive:
                    leg.transport.abortConnection()
                elif leg.state == leg.STATE_OPEN:
                    leg.close_with(code, reason)
        return len(pairs)

    def stall(self, path: str, *, seconds: float, listener: Any = None) -> int:
        """Stop reading and writing the control channels of ``path`` for ``seconds``; how many."""
        duration = _check("seconds", seconds_within(0, MAX_FAULT_SECONDS), seconds)
        chosen = [ch for ch in self.channels(path, listener) if ch.proto.transport is not None]
        for channel in chosen:
            current = self.faults.stalls.get(channel)
            if current is not None:
                current.end()
            Stall(self.faults, channel, duration)
        return len(chosen)

    def expire_token(self, path: str, *, listener: Any = None, grace: bool = False) -> int:
        """Treat the tokens of ``path``'s listeners as expired now (closed with 1008 at once, or after the grace)."""
        grace = _check("grace", boolean(), grace)
        chosen = self.channels(path, listener)
        now = self.relay.now()
        for channel in chosen:
            # The relay's own expiry timer does the rest, as for any token:
            # after the grace, or (the grace already spent) at once.
            channel.expiry = int(now) if grace else int(now - channel.grace) - 1
            channel._schedule_expiry()
        return len(chosen)

    def clear(self, path: str) -> dict[str, int]:
        """Disarm the refusals and delays of ``path`` and end its stalls."""
        name = self.hybrid_connection(path)
        disarmed = len(self.faults.pop(name, ()))
        stalls = [stall for channel, stall in list(self.faults.stalls.items()) if channel.entity.name == name]
        for stall in stalls:
            stall.end()
        return {"disarmed": disarmed, "stallsEnded": len(stalls)}

    # -- looking ----------------------------------------------------------------

    def describe(self, path: str | None = None) -> list[dict[str, Any]]:
        """Hybrid connections with listeners or armed faults (or just ``path``): listeners, connections, faults."""
        if path is not None:
            names = [self.hybrid_connection(path)]
        else:
            names = sorted(set(self.relay.registry.entities) | set(self.faults))
        now = self.relay.now()
        shown = []
        for name in names:
            entity = self.relay.registry.entities.get(name)
            listeners = []
            for channel in (entity.listeners.values() if entity is not None else ()):
                entry: dict[str, Any] = {"id": channel.key, "trackingId": channel.tracking_id, "tokenExpiry": channel.expiry}
                peer = channel.proto.transport.getPeer() if channel.proto.transport is not None else None
                if peer is not None and hasattr(peer, "host"):
                    entry["remote"] = f"{peer.host}:{peer.port}"
                stall = self.faults.stalls.get(channel)
                if stall is not None:
                    entry["stalledForSeconds"] = round(max(0.0, stall.until - now), 3)
                listeners.append(entry)
            shown.append({
                "path": name,
                "listeners": listeners,
                "relayedConnections": len(self.relayed_legs(name)),
                "armedFaults": [fault.describe() for fault in self.faults.get(name, ())],
            })
        return shown

    @staticmethod
    def _senders(value: Any) -> str:
        if value not in SENDER_KINDS:
            raise LocalProtocolError(f"'senders' must be one of {', '.join(map(repr, SENDER_KINDS))}, not {value!r}.")
        return value


#: The actions by their API names, for the admin interface: name -> method name.
ACTIONS = {
    "drop": "drop",
    "refuse": "refuse",
    "delay": "delay",
    "cut": "cut",
    "stall": "stall",
    "expireToken": "expire_token",
    "clear": "clear",
}

