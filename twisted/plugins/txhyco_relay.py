"""twistd plugin: ``twistd -n hyco-relay --listen ... --config ...`` runs txhyco's local relay.

A Twisted drop-in (this directory has no ``__init__.py``). It stays import-light
because ``twistd --help`` imports every drop-in: txhyco itself is imported
only once the options are checked and the service is made.
"""
from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

_DEFAULT_LISTEN = "tcp:9090:interface=127.0.0.1"


class Options(usage.Options):
    """The options of ``txhyco relay``; see ``txhyco relay --help`` for examples."""

    synopsis = "[options]"
    longdesc = (
        "Run txhyco's local Azure Relay Hybrid Connections service. Example: "
        "twistd -n hyco-relay --listen tcp:0:interface=127.0.0.1 --key-file relay.key. "
        "With -n the connection string is printed on stdout as a line of its own; the log shows it "
        "with the key redacted. The key comes from --key, else --key-file, else $HYCO_RELAY_KEY, "
        "else the config file, else a fresh random key; arguments are visible in process listings, "
        "so prefer --key-file or the environment."
    )
    optParameters = [
        ["listen", None, _DEFAULT_LISTEN, "Twisted server endpoint string to listen on (tcp:0 picks a free port)."],
        ["key-name", None, None, "Name of the namespace-wide rule (default: RootManageSharedAccessKey)."],
        ["key", None, None, "The rule's key (visible in process listings: prefer --key-file)."],
        ["key-file", None, None, "Read the key from this file, which holds it alone on one line."],
        ["config", None, None, "TOML file with rules, hybrid connections and limits."],
        ["tls-cert", None, None, "PEM certificate to serve (with --tls-key)."],
        ["tls-key", None, None, "PEM private key of --tls-cert."],
        ["self-signed", None, None, "Directory for a generated localhost certificate (clients trust relay-cert.pem)."],
        ["metrics", None, None, "Endpoint for Prometheus metrics at /metrics (and /healthz, /ready), e.g. tcp:9100:interface=127.0.0.1."],
        ["admin", None, None, "Endpoint for the admin interface (fault switch, Manage token), e.g. tcp:9091:interface=127.0.0.1."],
        ["cluster", None, None, "Join the relay cluster whose state is in this Redis database, e.g. redis://127.0.0.1:6379/0."],
        ["advertise", None, None, "This cluster node's own HOST:PORT, which listeners on other nodes open rendezvous sockets to."],
        ["node-id", None, None, "This cluster node's name in metrics and logs."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["also-listen"] = []

    def opt_also_listen(self, description: str) -> None:
        """Another endpoint the relay listens on as well (repeatable), e.g. a cluster node's own tcp:9101 beside --listen reuseport:9090."""
        self["also-listen"].append(description)

    def postOptions(self) -> None:
        from txhyco.cli.common import CliError
        from txhyco.cli.relay import relay_settings

        try:
            self.settings = relay_settings(
                listen=self["listen"],
                key_name=self["key-name"],
                key=self["key"],
                key_file=self["key-file"],
                config_file=self["config"],
                tls_cert=self["tls-cert"],
                tls_key=self["tls-key"],
                self_signed=self["self-signed"],
                metrics=self["metrics"],
                admin=self["admin"],
                cluster=self["cluster"],
                advertise=self["advertise"],
                node_id=self["node-id"],
                also_listen=self["also-listen"],
            )
        except CliError as e:
            # Not a usage mistake (a bad config or key file): one line, and
            # exit status 1 also under twistd before Twisted 24.3, which
            # printed usage errors and exited with 0.
            raise SystemExit(f"twistd hyco-relay: {e.message}") from None


@implementer(IServiceMaker, IPlugin)
class RelayServiceMaker:
    tapname = "hyco-relay"
    description = "A local Azure Relay Hybrid Connections service (txhyco)."
    options = Options

    def makeService(self, options):
        import sys

        from twisted.internet import reactor
        from twisted.logger import Logger

        from txhyco.cli.relay import admin_url, describe_start_error, listening_summary, make_service, metrics_url

        log = Logger(namespace="txhyco.relay")
        settings = options.settings

        def announce(line: str) -> None:
            # twistd redirects sys.stdout into the log; the key belongs on the
            # real stdout only (with -n), never in the log file.
            out = sys.__stdout__
            if out is not None:
                try:
                    out.write(line + "\n")
                    out.flush()
                except (OSError, ValueError):
                    pass

        service = make_service(settings, announce=announce)
        if settings.trust_pem is not None:
            log.info("clients must trust the self-signed certificate {pem}", pem=settings.trust_pem)

        def started(_):
            log.info("{summary}", summary=listening_summary(service))
            url = metrics_url(service)
            if url:
                log.info("Prometheus metrics at {url}", url=url)
            url = admin_url(service)
            if url:
                log.info("admin interface at {url} (needs a token with Manage rights)", url=url)

        def failed(failure):
            log.critical("{message}", message=describe_start_error(failure.value, settings))
            # Listening may fail inside startService, before the reactor runs.
            reactor.callWhenRunning(reactor.stop)

        service.ready.addCallbacks(started, failed)
        return service


relayServiceMaker = RelayServiceMaker()
