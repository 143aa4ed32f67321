"""The local relay's configuration: rules, hybrid connections, limits, timeouts.

A relay runs with a :class:`RelayConfig`. By default it serves any entity path
(created on first use) under one namespace-wide SAS rule; a TOML file (see
:func:`load_config` and the README) can name the hybrid connections, give them
their own rules and ``requiresClientAuthorization``, and tune limits. Each of
the file's tables is declared below (see :mod:`txhyco.relay.schema`): a key it
does not declare, or a value of the wrong type or range, stops the relay
before it starts.
"""
from __future__ import annotations

import base64
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from txhyco._suggest import unknown_name
from txhyco.protocol.addresses import check_entity_name
from txhyco.protocol.errors import LocalProtocolError, ProtocolError
from txhyco.protocol.http import ACCEPT_TIMEOUT, HEADER_METADATA_LIMIT, RESPONSE_DEADLINE, STREAM_IDLE_LIMIT
from txhyco.protocol.sas import Rights, SasRule

from .entra import ENTRA_ID, ROLE_ASSIGNMENT, EntraVerifier, build_verifier
from .schema import TOP_LEVEL, Invalid, Setting, Table, array, boolean, kind, seconds, table, tables, text, whole

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
    #: Seconds between the relay's Pings on a quiet control channel (0 = none).
    listener_ping_interval: float = 20.0
    #: Seconds a control channel has to answer a Ping (or send anything)
    #: before the relay drops it: a silent listener is gone within
    #: interval + timeout.
    listener_ping_timeout: float = 10.0
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
    #: Twisted server endpoint of the admin interface (txhyco.relay.admin); None: none.
    admin: str | None = None
    #: Entra ID tokens and role assignments (txhyco.relay.entra); None: JWTs get 401.
    entra: EntraVerifier | None = None
    #: txhyco.relay.cluster.settings.ClusterSettings when this relay is a cluster node; None: a single relay
    cluster: Any = None

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


# -- the file's tables (see txhyco.relay.schema and the README) -----------------------


def _right_names(value: Any, where: str) -> Rights:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        raise Invalid(f"must be an array of rights (Listen, Send, Manage), not {kind(value)}")
    if not names:
        raise Invalid("must name at least one right (Listen, Send or Manage): an empty array grants nothing")
    known = {member.name.capitalize(): member for member in Rights}
    result = Rights(0)
    for name in names:
        if not isinstance(name, str):
            raise Invalid(f"must hold names of rights, not {kind(name)}")
        right = known.get(name.capitalize())
        if right is None and isinstance(value, str) and any(c in name for c in ", |"):
            raise Invalid('must be an array to name several rights, e.g. ["Listen", "Send"]')
        if right is None:
            raise Invalid(f"names an {unknown_name('right', name, known)}")
        if right in result:
            raise Invalid(f"names {name.capitalize()} twice")
        result |= right
    return result


def _connection_string_part_problem(value: str) -> str | None:
    """What keeps a rule's name or key out of a connection string (the message never shows a key)."""
    if value != value.strip() or ";" in value or not value.isprintable():
        return "must not hold ';', control characters or leading/trailing spaces (it goes into connection strings)"
    return None


def _entity_name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {kind(value)}")
    try:
        return check_entity_name(value)
    except ProtocolError as e:
        raise Invalid(f"is wrong: {e.message.rstrip('.')}") from None


def _host_problem(host: str) -> str | None:
    if not all(c.isascii() and (c.isalnum() or c in ".-_:[]") for c in host):
        return "must be a host name (letters, digits, '.', '-', ':', '[', ']')"
    return None


def _endpoint_problem(description: str) -> str | None:
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, description)  # parsing only; nothing listens yet
    except Exception as e:  # the endpoint parsers raise ValueError, TypeError, KeyError, OSError…
        detail = str(e).strip().rstrip(".") or e.__class__.__name__
        return f"must be a Twisted server endpoint string such as 'tcp:9091:interface=127.0.0.1' ({detail})"
    return None


_rule_key = text(max_length=1024, secret=True, valid=_connection_string_part_problem)
_RULE = {
    "name": Setting(text(max_length=256, valid=_connection_string_part_problem), "name", required=True),
    "key": Setting(_rule_key, "primary_key", required=True),
    "primaryKey": Setting(_rule_key, "primary_key", required=True),  # Azure's name for it
    "secondaryKey": Setting(_rule_key, "secondary_key"),
    # Required: a rule that named no rights (or misspelt the key) once got them all.
    "rights": Setting(_right_names, "rights", required=True),
}
NAMESPACE_RULE = Table("[[rules]]", _RULE, build=SasRule)
ENTITY_RULE = Table("[[hybridConnections.rules]]", _RULE, build=SasRule)


def _hybrid_connection(name: str, rules: Iterable[SasRule] = (), **fields: Any) -> HybridConnectionConfig:
    return HybridConnectionConfig(name=name, rules={rule.name: rule for rule in rules}, **fields)


HYBRID_CONNECTION = Table(
    "[[hybridConnections]]",
    {
        "name": Setting(_entity_name, "name", required=True),
        "requiresClientAuthorization": Setting(boolean(), "requires_client_authorization"),
        "rules": Setting(tables(ENTITY_RULE), "rules"),
        "userMetadata": Setting(text(max_length=1024, empty=True), "user_metadata"),
    },
    build=_hybrid_connection,
)

_DAY = 86400.0
_SIZE_MAX = 2**32

LIMITS = Table(
    "[limits]",
    {
        "maxListeners": Setting(whole(1, 10000), "max_listeners"),
        "maxMessageSize": Setting(whole(1, _SIZE_MAX, zero="no limit"), "max_message_size"),
        "maxControlMessageSize": Setting(whole(4096, _SIZE_MAX), "max_control_message_size"),
        "maxHeaderSize": Setting(whole(1024, 16 * 1024 * 1024), "max_header_size"),
        "acceptTimeout": Setting(seconds(0, _DAY), "accept_timeout"),
        "responseTimeout": Setting(seconds(0, _DAY), "response_timeout"),
        "streamIdleTimeout": Setting(seconds(0, _DAY), "stream_idle_timeout"),
        "handshakeTimeout": Setting(seconds(0, _DAY), "handshake_timeout"),
        "tokenGrace": Setting(seconds(0, _DAY, low_included=True), "token_grace"),
        "listenerPingInterval": Setting(seconds(0, 3600, low_included=True), "listener_ping_interval"),
        "listenerPingTimeout": Setting(seconds(0, 3600), "listener_ping_timeout"),
        "noListenerStatus": Setting(whole(400, 599), "no_listener_status"),
    },
    build=Limits,
)

def _cluster(**fields: Any) -> Any:
    from .cluster.settings import cluster_settings

    try:
        return cluster_settings(**fields)
    except ProtocolError as e:
        raise LocalProtocolError(f"[cluster]: {e.message}") from None


CLUSTER = Table(
    "[cluster]",
    {
        "redis": Setting(text(max_length=1024, secret=True), "redis", required=True),
        "advertise": Setting(text(max_length=300), "advertise", required=True),
        "nodeId": Setting(text(max_length=64), "node_id"),
        "ttl": Setting(seconds(0, 10), "ttl"),
    },
    build=_cluster,
)

DOCUMENT = Table(
    TOP_LEVEL,
    {
        "rules": Setting(tables(NAMESPACE_RULE), "rules"),
        "hybridConnections": Setting(tables(HYBRID_CONNECTION), "hybrid_connections"),
        "restrict": Setting(boolean(), "restrict"),
        "limits": Setting(table(LIMITS), "limits"),
        "hosts": Setting(array(text(max_length=253, valid=_host_problem)), "hosts"),
        "admin": Setting(text(max_length=1024, valid=_endpoint_problem), "admin"),
        "entraId": Setting(table(ENTRA_ID), "entra_id"),
        "roleAssignments": Setting(tables(ROLE_ASSIGNMENT, named_by="identity"), "role_assignments"),
        "cluster": Setting(table(CLUSTER), "cluster"),
    },
)


def parse_config(doc: Mapping[str, Any], *, key_name: str | None = None, key: str | None = None,
                 base_dir: str | None = None) -> RelayConfig:
    """Build a :class:`RelayConfig` from a parsed TOML document.

    Every key must be one the README documents and every value of the right
    type and range, else :class:`ProtocolError` says which (one sentence).
    ``key_name``/``key`` (the command line's ``--key-name``/``--key``) add or
    replace a namespace rule with all rights. ``base_dir`` is where relative
    file names in it (``[entraId] jwksFile``) start.
    """
    fields = DOCUMENT.read(doc)
    rules = {rule.name: rule for rule in fields.get("rules", [])}
    if key_name or key or not rules:
        # First, so it is the root rule whose key the relay prints.
        base = RelayConfig.with_key(key_name or DEFAULT_KEY_NAME, key)
        rules = {**base.rules, **{n: r for n, r in rules.items() if n not in base.rules}}
    hcs = {hc.name: hc for hc in fields.get("hybrid_connections", [])}
    restrict = fields.get("restrict", bool(hcs))
    entra = build_verifier(fields.get("entra_id"), fields.get("role_assignments", []), base_dir=base_dir,
                           entity_names=hcs if restrict else None)
    return RelayConfig(
        rules=rules,
        hybrid_connections=hcs,
        restrict=restrict,
        limits=fields.get("limits", Limits()),
        hosts=tuple(h.lower() for h in fields.get("hosts", [])),
        admin=fields.get("admin"),
        entra=entra,
        cluster=fields.get("cluster"),
    )


def load_config(path: str, *, key_name: str | None = None, key: str | None = None) -> RelayConfig:
    """Read a TOML config file; errors name the file and what is wrong."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise LocalProtocolError(f"cannot read config file {path}: {e.strerror}.") from None
    except tomllib.TOMLDecodeError as e:
        raise LocalProtocolError(f"config file {path} is not valid TOML: {e}.") from None
    except UnicodeDecodeError:
        raise LocalProtocolError(f"config file {path} is not valid TOML: it is not UTF-8 text.") from None
    except RecursionError:
        raise LocalProtocolError(f"config file {path} is not valid TOML: it nests arrays or tables too deeply.") from None
    except ValueError as e:  # a NUL in the name, or an integer too long for Python to convert
        if "\0" in path:
            raise LocalProtocolError(f"{path!r} is not a file name.") from None
        reason = str(e).split(";")[0].rstrip(".")
        raise LocalProtocolError(f"config file {path} is not valid TOML: {reason}.") from None
    try:
        return parse_config(doc, key_name=key_name, key=key, base_dir=os.path.dirname(os.path.abspath(path)))
    except ProtocolError as e:
        raise LocalProtocolError(f"{path}: {e.message}") from None
