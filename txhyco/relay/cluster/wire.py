"""The messages cluster nodes send each other through Redis pub/sub, as JSON.

- ``command``: to the node holding a listener: send this ``accept`` or
  address-only ``request`` on the listener's control channel
  (``slot``, ``hc``, ``from`` the sender's node instance, ``ref`` the
  rendezvous key at the sender's node, ``cmd`` the command's JSON).
- ``gone``: back to the sender's node: the listener could not be given the
  command, or went away before using it (``ref``, ``status``, ``why``).
- ``add`` / ``del``: to every node: a listener came or went (``hc``,
  ``field``, ``id`` its tracking id).

:func:`decode` refuses anything else with :class:`WireError` (Redis is shared
infrastructure: a stray publisher must not crash a node).
"""
from __future__ import annotations

import json
from dataclasses import dataclass


class WireError(ValueError):
    """A pub/sub message that is not one of ours."""


@dataclass(frozen=True)
class ForwardedCommand:
    slot: str
    hc: str
    origin: str
    ref: str
    command: str


@dataclass(frozen=True)
class Gone:
    ref: str
    status: int
    why: str


@dataclass(frozen=True)
class ListenerEvent:
    added: bool
    hc: str
    field: str
    tracking_id: str


Message = ForwardedCommand | Gone | ListenerEvent

#: far above any command the relay forwards (accept headers are bounded by the head limit)
MAX_MESSAGE = 256 * 1024


def encode(message: Message) -> str:
    if isinstance(message, ForwardedCommand):
        obj = {"t": "command", "slot": message.slot, "hc": message.hc, "from": message.origin, "ref": message.ref, "cmd": message.command}
    elif isinstance(message, Gone):
        obj = {"t": "gone", "ref": message.ref, "status": message.status, "why": message.why}
    else:
        obj = {"t": "add" if message.added else "del", "hc": message.hc, "field": message.field, "id": message.tracking_id}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def decode(data: str | bytes) -> Message:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("not UTF-8") from None
    if not isinstance(data, str) or len(data) > MAX_MESSAGE:
        raise WireError("not a message of ours")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise WireError("not JSON") from None
    if not isinstance(obj, dict):
        raise WireError("not a JSON object")
    kind = obj.get("t")
    if kind == "command":
        return ForwardedCommand(_text(obj, "slot"), _text(obj, "hc"), _text(obj, "from"), _text(obj, "ref"), _text(obj, "cmd"))
    if kind == "gone":
        status = obj.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise WireError("a gone message needs a status from 400 to 599")
        return Gone(_text(obj, "ref"), status, _text(obj, "why"))
    if kind in ("add", "del"):
        return ListenerEvent(kind == "add", _text(obj, "hc"), _text(obj, "field"), _text(obj, "id", empty=True))
    raise WireError(f"unknown message type {str(kind)[:20]!r}")


def _text(obj: dict, key: str, *, empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (not value and not empty):
        raise WireError(f"{key!r} must be a non-empty string")
    return value
