"""A node's cluster settings: where Redis is, how other nodes' listeners reach this one.

Given by ``txhyco relay --cluster URL --advertise HOST:PORT [--node-id ID]`` or
by the ``[cluster]`` table of the relay's TOML (:mod:`txhyco.relay.config`).
Every value is checked here; a bad one is a
:class:`~txhyco.protocol.errors.LocalProtocolError` whose sentence never
repeats a Redis password.
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote

from txhyco.protocol.errors import LocalProtocolError

#: Seconds a node's registration lives in Redis without being refreshed: a
#: node that dies leaves no listener behind after this long.
DEFAULT_TTL = 6.0
MIN_TTL = 1.0
MAX_TTL = 10.0

DEFAULT_REDIS_PORT = 6379

#: where a node finds the Redis password when its Redis URL has none
PASSWORD_ENV = "HYCO_REDIS_PASSWORD"

_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}\Z|\[[0-9A-Fa-f:.]{2,45}\]\Z")


@dataclass(frozen=True)
class ClusterSettings:
    redis_host: str
    redis_port: int
    redis_db: int
    #: the address other nodes' listeners open rendezvous sockets to (this node's own port)
    advertise_host: str
    advertise_port: int
    node_id: str
    ttl: float = DEFAULT_TTL
    #: Redis AUTH password, if the URL has one (never shown)
    redis_password: str | None = field(default=None, repr=False)

    @property
    def redis_url(self) -> str:
        """The Redis URL without its password (for logs and messages)."""
        auth = ":***@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def advertise(self) -> str:
        return f"{self.advertise_host}:{self.advertise_port}"


def parse_redis_url(url: str) -> tuple[str, int, int, str | None]:
    """``redis://[:PASSWORD@]HOST[:PORT][/DB]`` as (host, port, db, password)."""
    if not isinstance(url, str) or not url.startswith("redis://"):
        raise LocalProtocolError("The cluster's Redis address must look like redis://HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0).")
    rest = url[len("redis://"):]
    password = None
    if "@" in rest:
        auth, rest = rest.rsplit("@", 1)
        password = unquote(auth.split(":", 1)[1] if ":" in auth else auth) or None
    where, _, db_text = rest.partition("/")
    shown = f"redis://{'***@' if password else ''}{where}/{db_text}"
    if "?" in db_text or "#" in db_text:
        raise LocalProtocolError(f"The cluster's Redis address {shown!r} takes no query or fragment.")
    db = 0
    if db_text:
        if not db_text.isdigit() or int(db_text) > 10000:
            raise LocalProtocolError(f"The database in the cluster's Redis address {shown!r} must be a number (0 to 10000).")
        db = int(db_text)
    host, port = _host_port(where, DEFAULT_REDIS_PORT, f"the cluster's Redis address {shown!r}")
    return host, port, db, password


def parse_advertise(text: str) -> tuple[str, int]:
    """``HOST:PORT`` that listeners on other nodes can reach this node at."""
    if not isinstance(text, str):
        raise LocalProtocolError("The advertised address must be HOST:PORT.")
    host, port = _host_port(text, None, f"the advertised address {text!r}")
    if host in ("0.0.0.0", "[::]"):
        raise LocalProtocolError(f"The advertised address {text!r} must name this node as others reach it, not a wildcard.")
    return host, port


def check_node_id(node_id: str) -> str:
    if not isinstance(node_id, str) or not _NODE_ID.match(node_id):
        raise LocalProtocolError(f"A node id has 1 to 64 letters, digits, '.', '_' or '-', not {node_id!r}.")
    return node_id


def default_node_id(advertise_host: str, advertise_port: int) -> str:
    """Host name and advertised port: distinct for nodes on one machine, readable in metrics."""
    base = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "node"
    return f"{base}-{advertise_port}"


def cluster_settings(*, redis: str, advertise: str | None, node_id: str | None = None, ttl: float | None = None) -> ClusterSettings:
    """Checked settings from the command line's or the TOML's values."""
    host, port, db, password = parse_redis_url(redis)
    if password is None:
        # A password on a command line shows in process listings: the environment keeps it out.
        password = os.environ.get(PASSWORD_ENV) or None
    if not advertise:
        raise LocalProtocolError(
            "A cluster node needs its advertised address (--advertise HOST:PORT or advertise in [cluster]): "
            "listeners on other nodes open their rendezvous sockets to it."
        )
    adv_host, adv_port = parse_advertise(advertise)
    node = check_node_id(node_id) if node_id is not None else default_node_id(adv_host, adv_port)
    if ttl is None:
        ttl = DEFAULT_TTL
    if not (MIN_TTL <= ttl <= MAX_TTL):
        raise LocalProtocolError(f"The cluster's ttl must be from {MIN_TTL:g} to {MAX_TTL:g} seconds, not {ttl:g}.")
    return ClusterSettings(host, port, db, adv_host, adv_port, node, float(ttl), password)


def _host_port(text: str, default_port: int | None, what: str) -> tuple[str, int]:
    if text.startswith("["):
        if "]" not in text:
            raise LocalProtocolError(f"{what[0].upper()}{what[1:]} has an unclosed '[' around an IPv6 address.")
        host, _, after = text.partition("]")
        host += "]"
        port_text = after[1:] if after.startswith(":") else ("" if not after else None)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if port_text is None or not host or not _HOST.match(host):
        raise LocalProtocolError(f"{what[0].upper()}{what[1:]} must be HOST:PORT with a host name or address.")
    if not port_text:
        if default_port is None:
            raise LocalProtocolError(f"{what[0].upper()}{what[1:]} needs a port (HOST:PORT).")
        return host.lower(), default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise LocalProtocolError(f"The port of {what} must be a number from 1 to 65535.")
    return host.lower(), int(port_text)
