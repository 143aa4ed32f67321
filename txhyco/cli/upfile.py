"""The ``txhyco up`` file: listeners and connectors as TOML, every key declared.

::

    connectionStringEnv = "HYCO_CONNECTION_STRING"   # where connection strings come from (default)

    [[listen]]
    path = "web"
    http = "http://127.0.0.1:8080"      # exactly one of echo / forward / http
    inspect = true                      # with http: an inspector page (true: 127.0.0.1:4040;
                                        # or a port, or a server endpoint string)

    [[listen]]
    name = "db-in"                      # default: the path; names differ within [[listen]]
    path = "db"
    forward = "127.0.0.1:5432"          # [HOST:]PORT or a Twisted client endpoint string
    connectionStringEnv = "OTHER_RELAY" # this entry's relay, from another variable

    [[connect]]
    path = "db"
    forward = "15432"                   # [HOST:]PORT or a Twisted server endpoint string

    [[connect]]
    path = "dns"
    forward = "udp:5353"                # UDP: a flow per sender address
    udpIdle = 30                        # seconds (default 60)

The tables are read with :mod:`txhyco.relay.schema`, so an unknown key is an
error naming the closest known one. Secrets need not be in the file: a
connection string comes from an environment variable (``connectionStringEnv``,
per entry or for all); ``connectionString`` inline is accepted for a
throwaway local relay.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from txhyco.protocol.errors import LocalProtocolError, ProtocolError
from txhyco.relay.schema import TOP_LEVEL, Invalid, Setting, Table, boolean, kind, seconds, tables, text, whole

from .common import CONNECTION_STRING_ENV, CliError


def _path_problem(value: str) -> str | None:
    from txhyco.protocol.addresses import check_entity_name

    try:
        check_entity_name(value)
    except ProtocolError as e:
        return e.message
    return None


def _env_name_problem(value: str) -> str | None:
    if not value.replace("_", "a").isalnum() or value[0].isdigit():
        return "is not an environment variable name (letters, digits and _)"
    return None


@dataclass(frozen=True)
class Entry:
    """One listener (``kind == "listen"``) or connector (``"connect"``) of the file."""

    kind: str
    name: str
    path: str
    echo: bool = False
    forward: str | None = None
    http: str | None = None
    host_header: str | None = None
    upstream_ca_file: str | None = None
    connection_string: str | None = None
    connection_string_env: str | None = None
    ca_file: str | None = None
    udp_idle: float | None = None
    inspect: str | None = None  # the inspector page's endpoint
    inspect_keep: int | None = None
    inspect_body_cap: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def label(self) -> str:
        return f"[[{self.kind}]] {self.name!r}"


def _build(kind: str):
    def build(*, path: str, name: str | None = None, **fields) -> Entry:
        path = path.strip("/")
        entry = Entry(kind=kind, name=name or path, path=path, **fields)
        if kind == "listen":
            chosen = [k for k, given in (("echo", entry.echo), ("forward", entry.forward), ("http", entry.http)) if given]
            if len(chosen) != 1:
                raise LocalProtocolError(
                    f"{entry.label} needs exactly one of 'echo = true', 'forward' or 'http', not "
                    f"{' and '.join(repr(c) for c in chosen) or 'none'}."
                )
            if entry.http is None and (entry.host_header is not None or entry.upstream_ca_file is not None):
                raise LocalProtocolError(f"{entry.label}: 'hostHeader' and 'upstreamCaFile' go with 'http'.")
        if entry.inspect is None and (entry.inspect_keep is not None or entry.inspect_body_cap is not None):
            raise LocalProtocolError(f"{entry.label}: 'inspectKeep' and 'inspectBodyCap' go with 'inspect'.")
        if entry.inspect is not None and entry.http is None:
            raise LocalProtocolError(f"{entry.label}: 'inspect' goes with 'http'.")
        return entry

    return build


def _inspect(value, where: str) -> str | None:
    """``inspect``: true (the default page endpoint), false, a port number or a server endpoint string."""
    from txhyco.inspector.options import DEFAULT_ENDPOINT, InspectOptionError, inspect_endpoint

    if isinstance(value, bool):
        return DEFAULT_ENDPOINT if value else None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        raise Invalid(f"must be true, false, a port number or a server endpoint string, not {kind(value)}")
    try:
        return inspect_endpoint(value, "inspect")
    except InspectOptionError as e:
        raise Invalid(str(e)) from None


_COMMON = {
    "name": Setting(text(max_length=100), "name"),
    "path": Setting(text(max_length=260, valid=_path_problem), "path", required=True),
    "connectionString": Setting(text(max_length=4096, secret=True), "connection_string"),
    "connectionStringEnv": Setting(text(max_length=200, valid=_env_name_problem), "connection_string_env"),
    "caFile": Setting(text(max_length=4096), "ca_file"),
    "udpIdle": Setting(seconds(0, 86400), "udp_idle"),
}

LISTEN = Table(
    "[[listen]]",
    {
        **_COMMON,
        "echo": Setting(boolean(), "echo"),
        "forward": Setting(text(max_length=4096), "forward"),
        "http": Setting(text(max_length=4096), "http"),
        "hostHeader": Setting(text(max_length=1024), "host_header"),
        "upstreamCaFile": Setting(text(max_length=4096), "upstream_ca_file"),
        "inspect": Setting(_inspect, "inspect"),
        "inspectKeep": Setting(whole(1, 100_000), "inspect_keep"),
        "inspectBodyCap": Setting(whole(0, 64 * 1024 * 1024), "inspect_body_cap"),
    },
    build=_build("listen"),
)

CONNECT = Table(
    "[[connect]]",
    {**_COMMON, "forward": Setting(text(max_length=4096), "forward", required=True)},
    build=_build("connect"),
)

DOCUMENT = Table(
    TOP_LEVEL,
    {
        "connectionStringEnv": Setting(text(max_length=200, valid=_env_name_problem), "connection_string_env"),
        "caFile": Setting(text(max_length=4096), "ca_file"),
        "listen": Setting(tables(LISTEN), "listen"),
        "connect": Setting(tables(CONNECT), "connect"),
    },
)

def load(path: str) -> dict[tuple[str, str], Entry]:
    """The entries of the file at ``path``, by (kind, name); a :class:`CliError` sentence if it is not usable."""
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}.", 2) from None
    except tomllib.TOMLDecodeError as e:
        raise CliError(f"{path} is not valid TOML: {e}.", 2) from None
    try:
        document = DOCUMENT.read(raw)
    except LocalProtocolError as e:
        raise CliError(f"{path}: {e.message}", 2) from None
    entries = {}
    for entry in document.get("listen", []) + document.get("connect", []):
        entry = replace(
            entry,
            connection_string_env=entry.connection_string_env or document.get("connection_string_env"),
            ca_file=entry.ca_file or document.get("ca_file"),
        )
        check_entry(path, entry)
        entries[entry.key] = entry
    if not entries:
        raise CliError(f"{path} has no [[listen]] or [[connect]] entry.", 2)
    return entries


def check_entry(path: str, entry: Entry) -> None:
    """Usage errors an entry's values can have beyond their types (its target, its URL)."""
    from .listen import http_target
    from .targets import parse_target

    try:
        if entry.forward is not None:
            target = parse_target(entry.forward, listening=entry.kind == "connect", option="'forward'")
            if entry.udp_idle is not None and target.kind != "udp":
                raise CliError("'udpIdle' goes with 'forward = \"udp:...\"'.", 2)
        elif entry.udp_idle is not None:
            raise CliError("'udpIdle' goes with 'forward = \"udp:...\"'.", 2)
        if entry.http is not None:
            http_target(entry.http)
    except CliError as e:
        raise CliError(f"{path}: {entry.label}: {e.message}", 2) from None


def connection_string_of(entry: Entry) -> tuple[str, str]:
    """(connection string, where it came from) for ``entry``; a CliError when there is none."""
    if entry.connection_string is not None:
        return entry.connection_string, "'connectionString'"
    env = entry.connection_string_env or CONNECTION_STRING_ENV
    value = os.environ.get(env, "").strip()
    if not value:
        raise CliError(f"{entry.label}: no connection string: set ${env} (txhyco relay prints one).")
    return value, f"${env}"


def hybrid_connection_of(entry: Entry, proxy=None):
    """``entry``'s hybrid connection; ``proxy`` as :meth:`HybridConnection.from_args` takes it (up's --proxy)."""
    from txhyco.address import HybridConnection

    text_value, source = connection_string_of(entry)
    try:
        return HybridConnection.from_args(connection_string=text_value, path=entry.path, ca_file=entry.ca_file, proxy=proxy)
    except ProtocolError as e:
        raise CliError(f"{entry.label}: the connection string in {source} is not usable: {e.message}") from None


def inspect_options_of(entry: Entry):
    """The entry's :class:`txhyco.inspector.options.InspectOptions`, or None."""
    if entry.inspect is None:
        return None
    from txhyco.inspector.options import InspectOptions

    options = InspectOptions(entry.inspect)
    return InspectOptions(entry.inspect, entry.inspect_keep or options.limit,
                          options.body_cap if entry.inspect_body_cap is None else entry.inspect_body_cap)
