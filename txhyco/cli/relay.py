"""``txhyco relay``: run the local Hybrid Connections relay until SIGINT/SIGTERM.

The settings logic (:func:`relay_settings`, :func:`make_service`) is shared
with the twistd plugin ``hyco-relay`` so both start the same service from the
same options.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .common import SECRET_NOTE, CliError, add_subcommand, choose_key, paragraph, run_reactor, start_logging

DEFAULT_LISTEN = "tcp:9090:interface=127.0.0.1"  # txhyco.relay.service.DEFAULT_LISTEN, without importing Twisted

EPILOG = """\
examples:
  txhyco relay
      listen on 127.0.0.1:9090 with the key stored in ~/.config/txhyco/relay.key
      (made on the first run); the first line on stdout is the connection
      string clients use.
  HYCO_RELAY_KEY=$(cat relay.key) txhyco relay --listen tcp:0:interface=127.0.0.1
      a free port, a key from the environment.
  txhyco relay --config relay.toml --self-signed ./tls --metrics tcp:9100:interface=127.0.0.1
      named hybrid connections from a TOML file, wss:// with a generated
      certificate (trust ./tls/relay-cert.pem), Prometheus metrics at
      http://127.0.0.1:9100/metrics.
  txhyco relay --listen tcp:9101:interface=0.0.0.0 --cluster redis://10.0.0.5:6379/0 --advertise 10.0.0.11:9101
      a node of a relay cluster sharing its listeners through Redis with
      the other nodes (README: Scaling out).

""" + paragraph(
    "The key comes from --key, else --key-file, else $HYCO_RELAY_KEY, else the config file's rules, "
    "else the key stored by an earlier run in $XDG_CONFIG_HOME/txhyco/relay.key (~/.config/txhyco/relay.key; "
    "mode 0600), else a fresh random key, stored there for the next run (--new-key: a fresh one in any case). "
    f"{SECRET_NOTE} Logs go to stderr and never contain keys or tokens. "
    "SIGINT/SIGTERM stop the relay, close every socket and exit with status 0."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "relay",
        help="run a local Hybrid Connections relay",
        description="Run a local Azure Relay Hybrid Connections service on this machine.",
        epilog=EPILOG,
        run=run,
    )
    parser.add_argument(
        "--listen",
        metavar="ENDPOINT",
        default=DEFAULT_LISTEN,
        help=f"Twisted server endpoint string to listen on (default: {DEFAULT_LISTEN}; tcp:0 picks a free port; "
             "a listen backlog of 1024 unless it names its own backlog=)",
    )
    parser.add_argument(
        "--key-name", metavar="NAME", help="name of the namespace-wide rule (default: RootManageSharedAccessKey)"
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="KEY", help="the rule's key (visible in process listings: prefer --key-file)")
    keys.add_argument("--key-file", metavar="FILE", help="read the key from FILE, which holds it alone on one line ('-': the first line of stdin)")
    keys.add_argument(
        "--new-key",
        action="store_true",
        help="make a fresh key and store it for later runs instead of reusing the stored one",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file with rules, hybrid connections and limits")
    tls = parser.add_argument_group("TLS (wss:// and https://)")
    tls.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) to serve; needs --tls-key")
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument(
        "--self-signed",
        metavar="DIR",
        help="create (or reuse) a certificate for localhost/127.0.0.1 in DIR; clients must trust DIR/relay-cert.pem",
    )
    parser.add_argument(
        "--metrics", metavar="ENDPOINT", help="serve Prometheus metrics at /metrics, and /healthz and /ready, on this endpoint (e.g. tcp:9100)"
    )
    parser.add_argument(
        "--admin",
        metavar="ENDPOINT",
        help="serve the admin interface (fault switch; needs a Manage token) at /admin/ on this endpoint; "
        "keep it on loopback, e.g. tcp:9091:interface=127.0.0.1",
    )
    cluster = parser.add_argument_group("cluster (several relay processes sharing routing state in Redis; README: Scaling out)")
    cluster.add_argument(
        "--cluster", metavar="URL", help="join the cluster whose state is in this Redis database, e.g. redis://127.0.0.1:6379/0 "
        "(a password goes in $HYCO_REDIS_PASSWORD, not here: arguments show in process listings)"
    )
    cluster.add_argument(
        "--advertise", metavar="HOST:PORT", help="this node's own address, which listeners on other nodes open rendezvous sockets to"
    )
    cluster.add_argument("--node-id", metavar="ID", help="this node's name in metrics and logs (default: host name and advertised port)")
    cluster.add_argument(
        "--also-listen",
        metavar="ENDPOINT",
        action="append",
        default=[],
        help="listen on this endpoint too (repeatable): a node's own advertised port beside a public port it shares "
        "with other nodes, e.g. --listen reuseport:9090 --also-listen tcp:9101",
    )
    return parser


@dataclass(frozen=True)
class RelaySettings:
    """Everything needed to start a relay, checked before the reactor runs."""

    config: Any  # txhyco.relay.config.RelayConfig
    listen: str
    tls: tuple[str, str] | None = None
    metrics: str | None = None
    #: the admin interface's endpoint (--admin, else the config file's ``admin``)
    admin: str | None = None
    #: the self-signed certificate clients must trust, when --self-signed made one
    trust_pem: str | None = None
    #: where the key came from when it was the stored one (a line for stderr)
    key_note: str | None = None
    #: more endpoints the relay listens on (--also-listen)
    also_listen: tuple[str, ...] = ()


def _check_endpoint(description: str, option: str, example: str = DEFAULT_LISTEN) -> None:
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, description)  # parsing only; nothing listens yet
    except Exception as e:  # the endpoint parsers raise ValueError, TypeError, KeyError, OSError…
        detail = str(e).strip().rstrip(".") or e.__class__.__name__
        raise CliError(
            f"{option} {description!r} is not a Twisted server endpoint string ({detail}); "
            f"write it like {example}.",
            2,
        ) from None


def relay_settings(
    *,
    listen: str = DEFAULT_LISTEN,
    key_name: str | None = None,
    key: str | None = None,
    key_file: str | None = None,
    config_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    self_signed: str | None = None,
    metrics: str | None = None,
    admin: str | None = None,
    remember_key: bool = False,
    new_key: bool = False,
    cluster: str | None = None,
    advertise: str | None = None,
    node_id: str | None = None,
    also_listen: tuple[str, ...] | list[str] = (),
) -> RelaySettings:
    """Validate the options and load files; raises :class:`CliError` (exit 2 for usage).

    With ``remember_key`` (``txhyco relay``) a relay given no key by option,
    environment or config rules uses the one stored by an earlier run, or
    stores the one it makes (``new_key``: always a fresh one), see
    :mod:`txhyco.cli.relaykey`.
    """
    from txhyco.protocol.connection_string import ConnectionString
    from txhyco.protocol.errors import ProtocolError
    from txhyco.relay.config import DEFAULT_KEY_NAME, RelayConfig, load_config

    if (tls_cert is None) != (tls_key is None):
        raise CliError("--tls-cert and --tls-key go together; give both (or --self-signed DIR).", 2)
    if self_signed is not None and tls_cert is not None:
        raise CliError("give either --tls-cert/--tls-key or --self-signed, not both.", 2)
    if key_name is not None and not key_name.strip():
        raise CliError("--key-name is empty.", 2)
    _check_endpoint(listen, "--listen")
    for description in also_listen:
        _check_endpoint(description, "--also-listen", "tcp:9101:interface=127.0.0.1")
    if metrics is not None:
        _check_endpoint(metrics, "--metrics")
    if admin is not None:
        _check_endpoint(admin, "--admin", "tcp:9091:interface=127.0.0.1")
    key = choose_key(key, key_file)
    key_note = None
    if new_key and key is not None:
        raise CliError("--new-key makes a key: give it without --key, --key-file or $HYCO_RELAY_KEY.", 2)
    if remember_key and key is None and not _config_has_rules(config_file):
        from .relaykey import remembered_key

        key, stored_at, created = remembered_key(new=new_key)
        key_note = (
            f"made a new key and stored it in {stored_at} (mode 0600); later runs reuse it (--new-key replaces it)"
            if created
            else f"using the key stored in {stored_at} (--new-key replaces it)"
        )
    try:
        if config_file is not None:
            config = load_config(config_file, key_name=key_name, key=key)
        else:
            config = RelayConfig.with_key(key_name or DEFAULT_KEY_NAME, key)
    except ProtocolError as e:
        raise CliError(e.message) from None
    config = _with_cluster(config, cluster, advertise, node_id)
    if config.cluster is not None:
        from txhyco.relay.cluster.store import require_client

        try:
            require_client()
        except ProtocolError as e:
            raise CliError(e.message) from None
    root = config.root_rule
    try:  # the relay prints a connection string with this rule: it must fit in one
        ConnectionString(endpoint="sb://localhost/", shared_access_key_name=root.name, shared_access_key=root.primary_key)
    except ProtocolError:
        raise CliError(f"the key and key name of rule {root.name!r} (--key, --key-file, --key-name or --config) "
                       "cannot contain ';' or leading/trailing whitespace: they go into a connection string.", 2) from None

    trust_pem = None
    tls = None
    if self_signed is not None:
        from txhyco.relay.tls import write_self_signed

        try:
            tls = write_self_signed(self_signed)
        except OSError as e:
            raise CliError(f"cannot write a self-signed certificate to {self_signed}: {e.strerror}.") from None
        trust_pem = tls[0]
    elif tls_cert is not None:
        tls = (tls_cert, tls_key)
    if tls is not None:
        from txhyco.relay.tls import server_context

        try:
            server_context(*tls)
        except ProtocolError as e:
            raise CliError(e.message) from None
    admin = admin if admin is not None else config.admin
    return RelaySettings(config=config, listen=listen, tls=tls, metrics=metrics, admin=admin, trust_pem=trust_pem,
                         key_note=key_note, also_listen=tuple(also_listen))


def _with_cluster(config, url: str | None, advertise: str | None, node_id: str | None):
    """The configuration with the command line's cluster options over its ``[cluster]`` table."""
    import dataclasses

    from txhyco.protocol.errors import ProtocolError
    from txhyco.relay.cluster.settings import cluster_settings

    if url is None and advertise is None and node_id is None:
        return config
    base = config.cluster
    if url is None and base is None:
        raise CliError("--advertise and --node-id go with --cluster redis://HOST:PORT/DB (or a [cluster] table).", 2)
    try:
        if url is None:
            settings = dataclasses.replace(
                base,
                **({} if advertise is None else dict(zip(("advertise_host", "advertise_port"), _advertise(advertise)))),
                **({} if node_id is None else {"node_id": _node_id(node_id)}),
            )
        else:
            settings = cluster_settings(
                redis=url,
                advertise=advertise if advertise is not None else (base.advertise if base else None),
                node_id=node_id if node_id is not None else (base.node_id if base else None),
                ttl=base.ttl if base else None,
            )
    except ProtocolError as e:
        raise CliError(e.message, 2) from None
    return dataclasses.replace(config, cluster=settings)


def _advertise(text: str):
    from txhyco.relay.cluster.settings import parse_advertise

    return parse_advertise(text)


def _node_id(text: str) -> str:
    from txhyco.relay.cluster.settings import check_node_id

    return check_node_id(text)


def _config_has_rules(config_file: str | None) -> bool:
    """Whether the TOML file names its own rules (then their keys, not a stored one, apply)."""
    if config_file is None:
        return False
    import tomllib

    try:
        with open(config_file, "rb") as f:
            return bool(tomllib.load(f).get("rules"))
    except (OSError, ValueError):
        return False  # load_config reports the problem in its own words


def make_service(settings: RelaySettings, *, reactor=None, announce: Callable[[str], None] | None = None):
    """A :class:`txhyco.relay.service.RelayService` for ``settings`` (not yet started)."""
    from txhyco.relay.service import RelayService, print_connection_string

    return RelayService(
        settings.config,
        settings.listen,
        tls=settings.tls,
        metrics_endpoint=settings.metrics,
        admin_endpoint=settings.admin or "",
        reactor=reactor,
        announce=announce or print_connection_string,
        also_listen=settings.also_listen,
    )


def describe_start_error(error: BaseException, settings: RelaySettings) -> str:
    """One sentence for a relay that could not start listening."""
    from twisted.internet.error import CannotListenError

    from txhyco.protocol.errors import ProtocolError

    if isinstance(error, CannotListenError):
        reason = error.socketError
        text = getattr(reason, "strerror", None) or str(reason)
        where = f"{error.interface or '*'}:{error.port}"
        return (
            f"cannot listen on {where} ({text}); stop whatever uses it or choose another port "
            "(tcp:0 picks a free one)."
        )
    if isinstance(error, ProtocolError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return f"cannot start the relay: {error.strerror}."
    return f"cannot start the relay on {settings.listen!r}: {error.__class__.__name__}: {error}."


def listening_summary(service) -> str:
    """What the log says once the relay listens (the connection string redacted)."""
    schemes = "wss/https" if service.tls else "ws/http"
    config = service.config
    served = (
        "hybrid connections " + ", ".join(sorted(config.hybrid_connections))
        if config.restrict
        else "any hybrid connection path"
    )
    return (
        f"relay listening ({schemes}), serving {served}; "
        f"connection string {service.connection_string().format(redact=True)}"
    )


def metrics_url(service) -> str | None:
    if service.metrics_port is None:
        return None
    host = service.metrics_port.getHost()
    address = host.host if host.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{host.port}/metrics"


def admin_url(service) -> str | None:
    if service.admin_port is None:
        return None
    host = service.admin_port.getHost()
    address = host.host if host.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{host.port}/admin/hybridConnections"


def run(args: argparse.Namespace) -> int:
    settings = relay_settings(
        listen=args.listen,
        key_name=args.key_name,
        key=args.key,
        key_file=args.key_file,
        config_file=args.config,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        self_signed=args.self_signed,
        metrics=args.metrics,
        admin=args.admin,
        remember_key=True,
        new_key=args.new_key,
        cluster=args.cluster,
        advertise=args.advertise,
        node_id=args.node_id,
        also_listen=args.also_listen,
    )
    if settings.trust_pem is not None:
        sys.stderr.write(
            f"txhyco relay: clients must trust the self-signed certificate {os.path.abspath(settings.trust_pem)} "
            "(txhyco: --ca-file or ca_file=; Node: NODE_EXTRA_CA_CERTS).\n"
        )
        sys.stderr.flush()
    return run_reactor(lambda reactor: serve(reactor, settings))


def serve(reactor, settings: RelaySettings):
    """Start the relay, announce it, and stop it cleanly when the reactor shuts down."""
    from twisted.internet import defer
    from twisted.logger import Logger

    log = Logger(namespace="txhyco.relay")

    @defer.inlineCallbacks
    def go():
        service = make_service(settings, reactor=reactor)
        service.startService()
        try:
            yield service.ready
        except Exception as e:
            yield defer.maybeDeferred(service.stopService)
            raise CliError(describe_start_error(e, settings)) from None

        def stop():
            log.info("stopping the relay")
            return service.stopService()

        reactor.addSystemEventTrigger("before", "shutdown", stop)
        # Only now: a relay that cannot start says so in one line, and the
        # events buffered so far are written out.
        start_logging(sys.stderr)
        log.info("{summary}", summary=listening_summary(service))
        if settings.key_note is not None:
            log.info("{note}", note=settings.key_note)
        url = metrics_url(service)
        if url:
            log.info("Prometheus metrics at {url}", url=url)
        url = admin_url(service)
        if url:
            log.info("admin interface at {url} (needs a token with Manage rights)", url=url)
        yield defer.Deferred()  # until SIGINT/SIGTERM stops the reactor

    return go()
