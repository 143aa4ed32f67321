"""The local relay's configuration: rules, hybrid connections, limits, timeouts.

A relay runs with a :class:`RelayConfig`. By default it serves any entity path
(created on first use) under one namespace-wide SAS rule; a TOML file (see
:func:`load_config` and the README) can name the hybrid connections, give them
their own rules and ``requiresClientAuthorization``, and tune limits.
"""
from __future__ import annotations

import base64
import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from txhyco.protocol.addresses import check_entity_name
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.http import ACCEPT_TIMEOUT, HEADER_METADATA_LIMIT, RESPONSE_DEADLINE, STREAM_IDLE_LIMIT
from txhyco.protocol.sas import Rights, SasRule

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"


def generate_key() -> str:
    """A fresh 256-bit SAS key, base64 like the keys Azure generates."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


@dataclass(frozen=True)
class Limits:
    """Numbers a relay operator may tune. Times in seconds, sizes in bytes."""

    max_listeners: int = 25
    #: WebSocket messages relayed between sender and listener (0 = no limit).
    max_message_size: int = 64 * 1024 * 1024
    #: Messages a listener may send on its control channel (commands and bodies).
    max_control_message_size: int = 1024 * 1024
    # The defaults the relay shares with listeners come from the core.
    max_header_size: int = HEADER_METADATA_LIMIT
    accept_timeout: float = ACCEPT_TIMEOUT
    response_timeout: float = RESPONSE_DEADLINE
    stream_idle_timeout: float = STREAM_IDLE_LIMIT
    handshake_timeout: float = 10.0
    #: Seconds a token may be past its expiry before the relay refuses it.
    token_grace: float = 300.0
    #: Status an HTTP sender gets when no listener is connected: 502 per
    #: Microsoft's documentation (404 is what WebSocket senders see).
    no_listener_status: int = 502


@dataclass(frozen=True)
class HybridConnectionConfig:
    name: str
    requires_client_authorization: bool = True
    rules: Mapping[str, SasRule] = field(default_factory=dict)
    user_metadata: str = ""


@dataclass(frozen=True)
class RelayConfig:
    #: Namespace-wide rules, looked up after the entity's own rules.
    rules: Mapping[str, SasRule]
    #: Named hybrid connections; with ``restrict`` only these exist.
    hybrid_connections: Mapping[str, HybridConnectionConfig] = field(default_factory=dict)
    restrict: bool = False
    limits: Limits = field(default_factory=Limits)
    #: Extra host names a token's audience may name (besides the Host header).
    hosts: tuple[str, ...] = ()

    @classmethod
    def with_key(cls, key_name: str = DEFAULT_KEY_NAME, key: str | None = None) -> RelayConfig:
        """One namespace rule with Listen, Send and Manage; a fresh key if none."""
        rule = SasRule(name=key_name, primary_key=key or generate_key(), rights=Rights.LISTEN | Rights.SEND | Rights.MANAGE)
        return cls(rules={key_name: rule})

    @property
    def root_rule(self) -> SasRule:
        """The rule whose key the relay prints in its connection string."""
        for rule in self.rules.values():
            if Rights.MANAGE in rule.rights:
                return rule
        return next(iter(self.rules.values()))

    def entity(self, name: str) -> HybridConnectionConfig | None:
        hc = self.hybrid_connections.get(name)
        if hc is None and not self.restrict:
            return HybridConnectionConfig(name=name)
        return hc

    def rules_for(self, entity: HybridConnectionConfig) -> dict[str, SasRule]:
        merged = dict(self.rules)
        merged.update(entity.rules)
        return merged


def _rules(raw: Any, where: str) -> dict[str, SasRule]:
    if not isinstance(raw, list):
        raise ProtocolError(f"{where}: 'rules' must be a list of tables ([[rules]] in TOML).")
    rules = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ProtocolError(f"{where}: rule {i + 1} must be a table.")
        name = item.get("name")
        key = item.get("key") or item.get("primaryKey")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}: rule {i + 1} needs a 'name'.")
        if not isinstance(key, str) or not key:
            raise ProtocolError(f"{where}: rule '{name}' needs a 'key'.")
        secondary = item.get("secondaryKey")
        if secondary is not None and not isinstance(secondary, str):
            raise ProtocolError(f"{where}: rule '{name}': 'secondaryKey' must be a string.")
        rights_raw = item.get("rights", ["Listen", "Send", "Manage"])
        if isinstance(rights_raw, str):
            rights_raw = [rights_raw]
        try:
            rights = Rights.parse(rights_raw)
        except ProtocolError as e:
            raise ProtocolError(f"{where}: rule '{name}': 'rights': {e.message}") from None
        rules[name] = SasRule(name=name, primary_key=key, secondary_key=secondary, rights=rights)
    return rules


_LIMIT_KEYS = {
    "maxListeners": ("max_listeners", int),
    "maxMessageSize": ("max_message_size", int),
    "maxControlMessageSize": ("max_control_message_size", int),
    "maxHeaderSize": ("max_header_size", int),
    "acceptTimeout": ("accept_timeout", float),
    "responseTimeout": ("response_timeout", float),
    "streamIdleTimeout": ("stream_idle_timeout", float),
    "handshakeTimeout": ("handshake_timeout", float),
    "tokenGrace": ("token_grace", float),
    "noListenerStatus": ("no_listener_status", int),
}


_LIMIT_MAX = 2**53  # exact as int and float; NaN and inf fail the range check


def _limits(raw: Any) -> Limits:
    if not isinstance(raw, dict):
        raise ProtocolError("'limits' must be a table.")
    changes = {}
    for key, value in raw.items():
        if key not in _LIMIT_KEYS:
            raise ProtocolError(f"limits: unknown setting '{key}' (known: {', '.join(sorted(_LIMIT_KEYS))}).")
        attr, kind = _LIMIT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= _LIMIT_MAX:
            raise ProtocolError(f"limits: '{key}' must be a number from 0 to {_LIMIT_MAX}.")
        if kind is int and value != int(value):
            raise ProtocolError(f"limits: '{key}' must be a whole number.")
        changes[attr] = kind(value)
    return replace(Limits(), **changes)


def parse_config(doc: Mapping[str, Any], *, key_name: str | None = None, key: str | None = None) -> RelayConfig:
    """Build a :class:`RelayConfig` from a parsed TOML document.

    ``key_name``/``key`` (the command line's ``--key-name``/``--key``) add or
    replace a namespace rule with all rights.
    """
    known = {"rules", "hybridConnections", "restrict", "limits", "hosts"}
    unknown = set(doc) - known
    if unknown:
        raise ProtocolError(f"config: unknown top-level setting(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))}).")
    rules = _rules(doc.get("rules", []), "config")
    if key_name or key or not rules:
        # First, so it is the root rule whose key the relay prints.
        base = RelayConfig.with_key(key_name or DEFAULT_KEY_NAME, key)
        rules = {**base.rules, **{n: r for n, r in rules.items() if n not in base.rules}}
    hcs = {}
    raw_hcs = doc.get("hybridConnections", [])
    if not isinstance(raw_hcs, list):
        raise ProtocolError("config: 'hybridConnections' must be a list of tables ([[hybridConnections]]).")
    for i, item in enumerate(raw_hcs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip("/"):
            raise ProtocolError(f"config: hybrid connection {i + 1} needs a 'name'.")
        try:
            name = check_entity_name(item["name"])
        except ProtocolError as e:
            raise ProtocolError(f"config: hybrid connection {i + 1}: {e.message}") from None
        rca = item.get("requiresClientAuthorization", True)
        if not isinstance(rca, bool):
            raise ProtocolError(f"config: hybrid connection '{name}': requiresClientAuthorization must be true or false.")
        meta = item.get("userMetadata", "")
        hcs[name] = HybridConnectionConfig(
            name=name,
            requires_client_authorization=rca,
            rules=_rules(item.get("rules", []), f"hybrid connection '{name}'"),
            user_metadata=str(meta),
        )
    restrict = doc.get("restrict", bool(hcs))
    if not isinstance(restrict, bool):
        raise ProtocolError("config: 'restrict' must be true or false.")
    hosts = doc.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ProtocolError("config: 'hosts' must be a list of host names.")
    return RelayConfig(
        rules=rules,
        hybrid_connections=hcs,
        restrict=restrict,
        limits=_limits(doc.get("limits", {})),
        hosts=tuple(h.lower() for h in hosts),
    )


def load_config(path: str, *, key_name: str | None = None, key: str | None = None) -> RelayConfig:
    """Read a TOML config file; errors name the file and what is wrong."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ProtocolError(f"cannot read config file {path}: {e.strerror}.") from None
    except tomllib.TOMLDecodeError as e:
        raise ProtocolError(f"config file {path} is not valid TOML: {e}.") from None
    try:
        return parse_config(doc, key_name=key_name, key=key)
    except ProtocolError as e:
        raise ProtocolError(f"{path}: {e.message}") from None
